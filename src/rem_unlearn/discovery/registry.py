"""Scorers by name, like the methods' registry: a decorator for in-tree and user scorers."""

from __future__ import annotations

from typing import Any

from ..config import ConfigError, from_dict, validate_tree
from .base import Scorer, ScorerConfig

SCORERS: dict[str, type[Scorer]] = {}
AUTO = "auto"  # the default: the ensemble of the default-install scorers (docs/discovery.md)


def register_scorer(name: str, *, replace: bool = False):
    """Class decorator: ``@register_scorer("mine")``; a second use of a name is an error."""

    def wrap(cls: type[Scorer]) -> type[Scorer]:
        if not (isinstance(cls, type) and issubclass(cls, Scorer)):
            raise TypeError(f"{cls!r} must subclass rem_unlearn.discovery.Scorer")
        if name == AUTO or (name in SCORERS and not replace and SCORERS[name] is not cls):
            raise ValueError(f"scorer name {name!r} is taken")
        cls.name = name
        SCORERS[name] = cls
        return cls

    return wrap


def scorer_names() -> list[str]:
    """``auto`` first, then every registered scorer."""
    return [AUTO, *sorted(SCORERS)]


def resolve(name: str) -> str:
    return "ensemble" if name == AUTO else name


def get_scorer(name: str) -> type[Scorer]:
    name = resolve(name)
    if name not in SCORERS:
        raise ConfigError(f"unknown scorer {name!r}; choose one of: {', '.join(scorer_names())}")
    return SCORERS[name]


def scorer_config(name: str, overrides: dict[str, Any] | None = None) -> ScorerConfig:
    """The validated config of scorer ``name`` with ``overrides``; an unknown field names the valid ones."""
    config = from_dict(get_scorer(name).Config, dict(overrides or {}), where=resolve(name))
    validate_tree(config)
    return config


def make_scorer(name: str, overrides: dict[str, Any] | None = None) -> Scorer:
    """A ready scorer: its config validated and its optional extras importable (else one clear error)."""
    scorer = get_scorer(name)(scorer_config(name, overrides))
    scorer.requires()
    return scorer
