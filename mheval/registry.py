"""A named registry of classes, filled by a `register` decorator in the modules it lists."""
from __future__ import annotations

import hashlib
import importlib
import json
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class Registry(Generic[T]):
    def __init__(self, kind: str, modules: tuple[str, ...]):
        self.kind = kind
        self.modules = modules
        self._classes: dict[str, type[T]] = {}

    def register(self, cls: type[T]) -> type[T]:
        if self._classes.get(cls.name, cls) is not cls:
            raise ValueError(f"{self.kind} {cls.name!r} registered twice")
        self._classes[cls.name] = cls
        return cls

    def _load_modules(self) -> None:
        for module in self.modules:
            importlib.import_module(module)

    def names(self) -> list[str]:
        self._load_modules()
        return sorted(self._classes)

    def get(self, name: str) -> type[T]:
        self._load_modules()
        try:
            return self._classes[name]
        except KeyError:
            raise ValueError(f"unknown {self.kind} {name!r}; available: {', '.join(sorted(self._classes))}") from None


def config_hash(config: dict[str, Any]) -> str:
    """Short, stable hash of a JSON-able configuration, for cache keys."""
    return hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()[:16]
