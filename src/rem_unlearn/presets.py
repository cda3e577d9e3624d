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

# The paper's recipe (docs/paper.md §6.3); meant for a GPU.
PAPER_CIFAR10_RESNET9: dict = {
    "data": {"name": "cifar10", "train_size": None},
    "corruption": {"size": 1000},
    "model": {"arch": "resnet9", "width": 1.0},
    "train": {"epochs": 41, "augment": True, "crop_padding": 4,
              "optim": {"optimizer": "sgd", "lr": 0.025, "batch_size": 512}},
    "unlearn_optim": {"optimizer": "sgd", "lr": 0.005, "schedule": "constant", "batch_size": 512},
}

PAPER_SVHN_VIT: dict = {
    "data": {"name": "svhn", "train_size": None},
    "corruption": {"size": 1000},
    "model": {"arch": "vit", "patch": 8, "dim": 512, "depth": 4, "heads": 8, "dim_head": 64, "mlp_dim": 1536,
              "partition": "token"},
    "train": {"epochs": 40, "augment": True, "crop_padding": 4,
              "optim": {"optimizer": "adam", "lr": 1e-4, "weight_decay": 5e-4, "schedule": "constant",
                        "batch_size": 2048}},
    # the paper's unlearning optimiser for each recipe: its pre-training optimiser at 1/5 of the lr
    "unlearn_optim": {"optimizer": "adam", "lr": 2e-5, "weight_decay": 5e-4, "schedule": "constant",
                      "batch_size": 2048},
}

# CPU-sized twins: the same datasets and architectures, sized like the embedded default
# (10k-image subset, |D_c| = 200, no augmentation so that the corruption is memorised).
_CPU_SUBSET = {"train_size": 10000, "subset_seed": 0}
_CPU_RECIPE = {"epochs": 20, "augment": False, "label_smoothing": 0.0}
# A narrow ViT: 17 tokens as in the paper (patch 7 on 28x28 or 8 on 32x32), width 128 instead of 512.
_CPU_VIT = {"arch": "vit", "dim": 128, "depth": 4, "heads": 4, "dim_head": 32, "mlp_dim": 256, "partition": "token"}
_CPU_ADAM = {"optimizer": "adam", "lr": 1e-3, "weight_decay": 5e-4, "schedule": "constant", "batch_size": 128}
_CPU_ADAM_UNLEARN = {**_CPU_ADAM, "lr": 2e-4}  # 1/5 of the pre-training lr, as the paper's recipes

FASHION_MNIST_VIT: dict = {
    "data": {"name": "fashion-mnist", **_CPU_SUBSET},
    "corruption": {"size": 200},
    "model": {**_CPU_VIT, "patch": 7},
    "train": {**_CPU_RECIPE, "epochs": 30, "optim": _CPU_ADAM},
    "unlearn_optim": _CPU_ADAM_UNLEARN,
}

PAPER_CIFAR10_RESNET9_CPU: dict = {
    "data": {"name": "cifar10", **_CPU_SUBSET},
    "corruption": {"size": 200},
    "model": {"arch": "resnet9", "width": 0.375},
    "train": {**_CPU_RECIPE, "optim": {"optimizer": "sgd", "lr": 0.05, "batch_size": 128}},
}

PAPER_SVHN_VIT_CPU: dict = {
    "data": {"name": "svhn", **_CPU_SUBSET},
    "corruption": {"size": 200},
    "model": {**_CPU_VIT, "patch": 8},
    "train": {**_CPU_RECIPE, "epochs": 30, "optim": _CPU_ADAM},
    "unlearn_optim": _CPU_ADAM_UNLEARN,
}

EXPERIMENTS: dict[str, dict] = {
    "fashion-mnist": EMBEDDED_DEFAULT,
    "fashion-mnist-vit": FASHION_MNIST_VIT,
    "paper-cifar10-resnet9": PAPER_CIFAR10_RESNET9,
    "paper-cifar10-resnet9-cpu": PAPER_CIFAR10_RESNET9_CPU,
    "paper-svhn-vit": PAPER_SVHN_VIT,
    "paper-svhn-vit-cpu": PAPER_SVHN_VIT_CPU,
}

def experiment_preset(name: str) -> dict:
    if name not in EXPERIMENTS:
        raise ConfigError(f"unknown experiment preset {name!r}; choose one of: {', '.join(EXPERIMENTS)}")
    import copy

    return copy.deepcopy(EXPERIMENTS[name])
