"""CLIP text alignment and CLIP-IQA-style quality, with open_clip.

`clip_score` (text alignment): frames sampled at `frames_per_second` against the prompt's visual part
(`item.visual_prompt`, i.e. without the Dialogue and Background Sound blocks); per frame 100 · cos(image, text);
the clip's mean and its worst frame.

The 77-token limit: the visual part of an enhanced prompt is a paragraph of 150–300 tokens, and truncating it would
keep only its first sentences (who is in the shot) and drop the rest (setting, light, camera). So the text is cut
into chunks of whole sentences, each packed up to the model's context length; each chunk is encoded, and the
normalised chunk embeddings are averaged into one text embedding. Every sentence counts once; only a single sentence
longer than the context is truncated (by the tokenizer).

`clip_iqa` (quality, after CLIP-IQA): for antonym prompt pairs ("Good photo." / "Bad photo." and two attribute
pairs), the softmax probability of the positive prompt with the model's logit scale; mean over frames; 0–1, higher
is better.

Weights: `model` is an open_clip model name, `pretrained` an open_clip pretrained tag or the path of a local
checkpoint (a path always wins). The default, ViT-B-32 / laion2b_s34b_b79k, is pinned on the Hugging Face hub
(`CLIP_WEIGHTS`: repository, commit, file, sha256) and fetched on first use when the machine is online, or read
from `--weights-dir` / the hub cache (see `mheval.weights`). Any other open_clip tag is looked up in open_clip's
local caches only (Hugging Face hub cache, ~/.cache/clip), never downloaded; without it the metrics report
"unavailable" with how to provide it.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from mheval.metrics import ClipContext, Metric, register
from mheval.weights import HubFile, HubWeights, WeightsUnavailable

QUALITY_PAIRS = {
    "clip_iqa": ("Good photo.", "Bad photo."),
    "clip_iqa_sharp": ("Sharp photo.", "Blurry photo."),
    "clip_iqa_clean": ("Clean photo.", "Noisy photo."),
}
CHECKPOINT_SUFFIXES = (".pt", ".pth", ".bin", ".safetensors", ".ckpt")
CLIP_SHORT_SIDE = 224
# laion's release of the open_clip ViT-B-32 / laion2b_s34b_b79k weights, the file open_clip itself fetches for this
# tag. The revision, size and sha256 of open_clip_model.safetensors are the ones several public projects that pin
# this snapshot record (and the same revision's open_clip_pytorch_model.bin has the sha256 the hub lists for it,
# 1bd3c717…, on its LFS page); not downloaded from here.
CLIP_WEIGHTS = HubWeights(
    repo="laion/CLIP-ViT-B-32-laion2B-s34B-b79K",
    revision="1a25a446712ba5ee05982a381eed697ef9b435cf",
    files=(HubFile("open_clip_model.safetensors",
                   "ac4f8c4b88af6d963118cbf40ad93176d092abbedfcb752601ae1866352656e6", 605_143_316),),
    licence="MIT (model card); trained on LAION-2B",
    provenance="revision and sha256 from public projects pinning this snapshot; not downloaded here",
)


@dataclass(frozen=True)
class ClipConfig:
    model: str = "ViT-B-32"
    pretrained: str = "laion2b_s34b_b79k"  # open_clip tag, or a local checkpoint path
    frames_per_second: float = 1.0        # ViT-B-32 costs ~0.2 s per frame on 2 CPU cores
    cache_dir: str = ""                    # open_clip's cache_dir for tags other than the pinned default


def is_path(pretrained: str) -> bool:
    return os.sep in pretrained or pretrained.endswith(CHECKPOINT_SUFFIXES)


def cached_checkpoint(model: str, tag: str, cache_dir: str = "") -> Path | None:
    """Where open_clip would have stored `model`/`tag` after a download, if it is there; no network access."""
    from huggingface_hub import try_to_load_from_cache
    from open_clip.pretrained import get_pretrained_cfg

    cfg = get_pretrained_cfg(model, tag)
    if cfg.get("hf_hub"):
        repo, filename = os.path.split(cfg["hf_hub"])
        for name in hub_filenames(filename):
            found = try_to_load_from_cache(repo, name, cache_dir=cache_dir or None)
            if isinstance(found, str):
                return Path(found)
    if cfg.get("url"):
        local = Path(cache_dir or Path.home() / ".cache" / "clip") / os.path.basename(cfg["url"])
        if local.is_file():
            return local
    return None


def hub_filenames(filename: str) -> list[str]:
    from open_clip.constants import HF_SAFE_WEIGHTS_NAME, HF_WEIGHTS_NAME

    filename = filename or HF_WEIGHTS_NAME
    safe = HF_SAFE_WEIGHTS_NAME if filename == HF_WEIGHTS_NAME else re.sub(r"\.(bin|pth?)$", ".safetensors", filename)
    return list(dict.fromkeys([safe, filename]))


class ClipBackbone:
    """One loaded open_clip model with its preprocessing and tokenizer; remembers the last clip's image features."""

    def __init__(self, model: str, checkpoint: Path):
        import open_clip

        self.model, _, self.preprocess = open_clip.create_model_and_transforms(model, pretrained=str(checkpoint))
        self.model.eval()
        self.tokenizer = open_clip.get_tokenizer(model)
        self.context_length = self.tokenizer.context_length
        self._last_images: tuple[tuple, np.ndarray] | None = None

    def image_features(self, key: tuple, frames: list[np.ndarray]) -> np.ndarray:
        """L2-normalised image embeddings [N, D] of N uint8 RGB frames [H, W, 3]."""
        if self._last_images is None or self._last_images[0] != key:
            import torch
            from PIL import Image

            batch = torch.stack([self.preprocess(Image.fromarray(frame)) for frame in frames])
            with torch.inference_mode():
                features = self.model.encode_image(batch).float()
            self._last_images = (key, _normalise(features.numpy()))
        return self._last_images[1]

    def forget_images(self) -> None:
        self._last_images = None

    def text_features(self, texts: list[str]) -> np.ndarray:
        import torch

        with torch.inference_mode():
            features = self.model.encode_text(self.tokenizer(texts)).float()
        return _normalise(features.numpy())

    def prompt_feature(self, prompt: str) -> np.ndarray:
        """One normalised embedding [D] of a long prompt: the mean of its sentence chunks' embeddings."""
        return _normalise(self.text_features(self.sentence_chunks(prompt)).mean(axis=0))

    def sentence_chunks(self, text: str) -> list[str]:
        """Whole sentences packed greedily into chunks that fit the context (start and end tokens included)."""
        room = self.context_length - 2
        chunks, current = [], ""
        for sentence in re.split(r"(?<=[.!?])\s+", " ".join(text.split())):
            candidate = f"{current} {sentence}".strip()
            if current and len(self.tokenizer.encode(candidate)) > room:
                chunks.append(current)
                candidate = sentence
            current = candidate
        return chunks + [current] if current else chunks or [""]

    @property
    def logit_scale(self) -> float:
        return float(self.model.logit_scale.detach().exp())


