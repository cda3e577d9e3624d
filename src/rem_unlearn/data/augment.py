"""Batched augmentation, normalisation and trigger stamping on tensors.

Everything works on whole batches on whatever device the images live on, so
training never runs a per-sample Python pipeline.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F


def augment(images: torch.Tensor, generator: torch.Generator, pad: int = 4, flip: bool = True) -> torch.Tensor:
    """Random crop after zero padding by ``pad`` plus optional random horizontal flip, per sample.

    One gather with per-sample row/column indices does crop and flip together.
    Random numbers are drawn on the generator's device (then moved), so a CPU
    generator gives the same augmentation for CPU and GPU images.
    """
    b, c, h, w = images.shape
    dev, gdev = images.device, generator.device
    padded = F.pad(images, (pad, pad, pad, pad)) if pad > 0 else images
    dy = torch.randint(0, 2 * pad + 1, (b,), generator=generator, device=gdev).to(dev)
    dx = torch.randint(0, 2 * pad + 1, (b,), generator=generator, device=gdev).to(dev)
    cols = torch.arange(w, device=dev).expand(b, w)
    if flip:
        flipped = (torch.rand(b, generator=generator, device=gdev) < 0.5).to(dev)
        cols = torch.where(flipped[:, None], cols.flip(1), cols)
    rows = (dy[:, None] + torch.arange(h, device=dev))[:, None, :, None]  # (B, 1, H, 1)
    cols = (dx[:, None] + cols)[:, None, None, :]  # (B, 1, 1, W)
    return padded[torch.arange(b, device=dev)[:, None, None, None], torch.arange(c, device=dev)[None, :, None, None], rows, cols]


def normalize(
    images: torch.Tensor, mean: Sequence[float], std: Sequence[float], dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """uint8 images (..., C, H, W) -> ``(x / 255 - mean) / std`` per channel."""
    m = torch.as_tensor(mean, dtype=dtype, device=images.device).view(-1, 1, 1)
    s = torch.as_tensor(std, dtype=dtype, device=images.device).view(-1, 1, 1)
    return (images.to(dtype) / 255 - m) / s


def stamp_trigger(images: torch.Tensor, mask: torch.Tensor, patch_size: int, value: float) -> torch.Tensor:
    """Copy of normalised ``images`` with the bottom-right ``patch_size`` square set to ``value``
    in every channel of the rows where ``mask`` is true (the poison trigger, stamped after augmentation)."""
    mask = torch.as_tensor(mask, dtype=torch.bool, device=images.device)
    if mask.shape != images.shape[:1]:
        raise ValueError(f"mask shape {tuple(mask.shape)} does not match batch size {images.shape[0]}")
    out = images.clone()
    if patch_size > 0:
        out[mask, :, -patch_size:, -patch_size:] = value
    return out


def max_normalized_value(mean: Sequence[float], std: Sequence[float]) -> float:
    """Largest value a white pixel takes after normalisation (the trigger value)."""
    return max((1.0 - m) / s for m, s in zip(mean, std, strict=True))
