"""The adapter registry: an adapter turns a suite item into a clip (mp4, H.264 + AAC) plus metadata.

Adding a model means writing a subclass of `Adapter`, decorating it with `@register`, and either listing its module
in `ADAPTER_MODULES` or, without editing mheval, declaring it as an entry point of group `mheval.adapters` in the
package that ships it (see `mheval.registry`). On the command line a model is `[LABEL=]NAME[:ARG]`, e.g. `puppet`,
`ltx=clips:/data/ltx23`, `mine=command:python infer.py --prompt-file {prompt_file} --out {output}`; options are
`--model-option LABEL.KEY=VALUE`, declared by the adapter's `options_class` (a frozen dataclass whose fields have
typed defaults and `metadata={"help": ...}`) and parsed into `self.options`; a typo is an error listing the valid
options.
"""
from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, ClassVar

from mheval.metrics import WeightFile
from mheval.metrics.options import NoOptions, parse_options
from mheval.registry import Registry, config_hash
from mheval.resources import Resources
from mheval.suites import SuiteItem

ADAPTER_MODULES = (
    "mheval.adapters.puppet",
    "mheval.adapters.clips",
    "mheval.adapters.command",
    "mheval.adapters.magihuman",
    "mheval.adapters.ovi",
    "mheval.adapters.ltx",
)


class GenerationError(RuntimeError):
    """An item could not be turned into a clip; recorded against that item, the run goes on."""


@dataclass(frozen=True)
class Coverage:
    """Which suite items an adapter can produce; clips brought from elsewhere may miss some or have extras."""

    missing: tuple[str, ...] = ()
    extra: tuple[str, ...] = ()


class Adapter:
    name: ClassVar[str]
    description: ClassVar[str]
    notice: ClassVar[str | None] = None  # shown next to the model in every table, e.g. "random weights"
    resources: ClassVar[Resources] = Resources()  # what one worker holding this model needs (Ray executor)
    options_class: ClassVar[type] = NoOptions

    def __init__(self, arg: str | None = None, **options: Any):
        self.arg = arg
        self.options = parse_options(self.options_class, options, owner=f"adapter {self.name}")

    def config(self) -> dict[str, Any]:
        """Everything that changes the clips this adapter makes; part of the clip cache key and the manifest."""
        return {"adapter": self.name, "arg": self.arg, **asdict(self.options)}

    def config_hash(self) -> str:
        return config_hash(self.config())

    def source_key(self, item: SuiteItem) -> str | None:
        """What else `item`'s clip depends on, beyond config(), the item's content and the seed (e.g. the sha256 of
        the file a `clips:` adapter copies); part of the generation key. None: nothing else."""
        return None

    def weights(self) -> list[WeightFile]:
        return []

    def coverage(self, items: list[SuiteItem]) -> Coverage:
        return Coverage()

    def generate(self, item: SuiteItem, output: Path, seed: int) -> dict[str, Any]:
        """Write the clip for `item` to `output` (an .mp4 path); return metadata, with "timings" in seconds per stage."""
        raise NotImplementedError


_ADAPTERS: Registry[Adapter] = Registry("adapter", ADAPTER_MODULES, entry_point_group="mheval.adapters")
adapter_registry = _ADAPTERS
register = _ADAPTERS.register
adapter_names = _ADAPTERS.names
adapter_class = _ADAPTERS.get


@dataclass(frozen=True)
class ModelSpec:
    label: str
    adapter: str
    arg: str | None


_LABEL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def parse_model_spec(text: str) -> ModelSpec:
    """`[LABEL=]NAME[:ARG]`; the label defaults to NAME, or NAME-<last path part of ARG> for clips directories."""
    text = text.strip()
    label = None
    head = text.split(":", 1)[0]
    if "=" in head:
        label, text = text.split("=", 1)
    name, _, arg = text.partition(":")
    adapter_class(name)
    if label is None:
        label = name if not arg or name != "clips" else f"{name}-{Path(arg).name or 'dir'}"
    if not _LABEL.match(label):
        raise ValueError(f"model label {label!r} must be letters, digits, '_', '.', '-' (it names files and columns)")
    return ModelSpec(label=label, adapter=name, arg=arg or None)


def create_adapter(spec: ModelSpec, options: dict[str, str] | None = None) -> Adapter:
    try:
        return adapter_class(spec.adapter)(spec.arg, **(options or {}))
    except ValueError as err:
        raise ValueError(f"model {spec.label!r}: {err}") from None
