import os

import pytest
import torch

from rem_unlearn.data.base import ImageDataset

os.environ.setdefault("REM_UNLEARN_QUIET", "1")
torch.set_num_threads(min(2, torch.get_num_threads()))


def make_toy(n: int = 256, classes: int = 4, size: int = 12, channels: int = 1, seed: int = 0,
             id_offset: int = 100) -> ImageDataset:
    """A learnable toy set: each class is a brightness level plus noise."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % classes
    base = (labels.float() * (200 / max(1, classes - 1)) + 20).view(n, 1, 1, 1)
    noise = torch.randn(n, channels, size, size, generator=g) * 20
    images = (base + noise).clamp(0, 255).to(torch.uint8)
    return ImageDataset("toy", images, labels, torch.arange(n) + id_offset, classes,
                        (0.5,) * channels, (0.25,) * channels)


@pytest.fixture
def toy() -> ImageDataset:
    return make_toy()
