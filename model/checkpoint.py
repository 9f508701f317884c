"""Checkpoint I/O for the DiT: safetensors only (never pickle), the layout of the released checkpoints.

A checkpoint directory holds either
* `model.safetensors`, or
* shards `model-0000k-of-0000N.safetensors` plus `model.safetensors.index.json` (its `weight_map` maps each
  tensor name to a shard file; only the names listed for a shard are taken from it).
Any file may instead be present zstd-compressed as `<file>.zst` (preferred when present, as in the original).
Keys are the original module paths; there is no remapping. Tensors are cast to the dtypes the module created.
"""
from __future__ import annotations

import json
import logging
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Mapping, Optional

import safetensors.torch
import torch
import zstandard
from torch import nn

from model.dit import DiTConfig, DiTModel, FourierRope

SINGLE_FILE = "model.safetensors"
INDEX_FILE = "model.safetensors.index.json"
FIXTURE_PARAM_PREFIX = "param."

log = logging.getLogger(__name__)


class CheckpointError(RuntimeError):
    pass


@dataclass
class LoadReport:
    loaded: list[str]
    missing: list[str]  # in the module, not in the checkpoint
    unexpected: list[str]  # in the checkpoint, not in the module

    def __str__(self) -> str:
        lines = [f"loaded {len(self.loaded)} tensors"]
        if self.missing:
            lines.append(f"missing from checkpoint ({len(self.missing)}): " + ", ".join(self.missing))
        if self.unexpected:
            lines.append(f"unexpected in checkpoint ({len(self.unexpected)}): " + ", ".join(self.unexpected))
        return "\n".join(lines)


def _resolve(directory: Path, filename: str) -> Path:
    for candidate in (directory / f"{filename}.zst", directory / filename):
        if candidate.exists():
            return candidate
    raise FileNotFoundError(f"checkpoint file {filename} (or {filename}.zst) not found in {directory}")


def read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    """All tensors of one (optionally .zst-compressed) safetensors file."""
    if path.suffix == ".zst":
        with open(path, "rb") as f:
            return safetensors.torch.load(zstandard.ZstdDecompressor().stream_reader(f).read())
    return safetensors.torch.load_file(path)


def iter_checkpoint(directory: str | Path) -> Iterator[dict[str, torch.Tensor]]:
    """Yield the checkpoint's tensors one shard at a time (so a large model never holds two full copies)."""
    directory = Path(directory)
    if not (directory / INDEX_FILE).exists():
        yield read_safetensors(_resolve(directory, SINGLE_FILE))
        return
    weight_map: dict[str, str] = json.loads((directory / INDEX_FILE).read_text())["weight_map"]
    names_by_shard: dict[str, list[str]] = defaultdict(list)
    for name, shard in weight_map.items():
        names_by_shard[shard].append(name)
    for shard, names in names_by_shard.items():
        tensors = read_safetensors(_resolve(directory, shard))
        absent = [name for name in names if name not in tensors]
        if absent:
            raise CheckpointError(f"{shard} lacks tensors its index lists: {', '.join(absent)}")
        yield {name: tensors[name] for name in names}


def load_checkpoint(module: nn.Module, directory: str | Path, strict: bool = True) -> LoadReport:
    """Load a checkpoint directory into `module` by exact key names.

    Shape mismatches always raise, naming the key. Missing parameters and unexpected keys raise when `strict`
    (logged otherwise); missing buffers are derived state (e.g. `adapter.rope.bands`) and only reported.
    A module built on the meta device is materialised from the checkpoint tensors.
    """
    expected = module.state_dict()
    buffer_names = {name for name, _ in module.named_buffers()}
    assign = any(t.is_meta for t in expected.values())
    loaded: list[str] = []
    unexpected: list[str] = []
    for shard in iter_checkpoint(directory):
        usable = {}
        for name, tensor in shard.items():
            if name not in expected:
                unexpected.append(name)
                continue
            target = expected[name]
            if tensor.shape != target.shape:
                raise CheckpointError(
                    f"shape mismatch for '{name}': checkpoint {tuple(tensor.shape)}, model {tuple(target.shape)}"
                )
            usable[name] = tensor.to(target.dtype)
        module.load_state_dict(usable, strict=False, assign=assign)
        loaded += usable
    loaded_set = set(loaded)
    missing = [name for name in expected if name not in loaded_set]
    report = LoadReport(loaded=loaded, missing=missing, unexpected=unexpected)
    missing_params = [name for name in missing if name not in buffer_names]
    if missing_params or unexpected:
        if strict:
            raise CheckpointError(f"checkpoint {directory} does not match the model:\n{report}")
        log.warning("checkpoint %s does not match the model:\n%s", directory, report)
    return report


def load_dit(
    directory: str | Path, cfg: Optional[DiTConfig] = None, device: str | torch.device = "cpu", strict: bool = True
) -> DiTModel:
    """The DiT built on the meta device (no allocation, no init) and materialised from a checkpoint directory;
    buffers the checkpoint lacks are recomputed. Returns the model in eval mode on `device`."""
    with torch.device("meta"):
        model = DiTModel(cfg or DiTConfig())
    load_checkpoint(model, directory, strict=strict)
    for module in model.modules():
        if isinstance(module, FourierRope) and module.bands.is_meta:
            module.bands = module.default_bands()
    return model.to(device).eval()


def save_checkpoint(
    state_dict: Mapping[str, torch.Tensor], directory: str | Path, num_shards: int = 1, compress: bool = False
) -> None:
    """Write in the released layout: a single `model.safetensors` when num_shards == 1, else shards plus an index;
    `compress` writes every file as `<file>.zst`."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    names = list(state_dict)
    if num_shards == 1:
        shards = {SINGLE_FILE: names}
    else:
        per_shard = -(-len(names) // num_shards)
        shards = {
            f"model-{k + 1:05d}-of-{num_shards:05d}.safetensors": names[k * per_shard : (k + 1) * per_shard]
            for k in range(num_shards)
        }
    for filename, shard_names in shards.items():
        data = safetensors.torch.save({name: state_dict[name].contiguous() for name in shard_names})
        if compress:
            (directory / f"{filename}.zst").write_bytes(zstandard.ZstdCompressor().compress(data))
        else:
            (directory / filename).write_bytes(data)
    if num_shards > 1:
        index = {
            "metadata": {"total_size": sum(t.numel() * t.element_size() for t in state_dict.values())},
            "weight_map": {name: filename for filename, shard_names in shards.items() for name in shard_names},
        }
        (directory / INDEX_FILE).write_text(json.dumps(index, indent=2))


def fixture_state_dict(tensors: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A parity fixture's `param.<key>` tensors under their original keys."""
    n = len(FIXTURE_PARAM_PREFIX)
    return {name[n:]: t for name, t in tensors.items() if name.startswith(FIXTURE_PARAM_PREFIX)}


def load_fixture_params(module: nn.Module, tensors: Mapping[str, torch.Tensor], directory: str | Path) -> LoadReport:
    """Load a fixture's weights into `module` through the checkpoint path: written to `directory` as
    `model.safetensors`, then read back with `load_checkpoint` (strict)."""
    save_checkpoint(fixture_state_dict(tensors), directory)
    return load_checkpoint(module, directory)
