"""One generic registry for every kind of plugin: dataset, model, objective term (or model
transform), explanation method.

A plugin is one module. It registers itself, with its typed config schema beside it, by a
decorator at import time::

    TERMS = Registry("regularizer", package="dq.objectives")

    @TERMS.register("fairness", schema=FairnessConfig)
    def build_fairness(cfg: FairnessConfig, meta: DatasetMeta) -> FairnessPenalty: ...

The registry finds its plugins itself: the first lookup imports every module of its
``package`` (``pkgutil``), so adding a plugin never means editing an import list. Modules
of the package that are not plugins (the registry's own, shared helpers) are imported too
and simply register nothing; they must stay light, which the import contracts check.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from dq.errors import DQUserError

T = TypeVar("T")


@dataclass
class Entry(Generic[T]):
    """One registered plugin.

    Attributes:
        name: the config choice (``conf/<group>/<name>.yaml``).
        value: what the plugin provides (a builder, a class, a record).
        schema: the dataclass its config node is checked against (None: no options).
        info: anything else the registry's users need (modalities, sensitive attributes).
    """

    name: str
    value: T
    schema: type | None = None
    info: dict[str, Any] = field(default_factory=dict)


class Registry(Generic[T]):
    """Name -> ``Entry``, filled by ``register`` in the plugin modules of ``package``.

    Args:
        kind: what the entries are, for error messages ("dataset", "model", ...).
        package: the package whose modules are imported on first lookup (None: no discovery).
    """

    def __init__(self, kind: str, package: str | None = None) -> None:
        self.kind = kind
        self.package = package
        self._entries: dict[str, Entry[T]] = {}
        self._discovered = package is None

    def register(self, name: str, *, schema: type | None = None, **info: Any) -> Callable[[T], T]:
        """Decorator: register the decorated object under ``name``."""

        def decorate(value: T) -> T:
            self.add(name, value, schema=schema, **info)
            return value

        return decorate

    def add(self, name: str, value: T, *, schema: type | None = None, **info: Any) -> Entry[T]:
        """Register ``value`` under ``name`` (a second registration of a name is a bug)."""
        if name in self._entries:
            raise ValueError(f"{self.kind} {name!r} is registered twice")
        entry = Entry(name=name, value=value, schema=schema, info=dict(info))
        self._entries[name] = entry
        return entry

    def discover(self) -> None:
        """Import every module of ``package`` once, so that each plugin registers itself."""
        if self._discovered:
            return
        self._discovered = True
        package = importlib.import_module(str(self.package))
        for module in sorted(pkgutil.iter_modules(package.__path__), key=lambda m: m.name):
            if not module.name.startswith("_"):
                importlib.import_module(f"{self.package}.{module.name}")

    def get(self, name: str) -> Entry[T]:
        """The entry ``name``.

        Raises:
            DQUserError: for an unknown name, listing the allowed ones.
        """
        self.discover()
        if name not in self._entries:
            raise DQUserError(f"unknown {self.kind} {name!r}; allowed: {', '.join(self.names())}")
        return self._entries[name]

    def find(self, name: str) -> Entry[T] | None:
        """The entry ``name``, or None."""
        self.discover()
        return self._entries.get(name)

    def registered(self, name: str) -> Entry[T] | None:
        """The entry ``name`` if it is registered already, without discovering (for plugins
        that register one name in several steps while their module is imported)."""
        return self._entries.get(name)

    def names(self) -> list[str]:
        """Every registered name, sorted."""
        self.discover()
        return sorted(self._entries)

    def __iter__(self) -> Iterator[Entry[T]]:
        self.discover()
        return iter([self._entries[name] for name in sorted(self._entries)])

    def __contains__(self, name: object) -> bool:
        self.discover()
        return name in self._entries
