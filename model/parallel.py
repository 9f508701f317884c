"""Context parallel over torch.distributed (gloo on CPU, NCCL on CUDA): Ulysses for the DiT, and the Wan2.2
decoder's spatial split (`in_width_slices`, spec 5.1).

DiT (Ulysses). The packed sequence is split contiguously across the ranks of a process group (the first L % world ranks take one
extra token). Everything per-token (adapter, norms, linears, RoPE, modality experts) runs on local tokens. Attention
needs every token, so around it one all-to-all scatters heads and gathers the sequence ([L_r, H, D] → [L, H/world, D],
q, k and v fused into one call), the full-sequence attention runs on this rank's heads (local-attention ranges are
in global coordinates), and the reverse all-to-all gathers heads back. The output is all-gathered at the end.

    enable_context_parallel(model, group)   # every rank calls the model with the same full packed inputs
    velocity = model(*packed.model_inputs())  # identical full [L, C] velocity on every rank

Wan2.2 decoder: `WanVAE.decode(latent, group)` runs each residual block, upsampler, the first conv and the head on
a slice of the width with a halo of real neighbours, then gathers (the DiT's CP group, as the original passes it).
"""
from __future__ import annotations

from typing import Callable, Optional

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



def in_width_slices(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor,
                    group: Optional[dist.ProcessGroup], halo: int, scale: int = 1) -> torch.Tensor:
    """`fn(x)` for x [..., W] computed as the original's context-parallel Wan2.2 decode does: W is cut into
    ⌈W/world⌉-wide slices, each rank runs `fn` on its slice widened by `halo` real neighbouring columns per side
    (so zero padding happens only at the image edges), keeps its own columns (×`scale` when `fn` upsamples W)
    and all ranks gather the full result. Without a group of two or more ranks it is `fn(x)`.

    Equal to `fn(x)` when `halo` covers fn's reach (e.g. 2 for two 3×3 convolutions); the halo is trimmed at the
    slice's real position, also where the image edge clips it (the original trims a fixed halo there, which
    would drop columns on narrow inputs).
    """
    if group is None or dist.get_world_size(group) == 1:
        return fn(x)
    world, rank, width = dist.get_world_size(group), dist.get_rank(group), x.shape[-1]
    if width < world:
        raise ValueError(f"cannot split a width of {width} over {world} ranks")
    chunk = -(-width // world)
    bounds = [(min(r * chunk, width), min((r + 1) * chunk, width)) for r in range(world)]
    start, end = bounds[rank]
    low, high = max(0, start - halo), min(width, end + halo)
    mine = fn(x[..., low:high])[..., (start - low) * scale:(end - low) * scale]
    padded = mine.new_zeros(*mine.shape[:-1], chunk * scale)     # gloo gathers equal shapes only
    padded[..., :mine.shape[-1]] = mine
    gathered = [torch.empty_like(padded) for _ in range(world)]
    dist.all_gather(gathered, padded.contiguous(), group=group)
    return torch.cat([part[..., :(stop - begin) * scale] for part, (begin, stop) in zip(gathered, bounds)], dim=-1)