def _normalise(vectors: np.ndarray) -> np.ndarray:
    return vectors / np.linalg.norm(vectors, axis=-1, keepdims=True).clip(1e-12)


@lru_cache(maxsize=2)
def load_backbone(model: str, checkpoint: Path) -> ClipBackbone:
    return ClipBackbone(model, checkpoint)


class ClipMetric(Metric):
    """Shared option handling, weight lookup and frame sampling of the CLIP metrics."""

    inputs = ("video",)
    options_class = ClipConfig
    hub_weights = CLIP_WEIGHTS
    hub_model = ("ViT-B-32", "laion2b_s34b_b79k")   # the open_clip model and tag that `hub_weights` are

    def uses_hub(self) -> bool:
        return (self.options.model, self.options.pretrained) == self.hub_model

    def hub_checkpoint(self) -> Path:
        return self.hub_folder() / self.hub_weights.files[0].path

    def checkpoint(self) -> Path | None:
        s = self.options
        if is_path(s.pretrained):
            path = Path(s.pretrained).expanduser()
            return path if path.is_file() else None
        if self.uses_hub():
            try:
                return self.hub_checkpoint()
            except WeightsUnavailable:
                return None
        return cached_checkpoint(s.model, s.pretrained, s.cache_dir)

    def unavailable(self) -> str | None:
        import open_clip

        s = self.options
        if s.model not in open_clip.list_models():
            return f"open_clip has no model {s.model!r}; see open_clip.list_models()"
        if is_path(s.pretrained):
            return None if self.checkpoint() else (
                f"CLIP checkpoint {s.pretrained} does not exist; pass an existing file with "
                f"--metric-option {self.name}.pretrained=PATH")
        if self.uses_hub():
            try:
                self.hub_checkpoint()
            except WeightsUnavailable as error:
                return (f"CLIP weights {s.model}/{s.pretrained}: {error}; or pass a local checkpoint with "
                        f"--metric-option {self.name}.pretrained=/path/to/open_clip_model.safetensors")
            return None
        if s.pretrained not in open_clip.list_pretrained_tags_by_model(s.model):
            return (f"open_clip knows no pretrained tag {s.pretrained!r} for {s.model}; "
                    f"known: {', '.join(open_clip.list_pretrained_tags_by_model(s.model)) or 'none'}")
        if self.checkpoint() is None:
            return (f"CLIP weights {s.model}/{s.pretrained} are not in open_clip's cache (Hugging Face hub cache or "
                    f"~/.cache/clip); mheval fetches only the pinned default ({'/'.join(self.hub_model)}). Provide "
                    f"them: on a machine with internet run python -c \"import open_clip; "
                    f"open_clip.create_model_and_transforms('{s.model}', pretrained='{s.pretrained}')\" (fills the "
                    f"cache), or pass a local checkpoint with "
                    f"--metric-option {self.name}.pretrained=/path/to/open_clip_model.safetensors")
        return None

    def weight_paths(self) -> list[Path]:
        checkpoint = self.checkpoint()
        return [checkpoint] if checkpoint else []

    @property
    def backbone(self) -> ClipBackbone:
        checkpoint = self.checkpoint()
        if checkpoint is None:
            raise RuntimeError(self.unavailable())
        return load_backbone(self.options.model, checkpoint.resolve())

    def frame_features(self, clip: ClipContext) -> np.ndarray:
        """Embeddings of frames sampled every 1 / `frames_per_second` seconds, decoded straight to a 224-pixel short
        side (the CLIP models' input size; their preprocessing then only centre-crops)."""
        every = 1 / self.options.frames_per_second
        stat = clip.media.path.stat()
        key = (str(clip.media.path.resolve()), stat.st_mtime_ns, stat.st_size, every)
        frames = [frame.image for frame in clip.media.frames(short_side=CLIP_SHORT_SIDE, every_seconds=every)]
        return self.backbone.image_features(key, frames)


