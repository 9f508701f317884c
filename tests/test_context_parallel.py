"""Ulysses context parallel: 2 gloo processes on CPU give the single-process output."""
import itertools
import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from safetensors.torch import load_file, save_file

from dit_fixture_utils import DIT_FIXTURES, build_fixture_model, load_fixture, pack_fixture_inputs, rel_err
from model.parallel import enable_context_parallel, split_sizes

WORLD = 2
# dropping one text token makes the sequence length odd, so the ranks get uneven splits
CASES = list(itertools.product(DIT_FIXTURES, (0, 1)))


def fixture_inputs(name: str, drop_text_tokens: int):
    sidecar, tensors = load_fixture(name)
    return pack_fixture_inputs(tensors, sidecar, drop_text_tokens=drop_text_tokens)


def _worker(rank, port, out_dir):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=WORLD)
    try:
        for name, drop in CASES:
            model = enable_context_parallel(build_fixture_model(name, os.path.join(out_dir, f"ckpt_{name}_{rank}")))
            with torch.no_grad():
                velocity = model(*fixture_inputs(name, drop).model_inputs())
            save_file({"velocity": velocity}, os.path.join(out_dir, f"{name}_{drop}_rank{rank}.safetensors"))
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def parallel_outputs(tmp_path_factory):
    out_dir = tmp_path_factory.mktemp("cp")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(_worker, args=(port, str(out_dir)), nprocs=WORLD)
    return {(name, drop, rank): load_file(out_dir / f"{name}_{drop}_rank{rank}.safetensors")["velocity"]
            for name, drop in CASES for rank in range(WORLD)}


@pytest.mark.parametrize("name,drop_text_tokens", CASES)
def test_two_process_equals_single_process(parallel_outputs, name, drop_text_tokens, tmp_path):
    packed = fixture_inputs(name, drop_text_tokens)
    with torch.no_grad():
        single = build_fixture_model(name, tmp_path)(*packed.model_inputs())
    for rank in range(WORLD):
        parallel = parallel_outputs[(name, drop_text_tokens, rank)]
        assert parallel.shape == single.shape
        assert rel_err(parallel, single) <= 1e-6
    if not drop_text_tokens:
        assert rel_err(parallel, load_fixture(name)[1]["out_fp32.velocity_packed"]) <= 1e-5


def test_uneven_cases_are_uneven():
    lengths = {drop: len(fixture_inputs(DIT_FIXTURES[0], drop).x) for drop in (0, 1)}
    assert lengths[0] - lengths[1] == 1 and any(n % WORLD for n in lengths.values())


def test_split_sizes_put_the_remainder_first():
    assert split_sizes(35, 2) == [18, 17]
    assert split_sizes(10, 4) == [3, 3, 2, 2]
