"""Registries: built-in names plus `package.module:Class` paths for user plugins.

Every pluggable part (scheduling policy, batching, router, length predictor, cost model, trace
reader) follows one pattern: a class registers itself with `@REGISTRY.register("name")`, declares
its parameters as a nested pydantic `Params` model, and the config names it as `name` or
`{name: ..., <params>}`; `Registry.create` builds it.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from typing import Any, Callable, Generic, TypeVar

from pydantic import ValidationError

from servesim.core.errors import ConfigError
from servesim.core.validation import config_error

T = TypeVar("T")


class Registry(Generic[T]):
    """Maps a config name to a class. `kind` names what is registered, for error messages."""

    def __init__(self, kind: str, key: str, required: tuple[str, ...] = ()):
        self.kind = kind
        self.key = key
        self.required = required
        self._entries: dict[str, type[T]] = {}
        self._aliases: dict[str, str] = {}
        self._lazy: dict[str, str] = {}

    def register(self, name: str) -> Callable[[type[T]], type[T]]:
        def decorate(cls: type[T]) -> type[T]:
            if name in self._entries and self._entries[name] is not cls:
                raise ValueError(f"{self.kind} {name!r} registered twice")
            self._entries[name] = cls
            cls.registry_name = name
            return cls

        return decorate

    def alias(self, name: str, target: str) -> None:
        """Accept `name` as another name of `target` (an older spelling or a common pair)."""
        self._aliases[name] = target

    def lazy(self, module: str, *names: str) -> None:
        """Built-ins that `module` registers, imported when one of them is first asked for: a run
        imports only the components its config names (each module is start-up time)."""
        for name in names:
            self._lazy[name] = module

    def names(self) -> list[str]:
        return sorted({*self._entries, *self._aliases, *self._lazy})

    def get(self, name: str, key: str | None = None) -> type[T]:
        """The class for a built-in name or a `module:Class` path; ConfigError naming the key if not.

        `key` names the config key when it is not the registry's usual one."""
        key = key or self.key
        name = self._aliases.get(name, name)
        if name not in self._entries and name in self._lazy:
            importlib.import_module(self._lazy[name])
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


    def create(self, spec: str | dict[str, Any], key: str | None = None, **deps: Any) -> T:
        """Build a component from its config value, `name` or `{name: ..., <params>}`.

        The class comes from this registry (or a `module:Class` path), its parameters are
        validated by its `Params` (errors name `key.<param>`), and it is constructed as
        `cls(params=..., **deps)`, or `cls(**deps)` when it has no `Params`.
        """
        key = key or self.key
        if isinstance(spec, str):
            name, data = spec, {}
        else:
            data = dict(spec)
            name = data.pop("name", None)
            if not isinstance(name, str) or not name:
                raise ConfigError(f"{key}.name", f"expected the {self.kind}'s name")
        cls = self.get(name, key)
        params = validate_params(cls, data, key)
        kwargs = deps if getattr(cls, "Params", None) is None else {"params": params, **deps}
        try:
            return cls(**kwargs)
        except TypeError as exc:  # a plugin whose constructor does not take these arguments
            raise ConfigError(key, f"cannot construct {name}: {exc}") from None


def validate_params(cls, data: dict, key: str):
    """`cls.Params` validated from `data`, pydantic's first error as a ConfigError naming the key."""
    params_cls = getattr(cls, "Params", None)
    if params_cls is None:
        if data:
            raise ConfigError(key, f"{cls.__name__} takes no parameters")
        return None
    try:
        return params_cls.model_validate(data)
    except ValidationError as exc:
        raise config_error(exc, key) from None


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
