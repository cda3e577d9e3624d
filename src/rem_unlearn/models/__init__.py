"""Model construction by name; every partitioned model shares the gate machinery in :mod:`.gates`."""

from __future__ import annotations

from torch import nn

from ..config import ModelConfig
from .expand import check_classifier, discard_expansion, expand, is_expanded
from .gates import PartitionGate, PartitionState, gates, partition, partition_state, share_state
from .resnet18 import ResNet18
from .resnet9 import ResNet9
from .smallcnn import SmallCNN


def build_model(cfg: ModelConfig, in_channels: int, num_classes: int, image_size: int) -> nn.Module:
    """A fresh model for the config: partitioned (resnet9, vit; p_mem from the variant) or plain
    (resnet18, smallcnn, resnet9-plain: trained normally, use :func:`expand` for REM).

    ``resnet9-plain`` is the capacity model's theta_o1 as a network of its own (the
    shape :meth:`ResNet9.discard_redirection` returns): a normally trained model
    that ``expand`` can give the reserved half back to, for the equivalence check.
    """
    cfg.validate()
    if cfg.arch in ("resnet18", "smallcnn"):
        plain = ResNet18 if cfg.arch == "resnet18" else SmallCNN
        return plain(num_classes, in_channels, width=cfg.width)
    if cfg.arch == "resnet9-plain":
        full = ResNet9(num_classes, in_channels, width=cfg.width, p_fixed=cfg.p_fixed)
        return full.discard_redirection()
    if cfg.arch == "resnet9":
        model: nn.Module = ResNet9(num_classes, in_channels, width=cfg.width, p_fixed=cfg.p_fixed)
    elif cfg.arch == "vit":
        from .vit import ViT

        model = ViT(num_classes=num_classes, in_channels=in_channels, image_size=image_size, patch=cfg.patch,
                    dim=cfg.dim, depth=cfg.depth, heads=cfg.heads, dim_head=cfg.dim_head, mlp_dim=cfg.mlp_dim,
                    p_fixed=cfg.p_fixed, partition=cfg.partition)
    else:
        raise ValueError(f"model.arch={cfg.arch!r} has no builder; use resnet9, vit, resnet18 or smallcnn")
    state = partition_state(model)
    state.p_mem, state.seed = cfg.p_mem, cfg.mask_seed
    return model


def discard(model: nn.Module) -> nn.Module:
    """Physically remove the redirection capacity: a plain module equal to the drop-mode model."""
    if is_expanded(model):
        return discard_expansion(model)
    fn = getattr(model, "discard_redirection", None)
    if fn is None:
        raise TypeError(f"{type(model).__name__} has no redirection capacity to discard")
    return fn()


__all__ = ["build_model", "discard", "expand", "discard_expansion", "check_classifier", "is_expanded", "ResNet9",
           "ResNet18", "SmallCNN", "PartitionGate", "PartitionState", "gates", "partition", "partition_state",
           "share_state"]
