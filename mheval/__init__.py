"""mheval: evaluation and benchmarking of human-centric audio-video generators.

The Python API (everything a user needs; see `mheval.api` for the details and the README for an example):

- `evaluate(suite, models, ...)` → `RunResults`: generate and score a suite, as `mheval run` does;
- `score(clips, suite, ...)` → `RunResults`: score clips a training loop just wrote (models stay loaded);
- `compare(results, ...)` → DataFrame of paired verdicts, as `mheval compare` prints;
- `RunResults.load(run_dir)`: the typed results of any run directory; `Status`: the status of a clip or score.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = ["evaluate", "score", "compare", "RunResults", "Status"]

if TYPE_CHECKING:
    from mheval.api import compare, evaluate, score
    from mheval.results import RunResults
    from mheval.status import Status

_HOMES = {"evaluate": "mheval.api", "score": "mheval.api", "compare": "mheval.api", "RunResults": "mheval.results",
          "Status": "mheval.status"}


def __getattr__(name: str) -> Any:
    """The public names load their modules on first use, so `import mheval` (and the CLI's start) stays light."""
    if name not in _HOMES:
        raise AttributeError(f"module 'mheval' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(_HOMES[name]), name)


def __dir__() -> list[str]:
    return sorted(__all__)
