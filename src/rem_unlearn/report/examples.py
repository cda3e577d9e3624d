"""A picture of the corruption: corrupted training images with their true and stored labels."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from ..corruptions.base import CorruptedData  # noqa: E402
from ..files import atomic_savefig  # noqa: E402


def plot_corrupted_examples(corrupted: CorruptedData, path: str | Path, n: int = 24, cols: int = 8) -> Path:
    """Grid of ``n`` corrupted samples; the poison trigger is drawn as it is stamped (white patch)."""
    train = corrupted.train
    rows = corrupted.corrupted_rows[:n]
    images = train.images[rows].clone()
    patch = train.trigger_size
    if corrupted.kind == "poison" and patch:
        images[:, :, -patch:, -patch:] = 255
    names = train.class_names or tuple(str(i) for i in range(train.num_classes))
    n = len(rows)
    nrows = max(1, -(-n // cols))
    fig, axes = plt.subplots(nrows, cols, figsize=(cols * 1.5, nrows * 1.8), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for i, r in enumerate(rows.tolist()):
        ax = axes.flat[i]
        img = images[i].permute(1, 2, 0).numpy()
        ax.imshow(img[..., 0] if img.shape[-1] == 1 else img, cmap="gray" if img.shape[-1] == 1 else None,
                  vmin=0, vmax=255)
        true, stored = int(corrupted.true_labels[r]), int(train.labels[r])
        ax.set_title(f"id {int(train.ids[r])}\ntrue: {names[true][:10]}\nlabel: {names[stored][:10]}", fontsize=7,
                     color="black" if true == stored else "crimson")
    fig.suptitle(f"{train.name}: {corrupted.kind} corruption ({len(corrupted.corrupted_ids)} samples)", fontsize=10)
    fig.tight_layout()
    path = atomic_savefig(fig, path, dpi=110)
    plt.close(fig)
    return path


__all__ = ["plot_corrupted_examples"]
