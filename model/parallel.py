"""Ulysses context parallel for the DiT over torch.distributed (gloo on CPU, NCCL on CUDA).

The packed sequence is split contiguously across the ranks of a process group (the first L % world ranks take one
extra token). Everything per-token (adapter, norms, linears, RoPE, modality experts) runs on local tokens. Attention
needs every token, so around it one all-to-all scatters heads and gathers the sequence ([L_r, H, D] → [L, H/world, D],
q, k and v fused into one call), the full-sequence attention runs on this rank's heads (local-attention ranges are
in global coordinates), and the reverse all-to-all gathers heads back. The output is all-gathered at the end.

    enable_context_parallel(model, group)   # every rank calls the model with the same full packed inputs
    velocity = model(*packed.model_inputs())  # identical full [L, C] velocity on every rank
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.distributed as dist

from model.dit import DiTModel, attention


def split_sizes(length: int, world: int) -> list[int]:
    base, extra = divmod(length, world)
    return [base + (rank < extra) for rank in range(world)]


class UlyssesContextParallel:
    """Dispatch / attention / undispatch of one forward. The split sizes are fixed by the first `dispatch` of a
    forward and released by `undispatch`."""

    def __init__(self, group: Optional[dist.ProcessGroup] = None):
        self.group = group
        self.world = dist.get_world_size(group)
        self.rank = dist.get_rank(group)
        self.sizes: Optional[list[int]] = None

    def dispatch(self, tensor: torch.Tensor) -> torch.Tensor:
        """This rank's contiguous slice of a full-sequence tensor."""
        sizes = split_sizes(len(tensor), self.world)
        if self.sizes is None:
            self.sizes = sizes
        elif sizes != self.sizes:
            raise ValueError(f"tensors of one forward must share the sequence length ({sizes} vs {self.sizes})")
        start = sum(sizes[: self.rank])
        return tensor[start : start + sizes[self.rank]]

    def undispatch(self, local: torch.Tensor) -> torch.Tensor:
        """All-gather local slices back into the full sequence (padded to equal size, as gloo requires)."""
        sizes, self.sizes = self.sizes, None
        padded = local.new_zeros(max(sizes), *local.shape[1:])
        padded[: len(local)] = local
        gathered = [torch.empty_like(padded) for _ in range(self.world)]
        dist.all_gather(gathered, padded, group=self.group)
        return torch.cat([part[:size] for part, size in zip(gathered, sizes)])

    def attention(self, q, k, v, q_ranges=None, k_ranges=None) -> torch.Tensor:
        """Local q [L_r, Hq, D], k/v [L_r, Hkv, D] → local attention output [L_r, Hq, D] over the full sequence."""
        world, local_len = self.world, len(q)
        heads_q, heads_kv = q.shape[1], k.shape[1]
        if heads_kv % world:
            if world % heads_kv:
                raise ValueError(f"{heads_kv} KV heads cannot be split over {world} ranks")
            # more ranks than KV heads: replicate each KV head so every rank holds the one its q heads use
            k, v = (t.repeat_interleave(world // heads_kv, dim=1) for t in (k, v))
            heads_kv = world
        if heads_q % world:
            raise ValueError(f"{heads_q} query heads cannot be split over {world} ranks")
        shard_q, shard_kv = heads_q // world, heads_kv // world
        per_rank = [t.reshape(local_len, world, -1, t.shape[-1]) for t in (q, k, v)]  # rank r gets head block r
        send = torch.cat(per_rank, dim=2).transpose(0, 1).contiguous()  # [world, L_r, shard_q + 2 shard_kv, D]
        recv = send.new_empty(sum(self.sizes), *send.shape[2:])
        dist.all_to_all_single(recv, send.flatten(0, 1), self.sizes, [local_len] * world, group=self.group)
        q_full, k_full, v_full = recv.split([shard_q, shard_kv, shard_kv], dim=1)
        out = attention(q_full, k_full, v_full, q_ranges, k_ranges)  # [L, shard_q, D]
        back = out.new_empty(world * local_len, *out.shape[1:])
        dist.all_to_all_single(back, out.contiguous(), [local_len] * world, self.sizes, group=self.group)
        return back.reshape(world, local_len, shard_q, -1).transpose(0, 1).reshape(local_len, heads_q, -1)


def enable_context_parallel(model: DiTModel, group: Optional[dist.ProcessGroup] = None) -> DiTModel:
    """Make `model` split its sequence over `group` (default: the world). Pass group=None after init."""
    model.context_parallel = UlyssesContextParallel(group)
    return model

