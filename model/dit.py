"""daVinci-MagiHuman single-stream DiT (15B), a clean-room reimplementation that is numerically the original.

One Transformer sees one packed token sequence [video | audio | text] (see `model.packing`). There is no timestep
and no modality embedding: the model infers the noise level from the latents and predicts the flow velocity.

Structure (spec sections 1 and 2; state-dict keys equal the original module paths so released checkpoints load
unchanged):

    adapter.{video,text,audio}_embedder   fp32 nn.Linear per modality, reading the leading channels of the padded x
    adapter.rope.bands                    buffer, element-wise Fourier RoPE bands 10000^(-k/n)
    block.layers.N.attention.*            pre_norm, linear_qkv (q | k | v | per-head gate logits), q_norm, k_norm,
                                          linear_proj; GQA, sigmoid gating after attention
    block.layers.N.mlp.*                  pre_norm, up_gate_proj, down_proj; GELU7 or SwiGLU7 (interleaved gate/linear)
    final_norm_{video,audio}, final_linear_{video,audio}

"mm" layers hold three experts (video=0, audio=1, text=2) stacked along dim 0 of every weight; other layers are
shared. Every RMSNorm multiplies by (1 + w). The residual stream is fp32; block linears (and attention) compute in
`compute_dtype`: fp32 reproduces the parity fixtures' fp32 path on CPU, bf16 is the original's CUDA arithmetic.

Public API:
    cfg = DiTConfig()                        # released 15B configuration
    model = DiTModel(cfg)
    velocity = model(x, coords_mapping, modality_mapping, local_q_ranges, local_k_ranges)  # [L, out_channels]
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Callable, Optional

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel

try:  # flash-attn is optional; used on CUDA for bf16/fp16 attention when installed
    from flash_attn import flash_attn_func
except ImportError:
    flash_attn_func = None

VIDEO, AUDIO, TEXT = 0, 1, 2
NUM_MODALITIES = 3

# 1080p SR model: full attention only in layers 3, 7, ..., 31 (config.py post_override_config with SR2_1080).
SR_1080P_LOCAL_ATTN_LAYERS = tuple(i for i in range(40) if i % 4 != 3 or i >= 32)


@dataclass(frozen=True)
class DiTConfig:
    num_layers: int = 40
    hidden_size: int = 5120
    head_dim: int = 128
    num_query_groups: int = 8  # KV heads
    mm_layers: tuple[int, ...] = (0, 1, 2, 3, 36, 37, 38, 39)  # 3-expert (video, audio, text) layers
    gelu7_layers: tuple[int, ...] = (0, 1, 2, 3)  # every other layer is SwiGLU7
    local_attn_layers: tuple[int, ...] = ()  # frame-window attention (1080p SR only)
    post_norm_layers: tuple[int, ...] = ()
    enable_attn_gating: bool = True
    text_in_channels: int = 3584
    video_in_channels: int = 192  # 48 latent channels x (1x2x2) patch
    audio_in_channels: int = 64
    norm_eps: float = 1e-6
    rope_base: float = 10000.0
    linear_weight_dtype: torch.dtype = torch.bfloat16  # storage dtype of the block linears, as the original
    compute_dtype: Optional[torch.dtype] = None  # block matmuls + attention; None: bf16 on CUDA, fp32 on CPU

    @classmethod
    def from_dict(cls, config: dict, **overrides) -> "DiTConfig":
        """Build from an original-style config dict (e.g. a parity sidecar's `model_config`); unknown keys ignored."""
        known = {f.name for f in dataclasses.fields(cls)}
        values = {k: tuple(v) if isinstance(v, list) else v for k, v in config.items() if k in known}
        return cls(**{**values, **overrides})

    def sr_1080p(self) -> "DiTConfig":
        """The 1080p super-resolution model: same weights, local attention in 32 of the 40 layers."""
        return dataclasses.replace(self, local_attn_layers=SR_1080P_LOCAL_ATTN_LAYERS)

    @property
    def num_heads_q(self) -> int:
        return self.hidden_size // self.head_dim

    @property
    def num_heads_kv(self) -> int:
        return self.num_query_groups

    @property
    def rope_bands_per_axis(self) -> int:
        return self.head_dim // 8

    @property
    def rotary_dims(self) -> int:  # sin and cos of 3 axes x bands; the remaining head dims are not rotated
        return 6 * self.rope_bands_per_axis

    @property
    def gelu7_intermediate(self) -> int:
        return 4 * self.hidden_size

    @property
    def swiglu7_intermediate(self) -> int:
        return int(self.hidden_size * 4 * 2 / 3) // 4 * 4

    @property
    def input_channels(self) -> int:  # width of the zero-padded packed features
        return max(self.video_in_channels, self.audio_in_channels, self.text_in_channels)

    @property
    def output_channels(self) -> int:
        return max(self.video_in_channels, self.audio_in_channels)

    def num_experts(self, layer: int) -> int:
        return NUM_MODALITIES if layer in self.mm_layers else 1


class ModalityGroups:
    """Tokens reordered by modality (stable argsort), the order in which per-expert weights are applied.

    Chunk e of the grouped tensor belongs to expert e (0 video, 1 audio, 2 text). When the sequence is already
    sorted (always, for the packer's [video | audio | text] order) grouping is the identity and costs nothing.
    """

    def __init__(self, modality_mapping: torch.Tensor):
        self.sizes = torch.bincount(modality_mapping, minlength=NUM_MODALITIES).tolist()
        order = torch.argsort(modality_mapping, stable=True)
        is_identity = bool((order == torch.arange(len(order), device=order.device)).all())
        self.order = None if is_identity else order
        self.inverse = None if is_identity else torch.argsort(order)

    def to(self, device: torch.device) -> "ModalityGroups":
        """The same grouping with its permutations on `device` (built from a CPU mapping: no host sync)."""
        if self.order is not None:
            self.order, self.inverse = self.order.to(device), self.inverse.to(device)
        return self

    def group(self, x: torch.Tensor) -> torch.Tensor:
        return x if self.order is None else x[self.order]

    def ungroup(self, x: torch.Tensor) -> torch.Tensor:
        return x if self.inverse is None else x[self.inverse]

    def split(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return x.split(self.sizes)


@dataclass
class SequenceContext:
    """Everything a layer needs besides the hidden states, built once per forward."""

    groups: ModalityGroups
    rope: torch.Tensor  # [N, rotary_dims] in sequence (ungrouped) order
    compute_dtype: torch.dtype
    attend: Callable  # attend(q, k, v, q_ranges, k_ranges) on sequence-ordered [N, heads, head_dim]
    local_q_ranges: Optional[torch.Tensor]
    local_k_ranges: Optional[torch.Tensor]
    fp8_linears: bool = False  # block linears use their float8 weights (model.fastpath.quantize_linears_fp8)


class MultiModalityRMSNorm(nn.Module):
    """RMSNorm over the last dim, weight stored as an offset from 1, one [dim] weight per expert."""

    def __init__(self, dim: int, num_experts: int, eps: float):
        super().__init__()
        self.dim, self.num_experts, self.eps = dim, num_experts, eps
        self.weight = nn.Parameter(torch.zeros(num_experts * dim))

    def forward(self, x: torch.Tensor, groups: Optional[ModalityGroups] = None) -> torch.Tensor:
        y = x.float()
        y = y * torch.rsqrt(y.pow(2).mean(-1, keepdim=True) + self.eps)
        scale = 1 + self.weight.float().view(self.num_experts, self.dim)
        if self.num_experts == 1:
            y.mul_(scale[0])
        else:
            for y_e, scale_e in zip(groups.split(y), scale):
                y_e.mul_(scale_e)
        return y.to(x.dtype)


class ExpertLinear(nn.Module):
    """Bias-free linear, one [out, in] block per expert stacked along dim 0.

    Input and weight are cast to the compute dtype; the result is returned in `out_dtype` (the original's
    BaseLinear / NativeMoELinear).
    """

    def __init__(self, in_features: int, out_features: int, num_experts: int, dtype: torch.dtype):
        super().__init__()
        self.num_experts = num_experts
        self.weight = nn.Parameter(torch.empty(num_experts * out_features, in_features, dtype=dtype))
        self.fp8_weights: Optional[list[torch.Tensor]] = None  # per expert, set by model.fastpath

    def forward(self, x: torch.Tensor, ctx: SequenceContext, out_dtype: torch.dtype) -> torch.Tensor:
        if ctx.fp8_linears:  # weights zero-padded to float8 GEMM sizes: pad the inner dim, drop the extra outputs
            out_features = len(self.weight) // self.num_experts
            x = F.pad(x.to(torch.bfloat16), (0, self.fp8_weights[0].shape[1] - x.shape[1]))
            if self.num_experts == 1:
                return F.linear(x, self.fp8_weights[0])[:, :out_features].to(out_dtype)
            parts = [F.linear(x_e, w_e)[:, :out_features] for x_e, w_e in zip(ctx.groups.split(x), self.fp8_weights)]
            return torch.cat(parts).to(out_dtype)
        x, weight = x.to(ctx.compute_dtype), self.weight.to(ctx.compute_dtype)
        if self.num_experts == 1:
            return F.linear(x, weight).to(out_dtype)
        if torch.compiler.is_compiling():  # the compilers cannot write into views of one output: concatenate
            parts = [F.linear(x_e, w_e) for x_e, w_e in zip(ctx.groups.split(x), weight.chunk(self.num_experts))]
            return torch.cat(parts).to(out_dtype)
        out = x.new_empty(len(x), len(weight) // self.num_experts)
        for x_e, w_e, out_e in zip(ctx.groups.split(x), weight.chunk(self.num_experts), ctx.groups.split(out)):
            torch.matmul(x_e, w_e.t(), out=out_e)
        return out.to(out_dtype)


def gelu7(x: torch.Tensor) -> torch.Tensor:
    x = x.clamp(max=7.0)
    return torch.mul(x, 1.702).sigmoid_().mul_(x)


def swiglu7(x: torch.Tensor) -> torch.Tensor:
    """[..., 2I] with gate on even and linear on odd features → [..., I]."""
    gate, linear = x[..., 0::2].clamp(max=7.0), x[..., 1::2].clamp(-7.0, 7.0)
    return torch.mul(gate, 1.702).sigmoid_().mul_(gate).mul_(linear.add_(1))


class FourierRope(nn.Module):
    """Element-wise Fourier RoPE angles from the 9-column coordinates (t, y, x, T, H, W, refT, refH, refW).

    Positions are rescaled to the reference grid, (ref - 1) / (size - 1), and centered spatially (t is not).
    Output [L, 6n] = [sin | cos] of 3n angles ordered t-bands, y-bands, x-bands.
    """

    def __init__(self, bands_per_axis: int, base: float):
        super().__init__()
        self.bands_per_axis, self.base = bands_per_axis, base
        self.register_buffer("bands", self.default_bands())

    def default_bands(self, device=None) -> torch.Tensor:
        exponents = -torch.arange(self.bands_per_axis, dtype=torch.float64, device=device) / self.bands_per_axis
        return (self.base**exponents).float()

    @staticmethod
    def _scale(coords: torch.Tensor) -> torch.Tensor:
        size, ref = coords[:, 3:6], coords[:, 6:9]
        scale = (ref - 1) / (size - 1)
        return torch.where((ref == 1) & (size == 1), torch.ones_like(scale), scale)

    @classmethod
    def check(cls, coords: torch.Tensor) -> None:
        """Raise for coordinates that give a non-finite scale (reads the values: a host sync on an accelerator)."""
        if not torch.isfinite(cls._scale(coords.float())).all():
            raise ValueError("RoPE coordinates give a non-finite scale (size 1 with reference size != 1)")

    def forward(self, coords: torch.Tensor) -> torch.Tensor:
        self.check(coords)
        return self.angles(coords)

    def angles(self, coords: torch.Tensor) -> torch.Tensor:
        """`forward` without the check, for coordinates already checked (e.g. on the CPU)."""
        coords = coords.float()
        grid_pos, size = coords[:, 0:3], coords[:, 3:6]
        scale = self._scale(coords)
        center = (size - 1) / 2
        center[:, 0] = 0  # time is not centered
        angles = (((grid_pos - center) * scale)[:, :, None] * self.bands).flatten(1)  # [L, 3n]
        return torch.cat([angles.sin(), angles.cos()], dim=-1)


def apply_rope(x: torch.Tensor, rope: torch.Tensor) -> torch.Tensor:
    """Rotate-half on the first rope.shape[-1] dims of every head. x [L, H, D], rope [L, 2h] = [sin | cos]."""
    half = rope.shape[-1] // 2
    sin, cos = rope[:, None, :half], rope[:, None, half:]
    x1, x2 = x[..., :half], x[..., half : 2 * half]
    if torch.compiler.is_compiling():  # out-of-place for the compilers, which fuse it into one kernel
        return torch.cat([x1 * cos - x2 * sin, x2 * cos + x1 * sin, x[..., 2 * half :]], dim=-1)
    out = torch.empty_like(x)
    torch.mul(x1, cos, out=out[..., :half]).addcmul_(x2, sin, value=-1)
    torch.mul(x2, cos, out=out[..., half : 2 * half]).addcmul_(x1, sin)
    out[..., 2 * half :] = x[..., 2 * half :]
    return out


def dense_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                    backends: Optional[list[SDPBackend]] = None) -> torch.Tensor:
    """Bidirectional softmax attention, scale 1/sqrt(D). q [L, Hq, D], k/v [S, Hkv, D] (GQA: q head j uses kv head
    j // (Hq/Hkv)) → [L, Hq, D]. `backends`: the scaled_dot_product_attention kernels allowed (None: flash-attn
    when installed, else PyTorch's choice)."""
    if backends is None and flash_attn_func is not None and q.is_cuda and q.dtype in (torch.bfloat16, torch.float16):
        return flash_attn_func(q[None], k[None], v[None])[0]
    if not q.is_cuda and q.dtype != torch.float32:
        # CPU low-precision kernels round intermediates; fp32 softmax on the rounded q/k/v with the result rounded
        # once is the flash-attention arithmetic the bf16 parity fixtures use.
        return dense_attention(q.float(), k.float(), v.float(), backends).to(q.dtype)
    q, k, v = (t.transpose(0, 1)[None] for t in (q, k, v))
    if backends is None:
        return F.scaled_dot_product_attention(q, k, v, enable_gqa=True)[0].transpose(0, 1)
    with sdpa_kernel(backends):
        return F.scaled_dot_product_attention(q, k, v, enable_gqa=True)[0].transpose(0, 1)


def _merge_intervals(intervals: list[tuple[int, int]]) -> list[tuple[int, int]]:
    merged: list[list[int]] = []
    for start, end in sorted(intervals):
        if merged and start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    return [(start, end) for start, end in merged]


def query_blocks(q_ranges: torch.Tensor, k_ranges: torch.Tensor, length: int):
    """Split the queries at every range boundary; yield ((q0, q1), key_intervals) with the union of the key ranges
    of every pair whose query range covers [q0, q1). Raises if a query token is not covered by any pair."""
    pairs = list(zip(q_ranges.tolist(), k_ranges.tolist()))
    bounds = sorted({0, length, *(b for (q, _) in pairs for b in q)})
    for q0, q1 in zip(bounds[:-1], bounds[1:]):
        keys = [tuple(k) for q, k in pairs if q[0] <= q0 and q1 <= q[1]]
        if not keys:
            raise ValueError(f"local attention ranges leave queries [{q0}, {q1}) without keys")
        yield (q0, q1), _merge_intervals(keys)


def attention(q, k, v, q_ranges: Optional[torch.Tensor] = None, k_ranges: Optional[torch.Tensor] = None):
    """Full attention, or (given ranges) softmax attention of each query over the union of its key ranges.

    The union equals the original's per-range flash-attention calls merged by log-sum-exp. Ranges are half-open
    [start, end) token intervals in sequence coordinates, one query range per key range.
    """
    if q_ranges is None:
        return dense_attention(q, k, v)
    return blocked_attention(q, k, v, query_blocks(q_ranges, k_ranges, len(q)))


def blocked_attention(q, k, v, blocks, backends: Optional[list[SDPBackend]] = None) -> torch.Tensor:
    """Attention of each query block over its key intervals; `blocks` as `query_blocks` yields them."""
    parts = []
    for (q0, q1), key_intervals in blocks:
        keys = [slice(start, end) for start, end in key_intervals]
        k_sel = k[keys[0]] if len(keys) == 1 else torch.cat([k[s] for s in keys])
        v_sel = v[keys[0]] if len(keys) == 1 else torch.cat([v[s] for s in keys])
        parts.append(dense_attention(q[q0:q1], k_sel, v_sel, backends))
    return torch.cat(parts)


class Attention(nn.Module):
    def __init__(self, cfg: DiTConfig, num_experts: int, local: bool):
        super().__init__()
        self.local = local
        self.num_heads_q, self.num_heads_kv, self.head_dim = cfg.num_heads_q, cfg.num_heads_kv, cfg.head_dim
        q_size, kv_size = cfg.num_heads_q * cfg.head_dim, cfg.num_heads_kv * cfg.head_dim
        self.split_sizes = [q_size, kv_size, kv_size, cfg.num_heads_q if cfg.enable_attn_gating else 0]
        self.pre_norm = MultiModalityRMSNorm(cfg.hidden_size, num_experts, cfg.norm_eps)
        self.linear_qkv = ExpertLinear(cfg.hidden_size, sum(self.split_sizes), num_experts, cfg.linear_weight_dtype)
        self.linear_proj = ExpertLinear(q_size, cfg.hidden_size, num_experts, cfg.linear_weight_dtype)
        self.q_norm = MultiModalityRMSNorm(cfg.head_dim, num_experts, cfg.norm_eps)
        self.k_norm = MultiModalityRMSNorm(cfg.head_dim, num_experts, cfg.norm_eps)

    def forward(self, h: torch.Tensor, ctx: SequenceContext) -> torch.Tensor:
        n, groups = len(h), ctx.groups
        qkv = self.linear_qkv(self.pre_norm(h, groups), ctx, out_dtype=torch.float32)
        q, k, v, gate = qkv.split(self.split_sizes, dim=-1)
        q = self.q_norm(q.reshape(n, self.num_heads_q, self.head_dim), groups)
        k = self.k_norm(k.reshape(n, self.num_heads_kv, self.head_dim), groups)
        v = v.reshape(n, self.num_heads_kv, self.head_dim)
        q, k, v = (groups.ungroup(t) for t in (q, k, v))
        q, k = apply_rope(q, ctx.rope), apply_rope(k, ctx.rope)
        ranges = (ctx.local_q_ranges, ctx.local_k_ranges) if self.local else (None, None)
        out = ctx.attend(q.to(ctx.compute_dtype), k.to(ctx.compute_dtype), v.to(ctx.compute_dtype), *ranges)
        out = groups.group(out).float()  # [N, Hq, D]
        if gate.shape[-1]:
            out = out * torch.sigmoid(gate)[..., None]
        return self.linear_proj(out.reshape(n, -1), ctx, out_dtype=ctx.compute_dtype)


class MLP(nn.Module):
    def __init__(self, cfg: DiTConfig, num_experts: int, use_gelu7: bool):
        super().__init__()
        intermediate = cfg.gelu7_intermediate if use_gelu7 else cfg.swiglu7_intermediate
        up_features = intermediate if use_gelu7 else 2 * intermediate
        self.activation = gelu7 if use_gelu7 else swiglu7
        self.pre_norm = MultiModalityRMSNorm(cfg.hidden_size, num_experts, cfg.norm_eps)
        self.up_gate_proj = ExpertLinear(cfg.hidden_size, up_features, num_experts, cfg.linear_weight_dtype)
        self.down_proj = ExpertLinear(intermediate, cfg.hidden_size, num_experts, cfg.linear_weight_dtype)

    def forward(self, h: torch.Tensor, ctx: SequenceContext) -> torch.Tensor:
        up = self.up_gate_proj(self.pre_norm(h, ctx.groups), ctx, out_dtype=torch.float32)
        return self.down_proj(self.activation(up), ctx, out_dtype=torch.float32)


class TransformerLayer(nn.Module):
    def __init__(self, cfg: DiTConfig, index: int):
        super().__init__()
        num_experts = cfg.num_experts(index)
        self.attention = Attention(cfg, num_experts, local=index in cfg.local_attn_layers)
        self.mlp = MLP(cfg, num_experts, use_gelu7=index in cfg.gelu7_layers)
        self.post_norm = index in cfg.post_norm_layers
        if self.post_norm:
            self.attn_post_norm = MultiModalityRMSNorm(cfg.hidden_size, num_experts, cfg.norm_eps)
            self.mlp_post_norm = MultiModalityRMSNorm(cfg.hidden_size, num_experts, cfg.norm_eps)

    def forward(self, h: torch.Tensor, ctx: SequenceContext) -> torch.Tensor:
        a = self.attention(h, ctx)
        if self.post_norm:
            a = self.attn_post_norm(a, ctx.groups)
        h = h + a
        m = self.mlp(h, ctx)
        if self.post_norm:
            m = self.mlp_post_norm(m, ctx.groups)
        return h + m


class TransformerBlock(nn.Module):
    def __init__(self, cfg: DiTConfig):
        super().__init__()
        self.layers = nn.ModuleList(TransformerLayer(cfg, i) for i in range(cfg.num_layers))

    def forward(self, h: torch.Tensor, ctx: SequenceContext) -> torch.Tensor:
        for layer in self.layers:
            h = layer(h, ctx)
        return h


class Adapter(nn.Module):
    """Per-modality input embedders (fp32, with bias) and the RoPE angles. No timestep embedding."""

    def __init__(self, cfg: DiTConfig):
        super().__init__()
        self.video_embedder = nn.Linear(cfg.video_in_channels, cfg.hidden_size)
        self.text_embedder = nn.Linear(cfg.text_in_channels, cfg.hidden_size)
        self.audio_embedder = nn.Linear(cfg.audio_in_channels, cfg.hidden_size)
        self.rope = FourierRope(cfg.rope_bands_per_axis, cfg.rope_base)

    def forward(self, x: torch.Tensor, groups: ModalityGroups) -> torch.Tensor:
        """x [N, W] zero-padded features in sequence order → [N, hidden] fp32 in grouped order."""
        embedders = (self.video_embedder, self.audio_embedder, self.text_embedder)  # expert order
        chunks = groups.split(groups.group(x.float()))
        return torch.cat([emb(xe[:, : emb.in_features]) for emb, xe in zip(embedders, chunks)])


class DiTModel(nn.Module):
    def __init__(self, cfg: DiTConfig):
        super().__init__()
        self.cfg = cfg
        self.adapter = Adapter(cfg)
        self.block = TransformerBlock(cfg)
        self.final_norm_video = MultiModalityRMSNorm(cfg.hidden_size, 1, cfg.norm_eps)
        self.final_norm_audio = MultiModalityRMSNorm(cfg.hidden_size, 1, cfg.norm_eps)
        self.final_linear_video = nn.Linear(cfg.hidden_size, cfg.video_in_channels, bias=False)
        self.final_linear_audio = nn.Linear(cfg.hidden_size, cfg.audio_in_channels, bias=False)
        self.context_parallel = None  # set by model.parallel.enable_context_parallel

    @torch.no_grad()
    def init_weights_(self, generator: Optional[torch.Generator] = None, std: float = 0.02) -> None:
        """Random weights for tests and benchmarks: N(0, std) linears/biases, N(0, std) norm offsets.
        (The original leaves weights uninitialised and always loads a checkpoint.)"""
        for param in self.parameters():
            param.copy_(torch.randn(param.shape, generator=generator) * std)

    @torch.no_grad()  # inference only: the kernels write into preallocated outputs
    def forward(
        self,
        x: torch.Tensor,
        coords_mapping: torch.Tensor,
        modality_mapping: torch.Tensor,
        local_q_ranges: Optional[torch.Tensor] = None,
        local_k_ranges: Optional[torch.Tensor] = None,
    ) -> torch.Tensor:
        """Packed sequence → packed velocity.

        x [L, W] fp32 (W ≥ every modality's input width), coords_mapping [L, 9], modality_mapping [L] int64
        (0 video, 1 audio, 2 text); local_{q,k}_ranges [n, 2] int half-open token ranges, required when the
        config has local-attention layers. Returns [L, output_channels] fp32: video rows use all columns, audio
        rows the first audio_in_channels, text rows are zero.
        """
        cfg, cp = self.cfg, self.context_parallel
        if cfg.local_attn_layers and local_q_ranges is None:
            raise ValueError("this configuration has local-attention layers: pass local_q_ranges/local_k_ranges")
        if cp is not None:
            x, coords_mapping, modality_mapping = (cp.dispatch(t) for t in (x, coords_mapping, modality_mapping))
        ctx = SequenceContext(
            groups=ModalityGroups(modality_mapping),
            rope=self.adapter.rope(coords_mapping),
            compute_dtype=self.compute_dtype(x.device),
            attend=attention if cp is None else cp.attention,
            local_q_ranges=local_q_ranges,
            local_k_ranges=local_k_ranges,
        )
        velocity = self.run(x, ctx)
        return velocity if cp is None else cp.undispatch(velocity)

    def compute_dtype(self, device: torch.device) -> torch.dtype:
        return self.cfg.compute_dtype or (torch.bfloat16 if device.type == "cuda" else torch.float32)

    @torch.no_grad()
    def run(self, x: torch.Tensor, ctx: SequenceContext, layers: Optional[list[Callable]] = None) -> torch.Tensor:
        """The forward on a prepared context (which `forward` builds per call; `model.fastpath` once per run).
        `layers`: callables standing in for `block.layers` (e.g. their compiled versions)."""
        h = self.adapter(x, ctx.groups)
        if layers is None:
            h = self.block(h, ctx)
        else:
            for layer in layers:
                h = layer(h, ctx)
        return self._heads(h, ctx.groups)

    def _heads(self, h: torch.Tensor, groups: ModalityGroups) -> torch.Tensor:
        """Grouped hidden states → velocity in sequence order (text rows zero)."""
        h_video, h_audio, _ = groups.split(h)
        out = h.new_zeros(len(h), self.cfg.output_channels)
        n_video, n_audio = len(h_video), len(h_audio)
        out[:n_video, : self.cfg.video_in_channels] = self.final_linear_video(self.final_norm_video(h_video))
        out[n_video : n_video + n_audio, : self.cfg.audio_in_channels] = self.final_linear_audio(
            self.final_norm_audio(h_audio)
        )
        return groups.ungroup(out)

