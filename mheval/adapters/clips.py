"""`clips`: evaluate a directory of pre-generated clips, one file per item named `<item id>.<ext>`.

This is how most users bring in clips made elsewhere. Items without a file, and files that match no item, are
reported; neither stops the run. Each file's sha256 is part of its clip's generation key, so a clip re-rendered under
the same name is copied and scored again (the hash is cached by size and times: unchanged files are not re-read).
"""
from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from mheval.adapters import Adapter, Coverage, GenerationError, register
from mheval.files import sha256_file_cached
from mheval.suites import SuiteItem

CLIP_EXTENSIONS = (".mp4", ".mov", ".mkv", ".webm", ".avi")


@register
class ClipsAdapter(Adapter):
    name = "clips"
    description = "pre-generated clips in a directory, named <item id>.mp4 (or .mov/.mkv/.webm/.avi)"

    def __init__(self, arg: str | None = None, **options: str):
        super().__init__(arg, **options)
        if not arg:
            raise ValueError("the clips adapter needs a directory: clips:/path/to/clips")
        self.directory = Path(arg).expanduser()
        if not self.directory.is_dir():
            raise ValueError(f"clips directory {self.directory} does not exist or is not a directory")

    def config(self) -> dict[str, Any]:
        return {**super().config(), "arg": str(self.directory.resolve())}

    def _files(self) -> dict[str, Path]:
        return {
            path.stem: path
            for path in sorted(self.directory.iterdir())
            if path.is_file() and path.suffix.lower() in CLIP_EXTENSIONS
        }

    def coverage(self, items: list[SuiteItem]) -> Coverage:
        files = self._files()
        ids = {item.id for item in items}
        return Coverage(
            missing=tuple(sorted(ids - files.keys())),
            extra=tuple(sorted(files.keys() - ids)),
        )

    def source_key(self, item: SuiteItem) -> str | None:
        source = self._files().get(item.id)
        return f"sha256:{sha256_file_cached(source)}" if source else "no file"

    def generate(self, item: SuiteItem, output: Path, seed: int) -> dict[str, Any]:
        source = self._files().get(item.id)
        if source is None:
            raise GenerationError(f"no clip for item {item.id!r} in {self.directory}")
        shutil.copyfile(source, output)
        return {"source": str(source), "source_sha256": sha256_file_cached(source)}
