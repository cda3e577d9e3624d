"""Methods by name: a decorator for in-tree and user methods, plus the ``rem_unlearn.methods`` entry point."""

from __future__ import annotations

from importlib.metadata import entry_points
from typing import Any

from ..config import ConfigError, from_dict, validate_tree
from .base import Method, UnlearnConfig

METHODS: dict[str, type[Method]] = {}
_entry_points_loaded = False


def register_method(name: str, *, replace: bool = False):
    """Class decorator: ``@register_method("my-method")``; a second use of a name is an error."""

    def wrap(cls: type[Method]) -> type[Method]:
        if not (isinstance(cls, type) and issubclass(cls, Method)):
            raise TypeError(f"{cls!r} must subclass rem_unlearn.methods.Method")
        if name in METHODS and not replace and METHODS[name] is not cls:
            raise ValueError(f"method {name!r} is already registered by {METHODS[name].__module__}")
        cls.name = name
        METHODS[name] = cls
        return cls

    return wrap


def load_entry_points() -> None:
    """Import third-party methods declared under the ``rem_unlearn.methods`` entry-point group."""
    global _entry_points_loaded
    if _entry_points_loaded:
        return
    _entry_points_loaded = True
    for ep in entry_points(group="rem_unlearn.methods"):
        obj = ep.load()
        if isinstance(obj, type) and issubclass(obj, Method) and ep.name not in METHODS:
            register_method(ep.name)(obj)


def get_method(name: str) -> type[Method]:
    load_entry_points()
    if name not in METHODS:
        raise ConfigError(f"unknown method {name!r}; registered methods: {', '.join(sorted(METHODS))}")
    return METHODS[name]


def method_names() -> list[str]:
    load_entry_points()
    return sorted(METHODS)


def method_config(name: str, overrides: dict[str, Any] | None = None) -> UnlearnConfig:
    """The validated config of method ``name`` with ``overrides``; an unknown field names the valid ones."""
    config = from_dict(get_method(name).Config, dict(overrides or {}), where=name)
    validate_tree(config)
    return config
