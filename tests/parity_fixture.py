"""Loading the parity fixtures copied into tests/fixtures/parity/ and the README's error metric."""

import json
from pathlib import Path

import torch
from safetensors.torch import load_file

FIXTURE_DIR = Path(__file__).parent / "fixtures" / "parity"


def load_fixture(name: str) -> tuple[dict, dict[str, torch.Tensor]]:
    """(sidecar JSON, tensors) of fixture `name`."""
    sidecar = json.loads((FIXTURE_DIR / f"{name}.json").read_text())
    return sidecar, load_file(str(FIXTURE_DIR / f"{name}.safetensors"))


def rel_err(mine: torch.Tensor, ref: torch.Tensor) -> float:
    """max|mine − ref| / max|ref|, the README's comparison metric."""
    assert mine.shape == ref.shape, (mine.shape, ref.shape)
    return ((mine.double() - ref.double()).abs().max() / ref.double().abs().max()).item()
