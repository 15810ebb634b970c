"""Registries: built-in names plus `package.module:Class` paths for user plugins."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from typing import Callable, Generic, TypeVar

from servesim.core.errors import ConfigError

T = TypeVar("T")


class Registry(Generic[T]):
    """Maps a config name to a class. `kind` names what is registered, for error messages."""

    def __init__(self, kind: str, key: str, required: tuple[str, ...] = ()):
        self.kind = kind
        self.key = key
        self.required = required
        self._entries: dict[str, type[T]] = {}

    def register(self, name: str) -> Callable[[type[T]], type[T]]:
        def decorate(cls: type[T]) -> type[T]:
            if name in self._entries and self._entries[name] is not cls:
                raise ValueError(f"{self.kind} {name!r} registered twice")
            self._entries[name] = cls
            cls.registry_name = name
            return cls

        return decorate

    def names(self) -> list[str]:
        return sorted(self._entries)

    def get(self, name: str, key: str | None = None) -> type[T]:
        """The class for a built-in name or a `module:Class` path; ConfigError naming the key if not.

        `key` names the config key when it is not the registry's usual one."""
        key = key or self.key
        if name in self._entries:
            return self._entries[name]
        if ":" not in name:
            valid = ", ".join(self.names())
            raise ConfigError(key, f"unknown {self.kind} {name!r}; valid: {valid}, or module:Class")
        cls = _import_path(name, key)
        missing = [m for m in self.required if not callable(getattr(cls, m, None))]
        if missing:
            raise ConfigError(
                key, f"{name} is not a {self.kind}: missing method(s) {', '.join(missing)}"
            )
        return cls


def _import_path(path: str, key: str):
    module_name, _, attr = path.partition(":")
    cwd = str(Path.cwd())
    if cwd not in sys.path:
        sys.path.insert(0, cwd)  # plugins live beside the user's configs, e.g. examples/
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # any import failure is the user's plugin, not us
        raise ConfigError(key, f"cannot import {module_name!r}: {exc}") from None
    try:
        cls = getattr(module, attr)
    except AttributeError:
        raise ConfigError(key, f"module {module_name!r} has no attribute {attr!r}") from None
    if not isinstance(cls, type):
        raise ConfigError(key, f"{path} is not a class")
    return cls
