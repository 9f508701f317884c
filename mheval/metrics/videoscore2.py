"""VideoScore2: the judge whose three 1–5 outputs are the paper's visual quality, text alignment and physical
consistency columns. A Qwen2.5-VL model, loaded with transformers from `videoscore2.model_dir` (a local copy of
the TIGER-Lab/VideoScore2 model repository; it wins) or else from the hub (`VIDEOSCORE2_WEIGHTS`, fetched on first
use when online, or read from `--weights-dir` / the hub cache, see `mheval.weights`). No revision or sha256 of it
could be found from public records here, so the hub copy is used only with `--allow-unpinned`.

How a clip is judged (upstream's model card and inference script, except where noted):
- Prompt: the model card's `VS2_QUERY_TEMPLATE` with the item's prompt (by default its visual part, the main body:
  the judge sees no audio, so the Dialogue and Background Sound blocks are left out; `prompt_part=full` sends all).
- Frames as upstream's qwen-vl-utils path flow samples them: n = the clip's duration × `fps` (2.0), clamped to
  [4, 768] and floored to an even count, at `linspace(0, frames − 1, n)` rounded; each frame resized with Qwen's
  `smart_resize` (sides multiples of 28, 128·28² ≤ pixels ≤ 768·28²). mheval already holds the decoded frames, so it
  samples them itself instead of letting qwen-vl-utils re-read the file.
- Decoding is greedy (upstream samples at temperature 0.7, and users report unstable scores for the same video),
  up to `max_new_tokens`; the raw output is stored with every score.
- Parsing: after any `</think>`, the last "visual quality…: N", "text-to-video alignment…: N" and
  "physical/common-sense consistency…: N" (the released model writes both "visual quality: 4" and
  "(1) visual quality – clarity, smoothness, artifacts: 4"); N must be a whole number 1–5. If any of the three is
  missing or out of range the clip is a parse failure: recorded as not applicable with the reason and the raw
  output, counted per model in the paper table, never a number.
- Soft scores: at the generated token of each score, the probabilities of the tokens "1"…"5" (softmax over the
  vocabulary, renormalised over the five) and their expectation Σ s·p(s): a finer 1–5 value than the argmax.
"""
from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path
from string import Template
from typing import Any

import numpy as np

from mheval.media import ClipMedia
from mheval.metrics import ClipContext, Metric, NotApplicable, register
from mheval.weights import HubFile, HubWeights, WeightsUnavailable

DIMENSIONS = {  # field → the label the judge writes
    "visual_quality": "visual quality",
    "text_alignment": "text-to-video alignment",
    "physical_consistency": "physical/common-sense consistency",
}
SCORES = (1, 2, 3, 4, 5)
QUERY_TEMPLATE = Template(
    "\n"
    "You are an expert for evaluating AI-generated videos from three dimensions:\n"
    "(1) visual quality \u2013 clarity, smoothness, artifacts;\n"
    "(2) text-to-video alignment \u2013 fidelity to the prompt;\n"
    "(3) physical/common-sense consistency \u2013 naturalness and physics plausibility.\n"
    "\n"
    "Video prompt: $t2v_prompt\n"
    "\n"
    "Please output in this format:\n"
    "visual quality: <v_score>;\n"
    "text-to-video alignment: <t_score>,\n"
    "physical/common-sense consistency: <p_score>\n"
)
# qwen-vl-utils' video sampling constants
FRAME_FACTOR = 2
MIN_FRAMES = 4
MAX_FRAMES = 768
PIXEL_FACTOR = 28
VIDEO_MIN_PIXELS = 128 * 28 * 28
VIDEO_MAX_PIXELS = 768 * 28 * 28
WEIGHT_SUFFIXES = (".safetensors", ".bin")


