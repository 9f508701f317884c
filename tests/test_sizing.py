"""Released configuration built on the meta device: exact spec key set, shapes, dtypes and parameter count."""
import torch

from model.dit import DiTConfig
from model.sizing import build_meta_model, components, main, memory_estimate, sequence_for

# Spec section 2.1, written out as data. Per-layer shapes for (layers 0-3, layers 4-35, layers 36-39).
TOP_LEVEL = {
    "adapter.video_embedder.weight": (5120, 192),
    "adapter.video_embedder.bias": (5120,),
    "adapter.text_embedder.weight": (5120, 3584),
    "adapter.text_embedder.bias": (5120,),
    "adapter.audio_embedder.weight": (5120, 64),
    "adapter.audio_embedder.bias": (5120,),
    "adapter.rope.bands": (16,),
    "final_norm_video.weight": (5120,),
    "final_norm_audio.weight": (5120,),
    "final_linear_video.weight": (192, 5120),
    "final_linear_audio.weight": (64, 5120),
}
PER_LAYER = {
    "attention.pre_norm.weight": [(15360,), (5120,), (15360,)],
    "attention.linear_qkv.weight": [(21624, 5120), (7208, 5120), (21624, 5120)],
    "attention.linear_proj.weight": [(15360, 5120), (5120, 5120), (15360, 5120)],
    "attention.q_norm.weight": [(384,), (128,), (384,)],
    "attention.k_norm.weight": [(384,), (128,), (384,)],
    "mlp.pre_norm.weight": [(15360,), (5120,), (15360,)],
    "mlp.up_gate_proj.weight": [(61440, 5120), (27304, 5120), (81912, 5120)],
    "mlp.down_proj.weight": [(15360, 20480), (5120, 13652), (15360, 13652)],
}
BF16_SUFFIXES = ("linear_qkv.weight", "linear_proj.weight", "up_gate_proj.weight", "down_proj.weight")
TOTAL_PARAMETERS = 15_299_419_136


def layer_group(index: int) -> int:
    return 0 if index <= 3 else 1 if index <= 35 else 2


def expected_shapes() -> dict[str, tuple[int, ...]]:
    shapes = dict(TOP_LEVEL)
    for i in range(40):
        for suffix, per_group in PER_LAYER.items():
            shapes[f"block.layers.{i}.{suffix}"] = per_group[layer_group(i)]
    return shapes


def test_meta_build_has_exactly_the_spec_state_dict():
    model = build_meta_model()
    state = model.state_dict()
    expected = expected_shapes()
    assert len(expected) == 331
    assert set(state) == set(expected)
    for name, shape in expected.items():
        assert tuple(state[name].shape) == shape, name
        assert state[name].dtype == (torch.bfloat16 if name.endswith(BF16_SUFFIXES) else torch.float32), name
    assert all(t.is_meta for t in state.values())


def test_meta_build_parameter_count_is_exact():
    model = build_meta_model()
    assert sum(p.numel() for p in model.parameters()) == TOTAL_PARAMETERS
    assert [name for name, _ in model.named_buffers()] == ["adapter.rope.bands"]


def test_component_breakdown_matches_spec():
    rows = components(build_meta_model())
    assert sum(r.parameters for r in rows) == TOTAL_PARAMETERS
    millions = lambda n: round(n / 1e5) / 10  # noqa: E731  (the spec quotes 0.1 M)
    per_layer = {r.name.split(" (")[0]: millions(r.parameters // r.layers) for r in rows if r.layers}
    assert per_layer == {"mm layers 0-3": 818.5, "shared layers 4-35": 272.8, "mm layers 36-39": 818.5}
    assert millions(sum(r.parameters for r in rows if not r.layers)) == 21.0


def test_derived_sizes():
    cfg = DiTConfig()
    assert (cfg.num_heads_q, cfg.num_heads_kv, cfg.rotary_dims) == (40, 8, 96)
    assert (cfg.swiglu7_intermediate, cfg.gelu7_intermediate) == (13652, 20480)


def test_sr_1080p_local_attention_layers():
    spec_list = [0, 1, 2, 4, 5, 6, 8, 9, 10, 12, 13, 14, 16, 17, 18, 20, 21, 22, 24, 25, 26, 28, 29, 30,
                 32, 33, 34, 35, 36, 37, 38, 39]
    assert list(DiTConfig().sr_1080p().local_attn_layers) == spec_list


def test_sequence_lengths_of_the_example_stages():
    # spec 4.7: 4 s gives Na = 101, T = 26; tokens per frame 112 / 448 / 2040
    for (width, height), video_tokens in {(448, 256): 2912, (896, 512): 11648, (1920, 1088): 53040}.items():
        seq = sequence_for(width, height, 4)
        assert (seq.video_tokens, seq.audio_tokens) == (video_tokens, 101)
    assert sequence_for(480, 272, 4).height == 256  # pixel sizes round down to multiples of 32


def test_memory_estimate_grows_with_tokens():
    cfg = DiTConfig()
    model = build_meta_model(cfg)
    small = memory_estimate(cfg, model, sequence_for(448, 256, 4))
    large = memory_estimate(cfg, model, sequence_for(1920, 1088, 4))
    assert small["weights"] == large["weights"] and 28 < small["weights"] < 29  # ~15.3e9 bf16 + fp32 adapter
    assert large["activations"] > 10 * small["activations"]


def test_cli_prints_components_and_memory(capsys):
    assert main(["--resolution", "540p", "--seconds", "5"]) == 0
    out = capsys.readouterr().out
    assert "15,299,419,136" in out and "896x512, 5 s" in out and "GiB" in out
    assert main(["--resolution", "640x352"]) == 0
    assert "640x352, 4 s" in capsys.readouterr().out


def test_memory_estimate_counts_the_tokens_the_pipeline_packs(monkeypatch):
    """Guards issue 12 item 19: the sizes are derived once (`model.shapes.LatentShape`). `sequence_for` used to
    re-derive them with its own constants, so a change to the pipeline's rounding or rates could leave the memory
    estimate describing a different sequence than the one generated."""
    import model.shapes
    from model.packing import pack
    from model.pipeline import clip_shape

    for seconds, width, height in [(1, 64, 64), (3, 500, 300), (4, 448, 256), (5, 896, 512), (2, 1000, 700)]:
        shape = clip_shape(seconds, width, height)
        packed = pack(torch.zeros(shape.video), torch.zeros(shape.audio), torch.zeros(1, 3, 8), 3)
        seq = sequence_for(width, height, seconds)
        assert (seq.video_tokens, seq.audio_tokens) == (packed.num_video, packed.num_audio)
        assert (seq.width, seq.height) == shape.pixel_size

    elsewhere = model.shapes.LatentShape(frames=2, height=4, width=4, audio_frames=9)
    monkeypatch.setattr(model.shapes.LatentShape, "for_request", classmethod(lambda cls, *request: elsewhere))
    assert sequence_for(448, 256, 4).video_tokens == elsewhere.video_tokens
