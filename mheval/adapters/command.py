"""`command`: run a user's command per item, e.g. another repository's inference script.

The template is formatted with the placeholders below (each shell-quoted), then run by the shell. The command must
write the clip to `{output}`; it may also write `{output}.json` with {"timings": {stage: seconds}, ...}, which is
kept as the clip's metadata.

Placeholders: {output} {prompt} {prompt_file} {id} {language} {seconds} {width} {height} {seed} {image}

mheval cannot see what the command runs, so clips are regenerated only when the template, an item or the seed
changes, or when what the options declare changes: `version` (any string: bump it when the model changes) and
`files` (comma-separated paths, e.g. the checkpoint and the inference script, whose sha256 join the key), e.g.
`--model-option mine.files=ckpt/model.safetensors,infer.py --model-option mine.version=2025-06-01`.
"""
from __future__ import annotations

import json
import shlex
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mheval.adapters import Adapter, GenerationError, register
from mheval.files import sha256_file_cached
from mheval.suites import SuiteItem

PLACEHOLDERS = ("output", "prompt", "prompt_file", "id", "language", "seconds", "width", "height", "seed", "image")


@dataclass(frozen=True)
class CommandOptions:
    timeout: float = field(default=3600.0, metadata={"help": "seconds one item's command may run before it is stopped"})
    version: str = field(default="", metadata={"help": "the model's version; changing it regenerates every clip"})
    files: str = field(default="", metadata={
        "help": "comma-separated files (checkpoint, inference script) whose sha256 join the generation key: when "
                "one changes, every clip is regenerated"})


@register
class CommandAdapter(Adapter):
    name = "command"
    description = "runs a command template per item; placeholders " + " ".join(f"{{{p}}}" for p in PLACEHOLDERS)
    options_class = CommandOptions

    def __init__(self, arg: str | None = None, **options: str):
        super().__init__(arg, **options)
        paths = [Path(part.strip()).expanduser() for part in self.options.files.split(",") if part.strip()]
        missing = [str(path) for path in paths if not path.is_file()]
        if missing:
            raise ValueError(f"command adapter option files: no such file: {', '.join(missing)}")
        self.file_hashes = {str(path.resolve()): sha256_file_cached(path) for path in paths}
        if not arg:
            raise ValueError("the command adapter needs a template: command:'python infer.py --out {output} ...'")
        try:
            arg.format(**{name: "" for name in PLACEHOLDERS})
        except (KeyError, IndexError, ValueError) as err:
            raise ValueError(f"bad command template {arg!r}: unknown or malformed placeholder {err}") from None

    def config(self) -> dict[str, Any]:
        """The template, the declared version and the sha256 of the declared files (not the timeout)."""
        return {"adapter": self.name, "arg": self.arg, "version": self.options.version, "files": self.file_hashes}

    def generate(self, item: SuiteItem, output: Path, seed: int) -> dict[str, Any]:
        sidecar = output.with_name(output.name + ".json")
        with tempfile.TemporaryDirectory() as tmp:
            prompt_file = Path(tmp) / "prompt.txt"
            prompt_file.write_text(item.prompt, encoding="utf-8")
            values = {
                "output": output, "prompt": item.prompt, "prompt_file": prompt_file, "id": item.id,
                "language": item.language, "seconds": item.seconds, "width": item.width, "height": item.height,
                "seed": seed, "image": item.reference_image or "",
            }
            command = self.arg.format(**{key: shlex.quote(str(value)) for key, value in values.items()})
            try:
                result = subprocess.run(command, shell=True, capture_output=True, text=True, timeout=self.options.timeout)
            except subprocess.TimeoutExpired:
                raise GenerationError(f"command timed out after {self.options.timeout:.0f} s: {command}") from None
        if result.returncode != 0:
            tail = (result.stderr or result.stdout).strip()[-800:]
            raise GenerationError(f"command exited with {result.returncode}: {command}\n{tail}")
        if not output.exists():
            raise GenerationError(f"command finished but wrote no clip at {output}: {command}")
        if not sidecar.exists():
            return {}
        try:
            meta = json.loads(sidecar.read_text())
        except json.JSONDecodeError as err:
            raise GenerationError(f"{sidecar}: not valid JSON ({err})") from None
        sidecar.unlink()
        return meta