PARSE_FAILURE_CODE = "judge_parse_failure"
# The released judge. Its commit, file list and sha256 were not found in any public record reachable from here
# (the model card names the repository only), so nothing is pinned: `--allow-unpinned` takes the repository's
# main branch, and the sha256 of the files that arrive go into the score key and manifest. Pin it by filling in
# `revision` and each shard's sha256 (the hub's LFS page of each file lists it).
VIDEOSCORE2_WEIGHTS = HubWeights(
    repo="TIGER-Lab/VideoScore2",
    revision=None,
    files=(HubFile("config.json"),),
    licence="Apache-2.0 (model card); base model Qwen2.5-VL-7B-Instruct (Apache-2.0)",
    provenance="repository from the model card; revision and sha256 not found from here",
    extra_patterns=("*.json", "*.safetensors", "*.txt", "*.jinja"),
)


@dataclass(frozen=True)
class JudgeDetail:
    """What the judge said about one clip: its raw output, the digit probabilities behind the soft scores."""

    raw_output: str = ""
    score_probabilities: dict[str, list[float]] = field(default_factory=dict)
    soft_score_unavailable: list[str] = field(default_factory=list)
    frames: int | None = None
    frame_size: list[int] = field(default_factory=list)
    fps: float | None = None


@dataclass(frozen=True)
class VideoScore2Config:
    model_dir: str = field(default="", metadata={"help": "local directory of the VideoScore2 model (config.json, "
                                                         "weights, processor and tokenizer files); empty: the hub "
                                                         "copy (needs --allow-unpinned, see mheval weights)"})
    fps: float = field(default=2.0, metadata={"help": "frames per second sampled for the judge (upstream: 2.0)"})
    max_new_tokens: int = field(default=1024, metadata={"help": "generation budget (upstream: 1024)"})
    prompt_part: str = field(default="visual", metadata={
        "help": "visual: the prompt's main body; full: with its Dialogue and Background Sound blocks",
        "choices": ("visual", "full")})
    device: str = field(default="", metadata={"help": "torch device; empty: cuda when available, else cpu"})
    dtype: str = field(default="auto", metadata={"help": "auto: bfloat16 on cuda, float32 on cpu",
                                                 "choices": ("auto", "bfloat16", "float16", "float32")})


class JudgeParseFailure(NotApplicable):
    """The judge's output does not contain all three scores as whole numbers 1–5."""

    code = PARSE_FAILURE_CODE


@dataclass(frozen=True)
class ParsedScores:
    scores: dict[str, int]          # field → 1–5
    positions: dict[str, int]       # field → character offset of the score's digit in the output


def parse_judge_output(text: str) -> ParsedScores:
    """The three scores of a judge output; raises `JudgeParseFailure` naming what is missing or wrong."""
    start = text.rfind("</think>")
    offset = start + len("</think>") if start >= 0 else 0
    answer = text[offset:]
    scores, positions, problems = {}, {}, []
    for name, label in DIMENSIONS.items():
        pattern = re.compile(re.escape(label) + r"[^:\n]*:\s*\**\s*(\d+(?:\.\d+)?)", re.IGNORECASE)
        matches = list(pattern.finditer(answer))
        if not matches:
            problems.append(f"no {label} score")
            continue
        value = matches[-1].group(1)
        if not value.isdigit() or int(value) not in SCORES:
            problems.append(f"{label} score {value!r} is not a whole number 1-5")
            continue
        scores[name] = int(value)
        positions[name] = offset + matches[-1].start(1)
    if problems:
        excerpt = " ".join(text.split())
        excerpt = excerpt if len(excerpt) <= 400 else excerpt[:150] + " … " + excerpt[-230:]
        raise JudgeParseFailure(f"judge output parse failure ({'; '.join(problems)}): {excerpt!r}")
    return ParsedScores(scores, positions)


def sample_frame_indices(frame_count: int, fps: float, target_fps: float) -> np.ndarray:
    """qwen-vl-utils' `smart_nframes` + linspace: which frames the judge sees."""
    minimum = math.ceil(MIN_FRAMES / FRAME_FACTOR) * FRAME_FACTOR
    maximum = math.floor(min(MAX_FRAMES, frame_count) / FRAME_FACTOR) * FRAME_FACTOR
    wanted = min(max(frame_count / fps * target_fps, minimum), maximum, frame_count)
    count = math.floor(wanted / FRAME_FACTOR) * FRAME_FACTOR
    if count < FRAME_FACTOR:
        raise NotApplicable(f"clip has {frame_count} frame(s); the judge needs at least {FRAME_FACTOR}")
    return np.round(np.linspace(0, frame_count - 1, count)).astype(int)


