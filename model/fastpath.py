"""Fast paths of the generator: the same arithmetic as `model.dit` / `model.turbo_vaed`, arranged for a GPU.

    options = FastPathConfig(attention="cudnn", compile="max-autotune-no-cudagraphs", cuda_graphs=True)
    velocity_fn = FastVelocity(dit, "v2", options)        # drop-in for model.sampling.dit_velocity_fn
    vaed.to_channels_last()                                # options.vae_channels_last (model.turbo_vaed)

What each option changes (all off by default: the default is the plain path that the parity tests pin down):

* always, once `FastVelocity` is used: the sequence is planned once per clip shape, not per step. Coordinates,
  modalities, RoPE angles and modality groups do not change between denoising steps, so they are built once from
  the CPU-side packing (checked there, moved with one asynchronous copy); a step only packs the token features and
  runs the network. No step reads a device value back (no `.item()`, `.tolist()`, `nonzero` or blocking copy).
* `attention`: which `scaled_dot_product_attention` kernel runs (flash, cuDNN, memory-efficient, math); "auto"
  keeps PyTorch's own choice (or flash-attn when installed, as `model.dit.dense_attention`).
* `compile`: `torch.compile` of every transformer layer with static shapes (one graph per layer kind and sequence
  length: 3 kinds in the released model); inductor fuses the RMSNorms, the q/k norms with RoPE and the casts, the
  GELU7/SwiGLU7 clamps and the gating into few kernels around the matmuls and attention.
* `cuda_graphs`: the whole forward (adapter, 40 layers, heads) captured once per sequence shape and replayed
  (CUDA only); capture happens on the first step of a shape, after two warm-up forwards.
* `fp8_linears`: block linears through torchao's float8 (e4m3, per-row dynamic activation and weight scales);
  CUDA with compute capability ≥ 8.9 only (torchao refuses other devices). Adapter, heads, norms and attention stay
  as they are.
* `vae_channels_last`: Turbo-VAED with channels-last (NDHWC) weights and activations, cuDNN's faster layout for
  bf16 3-D convolutions.
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Callable, Optional

import torch
from torch import nn
from torch.nn.attention import SDPBackend

from model.dit import (DiTModel, ExpertLinear, ModalityGroups, SequenceContext, blocked_attention, dense_attention,
                       query_blocks)
from model.packing import PackedSequence, pack, pack_features, unpack
from model.text_encoder import TextEmbedding

ATTENTION_BACKENDS = {"auto": None, "flash": SDPBackend.FLASH_ATTENTION, "cudnn": SDPBackend.CUDNN_ATTENTION,
                      "efficient": SDPBackend.EFFICIENT_ATTENTION, "math": SDPBackend.MATH}
COMPILE_MODES = ("none", "default", "max-autotune-no-cudagraphs")


@dataclass(frozen=True)
class FastPathConfig:
    attention: str = field(default="auto", metadata={
        "help": f"scaled_dot_product_attention kernel: {', '.join(ATTENTION_BACKENDS)} (auto: PyTorch's choice)"})
    compile: str = field(default="none", metadata={
        "help": f"torch.compile of the DiT layers, static shapes: {', '.join(COMPILE_MODES)}"})
    cuda_graphs: bool = field(default=False, metadata={
        "help": "capture the DiT forward as a CUDA graph per sequence shape and replay it (CUDA only)"})
    fp8_linears: bool = field(default=False, metadata={
        "help": "DiT block linears in float8 through torchao (CUDA, compute capability >= 8.9)"})
    vae_channels_last: bool = field(default=False, metadata={
        "help": "Turbo-VAED weights and activations in channels-last layout"})

    def __post_init__(self):
        for spec in fields(self):
            value = getattr(self, spec.name)
            if spec.type == "bool" and not isinstance(value, bool):
                raise TypeError(f"fast path option {spec.name} must be true or false, got {value!r}")
        if self.attention not in ATTENTION_BACKENDS:
            raise ValueError(f"attention must be one of {', '.join(ATTENTION_BACKENDS)}, got {self.attention!r}")
        if self.compile not in COMPILE_MODES:
            raise ValueError(f"compile must be one of {', '.join(COMPILE_MODES)}, got {self.compile!r}")

    @property
    def plain(self) -> bool:
        """Everything off: the plain path."""
        return self == FastPathConfig()

    def check_device(self, device: torch.device) -> None:
        """Refuse options the device cannot run, naming them."""
        if device.type != "cuda":
            needs_cuda = [name for name, on in (("cuda_graphs", self.cuda_graphs), ("fp8_linears", self.fp8_linears),
                                                ("attention=cudnn", self.attention == "cudnn"),
                                                ("attention=efficient", self.attention == "efficient")) if on]
            if needs_cuda:
                raise ValueError(f"{', '.join(needs_cuda)} need a CUDA device, got {device}")


# ---------------------------------------------------------------------------------------------------------------
# The DiT


class PlannedAttention:
    """`SequenceContext.attend` with the chosen SDPA kernel and the local-attention blocks of one sequence
    resolved once (the ranges are read on the host when the plan is made, never inside a step)."""

    def __init__(self, backend: Optional[SDPBackend], local_blocks: Optional[list] = None):
        self.backends = None if backend is None else [backend]
        self.local_blocks = local_blocks

    def __call__(self, q, k, v, q_ranges=None, k_ranges=None):
        if q_ranges is None:
            return dense_attention(q, k, v, self.backends)
        return blocked_attention(q, k, v, self.local_blocks, self.backends)


@dataclass
class SequencePlan:
    """What stays fixed across the denoising steps of one clip shape."""

    layout: PackedSequence        # CPU-side packing (its x is zeros): shapes for `pack_features` and `unpack`
    ctx: SequenceContext
    graph: Optional["GraphedForward"] = None


class FastVelocity:
    """`dit_velocity_fn` with the fast paths of `options`: pack → forward → unpack, same numbers up to kernel
    rounding (checked against the parity fixtures by tests/test_fastpath.py and benchmarks/bench_e2e.py)."""

    def __init__(self, model: DiTModel, coords_style: str, options: FastPathConfig = FastPathConfig(),
                 **pack_options):
        """`pack_options`: `model.packing.pack`'s keyword arguments other than the coordinate style."""
        if model.context_parallel is not None:
            raise ValueError("the fast paths do not support context parallel; use the plain path")
        self.model, self.coords_style, self.options, self.pack_options = model, coords_style, options, pack_options
        self.plans: dict[tuple, SequencePlan] = {}
        self.layers: Optional[list[Callable]] = None
        if options.compile != "none":
            # one static graph per layer kind and sequence shape is the design, so several shapes (base and SR
            # stage, another prompt length) must not fall back to eager after dynamo's default 8 recompiles
            torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, 64)
            mode = None if options.compile == "default" else options.compile
            self.layers = [torch.compile(layer, mode=mode, dynamic=False) for layer in model.block.layers]
        if options.fp8_linears:
            quantize_linears_fp8(model)

    def plan(self, video_shape, audio_shape, num_text: int, text_width: int, device: torch.device) -> SequencePlan:
        key = (tuple(video_shape), tuple(audio_shape), num_text, text_width, str(device))
        if key not in self.plans:
            self.options.check_device(device)
            layout = pack(torch.zeros(video_shape), torch.zeros(audio_shape), torch.zeros(1, num_text, text_width),
                          num_text, coords_style=self.coords_style, **self.pack_options)
            self.model.adapter.rope.check(layout.coords_mapping)     # on the CPU copy: no device read
            local = None
            if self.model.cfg.local_attn_layers:
                local = list(query_blocks(layout.local_q_ranges, layout.local_k_ranges, len(layout.x)))
            ctx = SequenceContext(
                groups=ModalityGroups(layout.modality_mapping).to(device),
                rope=self.model.adapter.rope.angles(_to_device(layout.coords_mapping, device)),
                compute_dtype=self.model.compute_dtype(device),
                attend=PlannedAttention(ATTENTION_BACKENDS[self.options.attention], local),
                local_q_ranges=layout.local_q_ranges if local else None,
                local_k_ranges=layout.local_k_ranges if local else None,
                fp8_linears=self.options.fp8_linears,
            )
            self.plans[key] = SequencePlan(layout, ctx)
        return self.plans[key]

    def forward(self, x: torch.Tensor, plan: SequencePlan) -> torch.Tensor:
        run = lambda tokens: self.model.run(tokens, plan.ctx, self.layers)  # noqa: E731
        if not self.options.cuda_graphs:
            return run(x)
        if plan.graph is None:
            plan.graph = GraphedForward(run, x)
        return plan.graph(x)

    @torch.no_grad()
    def __call__(self, video: torch.Tensor, audio: torch.Tensor, text: TextEmbedding):
        features = text.features
        plan = self.plan(video.shape, audio.shape, text.length, features.shape[-1], video.device)
        layout = plan.layout
        x = pack_features(video, audio, features, text.length, layout.patch_size, layout.t_patch_size)
        return unpack(self.forward(x, plan), layout)


