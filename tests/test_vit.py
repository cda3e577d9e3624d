"""Tests for the small-dataset ViT and its partition gates."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from rem_unlearn.models.gates import PartitionGate, gates, partition, partition_state
from rem_unlearn.models.vit import ViT, SlimViT

TINY = dict(num_classes=7, dim=32, depth=2, heads=2, dim_head=16, mlp_dim=64)
INPUTS = [(3, 32, 8), (1, 28, 8), (3, 32, 4), (1, 28, 4)]  # (channels, side, patch)
KINDS = ["token", "feature", "mlp"]


def tiny(kind: str, c: int = 3, side: int = 32, patch: int = 8, seed: int = 0) -> ViT:
    """A tiny ViT with every LN, bias and temperature moved off its init so folding is exercised."""
    torch.manual_seed(seed)
    m = ViT(in_channels=c, image_size=side, patch=patch, partition=kind, **TINY)
    with torch.no_grad():
        for mod in m.modules():
            if isinstance(mod, nn.LayerNorm):
                mod.weight.normal_(1.0, 0.3)
                mod.bias.normal_(0.0, 0.3)
            elif isinstance(mod, nn.Linear) and mod.bias is not None:
                mod.bias.normal_(0.0, 0.1)
        for blk in m.blocks:
            blk.attn.temperature.add_(0.3)
    return m.eval()


def drop(m: ViT, x: torch.Tensor) -> torch.Tensor:
    with partition(m, "drop"):
        return m(x)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("c,side,patch", INPUTS)
def test_forward_shape(kind: str, c: int, side: int, patch: int) -> None:
    m = tiny(kind, c, side, patch)
    x = torch.randn(3, c, side, side)
    tokens = (-(-side // patch)) ** 2 + 1
    assert m.embed(x).shape == (3, tokens, TINY["dim"])
    for mode in ("drop", "full"):
        with partition(m, mode):
            y = m(x)
        assert y.shape == (3, TINY["num_classes"]) and torch.isfinite(y).all()
    g = gates(m)
    assert len(g) == (1 if kind == "mlp" else 2) * TINY["depth"] and all(x.group == 0 for x in g)
    assert g[0].size == {"token": tokens, "feature": TINY["dim"], "mlp": TINY["mlp_dim"]}[kind]


@pytest.mark.parametrize("kind", KINDS[:2])
def test_drop_matches_hand_zeroed_reference(kind: str) -> None:
    """Drop mode == a gate-free forward that zeroes the theta_o2 tokens/features after each residual."""
    m = tiny(kind, 1, 28, 8)
    x = torch.randn(4, 1, 28, 28)
    n_fix = gates(m)[0].n_fix
    assert n_fix == (8 if kind == "token" else 16)  # int(0.5 * 17) tokens incl. CLS / half of 32 features

    def zero(h: torch.Tensor) -> torch.Tensor:
        h = h.clone()
        if kind == "token":
            h[:, n_fix:] = 0
        else:
            h[..., n_fix:] = 0
        return h

    with torch.no_grad():
        h = m.embed(x)
        for blk in m.blocks:
            h = zero(h + blk.attn(blk.norm1(h)))
            h = zero(h + blk.ff(blk.norm2(h)))
        ref = m.head(m.head_norm(h[:, 0]))
        y = drop(m, x)
        with partition(m, "full"):
            full = m(x)
    torch.testing.assert_close(y, ref, atol=1e-6, rtol=1e-5)
    assert (full - y).abs().max() > 1e-3


def test_feature_drop_ignores_theta_o2_only_weights() -> None:
    """Rows of the residual-branch output projections for cut features matter only in full mode."""
    m = tiny("feature")
    x = torch.randn(4, 3, 32, 32)
    k = gates(m)[0].n_fix
    before = drop(m, x)
    with partition(m, "full"):
        full_before = m(x)
    with torch.no_grad():
        for blk in m.blocks:
            for lin in (blk.attn.out, blk.ff[2]):
                lin.weight[k:].normal_()
                lin.bias[k:].normal_()
    torch.testing.assert_close(drop(m, x), before, atol=0, rtol=0)
    with partition(m, "full"):
        assert (m(x) - full_before).abs().max() > 1e-3


@pytest.mark.parametrize("kind", KINDS)
def test_masked_modes_per_sample(kind: str) -> None:
    m = tiny(kind)
    partition_state(m).p_mem = 0.5
    x = torch.randn(1, 3, 32, 32).expand(4, -1, -1, -1)  # one image, four sample ids
    ids = torch.tensor([3, 11, 25, 40])
    with torch.no_grad():
        d = drop(m, x)
        with partition(m, "own", ids=ids):
            own = m(x)
        with partition(m, "own", ids=ids.flip(0)):
            own_flipped = m(x)
        with partition(m, "shared", ids=ids, shared_ids=torch.tensor([3, 11, 25])):
            shared = m(x)
    assert (own - d).abs().max() > 1e-4
    assert all((own[i] - own[j]).abs().max() > 1e-4 for i in range(4) for j in range(i))
    torch.testing.assert_close(own_flipped, own.flip(0))  # masks follow ids, not batch position
    torch.testing.assert_close(shared[1:3], shared[:1].expand(2, -1))  # shared ids share one mask
    assert (shared[3] - shared[0]).abs().max() > 1e-4
    torch.testing.assert_close(shared[3], own[3])  # others keep their own mask


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("c,side,patch", INPUTS[:2])
def test_discard_equals_drop(kind: str, c: int, side: int, patch: int) -> None:
    m = tiny(kind, c, side, patch)
    x = torch.randn(5, c, side, side)
    small = m.discard_redirection().eval()
    assert not any(isinstance(mod, PartitionGate) for mod in small.modules())
    with torch.no_grad():
        ref = drop(m, x)
        out = small(x)
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=0)
    # A fresh model built from `arch` and the state dict is the same model.
    cls = SlimViT if kind == "feature" else ViT
    rebuilt = cls(**small.arch).eval()
    rebuilt.load_state_dict(small.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(rebuilt(x), out, atol=0, rtol=0)
    n_big, n_small = (sum(p.numel() for p in mod.parameters()) for mod in (m, small))
    if kind == "token":
        assert isinstance(small, ViT) and small.arch["partitioned"] is False
        assert small.arch["keep_tokens"] == gates(m)[0].n_fix and n_small == n_big
        assert all(not b.requires_grad for b in small.buffers())
    elif kind == "mlp":
        assert small.arch["mlp_dim"] == gates(m)[0].n_fix and n_small < n_big
        assert set(small.state_dict()) == {k for k in m.state_dict()}  # the same keys, narrower MLPs
    else:
        assert isinstance(small, SlimViT) and n_small < n_big


@pytest.mark.parametrize("kind", KINDS)
def test_redirection_parameters_are_what_drop_mode_never_uses(kind: str) -> None:
    """The entries REM re-initialises: changing them leaves drop mode unchanged and drop mode gives them no
    gradient (token positions own no parameters)."""
    m = tiny(kind)
    x = torch.randn(3, 3, 32, 32)
    masks = m.redirection_parameters()
    if kind == "token":
        assert masks == {}
        return
    before = drop(m, x)
    with torch.no_grad():
        for n, p in m.named_parameters():
            p[masks[n]] += torch.randn_like(p[masks[n]])
    torch.testing.assert_close(drop(m, x), before, atol=0, rtol=0)
    drop(m, x).square().sum().backward()
    assert all(p.grad is None or not p.grad[masks[n]].any() for n, p in m.named_parameters())
    assert sum(int(v.sum()) for v in masks.values()) > 0


def test_discard_needs_a_partition() -> None:
    with pytest.raises(ValueError):
        ViT(partitioned=False, **TINY).discard_redirection()


def test_paper_size_parameter_count() -> None:
    n = sum(p.numel() for p in ViT().parameters())
    print(f"paper-size ViT parameters: {n}")
    assert 10_500_000 < n < 11_500_000
