"""Weights that no package ships: named on the Hugging Face hub, pinned, fetched on first use, refused if they differ.

A metric whose model cannot come from PyPI declares it once, on its class, as `hub_weights`: a `HubWeights` with
the hub repository, the revision (a commit hash, so the hub cannot change it under us), the files the metric
reads and each file's sha256. Where a pin could not be found from public records it is left `None` (never
guessed) and says so in `provenance`; such weights are used only with `allow_unpinned` (`mheval run
--allow-unpinned`), and the sha256 of whatever arrived is then what the score key and manifest record.

`resolve` finds the files (no network) in the weights folder (`--weights-dir`, `$MHEVAL_WEIGHTS_DIR`) or else the
Hugging Face cache (`$HF_HUB_CACHE`, `$HF_HOME/hub`, `~/.cache/huggingface/hub`), both in the hub cache's layout
(`models--ORG--NAME/snapshots/REVISION/FILE`), so a folder prepared by `mheval weights fetch DIR` on a connected
machine can be copied to an air-gapped one. Files not there are fetched with `huggingface_hub` (from `$HF_ENDPOINT`
when set) unless the machine is offline (`HF_HUB_OFFLINE=1`, `MHEVAL_OFFLINE=1`, `mheval run --offline`), in which
case nothing is requested. A fetched file whose sha256 differs from the pin is deleted and refused; a copy in the
folder that differs is deleted and fetched again. Every failure is a `WeightsUnavailable` whose message names the
repository, the file and what to do, which the metric reports as its reason for being unavailable (the run goes on).
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from mheval.files import sha256_file_cached

COMMIT_HASH = re.compile(r"[0-9a-f]{40}")
OFFLINE_ENV = "MHEVAL_OFFLINE"
WEIGHTS_DIR_ENV = "MHEVAL_WEIGHTS_DIR"
ALLOW_UNPINNED_ENV = "MHEVAL_ALLOW_UNPINNED"
HUB_OFFLINE_ENV = "HF_HUB_OFFLINE"
DEFAULT_ENDPOINT = "https://huggingface.co"
TRUE_VALUES = ("1", "true", "yes", "on")


class WeightsUnavailable(RuntimeError):
    """Why pinned hub weights cannot be used here: not fetched and offline, hub unreachable, refused, unpinned."""


class WeightsRefused(WeightsUnavailable):
    """A file whose sha256 is not its pin (it has been deleted)."""


@dataclass(frozen=True)
class HubFile:
    """One file of a hub repository, with its pinned sha256 (None: no public record found; see `provenance`)."""

    path: str
    sha256: str | None = None
    size: int | None = None


@dataclass(frozen=True)
class HubWeights:
    """A metric's weights on the Hugging Face hub: repository, revision, the files it reads, their sha256."""

    repo: str
    revision: str | None            # a commit hash; None: not pinned (the repository's main branch)
    files: tuple[HubFile, ...]
    licence: str
    provenance: str                 # where the pins were read, or why some are missing
    extra_patterns: tuple[str, ...] = ()   # further files fetched by name pattern (names unknown here, unpinned)

    @property
    def pinned(self) -> bool:
        return not self.unpinned_parts()

    def unpinned_parts(self) -> list[str]:
        """What is not pinned (empty when every byte is)."""
        parts = []
        if not (self.revision and COMMIT_HASH.fullmatch(self.revision)):
            parts.append("no pinned revision")
        parts += [f"{item.path} has no pinned sha256" for item in self.files if not item.sha256]
        if self.extra_patterns:
            parts.append(f"files matching {', '.join(self.extra_patterns)} are not pinned")
        return parts

    @property
    def label(self) -> str:
        return f"{self.repo}@{self.revision[:12] if self.revision else 'main (unpinned)'}"

    def storage(self, cache_dir: Path) -> Path:
        """The repository's folder in a hub cache."""
        return cache_dir / ("models--" + self.repo.replace("/", "--"))

    def snapshot(self, cache_dir: Path) -> Path | None:
        """The snapshot folder of the pinned revision (or of the cached main, when unpinned), if there is one."""
        storage = self.storage(cache_dir)
        revision = self.revision
        if revision is None:
            ref = storage / "refs" / "main"
            revision = ref.read_text().strip() if ref.is_file() else None
        folder = storage / "snapshots" / revision if revision else None
        return folder if folder is not None and folder.is_dir() else None


@dataclass(frozen=True)
class LocalCopy:
    """What a hub cache holds of some weights (read without any request)."""

    folder: Path | None
    missing: tuple[str, ...]
    differing: tuple[str, ...]      # present, but with another sha256 than the pin

    @property
    def complete(self) -> bool:
        return self.folder is not None and not self.missing and not self.differing


