"""Every baseline method of the benchmark (docs/paper.md §5); importing this module registers them all."""

from __future__ import annotations

from . import (bad_teacher, cf_k, etd, eu_k, finetune, ga, none, npo, potion, retrain, salun, scrub,  # noqa: F401
               ssd)

__all__ = ["bad_teacher", "cf_k", "etd", "eu_k", "finetune", "ga", "none", "npo", "potion", "retrain", "salun",
           "scrub", "ssd"]
