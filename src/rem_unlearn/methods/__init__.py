"""Unlearning methods: one module per method, all registered by name."""

from __future__ import annotations

from . import anp, baselines, cuts, detect, ibau, rem  # noqa: F401  (importing registers the built-in methods)
from .base import Method, ProxySelector, UnlearnConfig, UnlearnContext
from .registry import METHODS, get_method, method_names, register_method
from .template import EpochMethod

__all__ = ["Method", "EpochMethod", "ProxySelector", "UnlearnConfig", "UnlearnContext", "METHODS", "get_method",
           "method_names", "register_method"]
