"""Named experiment setups: the embedded default and the paper's two setups.

The embedded default was calibrated on 2 CPU cores so that the trained model
really memorises each corruption (see README "Calibration"): memorisation
needs no augmentation and no label smoothing on a 10k-image subset, with
|D_c| = 2 % of the training set as in the paper (1000 of CIFAR-10's 50k).
"""

from __future__ import annotations

from .config import ConfigError

EMBEDDED_DEFAULT: dict = {
    "data": {"name": "fashion-mnist", "train_size": 10000, "subset_seed": 0},
    "corruption": {"size": 200},
    "model": {"arch": "resnet9", "width": 0.375},
    "train": {"epochs": 20, "augment": False, "label_smoothing": 0.0,
              "optim": {"optimizer": "sgd", "lr": 0.05, "batch_size": 128}},
}

# The paper's recipe (spec 6.3); meant for a GPU.
PAPER_CIFAR10_RESNET9: dict = {
    "data": {"name": "cifar10", "train_size": None},
    "corruption": {"size": 1000},
    "model": {"arch": "resnet9", "width": 1.0},
    "train": {"epochs": 41, "augment": True, "crop_padding": 4,
              "optim": {"optimizer": "sgd", "lr": 0.025, "batch_size": 512}},
}

PAPER_SVHN_VIT: dict = {
    "data": {"name": "svhn", "train_size": None},
    "corruption": {"size": 1000},
    "model": {"arch": "vit", "patch": 8, "dim": 512, "depth": 4, "heads": 8, "dim_head": 64, "mlp_dim": 1536,
              "partition": "token"},
    "train": {"epochs": 40, "augment": True, "crop_padding": 4,
              "optim": {"optimizer": "adam", "lr": 1e-4, "weight_decay": 5e-4, "schedule": "constant",
                        "batch_size": 2048}},
}

EXPERIMENTS: dict[str, dict] = {
    "fashion-mnist": EMBEDDED_DEFAULT,
    "paper-cifar10-resnet9": PAPER_CIFAR10_RESNET9,
    "paper-svhn-vit": PAPER_SVHN_VIT,
}


def experiment_preset(name: str) -> dict:
    if name not in EXPERIMENTS:
        raise ConfigError(f"unknown experiment preset {name!r}; choose one of: {', '.join(EXPERIMENTS)}")
    import copy

    return copy.deepcopy(EXPERIMENTS[name])
