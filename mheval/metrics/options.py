"""Metric options arrive as strings from `--metric-option NAME.KEY=VALUE`; this turns them into a typed config."""
from __future__ import annotations

from dataclasses import fields
from typing import Any

TRUE_WORDS = {"1", "true", "yes", "on"}
FALSE_WORDS = {"0", "false", "no", "off"}


def _convert(value: Any, kind: type) -> Any:
    if not isinstance(value, str) or kind is str:
        return value
    if kind is bool:
        if value.lower() not in TRUE_WORDS | FALSE_WORDS:
            raise ValueError(f"expected a yes/no value, got {value!r}")
        return value.lower() in TRUE_WORDS
    return kind(value)


def parse_options(config_class: type, options: dict[str, Any]):
    """A `config_class` dataclass from `options`, each converted to the type of its field's default."""
    types = {field.name: type(field.default) for field in fields(config_class)}
    unknown = set(options) - set(types)
    if unknown:
        raise ValueError(f"unknown option(s) {', '.join(sorted(unknown))}; known: {', '.join(types)}")
    return config_class(**{key: _convert(value, types[key]) for key, value in options.items()})
