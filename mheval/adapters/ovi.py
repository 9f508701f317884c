"""`ovi`: Ovi 1.1 (character-ai/Ovi), from a checkout of its repository; no package exists.

    --models ovi:/path/to/Ovi  [--model-option ovi.ckpt_dir=/path/to/ckpts] [--model-option ovi.model_name=...]

Prompt: Ovi's conventions, from the item's enhanced prompt. The main body stays the scene description; each
Dialogue line becomes "<speaker> says <S>line<E>." (the format's CJK spacing removed); the audio description (the
speakers' voices and language, then the Background Sound block) goes at the end as `Audio: …` for the Ovi 1.1
models (960x960_5s, 960x960_10s) or `<AUDCAP>…<ENDAUDCAP>` for the 1.0 model (720x720_5s), the form each model
expects, so Ovi's engine never rewrites it.

Running: in-process through `ovi.ovi_fusion_engine.OviFusionEngine` when the checkout is importable here (its
dependencies installed, a CUDA GPU): the model is loaded once per run. Otherwise its `inference.py` is run per item
with a generated config (Ovi's OmegaConf YAML keys, written as JSON, which YAML reads) and a one-row prompt CSV, with
the checkout as working directory and `python` as interpreter (e.g. the Python of Ovi's own environment); the one
mp4 it writes into a fresh output directory is the clip.

Native format, not resampled: Ovi writes 24 fps video and 16 kHz audio at its own size (the item's aspect ratio
scaled to the model's area, sides multiples of 32) and length (121 frames for the 5 s models, 241 for 10 s). The
clip's metadata records requested vs produced seconds and size.
"""
from __future__ import annotations

import contextlib
import csv
import json
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from mheval.adapters import Adapter, GenerationError, register
from mheval.languages import language
from mheval.media import write_mp4
from mheval.suites import SuiteItem, reference_text, split_prompt

FPS = 24
SAMPLE_RATE = 16_000
MODEL_SECONDS = {"720x720_5s": 5.0, "960x960_5s": 5.0, "960x960_10s": 10.0}
AUDCAP_MODELS = ("720x720_5s",)   # Ovi 1.0 writes <AUDCAP>…<ENDAUDCAP>; the 1.1 models "Audio: …"


@dataclass(frozen=True)
class OviOptions:
    checkout: str = field(default="", metadata={"help": "the Ovi repository checkout (same as ovi:PATH)"})
    ckpt_dir: str = field(default="", metadata={"help": "weights from its download_weights.py; empty: CHECKOUT/ckpts"})
    model_name: str = field(default="960x960_5s", metadata={"help": "Ovi model", "choices": tuple(MODEL_SECONDS)})
    runner: str = field(default="auto", metadata={
        "help": "engine: in-process, model loaded once; script: inference.py per item; auto: engine if importable",
        "choices": ("auto", "engine", "script")})
    python: str = field(default=sys.executable, metadata={"help": "interpreter for inference.py (Ovi's environment)"})
    seed: int | None = field(default=None, metadata={
        "help": "seed for every item of this model, overriding the run's --seed (part of the cache key)"})
    sample_steps: int = field(default=50, metadata={"help": "denoising steps (Ovi's default 50)"})
    solver_name: str = field(default="unipc", metadata={"help": "Ovi's solver"})
    shift: float = field(default=5.0, metadata={"help": "flow-matching shift"})
    video_guidance_scale: float = field(default=4.0, metadata={"help": "video CFG scale"})
    audio_guidance_scale: float = field(default=3.0, metadata={"help": "audio CFG scale"})
    slg_layer: int = field(default=11, metadata={"help": "skip-layer guidance layer"})
    video_negative_prompt: str = field(default="jitter, bad hands, blur, distortion", metadata={"help": "video"})
    audio_negative_prompt: str = field(default="robotic, muffled, echo, distorted", metadata={"help": "audio"})
    cpu_offload: bool = field(default=False, metadata={"help": "Ovi's cpu_offload (GPUs with little memory)"})
    fp8: bool = field(default=False, metadata={"help": "Ovi's fp8 weights (720x720_5s only)"})
    timeout: float = field(default=7200.0, metadata={"help": "seconds one inference.py run may take"})