def sampled_frames(media: ClipMedia, target_fps: float) -> np.ndarray:
    """The frames [N, H, W, 3] the judge sees (`sample_frame_indices`), streamed: only those are kept in memory."""
    media.require(video=True)
    wanted = set(sample_frame_indices(media.info.frame_count, media.fps, target_fps).tolist())
    return np.stack([frame.image for frame in media.frames() if frame.index in wanted])


def judge_frames(frames: np.ndarray) -> np.ndarray:
    """Sampled frames [N, H, W, 3] resized as qwen-vl-utils resizes videos (bicubic, antialiased)."""
    import torch
    from torchvision.transforms.functional import InterpolationMode, resize
    from transformers.models.qwen2_vl.image_processing_qwen2_vl import smart_resize

    height, width = smart_resize(frames.shape[1], frames.shape[2], factor=PIXEL_FACTOR,
                                 min_pixels=VIDEO_MIN_PIXELS, max_pixels=VIDEO_MAX_PIXELS)
    tensor = torch.from_numpy(frames).permute(0, 3, 1, 2).float()
    resized = resize(tensor, [height, width], interpolation=InterpolationMode.BICUBIC, antialias=True)
    return resized.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()


def score_token_index(tokenizer, generated_ids: list[int], char_position: int) -> int:
    """Index of the generated token that produces the character at `char_position` of the decoded output."""
    for index in range(len(generated_ids)):
        if len(tokenizer.decode(generated_ids[:index + 1], skip_special_tokens=True)) > char_position:
            return index
    raise ValueError(f"no generated token covers character {char_position}")


def soft_score(logits, digit_ids: list[int]) -> tuple[float, list[float]]:
    """Σ s·p(s) over the score tokens, with p renormalised over them; and those probabilities."""
    import torch

    probabilities = torch.softmax(logits.float(), dim=-1)[digit_ids]
    probabilities = probabilities / probabilities.sum()
    values = torch.tensor(SCORES, dtype=probabilities.dtype)
    return float((values * probabilities).sum()), [round(float(p), 5) for p in probabilities]


class Judge:
    """One loaded VideoScore2 model with its processor."""

    def __init__(self, model_dir: Path, device: str, dtype: str):
        import torch
        from transformers import AutoModelForImageTextToText, AutoProcessor

        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        if dtype == "auto":
            dtype = "bfloat16" if self.device.startswith("cuda") else "float32"
        self.processor = AutoProcessor.from_pretrained(model_dir)
        self.model = AutoModelForImageTextToText.from_pretrained(model_dir, dtype=getattr(torch, dtype))
        self.model.to(self.device).eval()
        self.tokenizer = self.processor.tokenizer
        self.digit_ids = []
        for score in SCORES:
            ids = self.tokenizer.encode(str(score), add_special_tokens=False)
            if len(ids) != 1:
                raise ValueError(f"{model_dir}: the tokenizer splits the score {score} into {len(ids)} tokens")
            self.digit_ids.append(ids[0])

    def judge(self, frames: np.ndarray, fps: float, prompt: str, max_new_tokens: int) -> tuple[str, list[int], Any]:
        """Greedy output text, its token ids and per-step logits for one clip's judge frames."""
        import torch

        messages = [{"role": "user", "content": [{"type": "video"},
                                                 {"type": "text", "text": QUERY_TEMPLATE.substitute(t2v_prompt=prompt)}]}]
        text = self.processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        inputs = self.processor(text=[text], videos=[frames], fps=fps, do_sample_frames=False,
                                cap_pixels_per_frame=True, return_tensors="pt").to(self.device)
        with torch.inference_mode():
            output = self.model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False,
                                         output_scores=True, return_dict_in_generate=True)
        generated = output.sequences[0, inputs["input_ids"].shape[1]:].tolist()
        generated = [token for token in generated if token != self.tokenizer.pad_token_id]
        return self.tokenizer.decode(generated, skip_special_tokens=True), generated, output.scores


