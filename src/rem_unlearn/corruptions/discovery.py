"""Discovery: which corrupted samples are known at unlearning time."""

from __future__ import annotations

import torch


def discovered_ids(corrupted_ids: torch.Tensor, rate: float, seed: int) -> torch.Tensor:
    """The known forget ids D_f for a discovery rate, as sorted ids.

    One seeded permutation of the corrupted ids is cut at round(rate * N), so
    the sets are nested across rates (the 0.3 set contains the 0.1 set) and
    cells at different rates are comparable.
    """
    if not 0.0 < rate <= 1.0:
        raise ValueError(f"discovery rate must be in (0, 1], got {rate}")
    ids = torch.sort(torch.as_tensor(corrupted_ids, dtype=torch.long)).values
    order = torch.randperm(len(ids), generator=torch.Generator().manual_seed(seed))
    k = int(round(rate * len(ids)))
    if k == 0:
        raise ValueError(f"discovery rate {rate} of {len(ids)} corrupted samples discovers none")
    return torch.sort(ids[order[:k]]).values
