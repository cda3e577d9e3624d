"""REM: Redirection for Erasing Memory (Schoepf et al., 2025), spec section 4.

1. Expand: switch the redirection half theta_o2 on (p_mem 0 -> 0.2 for a
   capacity-0.5 model; an ETD model's memorisation half is reused as is).
2. Remove ("flush"): NPO on D_f through theta_o1 only (drop mode) until the
   forget accuracy is <= gamma, capped at ``max_flush_epochs`` per round.
3. Redirect + repair: one epoch over D_tr; every sample is fitted through
   theta_o1 + its own mask over theta_o2, except that all of D_f share one
   mask (3.1, DPO-style fit relative to the frozen reference), plus the NPO
   removal term on the D_f samples of the batch through theta_o1 (3.2).
4. Drop: the returned model is used in drop mode (or :func:`rem_unlearn.discard`).

Rounds of {flush, repair} repeat until the step budget is used; the round
with the best known-data proxy is returned.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from ..config import ConfigError
from ..models.gates import partition, partition_state
from .base import Method, ProxySelector, UnlearnConfig, UnlearnContext, dpo_fit, npo_removal, per_sample_ce
from .registry import register_method


@dataclass
class REMConfig(UnlearnConfig):
    beta: float = 1.0
    p_mem: float = 0.2  # keep-probability of a theta_o2 unit when the model has p_mem 0
    max_flush_epochs: int = 100
    round_steps: int | None = None  # repair steps per round (None: one pass over D_tr, as in the paper)
    num_shared_masks: int = 1
    flush: bool = True  # step 2 before every repair epoch
    redirect: bool = True  # step 3.1; False = "no step 3.1" (REMGEN: step 3 in drop mode)
    repair_removal: bool = True  # step 3.2
    removal: str = "npo"  # or "ga": plain gradient ascent on CE (REM-GA ablation)
    ideal: bool = False  # oracle: all corrupted ids share the mask and get the removal term

    def validate(self) -> None:
        super().validate()
        if self.removal not in ("npo", "ga"):
            raise ConfigError(f"removal={self.removal!r}; choose npo or ga")
        if not 0.0 < self.p_mem <= 1.0 or self.beta <= 0 or self.num_shared_masks < 1:
            raise ConfigError("p_mem must be in (0, 1], beta > 0, num_shared_masks >= 1")


@register_method("rem")
class REM(Method):
    Config = REMConfig
    summary = "Redirect corrupted data into extra capacity, then drop it (Schoepf et al. 2025)."

    def removal_loss(self, ce: torch.Tensor, ce_ref: torch.Tensor) -> torch.Tensor:
        cfg: REMConfig = self.config  # type: ignore[assignment]
        return -ce if cfg.removal == "ga" else npo_removal(ce, ce_ref, cfg.beta)

    def run(self, ctx: UnlearnContext) -> nn.Module:
        cfg: REMConfig = self.config  # type: ignore[assignment]
        model, rt = ctx.model, ctx.runtime
        state = partition_state(model)  # raises a clear error for a model without gates
        selector = ProxySelector(ctx, model)
        if state.p_mem == 0.0:
            state.p_mem = cfg.p_mem  # step 1: the untrained half becomes redirection capacity
        state.num_shared_masks = cfg.num_shared_masks
        if cfg.ideal:
            if ctx.oracle_ids is None:
                raise ConfigError("rem-ideal is an oracle ablation of the benchmark: it needs every corrupted id "
                                  "(oracle_ids)")
            routed = ctx.oracle_ids.to(rt.device)
        else:
            routed = ctx.forget_ids.to(rt.device)
        reference = copy.deepcopy(model).eval().requires_grad_(False)
        ctx.observe(model, "start")
        trainer = ctx.trainer(what="REM")
        flush_trainer_steps = 0
        round_steps = cfg.round_steps or ctx.steps_per_epoch
        batches = ctx.batches(ctx.all_rows)
        rounds = -(-ctx.budget // round_steps)
        for rnd in range(1, rounds + 1):
            if cfg.flush:
                flush_trainer_steps += self.flush(ctx, model, reference, trainer)
            model.train()
            for _ in range(min(round_steps, ctx.budget - trainer.steps)):
                x, y, ids = next(batches)
                trainer.step(self.repair_loss(model, reference, x, y, ids, routed, rt))
            ctx.log(event="round", round=rnd, steps=trainer.steps, flush_steps=flush_trainer_steps)
            ctx.observe(model, f"round {rnd}")
            selector.consider(model, f"round {rnd}")
            if trainer.steps >= ctx.budget:
                break
        best = selector.result(model)
        ctx.log(event="selected", at=selector.best_label, proxy=selector.best_proxy)
        return best

    def flush(self, ctx: UnlearnContext, model: nn.Module, reference: nn.Module, trainer) -> int:
        """Step 2: NPO on D_f through theta_o1 until forget accuracy <= gamma; not counted in the budget."""
        cfg: REMConfig = self.config  # type: ignore[assignment]
        steps = 0
        for _ in range(cfg.max_flush_epochs):
            if ctx.forget_accuracy(model) <= cfg.gamma:
                break
            model.train()
            for x, y, _ids in ctx.batcher.epoch(ctx.forget_rows, cfg.optim.batch_size):
                with ctx.runtime.autocast():
                    with torch.no_grad():
                        ce_ref = per_sample_ce(reference(x), y)  # drop mode: the trained model itself
                    ce = per_sample_ce(model(x), y)
                    loss = self.removal_loss(ce, ce_ref).mean()
                trainer.step(loss, count=False)  # flush steps are outside the repair budget, as in the paper
                steps += 1
        return steps

    def repair_loss(self, model, reference, x, y, ids, routed, rt) -> torch.Tensor:
        """Step 3 batch loss: mean over the batch of the redirect term, plus the removal term on routed rows."""
        cfg: REMConfig = self.config  # type: ignore[assignment]
        in_forget = torch.isin(ids, routed)
        fit_mode = "shared" if cfg.redirect else "drop"
        with rt.autocast():
            with torch.no_grad(), partition(reference, fit_mode, ids=ids, shared_ids=routed):
                ce_ref = per_sample_ce(reference(x), y)
            with partition(model, fit_mode, ids=ids, shared_ids=routed):
                ce = per_sample_ce(model(x), y)
            fit = dpo_fit(ce, ce_ref, cfg.beta)
            if not cfg.redirect:
                fit = fit * (~in_forget)  # REMGEN: the fit term only on non-discovered samples
            total = fit.sum()
            n_forget = int(in_forget.sum())
            if cfg.repair_removal and n_forget:
                # Drop-mode pass on the D_f rows only; with a single row, BatchNorm in train mode may have
                # one value per channel, so fall back to the whole batch and mask.
                rows = in_forget if n_forget > 1 else torch.ones_like(in_forget)
                xf, yf = x[rows], y[rows]
                with torch.no_grad():
                    ce_ref_f = per_sample_ce(reference(xf), yf)  # drop mode: theta_o1 of the trained model
                ce_f = per_sample_ce(model(xf), yf)
                removal = self.removal_loss(ce_f, ce_ref_f)
                total = total + (removal if n_forget > 1 else removal * in_forget).sum()
        return total / len(y)


@dataclass
class REMIdealConfig(REMConfig):
    ideal: bool = True


@register_method("rem-ideal")
class REMIdeal(REM):
    Config = REMIdealConfig
    summary = "Oracle REM: every corrupted sample (not only D_f) shares the mask (upper bound)."


@dataclass
class REMNo31Config(REMConfig):
    redirect: bool = False


@register_method("rem-no-3.1")
class REMNoRedirect(REM):
    Config = REMNo31Config
    summary = "Ablation: step 3 in drop mode, no redirection capacity."


@dataclass
class REMNo32Config(REMConfig):
    repair_removal: bool = False


@register_method("rem-no-3.2")
class REMNoRepairRemoval(REM):
    Config = REMNo32Config
    summary = "Ablation: step 3 without the removal term on D_f."


@dataclass
class REMGAConfig(REMConfig):
    removal: str = "ga"


@register_method("rem-ga")
class REMGradientAscent(REM):
    Config = REMGAConfig
    summary = "Ablation: gradient ascent instead of NPO for removal."