def ovi_prompt(item: SuiteItem, model_name: str = "960x960_5s") -> str:
    """The item in Ovi's prompt conventions (speech in <S>…<E>, the audio description at the end)."""
    body, _, background = split_prompt(item.prompt)
    said = " ".join(f"{line.speaker} says <S>{reference_text([line])}<E>." for line in item.dialogue)
    speakers = list(dict.fromkeys(line.speaker for line in item.dialogue))
    voices = f"Clear {language(item.language).name} speech ({', '.join(speakers)})." if speakers else ""
    scene = " ".join(part.strip(" <>") for part in (background or "").splitlines() if part.strip())
    sound = " ".join(part for part in (voices, f"{scene}." if scene and scene[-1] not in ".!?" else scene) if part)
    audio = f"<AUDCAP>{sound}<ENDAUDCAP>" if model_name in AUDCAP_MODELS else f"Audio: {sound}"
    return " ".join(part for part in (" ".join(body.split()), said, audio) if part)


@register
class OviAdapter(Adapter):
    name = "ovi"
    description = "Ovi 1.1 from a checkout of its repository (ovi:PATH): in-process engine or its inference.py"
    options_class = OviOptions

    def __init__(self, arg: str | None = None, **options: Any):
        super().__init__(arg, **options)
        checkout = self.options.checkout or arg
        if not checkout:
            raise ValueError("the ovi adapter needs a checkout of the Ovi repository: --models ovi:/path/to/Ovi")
        self.checkout = Path(checkout).expanduser().resolve()
        if not (self.checkout / "inference.py").is_file():
            raise ValueError(f"{self.checkout} is not an Ovi checkout (no inference.py)")
        self.ckpt_dir = Path(self.options.ckpt_dir).expanduser().resolve() if self.options.ckpt_dir \
            else self.checkout / "ckpts"
        if not self.ckpt_dir.is_dir():
            raise ValueError(f"Ovi weights directory {self.ckpt_dir} does not exist; run its download_weights.py "
                             f"or pass --model-option ovi.ckpt_dir=PATH")
        self.use_engine = self.options.runner == "engine" or (self.options.runner == "auto" and self._importable())
        if self.options.runner == "engine" and not self._importable():
            raise ValueError(f"ovi.runner=engine, but {self.checkout}'s ovi.ovi_fusion_engine cannot be imported "
                             f"here; install its requirements.txt or use ovi.runner=script")

    def config(self) -> dict[str, Any]:
        config = super().config()
        for local in ("checkout", "ckpt_dir", "runner", "python", "timeout"):   # where and how, not what is made
            config.pop(local)
        return {**config, "arg": None, "fps": FPS, "sample_rate": SAMPLE_RATE}

    def _importable(self) -> bool:
        with self._in_checkout():
            try:
                import ovi.ovi_fusion_engine  # noqa: F401
            except Exception:  # a missing dependency, no GPU, or no such package: not importable here
                return False
        return True

    @contextlib.contextmanager
    def _in_checkout(self):
        """Ovi reads its default config relative to the working directory at import, so import it from there."""
        sys.path.insert(0, str(self.checkout))
        try:
            with contextlib.chdir(self.checkout):
                yield
        finally:
            sys.path.remove(str(self.checkout))

    def ovi_config(self, item: SuiteItem, seed: int) -> dict[str, Any]:
        """Ovi's inference config keys (see its ovi/configs/inference/inference_fusion.yaml) for one item."""
        o = self.options
        return {
            **self.ovi_config_defaults(), "sample_steps": o.sample_steps, "solver_name": o.solver_name,
            "shift": o.shift, "audio_guidance_scale": o.audio_guidance_scale,
            "video_guidance_scale": o.video_guidance_scale, "mode": "i2v" if item.reference_image else "t2v",
            "seed": seed, "video_negative_prompt": o.video_negative_prompt,
            "audio_negative_prompt": o.audio_negative_prompt, "video_frame_height_width": [item.height, item.width],
            "slg_layer": o.slg_layer, "each_example_n_times": 1,
        }

    @cached_property
    def engine(self):
        import torch

        with self._in_checkout():
            from omegaconf import OmegaConf
            from ovi.ovi_fusion_engine import OviFusionEngine

            base = self.ovi_config_defaults()
            return OviFusionEngine(config=OmegaConf.create(base), device=0, target_dtype=torch.bfloat16)

    def ovi_config_defaults(self) -> dict[str, Any]:
        o = self.options
        return {"ckpt_dir": str(self.ckpt_dir), "model_name": o.model_name, "cpu_offload": o.cpu_offload,
                "fp8": o.fp8, "mode": "t2v", "sp_size": 1}

    def generate(self, item: SuiteItem, output: Path, seed: int) -> dict[str, Any]:
        prompt = ovi_prompt(item, self.options.model_name)
        item_seed = seed if self.options.seed is None else self.options.seed
        timings = self._run_engine(item, prompt, item_seed, output) if self.use_engine else \
            self._run_script(item, prompt, item_seed, output)
        return {"timings": timings, "prompt": prompt, "runner": "engine" if self.use_engine else "script",
                "seed": item_seed, "run_seed": seed,
                "model_name": self.options.model_name, "mode": "i2v" if item.reference_image else "t2v",
                "native_fps": FPS, "native_sample_rate": SAMPLE_RATE, "requested_seconds": item.seconds,
                "model_seconds": MODEL_SECONDS[self.options.model_name],
                "requested_size": [item.width, item.height]}

    def _run_engine(self, item: SuiteItem, prompt: str, seed: int, output: Path) -> dict[str, float]:
        started = time.perf_counter()
        engine = self.engine
        loaded = time.perf_counter()
        o = self.options
        with self._in_checkout():
            result = engine.generate(
                text_prompt=prompt, image_path=str(item.reference_image) if item.reference_image else None,
                video_frame_height_width=[item.height, item.width], seed=seed, solver_name=o.solver_name,
                sample_steps=o.sample_steps, shift=o.shift, video_guidance_scale=o.video_guidance_scale,
                audio_guidance_scale=o.audio_guidance_scale, slg_layer=o.slg_layer,
                video_negative_prompt=o.video_negative_prompt, audio_negative_prompt=o.audio_negative_prompt)
        generated = time.perf_counter()
        if result is None:   # the engine logs its exception and returns None
            raise GenerationError("Ovi's engine returned no result (its log above has the exception)")
        video, audio, _ = result                                  # video [C, F, H, W] in [-1, 1], audio [N]
        # to 8 bits as Ovi's own save_video does (truncating), so both runners write the same pixels
        frames = ((np.clip(video, -1, 1) + 1) / 2 * 255).astype(np.uint8).transpose(1, 2, 3, 0)   # [F, H, W, C]
        write_mp4(output, frames, FPS, np.asarray(audio, dtype=np.float32), SAMPLE_RATE)
        return {"load": loaded - started, "generate": generated - loaded, "write": time.perf_counter() - generated}

    def _run_script(self, item: SuiteItem, prompt: str, seed: int, output: Path) -> dict[str, float]:
        started = time.perf_counter()
        with tempfile.TemporaryDirectory(prefix="mheval-ovi-") as tmp:
            work = Path(tmp)
            prompts = work / "prompt.csv"
            with open(prompts, "w", newline="", encoding="utf-8") as handle:
                writer = csv.writer(handle)
                writer.writerow(["text_prompt", "image_path"])
                writer.writerow([prompt, str(item.reference_image or "")])
            config = {**self.ovi_config(item, seed), "output_dir": str(work / "out"), "text_prompt": str(prompts)}
            config_file = work / "config.yaml"
            config_file.write_text(json.dumps(config, ensure_ascii=False, indent=1), encoding="utf-8")
            command = [self.options.python, "inference.py", "--config-file", str(config_file)]
            try:
                result = subprocess.run(command, cwd=self.checkout, capture_output=True, text=True,
                                        timeout=self.options.timeout)
            except subprocess.TimeoutExpired:
                raise GenerationError(f"Ovi's inference.py timed out after {self.options.timeout:.0f} s") from None
            if result.returncode != 0:
                tail = (result.stderr or result.stdout).strip()[-800:]
                raise GenerationError(f"Ovi's inference.py exited with {result.returncode}:\n{tail}")
            clips = sorted((work / "out").glob("*.mp4"))
            if len(clips) != 1:
                raise GenerationError(f"Ovi's inference.py wrote {len(clips)} mp4 files, expected one: "
                                      f"{[clip.name for clip in clips]}")
            shutil.copyfile(clips[0], output)
        return {"inference_script": time.perf_counter() - started}