@register
class ClipTextAlignment(ClipMetric):
    name = "clip_score"
    version = "2"
    inputs = ("video", "prompt")
    fields = ("clip_score", "clip_score_worst")
    headline = "clip_score"
    paper_column = "text alignment"
    description = ("CLIP text alignment: 100·cos(frame, visual prompt) at a fixed frame rate, mean and worst frame; "
                   "long prompts as the mean of sentence-chunk embeddings")

    def score(self, clip: ClipContext) -> dict[str, Any]:
        images = self.frame_features(clip)
        chunks = self.backbone.sentence_chunks(clip.item.visual_prompt)
        per_frame = 100.0 * images @ self.backbone.prompt_feature(clip.item.visual_prompt)
        return {"clip_score": float(per_frame.mean()), "clip_score_worst": float(per_frame.min()),
                "detail": {"text_chunks": len(chunks), "frames": len(per_frame)}}


@register
class ClipImageQuality(ClipMetric):
    name = "clip_iqa"
    version = "2"
    fields = tuple(QUALITY_PAIRS)
    headline = "clip_iqa"
    paper_column = "visual quality"
    description = "CLIP-IQA-style quality: P(positive prompt) for good/bad, sharp/blurry, clean/noisy; mean of frames"

    def __init__(self, **options: Any):
        super().__init__(**options)
        self._pair_features: dict[str, np.ndarray] | None = None

    def pair_features(self) -> dict[str, np.ndarray]:
        """Text embeddings [2, D] of each antonym pair, encoded once per metric instance."""
        if self._pair_features is None:
            self._pair_features = {field: self.backbone.text_features(list(pair))
                                   for field, pair in QUALITY_PAIRS.items()}
        return self._pair_features

    def score(self, clip: ClipContext) -> dict[str, Any]:
        images = self.frame_features(clip)
        result = {}
        for field, pair_features in self.pair_features().items():
            logits = self.backbone.logit_scale * images @ pair_features.T  # [frames, 2]
            logits -= logits.max(axis=1, keepdims=True)
            positive = np.exp(logits[:, 0]) / np.exp(logits).sum(axis=1)
            result[field] = float(positive.mean())
        return result
