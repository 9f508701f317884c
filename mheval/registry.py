"""A named registry of classes: filled by a `register` decorator in the modules it lists, and by plug-ins.

Plug-ins are installed Python distributions that declare an entry point in the registry's group (`mheval.adapters`
or `mheval.metrics`), e.g. in their pyproject.toml:

    [project.entry-points."mheval.adapters"]
    mymodel = "mymodel_mheval:MyModelAdapter"

The entry point names a class (registered under its `name`, which must equal the entry point's name) or a module
whose import registers its classes with `@register`. A plug-in that fails to load does not break mheval: the error
is kept, listed by `mheval adapters` / `mheval metrics`, and shown when someone asks for that name.
"""
from __future__ import annotations

import hashlib
import importlib
import json
from contextlib import contextmanager
from importlib import metadata
from typing import Any, Generic, Iterator, TypeVar

T = TypeVar("T")


class Registry(Generic[T]):
    def __init__(self, kind: str, modules: tuple[str, ...], entry_point_group: str | None = None):
        self.kind = kind
        self.modules = modules
        self.entry_point_group = entry_point_group
        self._classes: dict[str, type[T]] = {}
        self.sources: dict[str, str] = {}    # name → "mheval" or the plug-in distribution that provides it
        self.broken: dict[str, str] = {}     # entry point name → why it could not be loaded
        self._loaded = False

    def register(self, cls: type[T]) -> type[T]:
        if self._classes.get(cls.name, cls) is not cls:
            raise ValueError(f"{self.kind} {cls.name!r} registered twice")
        self._classes[cls.name] = cls
        self.sources.setdefault(cls.name, "mheval" if cls.__module__.startswith("mheval.") else cls.__module__)
        return cls

    @contextmanager
    def registered(self, *classes: type[T]) -> Iterator[None]:
        """Register `classes` for the duration of a `with` block only (tests' throw-away adapters and metrics), so
        nothing they add outlives the test that needs it."""
        self._load_modules()
        added = [cls for cls in classes if self._classes.get(cls.name) is not cls]
        for cls in added:
            self.register(cls)
        try:
            yield
        finally:
            for cls in added:
                del self._classes[cls.name]
                self.sources.pop(cls.name, None)

    def _load_modules(self) -> None:
        if self._loaded:
            return
        for module in self.modules:
            importlib.import_module(module)
        self._loaded = True
        if self.entry_point_group:
            for entry_point in metadata.entry_points(group=self.entry_point_group):
                self._load_plugin(entry_point)

    def _load_plugin(self, entry_point: metadata.EntryPoint) -> None:
        distribution = entry_point.dist.name if entry_point.dist else entry_point.value
        try:
            loaded = entry_point.load()
        except Exception as err:  # a broken plug-in must not take the built-in adapters and metrics down with it
            self.broken[entry_point.name] = f"{distribution}: {entry_point.value} failed to import: " \
                                            f"{type(err).__name__}: {err}"
            return
        if isinstance(loaded, type):
            if getattr(loaded, "name", None) != entry_point.name:
                self.broken[entry_point.name] = (f"{distribution}: entry point {entry_point.name!r} names class "
                                                 f"{loaded.__name__} whose name is {getattr(loaded, 'name', None)!r}")
                return
            try:
                self.register(loaded)
            except ValueError as err:
                self.broken[entry_point.name] = f"{distribution}: {err}"
                return
        if entry_point.name in self._classes:
            self.sources[entry_point.name] = distribution
        elif entry_point.name not in self.broken:
            self.broken[entry_point.name] = f"{distribution}: importing {entry_point.value} registered no " \
                                            f"{self.kind} named {entry_point.name!r}"

    def names(self) -> list[str]:
        self._load_modules()
        return sorted(self._classes)

    def get(self, name: str) -> type[T]:
        self._load_modules()
        try:
            return self._classes[name]
        except KeyError:
            why = f" (plug-in {name!r} is installed but broken: {self.broken[name]})" if name in self.broken else ""
            raise ValueError(f"unknown {self.kind} {name!r}{why}; available: {', '.join(sorted(self._classes))}") \
                from None


def config_hash(config: dict[str, Any]) -> str:
    """Short, stable hash of a JSON-able configuration, for cache keys."""
    return hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()[:16]
