"""REM: Redirection for Erasing Memory (Schoepf et al., 2025), docs/paper.md §4.

1. Expand: switch the redirection half theta_o2 on (p_mem 0 -> 0.2 for a
   capacity-0.5 model; an ETD model's memorisation half is reused as is).
2. Remove ("flush"): NPO on D_f through theta_o1 only (drop mode) until the
   forget accuracy is <= gamma, capped at ``max_flush_epochs`` per round.
3. Redirect + repair: one epoch over D_tr; every sample is fitted through
   theta_o1 + its own mask over theta_o2, except that all of D_f share one
   mask (3.1, DPO-style fit relative to the frozen reference), plus the NPO
   removal term on D_f through theta_o1 (3.2), with frozen BatchNorm
   statistics: by default on a D_f mini-batch at every step, officially on
   the D_f rows of each batch.
4. Drop: the returned model is used in drop mode (or :func:`rem_unlearn.discard`).

Rounds of {flush, repair} repeat until the step budget is used (or the
optional stopping rule fires); the round with the best known-data proxy is
returned.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field, make_dataclass
from typing import ClassVar
from itertools import islice

import torch
from torch import nn
from torch.func import functional_call

from ..config import P_MEM, ConfigError
from ..models import redirection_masks
from ..models.gates import partition, partition_state
from ..training import frozen_batchnorm, kept_statistics, recalibrate_batchnorm, run_epoch
from .base import LR_RANGE, Method, UnlearnConfig, UnlearnContext, capped_dpo_fit, dpo_fit, npo_removal, per_sample_ce
from .common import finish, frozen_copy, start_selection
from .registry import register_method


@dataclass(frozen=True)
class REMMechanics:
    """How REM's steps run. The defaults are REM's; the paper's code (``rem-official``) and the ablations are
    other settings. These are research switches, so the named variants set them and ``rem --set`` does not
    offer them; ``rem-lab`` exposes every one (``--set mechanics.flush=false``)."""

    flush: bool = True  # step 2 before every repair round
    redirect: bool = True  # step 3.1; False = "no step 3.1" (REMGEN: step 3 in drop mode)
    repair_removal: bool = True  # step 3.2
    removal: str = "npo"  # or "ga": plain gradient ascent on CE (REM-GA ablation)
    ideal: bool = False  # oracle: all corrupted ids share the mask and get the removal term
    # Where REM deviates from the official code (docs/design.md); `rem-official` restores it.
    # 3.2 on a D_f mini-batch at every repair step (False: on the batch's own D_f rows, as the official
    # code; with drop_mode_batchnorm those rows run alone through frozen BN, docs/design.md §9.5)
    removal_every_step: bool = True
    # D_f as stored, not augmented, in the flush and that mini-batch (the official code augments): NPO's weight
    # 2 sigma(log pi/pi_ref) fades as a row is forgotten, but restarts at 1 on every new random view of it, so on
    # augmented D_f the removal never lets up.
    removal_augment: bool = False
    # The removal acts only on the D_f rows or views that the trained model (the reference) predicts with their
    # corrupted label (docs/defaults.md).
    removal_where_memorised: bool = False
    drop_mode_batchnorm: bool = True  # flush/removal with frozen BN statistics, re-estimated in drop mode
    reinit_capacity: bool = True  # a capacity model's unused theta_o2 gets a fresh random init at step 1
    redirect_known: bool = False  # every step, fit that D_f mini-batch through the shared mask, theta_o2 only

    def validate(self) -> None:
        if self.removal not in ("npo", "ga"):
            raise ConfigError(f"mechanics.removal={self.removal!r}; choose npo or ga")


@dataclass
class REMConfig(UnlearnConfig):
    """REM's settings that a user tunes (docs/methods.md, "REM"); the rest of its shape is ``REMMechanics``."""

    beta: float = 1.0  # NPO / DPO temperature of the removal and fit terms
    p_mem: float = P_MEM  # share of the added units each training sample keeps during the repair
    # Step 3.1's fit, relative to the frozen reference in masked mode: "dpo" (the paper's DPO-style loss),
    # "dpo-capped" (its gradient weight 2 sigma(CE_ref - CE) capped at 1) or "ce" (plain cross-entropy, no
    # reference pass).
    fit: str = "dpo"
    # Stop after this many rounds without a better proxy once D_f stays forgotten; None runs the whole budget,
    # as the paper does (docs/defaults.md: the rule stopped too early on random labels).
    patience: int | None = None
    removal_weight: float = 1.0  # weight of the every-step D_f removal term against the batch-mean fit
    removal_batch_size: int = 32  # rows of that D_f mini-batch
    round_steps: int | None = None  # repair steps per round (None: one pass over D_tr, as in the paper)
    max_flush_epochs: int = 100  # cap on the passes over D_f of one flush
    num_shared_masks: int = 1  # D_f's masks: 1 = one mask shared by all of D_f, as in the paper
    proxy_forget_views: int = 4  # (shared field) the proxy also reads D_f's random views: a returning backdoor shows
    # The paper fixes beta = 1 and p_mem = 0.2; these are the ranges around them that tuning may try.
    search_space: ClassVar[dict[str, tuple]] = {"optim.lr": LR_RANGE, "beta": (0.5, 1.0, 2.0), "p_mem": (0.1, 0.2, 0.4)}

    def validate(self) -> None:
        super().validate()
        if self.fit not in ("dpo", "dpo-capped", "ce"):
            raise ConfigError(f"fit={self.fit!r}; choose dpo, dpo-capped or ce")
        if not 0.0 < self.p_mem <= 1.0 or self.beta <= 0 or self.num_shared_masks < 1:
            raise ConfigError("p_mem must be in (0, 1], beta > 0, num_shared_masks >= 1")
        if self.removal_batch_size < 1 or (self.patience is not None and self.patience < 1):
            raise ConfigError("removal_batch_size must be >= 1 and patience >= 1 (or none)")
        if self.removal_weight < 0:
            raise ConfigError(f"removal_weight={self.removal_weight}; must be >= 0")


