"""The small-dataset ViT with partition gates (docs/paper.md §6.2).

Shifted Patch Tokenisation + Locality Self-Attention ("ViT for small datasets"),
pre-LN blocks, CLS pooling.  A :class:`PartitionGate` (all group 0) follows the
attention residual and the MLP residual of every block.  It partitions either
token positions (``partition="token"``, what the official code does, docs/paper.md §4.2)
or the embedding features (``partition="feature"``); or one gate inside every
MLP splits its hidden units (``partition="mlp"``), so that theta_o2 owns whole
neurons (their input rows and output columns) as in the ResNet-9.

Images whose side is not a multiple of ``patch`` are zero-padded symmetrically
to the next multiple (28 px with patch 8 -> 32 px, 16 patches), so the token
count and the ``p_fixed`` split match the 32 px setup.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .gates import PartitionGate, share_state

PARTITIONS = ("token", "feature", "mlp")
_SHIFTS = ((1, -1, 0, 0), (-1, 1, 0, 0), (0, 0, 1, -1), (0, 0, -1, 1))  # right, left, down, up


class ShiftedPatchEmbed(nn.Module):
    """Pad, Shifted Patch Tokenisation, LN, Linear, then CLS token and positional embedding."""

    def __init__(self, in_channels: int, image_size: int, patch: int, dim: int):
        super().__init__()
        pad = -image_size % patch
        self.pad = (pad // 2, pad - pad // 2) * 2
        self.patch = patch
        side = (image_size + pad) // patch
        patch_dim = 5 * in_channels * patch * patch
        self.norm = nn.LayerNorm(patch_dim)
        self.proj = nn.Linear(patch_dim, dim)
        self.cls = nn.Parameter(torch.randn(1, 1, dim))
        self.pos = nn.Parameter(torch.randn(1, side * side + 1, dim))

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        x = F.pad(img, self.pad)
        x = torch.cat([x] + [F.pad(x, s) for s in _SHIFTS], dim=1)  # zero-filled one-pixel shifts
        b, c, h, w = x.shape
        p = self.patch
        x = x.view(b, c, h // p, p, w // p, p).permute(0, 2, 4, 3, 5, 1).reshape(b, (h // p) * (w // p), p * p * c)
        x = self.proj(self.norm(x))
        return torch.cat([self.cls.expand(b, -1, -1), x], dim=1) + self.pos


class LSA(nn.Module):
    """Multi-head attention with a learned temperature and no self-attention (diagonal masked)."""

    def __init__(self, dim_in: int, heads: int, dim_head: int, dim_out: int, qkv_bias: bool = False):
        super().__init__()
        self.heads, self.dim_head = heads, dim_head
        self.temperature = nn.Parameter(torch.log(torch.tensor(dim_head ** -0.5)))
        self.qkv = nn.Linear(dim_in, 3 * heads * dim_head, bias=qkv_bias)
        self.out = nn.Linear(heads * dim_head, dim_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, _ = x.shape
        q, k, v = self.qkv(x).view(b, t, 3, self.heads, self.dim_head).permute(2, 0, 3, 1, 4)
        logits = (q @ k.transpose(-2, -1)) * self.temperature.exp()
        logits = logits.masked_fill(torch.eye(t, dtype=torch.bool, device=x.device), float("-inf"))
        y = (logits.softmax(dim=-1) @ v).transpose(1, 2).reshape(b, t, self.heads * self.dim_head)
        return self.out(y)


class MLP(nn.Sequential):
    """Linear, GELU, Linear; ``gate`` (the mlp partition) masks the hidden units.

    The gate is a named child, not a position, so the weights keep the keys
    ``0`` and ``2`` of a plain ``nn.Sequential`` in every partition.
    """

    def __init__(self, dim_in: int, hidden: int, dim_out: int, gate: nn.Module | None = None):
        super().__init__(nn.Linear(dim_in, hidden), nn.GELU(), nn.Linear(hidden, dim_out))
        self.gate = gate or nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self[2](self.gate(self[1](self[0](x))))


mlp = MLP


class Block(nn.Module):
    """Pre-LN block: x = gate1(x + LSA(LN(x))); x = gate2(x + MLP(LN(x))).

    The residual is sliced to the branch's output width, which is a no-op in
    :class:`ViT` and drops the cut features of the first block in :class:`SlimViT`.
    """

    def __init__(self, norm1: nn.Module, attn: nn.Module, gate1: nn.Module,
                 norm2: nn.Module, ff: nn.Module, gate2: nn.Module):
        super().__init__()
        self.norm1, self.attn, self.gate1 = norm1, attn, gate1
        self.norm2, self.ff, self.gate2 = norm2, ff, gate2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.attn(self.norm1(x))
        x = self.gate1(x[..., : y.shape[-1]] + y)
        y = self.ff(self.norm2(x))
        return self.gate2(x[..., : y.shape[-1]] + y)


class FixedTokenMask(nn.Module):
    """Multiplies token positions (dim 1) by a fixed 0/1 buffer: drop-mode gate without a gate."""

    def __init__(self, size: int, keep: int):
        super().__init__()
        self.register_buffer("keep", torch.arange(size) < keep)

    def extra_repr(self) -> str:
        return f"size={self.keep.numel()}, keep={int(self.keep.sum())}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.keep.to(x.dtype).view(1, -1, 1)


class _ViTBase(nn.Module):
    embed: ShiftedPatchEmbed
    blocks: nn.ModuleList
    head_norm: nn.Module
    head: nn.Linear

    def features(self, img: torch.Tensor) -> torch.Tensor:
        x = self.embed(img)
        for blk in self.blocks:
            x = blk(x)
        return self.head_norm(x[:, 0])

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(img))


class ViT(_ViTBase):
    """ViT for small datasets with gates after both residual adds of every block.

    ``partition="token"`` gates dim 1 of the (B, T, D) stream (size T: the first
    ``int(p_fixed*T)`` tokens, CLS included, are theta_o1); ``"feature"`` gates dim 2
    (size D); ``"mlp"`` gates the hidden units of every MLP instead (size mlp_dim).  With ``partitioned=False`` the gates are identities, or, when
    ``keep_tokens`` is given, fixed token masks -- the form
    :meth:`discard_redirection` returns for the token partition, kept in ``arch``
    so that ``ViT(**arch)`` rebuilds it.
    """

    def __init__(self, num_classes: int = 10, in_channels: int = 3, image_size: int = 32, patch: int = 8,
                 dim: int = 512, depth: int = 4, heads: int = 8, dim_head: int = 64, mlp_dim: int = 1536,
                 p_fixed: float = 0.5, partition: str = "token", partitioned: bool = True,
                 keep_tokens: int | None = None):
        super().__init__()
        if partition not in PARTITIONS:
            raise ValueError(f"partition must be one of {', '.join(PARTITIONS)}, got {partition!r}")
        if partitioned and keep_tokens is not None:
            raise ValueError("keep_tokens is only for partitioned=False (a discarded token partition)")
        self.arch = dict(num_classes=num_classes, in_channels=in_channels, image_size=image_size, patch=patch,
                         dim=dim, depth=depth, heads=heads, dim_head=dim_head, mlp_dim=mlp_dim, p_fixed=p_fixed,
                         partition=partition, partitioned=partitioned, keep_tokens=keep_tokens)
        self.embed = ShiftedPatchEmbed(in_channels, image_size, patch, dim)
        tokens = self.embed.pos.shape[1]

        def gate() -> nn.Module:
            if partitioned and partition != "mlp":
                return (PartitionGate(tokens, 0, p_fixed, dim=1) if partition == "token"
                        else PartitionGate(dim, 0, p_fixed, dim=2))
            return FixedTokenMask(tokens, keep_tokens) if keep_tokens is not None else nn.Identity()

        def hidden_gate() -> nn.Module | None:
            return PartitionGate(mlp_dim, 0, p_fixed, dim=-1) if partitioned and partition == "mlp" else None

        self.blocks = nn.ModuleList(
            Block(nn.LayerNorm(dim), LSA(dim, heads, dim_head, dim), gate(),
                  nn.LayerNorm(dim), mlp(dim, mlp_dim, dim, hidden_gate()), gate())
            for _ in range(depth))
        self.head_norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, num_classes)
        share_state(self)

    @torch.no_grad()
    def discard_redirection(self) -> nn.Module:
        """A plain model without gates whose output equals this model's drop mode.

        * token partition: token positions own no parameters (all weights are
          shared across tokens), so nothing can be cut away; the result is a
          ``ViT(partitioned=False, keep_tokens=n_fix)`` with the same weights and
          a fixed, non-trainable token mask at the gate points.
        * feature partition: a smaller :class:`SlimViT` holding only the kept
          features of the residual stream (see its docstring for the folding).
        * mlp partition: a plain ViT whose MLPs keep only the theta_o1 hidden units.
        """
        a = self.arch
        if not a["partitioned"]:
            raise ValueError("this ViT has no partition to discard")
        if a["partition"] == "mlp":
            n_fix = self.blocks[0].ff.gate.n_fix
            plain = ViT(**{**a, "partitioned": False, "mlp_dim": n_fix})
            state = self.state_dict()
            for i in range(a["depth"]):
                for key, rows in ((f"blocks.{i}.ff.0.weight", True), (f"blocks.{i}.ff.0.bias", True),
                                  (f"blocks.{i}.ff.2.weight", False)):
                    state[key] = state[key][:n_fix] if rows else state[key][:, :n_fix]
            plain.load_state_dict(state)
            return plain
        n_fix = self.blocks[0].gate1.n_fix
        if a["partition"] == "token":
            plain = ViT(**{**a, "partitioned": False, "keep_tokens": n_fix})
            plain.load_state_dict({**self.state_dict(), **{k: v for k, v in plain.state_dict().items()
                                                              if k.endswith(".keep")}})
            return plain
        return SlimViT.from_feature_partition(self, n_fix)


    def redirection_parameters(self) -> dict[str, torch.Tensor]:
        """Boolean masks over each parameter marking the entries only theta_o2 uses (mlp and feature
        partitions; token positions own no parameters)."""
        a = self.arch
        if not a["partitioned"] or a["partition"] == "token":
            return {}
        masks = {n: torch.zeros_like(p, dtype=torch.bool) for n, p in self.named_parameters()}
        if a["partition"] == "mlp":
            n = self.blocks[0].ff.gate.n_fix
            for i in range(a["depth"]):
                masks[f"blocks.{i}.ff.0.weight"][n:] = True
                masks[f"blocks.{i}.ff.0.bias"][n:] = True
                masks[f"blocks.{i}.ff.2.weight"][:, n:] = True
            return masks
        # Feature partition: only the rows writing cut features are theta_o2's alone.  Everything reading
        # the residual stream still sees the cut features through LayerNorm (-mean/std * w + b, SlimViT).
        n = self.blocks[0].gate1.n_fix
        for i in range(a["depth"]):
            for writer in ("attn.out", "ff.2"):
                masks[f"blocks.{i}.{writer}.weight"][n:] = True
                masks[f"blocks.{i}.{writer}.bias"][n:] = True
        return masks


class WideStatLayerNorm(nn.Module):
    """LayerNorm of a width-``full`` vector whose features past ``kept`` are zero, given the kept part.

    Statistics run over all ``full`` features (the zeros count); the output is the
    ``kept`` normalised features plus one extra feature, ``-mean/std``: LN's
    output on a zeroed feature d is ``-mean/std * w_d + b_d``, so the next Linear
    reads the zeros' contribution exactly through one extra input column
    (``W[:, cut] @ w[cut]``) and a bias term (``W[:, cut] @ b[cut]``).
    """

    def __init__(self, kept: int, full: int, eps: float = 1e-5):
        super().__init__()
        self.kept, self.full, self.eps = kept, full, eps
        self.weight = nn.Parameter(torch.ones(kept))
        self.bias = nn.Parameter(torch.zeros(kept))

    def extra_repr(self) -> str:
        return f"kept={self.kept}, full={self.full}, eps={self.eps}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = x.sum(-1, keepdim=True) / self.full
        var = ((x - mean).pow(2).sum(-1, keepdim=True) + (self.full - self.kept) * mean.pow(2)) / self.full
        inv = torch.rsqrt(var + self.eps)
        return torch.cat([(x - mean) * inv * self.weight + self.bias, -mean * inv], dim=-1)


class SlimViT(_ViTBase):
    """The feature-partitioned ViT with theta_o2 cut away (no gates), equal to its drop mode.

    Why it looks like this: the first gate sits after block 1's attention
    residual, so the embedding, block 1's first LN and its q/k/v stay full width;
    from the attention output projection on, the stream holds only the ``kept``
    features (output rows of the attention/MLP projections for cut features are
    removed, since the gates zero them).  Every later LN still normalises over
    the full width with the cut features at zero, which :class:`WideStatLayerNorm`
    reproduces; the Linear after it gets one extra input column and a folded bias
    (so q/k/v gain a bias after block 1).
    """

    def __init__(self, num_classes: int = 10, in_channels: int = 3, image_size: int = 32, patch: int = 8,
                 dim: int = 512, kept: int = 256, depth: int = 4, heads: int = 8, dim_head: int = 64,
                 mlp_dim: int = 1536):
        super().__init__()
        if depth < 1:
            raise ValueError("SlimViT needs at least one block")
        self.arch = dict(num_classes=num_classes, in_channels=in_channels, image_size=image_size, patch=patch,
                         dim=dim, kept=kept, depth=depth, heads=heads, dim_head=dim_head, mlp_dim=mlp_dim)
        self.embed = ShiftedPatchEmbed(in_channels, image_size, patch, dim)

        def norm() -> WideStatLayerNorm:
            return WideStatLayerNorm(kept, dim)

        first = Block(nn.LayerNorm(dim), LSA(dim, heads, dim_head, kept), nn.Identity(),
                      norm(), mlp(kept + 1, mlp_dim, kept), nn.Identity())
        self.blocks = nn.ModuleList([first] + [
            Block(norm(), LSA(kept + 1, heads, dim_head, kept, qkv_bias=True), nn.Identity(),
                  norm(), mlp(kept + 1, mlp_dim, kept), nn.Identity())
            for _ in range(depth - 1)])
        self.head_norm = norm()
        self.head = nn.Linear(kept + 1, num_classes)

    @classmethod
    @torch.no_grad()
    def from_feature_partition(cls, vit: ViT, kept: int) -> "SlimViT":
        a = vit.arch
        slim = cls(num_classes=a["num_classes"], in_channels=a["in_channels"], image_size=a["image_size"],
                   patch=a["patch"], dim=a["dim"], kept=kept, depth=a["depth"], heads=a["heads"],
                   dim_head=a["dim_head"], mlp_dim=a["mlp_dim"])
        slim.embed.load_state_dict(vit.embed.state_dict())

        def rows(dst: nn.Linear, src: nn.Linear) -> None:
            dst.weight.copy_(src.weight[:kept])
            dst.bias.copy_(src.bias[:kept])

        def fold(dst_norm: WideStatLayerNorm, dst: nn.Linear, src_norm: nn.LayerNorm, src: nn.Linear) -> None:
            dst_norm.weight.copy_(src_norm.weight[:kept])
            dst_norm.bias.copy_(src_norm.bias[:kept])
            w_cut = src.weight[:, kept:]
            dst.weight.copy_(torch.cat([src.weight[:, :kept], (w_cut @ src_norm.weight[kept:]).unsqueeze(1)], 1))
            bias = src.bias if src.bias is not None else torch.zeros_like(dst.bias)
            dst.bias.copy_(bias + w_cut @ src_norm.bias[kept:])

        for i, (s, d) in enumerate(zip(vit.blocks, slim.blocks)):
            if i == 0:
                d.norm1.load_state_dict(s.norm1.state_dict())
                d.attn.qkv.load_state_dict(s.attn.qkv.state_dict())
            else:
                fold(d.norm1, d.attn.qkv, s.norm1, s.attn.qkv)
            d.attn.temperature.copy_(s.attn.temperature)
            rows(d.attn.out, s.attn.out)
            fold(d.norm2, d.ff[0], s.norm2, s.ff[0])
            rows(d.ff[2], s.ff[2])
        fold(slim.head_norm, slim.head, vit.head_norm, vit.head)
        return slim