@dataclass(frozen=True)
class WeightsPolicy:
    """Where hub weights live and whether they may be fetched; `from_environment` is what a run uses."""

    offline: bool = False
    offline_reason: str = ""
    weights_dir: Path | None = None
    allow_unpinned: bool = False
    endpoint: str | None = None

    @classmethod
    def from_environment(cls) -> "WeightsPolicy":
        """HF_HUB_OFFLINE / MHEVAL_OFFLINE, MHEVAL_WEIGHTS_DIR, MHEVAL_ALLOW_UNPINNED and HF_ENDPOINT, read now (the
        command line sets the MHEVAL_ ones, so that scoring workers in other processes see the same policy)."""
        reasons = [name for name in (HUB_OFFLINE_ENV, OFFLINE_ENV) if _flag(name)]
        directory = os.environ.get(WEIGHTS_DIR_ENV)
        return cls(offline=bool(reasons), offline_reason=" and ".join(f"{name}=1" for name in reasons),
                   weights_dir=Path(directory).expanduser() if directory else None,
                   allow_unpinned=_flag(ALLOW_UNPINNED_ENV), endpoint=os.environ.get("HF_ENDPOINT") or None)

    @property
    def cache_dir(self) -> Path:
        return self.weights_dir or hub_cache()


def _flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in TRUE_VALUES


def hub_cache() -> Path:
    """The Hugging Face hub cache as huggingface_hub would choose it now."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    home = os.environ.get("HF_HOME") or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "huggingface"
    return Path(home).expanduser() / "hub"


def inspect(weights: HubWeights, cache_dir: Path) -> LocalCopy:
    """Which declared files the cache holds with their pinned sha256 (hashed once per file change, see
    `mheval.files`); no request is made."""
    folder = weights.snapshot(cache_dir)
    if folder is None:
        return LocalCopy(None, tuple(item.path for item in weights.files), ())
    missing = tuple(item.path for item in weights.files if not (folder / item.path).is_file())
    differing = tuple(item.path for item in weights.files if item.sha256 and item.path not in missing
                      and sha256_file_cached(folder / item.path) != item.sha256)
    return LocalCopy(folder, missing, differing)


def resolve(weights: HubWeights, policy: WeightsPolicy | None = None) -> Path:
    """The local snapshot folder holding every declared file with its pinned sha256: found in the weights folder
    or hub cache, else fetched (unless offline). Raises `WeightsUnavailable` saying why and what to do."""
    policy = policy or WeightsPolicy.from_environment()
    if not weights.pinned and not policy.allow_unpinned:
        raise WeightsUnavailable(
            f"{weights.label} is not fully pinned ({'; '.join(weights.unpinned_parts())}); pass --allow-unpinned "
            f"(or {ALLOW_UNPINNED_ENV}=1) to use what the hub serves, whose sha256 then goes into the score key, or "
            f"give a local copy with the metric's path option")
    copy = inspect(weights, policy.cache_dir)
    if copy.complete:
        return copy.folder
    if policy.offline:
        raise WeightsUnavailable(
            f"{weights.label} is not in {policy.cache_dir} ({_describe_gaps(copy)}) and the machine is offline "
            f"({policy.offline_reason or '--offline'}), so nothing was requested; on a connected machine run "
            f"`mheval weights fetch DIR`, copy DIR here and pass --weights-dir DIR")
    for name in copy.differing:
        _delete(copy.folder / name)   # a damaged copy is fetched again, and checked again
    return fetch(weights, policy)


def fetch(weights: HubWeights, policy: WeightsPolicy) -> Path:
    """Download the declared files (and `extra_patterns`) at the pinned revision into the policy's cache folder,
    then check every pinned sha256; a file that differs is deleted and the weights refused."""
    from huggingface_hub import hf_hub_download, snapshot_download

    cache_dir, revision = policy.cache_dir, weights.revision or "main"
    endpoint = policy.endpoint or DEFAULT_ENDPOINT
    current = ""
    try:
        if weights.extra_patterns:
            current = "the file list"
            snapshot_download(weights.repo, revision=revision, cache_dir=cache_dir, endpoint=policy.endpoint,
                              allow_patterns=[item.path for item in weights.files] + list(weights.extra_patterns))
        for item in weights.files:
            current = item.path
            hf_hub_download(weights.repo, item.path, revision=revision, cache_dir=cache_dir,
                            endpoint=policy.endpoint)
    except Exception as error:  # the hub's failures come as many types; each becomes one clear message
        summary = " ".join(str(error).split())[:300] or type(error).__name__
        raise WeightsUnavailable(f"could not fetch {weights.label} ({current}) from {endpoint}: "
                                 f"{type(error).__name__}: {summary}") from error
    folder = weights.snapshot(cache_dir)
    if folder is None:
        raise WeightsUnavailable(f"{weights.label}: the hub cache {cache_dir} has no snapshot after the download")
    for item in weights.files:
        if item.sha256 and (actual := sha256_file_cached(folder / item.path)) != item.sha256:
            _delete(folder / item.path)
            raise WeightsRefused(f"refused {weights.repo}@{revision}/{item.path} from {endpoint}: sha256 {actual}, "
                                 f"expected {item.sha256}; the file was deleted")
    return folder


def _describe_gaps(copy: LocalCopy) -> str:
    parts = ([f"missing {', '.join(copy.missing)}"] if copy.missing else []) + \
            ([f"sha256 differs for {', '.join(copy.differing)}"] if copy.differing else [])
    return "; ".join(parts) or "no snapshot"


def _delete(path: Path) -> None:
    """A snapshot entry and the cache blob it links to."""
    target = path.resolve()
    path.unlink(missing_ok=True)
    if target != path:
        target.unlink(missing_ok=True)
