"""rem-unlearn: REM (Redirection for Erasing Memory) and the corrupted-data unlearning benchmark."""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

# The public names, imported on first use so `import rem_unlearn` stays light.
_LAZY = {
    # practitioners
    "unlearn": "api", "UnlearnResult": "api", "ForgetIdError": "api",
    "unlearn_user_model": "api", "UserModelResult": "api", "UtilityDropError": "api", "MAX_UTILITY_DROP": "api",
    "discover": "discovery", "DiscoveryResult": "discovery", "advise": "advise", "Advice": "advise",
    "verify": "verify", "Verification": "verify", "VerifyConfig": "verify",
    "expand": "models", "discard": "models",
    "ImageDataset": "data", "load_dataset": "data",
    "load_training_set": "data.user", "ImageFit": "data.images",  # a .npz, an image folder, a saved HF dataset
    "from_hf_dataset": "data.hf_dataset", "DatasetColumns": "data.hf_dataset",  # the optional extra [datasets]
    # a task of the benchmark's space on your own data, and a model trained on it
    "corrupt": "corruptions", "discovered_ids": "corruptions", "Evaluator": "metrics",
    "train_model": "training", "Runtime": "training", "TrainConfig": "config", "OptimConfig": "config",
    "SmallCNN": "models",
    # Hugging Face image classifiers (the optional extra rem-unlearn[hf])
    "from_pretrained": "models.hf", "save_pretrained": "models.hf",
    # researchers: a method is a config dataclass plus a loss (EpochMethod) or a run(ctx) (Method)
    "Method": "methods", "EpochMethod": "methods", "UnlearnConfig": "methods", "UnlearnContext": "methods",
    "register_method": "methods", "method_names": "methods",
    "register_scorer": "discovery", "scorer_names": "discovery",
}
__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