@lru_cache(maxsize=1)
def load_judge(model_dir: Path, device: str, dtype: str) -> Judge:
    return Judge(model_dir, device, dtype)


@register
class VideoScore2(Metric):
    name = "videoscore2"
    version = "1"
    inputs = ("video", "prompt")
    fields = (*DIMENSIONS, *(f"{name}_soft" for name in DIMENSIONS))
    headline = "visual_quality"
    unit = "1–5"
    paper_column = "visual quality"
    field_paper_columns = {"text_alignment": "text alignment", "physical_consistency": "physical consistency"}
    detail_class = JudgeDetail
    description = ("VideoScore2 judge (Qwen2.5-VL) from a local directory: visual quality, text-to-video alignment, "
                   "physical consistency 1-5 and probability-weighted soft scores; greedy; raw output kept")
    options_class = VideoScore2Config

    hub_weights = VIDEOSCORE2_WEIGHTS

    @property
    def model_dir(self) -> Path:
        """The explicit `model_dir`, else the hub snapshot (found or fetched; raises `WeightsUnavailable`)."""
        if self.options.model_dir:
            return Path(self.options.model_dir).expanduser()
        return self.hub_folder()

    def config(self) -> dict[str, Any]:
        settings = asdict(self.options)
        for local in ("model_dir", "device"):   # where the weights are, not what they are: weights() pins them
            settings.pop(local)
        return {**settings, "decoding": "greedy", "weights_sha256": [w.sha256 for w in self.weights()]}

    def unavailable(self) -> str | None:
        try:
            model_dir = self.model_dir
        except WeightsUnavailable as error:
            return (f"VideoScore2 weights: {error}; or pass --metric-option videoscore2.model_dir=/path/to/"
                    f"VideoScore2 (a local copy of the TIGER-Lab/VideoScore2 model repository)")
        if not (model_dir / "config.json").is_file():
            return (f"{model_dir} is not a model directory (no config.json); pass the VideoScore2 model "
                    f"directory with --metric-option videoscore2.model_dir=PATH")
        if not self._weight_files():
            return f"{model_dir} has no weight files (*.safetensors or *.bin)"
        return None

    def _weight_files(self) -> list[Path]:
        return sorted(path for path in self.model_dir.iterdir() if path.suffix in WEIGHT_SUFFIXES)

    def weight_paths(self) -> list[Path]:
        try:
            ready = (self.model_dir / "config.json").is_file()
        except WeightsUnavailable:
            return []
        return self._weight_files() if ready else []

    def score(self, clip: ClipContext) -> dict[str, Any]:
        cfg = self.options
        judge = load_judge(self.model_dir.resolve(), cfg.device, cfg.dtype)
        frames = judge_frames(sampled_frames(clip.media, cfg.fps))
        prompt = clip.item.visual_prompt if cfg.prompt_part == "visual" else clip.item.prompt
        text, generated, step_logits = judge.judge(frames, cfg.fps, prompt, cfg.max_new_tokens)
        result = scores_from_output(judge.tokenizer, judge.digit_ids, text, generated, step_logits)
        result["detail"].update({"frames": len(frames), "frame_size": [int(frames.shape[2]), int(frames.shape[1])],
                                 "fps": cfg.fps})
        return result


def scores_from_output(tokenizer, digit_ids: list[int], text: str, generated: list[int], step_logits) -> dict:
    """Hard scores parsed from `text`, soft scores from the logits of the steps that generated their digits."""
    parsed = parse_judge_output(text)
    result: dict[str, Any] = dict(parsed.scores)
    probabilities, problems = {}, []
    for name, position in parsed.positions.items():
        index = score_token_index(tokenizer, generated, position)
        if generated[index] not in digit_ids:   # the digit is part of a longer token: its logits are not a score's
            result[f"{name}_soft"] = None
            problems.append(f"{name}: score digit is inside token {tokenizer.decode([generated[index]])!r}")
            continue
        result[f"{name}_soft"], probabilities[name] = soft_score(step_logits[index][0].cpu(), digit_ids)
    result["detail"] = {"raw_output": text, "score_probabilities": probabilities}
    if problems:
        result["detail"]["soft_score_unavailable"] = problems
    return result
