"""Model construction by name; every partitioned model shares the gate machinery in :mod:`.gates`."""

from __future__ import annotations

import torch
from torch import nn

from ..config import ModelConfig
from .expand import ExpandedLayer, check_classifier, discard_expansion, expand, is_expanded
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


def rebuild_model(cls: str | None, arch: dict | None, like: nn.Module) -> nn.Module:
    """The module a checkpoint was saved from, by the class name and ``arch`` its sidecar records.

    Partitioned models (ResNet9, ViT) are rebuilt from ``arch``; an exported plain model
    (``discard`` of one) has the class of ``like``, the task's model, built from its own ``arch``.
    A record the class does not accept raises ``TypeError`` or ``ValueError``.
    """
    if cls == "ResNet9" and arch:
        return ResNet9(**arch)
    if cls == "ViT" and arch:
        from .vit import ViT

        return ViT(**arch)
    return type(like)(**like.arch)


def redirection_masks(model: nn.Module) -> dict[str, torch.Tensor]:
    """Boolean masks over every parameter: True where the entry belongs to theta_o2 alone.

    The built-in partitioned models know their own split (``redirection_parameters``);
    in an expanded model everything ``expand`` added is theta_o2 and the user's
    layers are theta_o1.
    """
    from .widen import WideBatchNorm, WideLayer

    added: set[str] = set()
    expanded = False
    for name, m in model.named_modules():
        if isinstance(m, (WideLayer, ExpandedLayer)):
            inner = "layer."
        elif isinstance(m, WideBatchNorm):
            inner = "norm."
        else:
            continue
        expanded = True
        added |= {f"{name}.{n}" for n, _ in m.named_parameters() if not n.startswith(inner)}
    own = getattr(model, "redirection_parameters", None)
    if not expanded and callable(own):  # an expanded built-in model (e.g. resnet9-plain) still has the method
        masks = own()
        return {n: masks.get(n, torch.zeros_like(p, dtype=torch.bool)) for n, p in model.named_parameters()}
    return {n: torch.full_like(p, n in added, dtype=torch.bool) for n, p in model.named_parameters()}


def discard(model: nn.Module) -> nn.Module:
    """Physically remove the redirection capacity: a plain module equal to the drop-mode model."""
    if is_expanded(model):
        return discard_expansion(model)
    fn = getattr(model, "discard_redirection", None)
    if fn is None:
        raise TypeError(f"{type(model).__name__} has no redirection capacity to discard")
    return fn()


__all__ = ["build_model", "rebuild_model", "discard", "redirection_masks", "expand", "discard_expansion",
           "check_classifier", "is_expanded", "ResNet9", "ResNet18", "SmallCNN", "PartitionGate",
           "PartitionState", "gates", "partition", "partition_state", "share_state"]