@dataclass
class REMLabConfig(REMConfig):
    """REM with its mechanics open to ``--set``: what the named variants and the research scripts use."""

    mechanics: REMMechanics = field(default_factory=REMMechanics)

    def validate(self) -> None:
        super().validate()
        self.mechanics.validate()


REM_MECHANICS = REMMechanics()  # frozen, so every plain REMConfig can share it


def mechanics_of(cfg: REMConfig) -> REMMechanics:
    return cfg.mechanics if isinstance(cfg, REMLabConfig) else REM_MECHANICS


@torch.no_grad()
def fresh_capacity(ctx: UnlearnContext, model: nn.Module) -> int:
    """Give the parameter entries that only theta_o2 uses a fresh random init; returns how many.

    A capacity model never trains them: their only update in pre-training is
    weight decay, which Adam's normalised steps drive to zero within a few
    hundred steps (SGD barely moves them).  Zero rows that are read by zero
    columns get no gradient, so "expanding" with them would add dead capacity.
    """
    redirect = getattr(model, "redirection_parameters", None)
    masks = redirect() if callable(redirect) else {}
    if not any(bool(m.any()) for m in masks.values()):
        return 0
    fresh = dict(ctx.fresh_model().named_parameters())
    count = 0
    for name, p in model.named_parameters():
        mask = masks.get(name)
        if mask is not None and bool(mask.any()):
            mask = mask.to(p.device)
            p.copy_(torch.where(mask, fresh[name].to(p.device, p.dtype), p))
            count += int(mask.sum())
    ctx.log(event="fresh capacity", entries=count)
    return count


