"""The corrective-unlearning ResNet-9 with partition gates (docs/paper.md §6.1)."""

from __future__ import annotations

import torch
from torch import nn

from .gates import PartitionGate, share_state

BASE_CHANNELS = (64, 128, 256, 128)


def conv_bn(c_in: int, c_out: int, kernel: int = 3, stride: int = 1, padding: int = 1) -> nn.Sequential:
    conv = nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=padding, bias=True)
    nn.init.zeros_(conv.bias)
    return nn.Sequential(conv, nn.BatchNorm2d(c_out), nn.CELU(alpha=0.075))


class Residual(nn.Module):
    def __init__(self, c_in: int, c_inner: int, c_out: int):
        super().__init__()
        self.body = nn.Sequential(conv_bn(c_in, c_inner), conv_bn(c_inner, c_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


def scaled_channels(width: float) -> tuple[int, int, int, int]:
    """Channel counts at a width multiplier, kept even so the halves are equal."""
    return tuple(max(2, 2 * round(c * width / 2)) for c in BASE_CHANNELS)  # type: ignore[return-value]


class ResNet9(nn.Module):
    """ResNet-9 of the corrective-unlearning benchmark.

    ``channels`` are the widths of the four partitioned tensors (after conv1,
    conv2/res1, conv3/res2, conv4); ``res_channels`` the inner widths of the two
    residual blocks, which are never split.  With ``partitioned=False`` the gates
    are identities: that is the shape :meth:`discard_redirection` returns.
    """

    def __init__(self, num_classes: int = 10, in_channels: int = 3, width: float = 1.0, p_fixed: float = 0.5,
                 partitioned: bool = True, channels: tuple[int, int, int, int] | None = None,
                 res_channels: tuple[int, int] | None = None):
        super().__init__()
        c1, c2, c3, c4 = channels or scaled_channels(width)
        r1, r2 = res_channels or (c2, c3)
        self.arch = dict(num_classes=num_classes, in_channels=in_channels, channels=[c1, c2, c3, c4],
                         res_channels=[r1, r2], p_fixed=p_fixed, partitioned=partitioned)

        def gate(size: int, group: int) -> nn.Module:
            return PartitionGate(size, group, p_fixed) if partitioned else nn.Identity()

        self.conv1, self.gate1 = conv_bn(in_channels, c1), gate(c1, 0)
        self.conv2, self.gate2 = conv_bn(c1, c2, kernel=5, stride=2, padding=2), gate(c2, 1)
        self.res1, self.gate3 = Residual(c2, r1, c2), gate(c2, 1)
        self.conv3, self.pool3, self.gate4 = conv_bn(c2, c3), nn.MaxPool2d(2), gate(c3, 2)
        self.res2, self.gate5 = Residual(c3, r2, c3), gate(c3, 2)
        self.conv4, self.gate6 = conv_bn(c3, c4, padding=0), gate(c4, 3)
        self.head = nn.Sequential(nn.AdaptiveMaxPool2d(1), nn.Flatten())
        self.fc = nn.Linear(c4, num_classes, bias=False)
        share_state(self)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.gate1(self.conv1(x))
        x = self.gate2(self.conv2(x))
        x = self.gate3(self.res1(x))
        x = self.gate4(self.pool3(self.conv3(x)))
        x = self.gate5(self.res2(x))
        x = self.gate6(self.conv4(x))
        return self.head(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x))

    def redirection_parameters(self) -> dict[str, torch.Tensor]:
        """Boolean masks over each parameter marking entries that only theta_o2 uses.

        An entry belongs to theta_o2 when it produces a dropped unit or reads one.
        """
        if not self.arch["partitioned"]:
            return {}
        kept = self._kept_units()
        masks: dict[str, torch.Tensor] = {}
        for name, p in self.named_parameters():
            masks[name] = torch.zeros_like(p, dtype=torch.bool)
        for conv_name, (rows, cols) in self._layer_slices(kept).items():
            for suffix in (".weight", ".bias"):
                key = conv_name + suffix
                if key not in masks:
                    continue
                keep = torch.zeros_like(masks[key])
                if suffix == ".weight" and keep.dim() > 1:
                    keep[rows.unsqueeze(1), cols.unsqueeze(0)] = True
                else:
                    keep[rows] = True
                masks[key] = ~keep
        return masks

    def _kept_units(self) -> dict[str, torch.Tensor]:
        g = {name: m for name, m in self.named_modules() if isinstance(m, PartitionGate)}
        return {name: torch.arange(m.n_fix) for name, m in g.items()}

    def _layer_slices(self, kept: dict[str, torch.Tensor]) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """(output rows, input columns) each weight keeps when theta_o2 is cut away."""
        a = self.arch
        c_in = torch.arange(a["in_channels"])
        r1, r2 = torch.arange(a["res_channels"][0]), torch.arange(a["res_channels"][1])
        k1, k2, k4, k6 = kept["gate1"], kept["gate2"], kept["gate4"], kept["gate6"]
        slices = {
            "conv1.0": (k1, c_in), "conv1.1": (k1, k1),
            "conv2.0": (k2, k1), "conv2.1": (k2, k2),
            "res1.body.0.0": (r1, k2), "res1.body.0.1": (r1, r1),
            "res1.body.1.0": (k2, r1), "res1.body.1.1": (k2, k2),
            "conv3.0": (k4, k2), "conv3.1": (k4, k4),
            "res2.body.0.0": (r2, k4), "res2.body.0.1": (r2, r2),
            "res2.body.1.0": (k4, r2), "res2.body.1.1": (k4, k4),
            "conv4.0": (k6, k4), "conv4.1": (k6, k6),
            "fc": (torch.arange(a["num_classes"]), k6),
        }
        return slices

    @torch.no_grad()
    def discard_redirection(self) -> "ResNet9":
        """A plain, smaller ResNet-9 without theta_o2, equal to this model in drop mode."""
        if not self.arch["partitioned"]:
            raise ValueError("this ResNet-9 has no partition to discard")
        kept = self._kept_units()
        a = self.arch
        small = ResNet9(num_classes=a["num_classes"], in_channels=a["in_channels"], partitioned=False,
                        channels=tuple(len(kept[g]) for g in ("gate1", "gate2", "gate4", "gate6")),
                        res_channels=tuple(a["res_channels"]))
        modules = dict(self.named_modules())
        small_modules = dict(small.named_modules())
        for name, (rows, cols) in self._layer_slices(kept).items():
            src, dst = modules[name], small_modules[name]
            if isinstance(src, nn.BatchNorm2d):
                for attr in ("weight", "bias", "running_mean", "running_var"):
                    getattr(dst, attr).copy_(getattr(src, attr)[rows])
                dst.num_batches_tracked.copy_(src.num_batches_tracked)
            else:
                dst.weight.copy_(src.weight[rows][:, cols])
                if getattr(src, "bias", None) is not None:
                    dst.bias.copy_(src.bias[rows])
        return small