def _to_device(tensor: torch.Tensor, device: torch.device) -> torch.Tensor:
    if device.type == "cuda":
        return tensor.pin_memory().to(device, non_blocking=True)
    return tensor.to(device)


class GraphedForward:
    """`fn(x)` captured as one CUDA graph: the input is copied into a static buffer, the graph replayed, and the
    output copied out (the next replay overwrites the static output)."""

    WARMUP = 2   # compilation, autotuning and cuDNN plan selection happen here, outside the capture

    def __init__(self, fn: Callable[[torch.Tensor], torch.Tensor], example: torch.Tensor):
        self.static_input = example.clone()
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(self.WARMUP):
                fn(self.static_input)
        torch.cuda.current_stream().wait_stream(side)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            self.static_output = fn(self.static_input)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        self.static_input.copy_(x)
        self.graph.replay()
        return self.static_output.clone()


FP8_ALIGNMENT = 16   # float8 GEMMs need both matrix dims divisible by 16; torchao skips (keeps bf16) other linears


def quantize_linears_fp8(model: DiTModel) -> None:
    """Give every block linear per-expert float8 weights (torchao `Float8Tensor`, per-row scales, dynamic per-row
    activation scaling), used by forwards whose context has `fp8_linears`; the bf16 weights stay for the others.

    The released widths are not all multiples of 16 (q|k|v|gates 7208, SwiGLU7 2·13652 and 13652), so weights are
    zero-padded to the next multiple (the forward pads the activations' inner dim and drops the extra outputs):
    zero rows and columns add nothing to the products."""
    try:
        from torchao.quantization import Float8DynamicActivationFloat8WeightConfig, PerRow, quantize_
    except ImportError as err:
        raise RuntimeError("fp8_linears needs torchao (pip install 'mheval[fp8]')") from err
    config = Float8DynamicActivationFloat8WeightConfig(granularity=PerRow())
    for module in model.modules():
        if isinstance(module, ExpertLinear) and module.fp8_weights is None:
            experts = []
            for weight in module.weight.detach().chunk(module.num_experts):
                rows, cols = (-size % FP8_ALIGNMENT for size in weight.shape)
                padded = torch.nn.functional.pad(weight.to(torch.bfloat16), (0, cols, 0, rows))
                linear = nn.Linear(padded.shape[1], padded.shape[0], bias=False, device=weight.device,
                                   dtype=torch.bfloat16)
                linear.weight.data.copy_(padded)
                holder = nn.Sequential(linear)       # quantize_ converts submodules, not the module it is given
                quantize_(holder, config)
                if type(holder[0].weight).__name__ != "Float8Tensor":
                    raise RuntimeError(f"torchao left a {tuple(padded.shape)} linear unquantised")
                experts.append(holder[0].weight)
            module.fp8_weights = experts
