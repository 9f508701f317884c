"""Declared options of adapters and metrics: a frozen dataclass per class, parsed from `--*-option OWNER.KEY=VALUE`.

Each field has a typed default and `metadata={"help": "..."}` (optionally `"choices": (...)`). Values arrive as
strings from the command line (or typed, from Python) and are converted to the field's type; an unknown key, a value
that does not convert, or one outside `choices` is a `ValueError` that lists every valid option, so a typo is an
error instead of a silently different run. `X | None` fields take `none` (or an empty value) for None.
"""
from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, fields
from typing import Any

TRUE_WORDS = {"1", "true", "yes", "on"}
FALSE_WORDS = {"0", "false", "no", "off"}
NONE_WORDS = {"", "none", "null"}


@dataclass(frozen=True)
class NoOptions:
    """For adapters and metrics that take no options: any option given is an error."""


@dataclass(frozen=True)
class OptionInfo:
    name: str
    type: str
    default: Any
    help: str
    choices: tuple[Any, ...] = ()

    def describe(self) -> str:
        choices = f", one of {'|'.join(map(str, self.choices))}" if self.choices else ""
        return f"{self.name} ({self.type}, default {self.default!r}{choices}){': ' + self.help if self.help else ''}"


def _field_types(config_class: type) -> dict[str, tuple[type, bool]]:
    """name → (base type, accepts None), from the dataclass annotations (strings under `from __future__`)."""
    hints = typing.get_type_hints(config_class)
    result = {}
    for field in fields(config_class):
        hint = hints[field.name]
        optional = False
        if typing.get_origin(hint) in (typing.Union, types.UnionType):
            members = [arg for arg in typing.get_args(hint) if arg is not type(None)]
            optional = len(members) < len(typing.get_args(hint))
            hint = members[0]
        result[field.name] = (hint, optional)
    return result


def _default(field: dataclasses.Field) -> Any:
    if field.default is not dataclasses.MISSING:
        return field.default
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    raise TypeError(f"option {field.name} has no default: every declared option needs one")


def describe_options(config_class: type) -> list[OptionInfo]:
    """Name, type, default, help and choices of every option, for `mheval adapters` / `mheval metrics` and errors."""
    kinds = _field_types(config_class)
    return [OptionInfo(field.name, kinds[field.name][0].__name__ + (" or none" if kinds[field.name][1] else ""),
                       _default(field), field.metadata.get("help", ""), tuple(field.metadata.get("choices", ())))
            for field in fields(config_class)]


def _valid_list(config_class: type) -> str:
    options = describe_options(config_class)
    return "; ".join(option.describe() for option in options) if options else "none (it takes no options)"


def _convert(value: Any, kind: type, optional: bool) -> Any:
    if not isinstance(value, str):
        if value is None and optional:
            return None
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            return float(value)
        if not isinstance(value, kind):
            raise ValueError(f"expected {kind.__name__}, got {type(value).__name__} {value!r}")
        return value
    if optional and value.strip().lower() in NONE_WORDS:
        return None
    if kind is str:
        return value
    if kind is bool:
        if value.lower() not in TRUE_WORDS | FALSE_WORDS:
            raise ValueError(f"expected a yes/no value (true/false, 1/0, yes/no, on/off), got {value!r}")
        return value.lower() in TRUE_WORDS
    if kind is int:
        try:
            return int(value)
        except ValueError:
            raise ValueError(f"expected a whole number, got {value!r}") from None
    if kind is float:
        try:
            return float(value)
        except ValueError:
            raise ValueError(f"expected a number, got {value!r}") from None
    return kind(value)


def parse_options(config_class: type, options: dict[str, Any], owner: str = ""):
    """A `config_class` instance from `options`, each value converted to its field's declared type.

    `owner` names what the options belong to in error messages (e.g. "adapter puppet (model 'late')")."""
    where = f"{owner}: " if owner else ""
    kinds = _field_types(config_class)
    unknown = sorted(set(options) - set(kinds))
    if unknown:
        raise ValueError(f"{where}unknown option{'s' if len(unknown) > 1 else ''} {', '.join(unknown)}; "
                         f"valid options: {_valid_list(config_class)}")
    values = {}
    choices = {field.name: tuple(field.metadata.get("choices", ())) for field in fields(config_class)}
    for key, value in options.items():
        try:
            values[key] = _convert(value, *kinds[key])
        except ValueError as err:
            raise ValueError(f"{where}option {key}: {err}; valid options: {_valid_list(config_class)}") from None
        if choices[key] and values[key] not in choices[key]:
            raise ValueError(f"{where}option {key}: {value!r} is not one of {', '.join(map(str, choices[key]))}")
    return config_class(**values)
