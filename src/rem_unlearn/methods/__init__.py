"""Unlearning methods: one module per method, all registered by name."""

from __future__ import annotations

import importlib

from .base import Method, ProxySelector, UnlearnConfig, UnlearnContext
from .registry import METHODS, get_method, method_names, register_method

_BUILTIN = ("rem", "baselines")

for _module in _BUILTIN:
    try:
        importlib.import_module(f"{__name__}.{_module}")
    except ModuleNotFoundError as exc:  # a module not written yet must not break the package
        if exc.name != f"{__name__}.{_module}":
            raise

__all__ = ["Method", "ProxySelector", "UnlearnConfig", "UnlearnContext", "METHODS", "get_method",
           "method_names", "register_method"]