@register_method("rem")
class REM(Method[REMConfig]):
    Config = REMConfig
    summary = "Redirect corrupted data into extra capacity, then drop it (Schoepf et al. 2025)."

    @property
    def mechanics(self) -> REMMechanics:
        return mechanics_of(self.config)

    def removal_loss(self, ce: torch.Tensor, ce_ref: torch.Tensor) -> torch.Tensor:
        return -ce if self.mechanics.removal == "ga" else npo_removal(ce, ce_ref, self.config.beta)

    def run(self, ctx: UnlearnContext) -> nn.Module:
        cfg, mech, model, rt = self.config, self.mechanics, ctx.model, ctx.runtime
        state = partition_state(model)  # raises a clear error for a model without gates
        if state.p_mem == 0.0:  # step 1: the untrained half becomes redirection capacity
            state.p_mem = cfg.p_mem
            if mech.reinit_capacity:
                fresh_capacity(ctx, model)
        state.num_shared_masks = cfg.num_shared_masks
        if mech.ideal:
            if ctx.oracle_ids is None:
                raise ConfigError("rem-ideal is an oracle ablation of the benchmark: it needs every corrupted id "
                                  "(oracle_ids)")
            routed = ctx.oracle_ids
        else:
            routed = ctx.forget_ids
        routed_rows = ctx.train.rows_of(routed)
        routed = routed.to(rt.device)
        reference = frozen_copy(model)
        selector = start_selection(ctx, model)
        trainer = ctx.trainer(what="REM")
        round_steps = cfg.round_steps or ctx.steps_per_epoch
        batches = ctx.batches(ctx.all_rows)
        removal_batches = ctx.batches(routed_rows, cfg.removal_batch_size, augment=cfg.augment and mech.removal_augment)
        capacity = redirection_masks(model) if mech.redirect_known else None
        stale = 0
        for rnd in range(1, -(-ctx.budget // round_steps) + 1):
            flush_steps = self.flush(ctx, model, reference, trainer) if mech.flush else 0
            model.train()
            # With drop_mode_batchnorm the running statistics describe drop mode only: masked passes
            # normalise with their batch's statistics but do not move them; they are re-estimated below.
            def step_loss(x: torch.Tensor, y: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
                loss = self.repair_loss(model, reference, x, y, ids, routed, rt)
                if (mech.repair_removal and mech.removal_every_step) or capacity is not None:
                    known = next(removal_batches)
                    if mech.repair_removal and mech.removal_every_step:
                        removal = self.removal_step_loss(model, reference, known[0], known[1], rt)
                        loss = loss + cfg.removal_weight * removal
                    if capacity is not None:
                        loss = loss + self.redirect_known_loss(model, known, routed, capacity, rt)
                return loss

            with kept_statistics(model) if mech.drop_mode_batchnorm else contextlib.nullcontext():
                run_epoch(trainer, islice(batches, max(0, min(round_steps, ctx.budget - trainer.steps))), step_loss,
                          autocast=False)  # each pass of the loss has its own autocast
            if mech.drop_mode_batchnorm:
                recalibrate_batchnorm(model, ctx.eval_batcher, ctx.retain_rows, seed=cfg.seed)
            ctx.log(event="round", round=rnd, steps=trainer.steps, flush_steps=flush_steps,
                    lr=trainer.optimizer.param_groups[0]["lr"])
            ctx.observe(model, f"round {rnd}")
            selector.consider(model, f"round {rnd}")
            stale = 0 if selector.best_label == f"round {rnd}" else stale + 1
            if trainer.steps >= ctx.budget:
                break
            # "D_f stays forgotten" as the flush sees it (the stored rows): views the repair brings back
            # lower the proxy, so the rule stops, and no later flush would act on them.
            forget = selector.last_forget["stored"]  # measured on this model by consider() above
            if cfg.patience and stale >= cfg.patience and forget <= cfg.gamma:
                ctx.log(event="stopped", round=rnd, rounds_without_improvement=stale, forget_accuracy=forget)
                break
        return finish(ctx, selector, model)

    def flush(self, ctx: UnlearnContext, model: nn.Module, reference: nn.Module, trainer) -> int:
        """Step 2: NPO on D_f through theta_o1 until forget accuracy <= gamma; not counted in the budget.

        With ``drop_mode_batchnorm`` BN keeps its running statistics: batches of
        D_f alone would otherwise move them and fake the removal (issue: a flush
        in train-mode BN healed 33 %, re-estimating BN on clean data gave 3.5 %).
        """
        cfg, mech = self.config, self.mechanics
        steps = 0
        augment = cfg.augment and mech.removal_augment
        for _ in range(cfg.max_flush_epochs):
            if ctx.forget_accuracy(model) <= cfg.gamma:
                break
            model.train()
            steps += run_epoch(trainer, ctx.batcher.epoch(ctx.forget_rows, cfg.optim.batch_size, augment=augment),
                               lambda x, y, ids: self.removal_step_loss(model, reference, x, y, ctx.runtime),
                               count=False, autocast=False)[1]
        return steps

    def removal_step_loss(self, model, reference, x, y, rt) -> torch.Tensor:
        """Mean removal loss of D_f rows through theta_o1 (drop mode), the trained theta_o1 as reference."""
        frozen = frozen_batchnorm(model) if self.mechanics.drop_mode_batchnorm else contextlib.nullcontext()
        with rt.autocast(), frozen:
            with torch.no_grad():
                ref_logits = reference(x)
                ce_ref = per_sample_ce(ref_logits, y)
            loss = self.removal_loss(per_sample_ce(model(x), y), ce_ref)
            if self.mechanics.removal_where_memorised:
                loss = loss * (ref_logits.argmax(1) == y)
            return loss.mean()

    def redirect_known_loss(self, model, known, routed, capacity, rt) -> torch.Tensor:
        """Cross-entropy of a D_f mini-batch through the shared mask, with a gradient for theta_o2 only.

        theta_o1 enters detached, so the corrupted labels can only be fitted by the added capacity; this
        keeps the redirection alive where the DPO-style fit has no gradient left on flushed samples
        (2 sigma(-(CE - CE_ref)) is about 0 once the flush made D_f far worse than the reference).
        BatchNorm normalises with the batch (its running statistics are kept, as in the repair).
        """
        x, y, ids = known
        params = {n: torch.where(capacity[n], p, p.detach()) if bool(capacity[n].any()) else p.detach()
                  for n, p in model.named_parameters()}
        with rt.autocast(), partition(model, "shared", ids=ids, shared_ids=routed):
            return per_sample_ce(functional_call(model, params, (x,)), y).mean()

    def repair_loss(self, model, reference, x, y, ids, routed, rt) -> torch.Tensor:
        """Step 3 batch loss: the redirect term on every row, plus the removal term on the routed rows of the
        batch (unless ``removal_every_step`` puts it on a mini-batch of its own), averaged over the batch."""
        cfg, mech = self.config, self.mechanics
        in_forget = torch.isin(ids, routed)
        fit_mode = "shared" if mech.redirect else "drop"
        with rt.autocast():
            with partition(model, fit_mode, ids=ids, shared_ids=routed):
                ce = per_sample_ce(model(x), y)
            if cfg.fit == "ce":
                fit = ce
            else:
                with torch.no_grad(), partition(reference, fit_mode, ids=ids, shared_ids=routed):
                    ce_ref = per_sample_ce(reference(x), y)
                fit = (capped_dpo_fit if cfg.fit == "dpo-capped" else dpo_fit)(ce, ce_ref, cfg.beta)
            if not mech.redirect:
                fit = fit * (~in_forget)  # REMGEN: the fit term only on non-discovered samples
            total = fit.sum()
            if mech.repair_removal and not mech.removal_every_step and bool(in_forget.any()):
                if mech.drop_mode_batchnorm:
                    # Frozen BN: a row's removal loss does not depend on the rest of its batch, so the D_f
                    # rows alone give the whole-batch term, at a fraction of its cost (tests/test_rem.py).
                    forget_x, forget_y = x[in_forget], y[in_forget]
                    total = total + self.removal_step_loss(model, reference, forget_x, forget_y, rt) * len(forget_y)
                else:
                    # Official: the whole batch in train-mode BN, so D_f is normalised with a mixed batch.
                    with torch.no_grad():
                        ce_ref_all = per_sample_ce(reference(x), y)  # drop mode: theta_o1 of the trained model
                    removal = self.removal_loss(per_sample_ce(model(x), y), ce_ref_all)
                    total = total + (removal * in_forget).sum()
        return total / len(y)


def variant_config(name: str, mechanics: REMMechanics, **defaults) -> type[REMLabConfig]:
    """A config class for a named variant of REM: its mechanics (and other defaults) replaced."""
    fields = [("mechanics", REMMechanics, field(default_factory=lambda: mechanics))]  # frozen: shared safely
    fields += [(k, type(v), v) for k, v in defaults.items()]
    return make_dataclass(name, fields, bases=(REMLabConfig,))


@register_method("rem-lab")
class REMLab(REM):
    Config = REMLabConfig
    summary = "REM with every mechanic open to --set mechanics.<name> (research switches)."


REMIdealConfig = variant_config("REMIdealConfig", REMMechanics(ideal=True))
REMNo31Config = variant_config("REMNo31Config", REMMechanics(redirect=False))
REMNo32Config = variant_config("REMNo32Config", REMMechanics(repair_removal=False))
# Gradient ascent is unbounded: at weight 1 on every step it diverges within a few steps (NaN on the smoke grid),
# so this ablation keeps the in-batch removal term of the official scheme.
REMGAConfig = variant_config("REMGAConfig", REMMechanics(removal="ga", removal_every_step=False))
# The official code's mechanics: in-batch removal on augmented D_f, train-mode BatchNorm, no fresh capacity.
OFFICIAL_MECHANICS = REMMechanics(reinit_capacity=False, removal_augment=True, removal_every_step=False,
                                  drop_mode_batchnorm=False)
REMOfficialConfig = variant_config("REMOfficialConfig", OFFICIAL_MECHANICS, proxy_forget_views=0)


@register_method("rem-ideal")
class REMIdeal(REM):
    Config = REMIdealConfig
    summary = "Oracle REM: every corrupted sample (not only D_f) shares the mask (upper bound)."


@register_method("rem-no-3.1")
class REMNoRedirect(REM):
    Config = REMNo31Config
    summary = "Ablation: step 3 in drop mode, no redirection capacity."


@register_method("rem-no-3.2")
class REMNoRepairRemoval(REM):
    Config = REMNo32Config
    summary = "Ablation: step 3 without the removal term on D_f."


@register_method("rem-ga")
class REMGradientAscent(REM):
    Config = REMGAConfig
    summary = "Ablation: gradient ascent instead of NPO for removal."


@register_method("rem-official")
class REMOfficial(REM):
    Config = REMOfficialConfig
    summary = "REM as the official code runs it: in-batch removal term, train-mode BN, no early stop."
