"""Discovery: from a few known corrupted ids to most of the corruption, before unlearning.

One scorer per module, all registered by name (``rem_unlearn.discovery.scorer_names()``);
:func:`discover` runs one and the stopping rule chooses how many ids to add.
"""

from __future__ import annotations

import importlib

from .api import DiscoveryResult, discover, discovery_context, rank
from .base import DiscoveryContext, MissingExtraError, Scorer, ScorerConfig, Scores
from .registry import SCORERS, get_scorer, make_scorer, register_scorer, scorer_config, scorer_names
from .stopping import Stop, choose_k

for _module in ("similarity", "probe", "knn", "spectral", "rem_transfer", "confident", "ensemble"):
    importlib.import_module(f"{__name__}.{_module}")

__all__ = ["DiscoveryContext", "DiscoveryResult", "MissingExtraError", "SCORERS", "Scorer", "ScorerConfig", "Scores",
           "Stop", "choose_k", "discover", "discovery_context", "get_scorer", "make_scorer", "rank",
           "register_scorer", "scorer_config", "scorer_names"]
