"""Partition gates: the switch between the kept half and the redirection half.

A gate splits one tensor dimension (channels of a CNN, tokens or features of a
ViT) into ``n_fix`` always-on units (theta_o1) and ``n_mem`` units (theta_o2)
that are, per mode:

* ``drop``   -- zeroed (inference; the unlearned model),
* ``own``    -- kept by the example's own Bernoulli(p_mem) mask (ETD training),
* ``shared`` -- like ``own``, but every id in ``shared_ids`` uses one shared
  mask (REM's redirection mode),
* ``full``   -- all on, no mask (diagnostics only).

Masks are a pure function of (sample id, gate group, seed): a 32-bit integer
hash evaluated on the fly, so there is no mask cache, no per-sample Python loop
and the result never depends on batch order or device.  The shared mask uses a
key (2**32 - 1 - slot) that no real sample id (< 2**31) can take, unlike the
official code whose shared mask id 0 collides with sample 0 (docs/paper.md §9.6).
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Iterator

import torch
from torch import nn

from ..errors import UserError


class NoCapacityError(UserError, ValueError):
    """A method that needs redirection capacity got a model without partition gates."""

MODES = ("drop", "own", "shared", "full")
MAX_SAMPLE_ID = 2**31 - 1
_M32 = 0xFFFFFFFF


def _hash32(x: torch.Tensor) -> torch.Tensor:
    """A well-mixing 32-bit integer hash in int64 arithmetic that never overflows."""
    x = x & _M32
    x = (((x >> 16) ^ x) * 0x45D9F3B) & _M32
    x = (((x >> 16) ^ x) * 0x45D9F3B) & _M32
    return (x >> 16) ^ x


def example_masks(ids: torch.Tensor, n_mem: int, group: int, seed: int, p_mem: float) -> torch.Tensor:
    """Boolean keep-masks of shape (len(ids), n_mem) for the redirection units."""
    ids = ids.to(torch.int64)
    salt = int(_hash32(torch.tensor([(seed * 0x2545F491 + group * 0x61C88647 + 0x3C6EF372) & _M32]))[0])
    key = _hash32(ids.unsqueeze(1) ^ salt)
    unit = torch.arange(n_mem, device=ids.device, dtype=torch.int64).unsqueeze(0)
    h = _hash32(key + ((unit * 0x61C88647) & _M32))
    return (h.to(torch.float64) * (1.0 / 2**32)) < p_mem


@dataclass
class PartitionState:
    """Mode and routing shared by every gate of one model (set via :func:`partition`)."""

    p_mem: float = 0.0
    seed: int = 0
    num_shared_masks: int = 1
    mode: str = "drop"
    ids: torch.Tensor | None = None
    shared_ids: torch.Tensor | None = None  # sorted int64
    keys: torch.Tensor | None = field(default=None, repr=False)  # mask keys of ``ids``, once per batch

    def mask_keys(self) -> torch.Tensor:
        """Per-example mask keys: the sample id, or a reserved key for shared ids (computed once per
        :func:`partition` block, then read by every gate)."""
        if self.keys is not None:
            return self.keys
        if self.ids is None:
            raise RuntimeError(f"partition mode '{self.mode}' needs sample ids: use `with partition(model, '{self.mode}', ids=...)`")
        keys = self.ids.to(torch.int64)
        if self.mode == "shared" and self.shared_ids is not None and len(self.shared_ids):
            shared = torch.isin(keys, self.shared_ids.to(keys.device))
            slot = keys % self.num_shared_masks
            keys = torch.where(shared, _M32 - slot, keys)
        self.keys = keys
        return keys


class Switched(nn.Module):
    """A module that follows its model's one partition state (mode, ids, p_mem); see :func:`share_state`."""

    def __init__(self) -> None:
        super().__init__()
        self.state = PartitionState()  # replaced by the model's shared state


class PartitionGate(Switched):
    """Multiplies the units along ``dim`` by the mask for the current mode."""

    def __init__(self, size: int, group: int, p_fixed: float = 0.5, dim: int = 1):
        super().__init__()
        if not 0.0 <= p_fixed <= 1.0:
            raise ValueError(f"p_fixed must be in [0, 1], got {p_fixed}")
        self.size, self.group, self.dim = size, group, dim
        self.n_fix = int(p_fixed * size)
        self.n_mem = size - self.n_fix
        self.register_buffer("_fixed", (torch.arange(size) < self.n_fix).float(), persistent=False)

    def extra_repr(self) -> str:
        return f"size={self.size}, n_fix={self.n_fix}, group={self.group}, dim={self.dim}"

    def _shape(self, x: torch.Tensor, batch: int) -> list[int]:
        shape = [1] * x.dim()
        shape[0], shape[self.dim] = batch, self.size
        return shape

    def unit_mask(self) -> torch.Tensor:
        """(B, size) float mask for the current state (B = 1 in drop/full mode)."""
        st = self.state
        if st.mode == "full" or self.n_mem == 0:
            return torch.ones(1, self.size, device=self._fixed.device)
        if st.mode == "drop" or st.p_mem <= 0.0:
            return self._fixed.unsqueeze(0)
        if st.mode not in MODES:
            raise ValueError(f"unknown partition mode {st.mode!r}; choose from {MODES}")
        keys = st.mask_keys().to(self._fixed.device)
        mem = example_masks(keys, self.n_mem, self.group, st.seed, st.p_mem).float()
        return torch.cat([self._fixed[: self.n_fix].expand(len(keys), -1), mem], dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.state.mode == "full" or self.n_mem == 0:
            return x
        mask = self.unit_mask()
        if mask.shape[0] not in (1, x.shape[0]):
            raise RuntimeError(f"partition ids ({mask.shape[0]}) do not match the batch ({x.shape[0]})")
        return x * mask.to(x.dtype).view(self._shape(x, mask.shape[0]))


def gates(model: nn.Module) -> list[PartitionGate]:
    return [m for m in model.modules() if isinstance(m, PartitionGate)]


def share_state(model: nn.Module, state: PartitionState | None = None) -> PartitionState:
    """Point every gate (every :class:`Switched` module) of ``model`` at one state object and return it."""
    state = state or PartitionState()
    for m in model.modules():
        if isinstance(m, Switched):
            m.state = state
    return state


def partition_state(model: nn.Module) -> PartitionState:
    gs = gates(model)
    if not gs:
        raise NoCapacityError(f"{type(model).__name__} has no partition gates; use rem_unlearn.expand(model) first")
    return gs[0].state


@contextmanager
def partition(model: nn.Module, mode: str, ids: torch.Tensor | None = None,
              shared_ids: torch.Tensor | None = None) -> Iterator[PartitionState]:
    """Run ``model`` in a partition mode for the duration of the block.

    ``ids`` are the sample ids of the batch about to be forwarded (needed for
    ``own``/``shared``); ``shared_ids`` is the set routed to the shared mask.
    """
    if mode not in MODES:
        raise ValueError(f"unknown partition mode {mode!r}; choose from {MODES}")
    state = partition_state(model)
    saved = (state.mode, state.ids, state.shared_ids, state.keys)
    state.mode, state.ids, state.keys = mode, ids, None
    if shared_ids is not None:
        state.shared_ids = torch.unique(torch.as_tensor(shared_ids, dtype=torch.long))
    try:
        yield state
    finally:
        state.mode, state.ids, state.shared_ids, state.keys = saved
