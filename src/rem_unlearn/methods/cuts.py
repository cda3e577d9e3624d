"""CUTS, Corrective Unlearning in Task Space (Mozafari et al., arXiv 2511.18660, 2025).

Fine-tune a copy of the corrupted model on a small proxy set of corrupted samples, with their corrupted
labels, to amplify the corruption in weight space; the difference tau = theta_proxy - theta is a
"corruption task vector", and the repaired model is theta - alpha * tau.  No clean data is trained on.

Choices here (docs/methods.md, "CUTS"):
* the proxy set is D_f with its stored labels (the paper uses fresh samples carrying the same corruption;
  here D_f is what is known);
* the fine-tuning is Adam at lr 1e-4 (the paper's AdamW recipe for a model trained from scratch, without
  its decoupled weight decay), all parameters, augmented views, in train mode, for the step budget;
* BatchNorm tensors stay out of tau, as in the paper's code: the result keeps the model's BatchNorm layers;
* alpha: the paper scans 0.05, 0.10, ... and stops at the first alpha that makes the triggered proxy
  fail (backdoors) or at the best label-free kNN agreement (label noise); here the shared proxy (known
  data only) scores the same scan, which stops after ``patience`` alphas without a better proxy.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import ClassVar

import torch
from torch import nn
from torch.nn import functional as F

from ..config import ConfigError, OptimConfig
from .base import Method, UnlearnConfig, UnlearnContext
from .common import finish, start_selection
from .registry import register_method
from ..training import run_epoch


def cuts_optim() -> OptimConfig:
    return OptimConfig(optimizer="adam", lr=1e-4, weight_decay=0.0, schedule="constant", batch_size=128)


@dataclass
class CUTSConfig(UnlearnConfig):
    optim: OptimConfig = field(default_factory=cuts_optim)
    alpha_step: float = 0.05  # the scan: alpha_step, 2 x alpha_step, ... up to max_alpha
    max_alpha: float = 4.0
    patience: int = 10  # stop the scan after this many alphas without a better proxy
    alpha: float | None = None  # a fixed alpha instead of the scan
    search_space: ClassVar[dict[str, tuple]] = {"optim.lr": (3e-5, 1e-4, 3e-4, 1e-3)}

    def validate(self) -> None:
        super().validate()
        if not (0 < self.alpha_step <= self.max_alpha and self.patience >= 1):
            raise ConfigError("cuts needs 0 < alpha_step <= max_alpha and patience >= 1")
        if self.alpha is not None and self.alpha <= 0:
            raise ConfigError(f"alpha must be positive, got {self.alpha}")


def task_parameters(model: nn.Module) -> dict[str, nn.Parameter]:
    """The parameters a task vector covers: all but those of BatchNorm layers."""
    skip = {f"{n}.{p}" for n, m in model.named_modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)
            for p, _ in m.named_parameters(recurse=False)}
    return {n: p for n, p in model.named_parameters() if n not in skip}


@register_method("cuts")
class CUTS(Method[CUTSConfig]):
    Config = CUTSConfig
    summary = "Fine-tune on D_f, then subtract a proxy-calibrated multiple of the weight change (task vector)."

    def task_vector(self, ctx: UnlearnContext, model: nn.Module) -> dict[str, torch.Tensor]:
        tuned = copy.deepcopy(model).train()
        trainer = ctx.trainer(tuned, what="cuts")
        run_epoch(trainer, ctx.batches(ctx.forget_rows), lambda x, y, ids: F.cross_entropy(tuned(x).float(), y),
                  max_steps=ctx.budget)
        ctx.log(event="cuts fine-tune", steps=trainer.steps)
        after = task_parameters(tuned)
        return {n: (after[n] - p).detach() for n, p in task_parameters(model).items()}

    def run(self, ctx: UnlearnContext) -> nn.Module:
        cfg = self.config
        model = ctx.model.eval()
        tau = self.task_vector(ctx, model)
        params = task_parameters(model)
        original = {n: p.detach().clone() for n, p in params.items()}

        @torch.no_grad()
        def subtract(alpha: float) -> None:
            for n, p in params.items():
                p.copy_(original[n] - alpha * tau[n])

        if cfg.alpha is not None or not cfg.select_best:
            subtract(cfg.alpha if cfg.alpha is not None else 1.0)
            return model
        selector = start_selection(ctx, model)
        since_best, k = 0, 1
        while k * cfg.alpha_step <= cfg.max_alpha + 1e-9 and since_best < cfg.patience:
            alpha = round(k * cfg.alpha_step, 6)
            subtract(alpha)
            before = selector.best_proxy
            selector.consider(model, f"alpha {alpha:g}")
            ctx.observe(model, f"alpha {alpha:g}")
            since_best = 0 if selector.best_proxy > before else since_best + 1
            k += 1
        return finish(ctx, selector, model)
