"""The task suite: defaults are chosen on its dev tasks and confirmed once on its held-out tasks.

Every task (research/experiments/task_suite.toml, where the dev / held-out split is fixed)
is a model a user trained their own way -- a plain PyTorch loop, SGD + BatchNorm
or AdamW, with or without augmentation -- on a corrupted Fashion-MNIST subset at
some size, resolution and class count.  Each method setting heals it through the
practitioner's path (``unlearn_user_model``: ``expand`` where the model has no
capacity of its own, the method, ``discard``) at discovery 0.1 and 0.5, and is
scored on the test split: healed, utility, score, attack success.  The test
split is only read to report; no run chooses anything with it.

    OMP_NUM_THREADS=2 .venv/bin/python research/experiments/task_suite.py --split dev \\
        --methods rem,rem-official,finetune,ga [--variant 'rem-dpo=rem:fit=dpo'] [--seeds 0]
    .venv/bin/python research/experiments/task_suite.py --table [--variants rem,rem-official,...]

Runs append to ``--out`` (JSON lines); a run already there (same task, setting,
rate, seed and code) is skipped, so an interrupted sweep resumes.  Trained models
are cached under ``--work``.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import subprocess
import time
import tomllib
from collections import defaultdict
from dataclasses import replace
from pathlib import Path

import torch
from torch.nn import functional as F

from rem_unlearn import unlearn_user_model
from rem_unlearn.config import CorruptionConfig, ModelConfig, RuntimeConfig, apply_overrides
from rem_unlearn.corruptions import corrupt, discovered_ids
from rem_unlearn.data import load_dataset
from rem_unlearn.metrics import Evaluator
from rem_unlearn.models import build_model
from rem_unlearn.models.hf import HFClassifier
from rem_unlearn.training import Batcher, NonFiniteLossError, Runtime

HERE = Path(__file__).resolve().parent
SUITE = HERE / "task_suite.toml"
RECORDS = HERE.parent / "records" / "task_suite.jsonl"
WORK = Path("~/.cache/rem_unlearn/task_suite").expanduser()  # the trained models


def load_tasks(path: Path = SUITE) -> list[dict]:
    spec = tomllib.loads(path.read_text())
    return [{**spec["defaults"], **task} for task in spec["task"]]


def code_version() -> str:
    """The commit the runs used (with -dirty when the tree had changes)."""
    out = subprocess.run(["git", "describe", "--always", "--dirty", "--abbrev=12"], cwd=HERE, capture_output=True,
                         text=True)
    return out.stdout.strip() or "unknown"


# ----------------------------------------------------------------------------- data


def shaped(ds, task: dict, rows: torch.Tensor | None = None):
    """``ds`` restricted to the first ``classes`` classes (and ``rows``), resized to ``image_size``."""
    keep = ds.labels < task["classes"]
    if rows is not None:
        keep &= torch.isin(torch.arange(len(ds)), rows)
    ds = ds.subset(torch.nonzero(keep).flatten())
    images = ds.images
    if task["image_size"] != images.shape[-1]:
        size = task["image_size"]
        images = F.interpolate(images.float(), size=(size, size), mode="bilinear", antialias=True,
                               align_corners=False).round().clamp(0, 255).to(torch.uint8)
    return replace(ds, images=images, num_classes=task["classes"],
                   class_names=ds.class_names[:task["classes"]] if ds.class_names else ())


def task_data(task: dict):
    """(corrupted training set, test set) of a task; the subsets are seeded and fixed per task."""
    train = load_dataset("fashion-mnist", "train")
    test = load_dataset("fashion-mnist", "test")
    g = torch.Generator().manual_seed(0)
    train = shaped(train, task, torch.randperm(len(train), generator=g)[:task["train_size"]])
    test = shaped(test, task, torch.randperm(len(test), generator=g)[:task["test_size"]])
    pair = task.get("class_pair")
    cfg = CorruptionConfig(kind=task["corruption"], size=task["size"], seed=0, target_class=task["target_class"],
                           patch_size=task["patch_size"], class_pair=tuple(pair) if pair else None)
    return corrupt(train, cfg), test


# ----------------------------------------------------------------------------- models, trained as a user would


def hf_model(kind: str, channels: int, classes: int, size: int) -> HFClassifier:
    import transformers

    if kind == "hf-vit":
        cfg = transformers.ViTConfig(image_size=size, patch_size=size // 4, num_channels=channels, hidden_size=96,
                                     num_hidden_layers=4, num_attention_heads=4, intermediate_size=192,
                                     num_labels=classes)
        return HFClassifier(transformers.ViTForImageClassification(cfg))
    cfg = transformers.ConvNextConfig(num_channels=channels, patch_size=2, hidden_sizes=[32, 64, 128, 256],
                                      depths=[1, 1, 2, 1], num_labels=classes)
    return HFClassifier(transformers.ConvNextForImageClassification(cfg))


def task_runtime(task: dict, precision: str = "auto") -> Runtime:
    """The runtime a task's model runs in; a transformers model runs as --hf-model runs it: not channels_last."""
    runtime = replace(Runtime.from_config(RuntimeConfig(precision=precision)), progress=False)
    return replace(runtime, channels_last=False) if task["model"].startswith("hf-") else runtime


def fresh_model(task: dict, channels: int):
    kind, classes, size = task["model"], task["classes"], task["image_size"]
    if kind.startswith("hf-"):
        return hf_model(kind, channels, classes, size)
    arch = {"capacity-resnet9": "resnet9", "resnet9-plain": "resnet9-plain", "resnet18": "resnet18",
            "smallcnn": "smallcnn", "vit": "vit"}[kind]
    cfg = ModelConfig(arch=arch, width=0.25 if arch == "resnet18" else 0.375)
    if arch == "vit":
        cfg = replace(cfg, patch=size // 4, dim=128, depth=4, heads=4, dim_head=32, mlp_dim=256, partition="token")
    return build_model(cfg, channels, classes, size)


def train_user_model(task: dict, train, runtime: Runtime, work: Path) -> tuple[torch.nn.Module, float]:
    """The task's model trained with its own recipe in a plain loop (cached); returns it and the seconds taken."""
    torch.manual_seed(0)
    model = runtime.prepare(fresh_model(task, train.channels))
    path = work / f"{task['name']}.pt"
    if path.is_file():
        saved = torch.load(path, weights_only=True)
        model.load_state_dict(saved["state"])
        return model.eval(), saved["seconds"]
    if task["recipe"] == "sgd":
        opt = torch.optim.SGD(model.parameters(), lr=task["lr"], momentum=0.9, weight_decay=5e-4, nesterov=True)
    else:
        opt = torch.optim.AdamW(model.parameters(), lr=task["lr"], weight_decay=0.05)
    steps = task["epochs"] * math.ceil(len(train) / task["batch_size"])
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=task["lr"], total_steps=steps, pct_start=0.15)
    batcher = Batcher(train, runtime, augment=task["augment"], seed=0)
    start = time.perf_counter()
    model.train()
    for _ in range(task["epochs"]):
        for x, y, _ids in batcher.epoch(torch.arange(len(train)), task["batch_size"]):
            with runtime.autocast():
                loss = F.cross_entropy(model(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
    seconds = time.perf_counter() - start
    work.mkdir(parents=True, exist_ok=True)
    torch.save({"state": model.state_dict(), "seconds": seconds}, path)
    return model.eval(), seconds


# ----------------------------------------------------------------------------- runs


def parse_variants(methods: str, variants: list[str]) -> dict[str, tuple[str, dict]]:
    """``rem,ga`` plus ``name=method:key=value,key=value`` -> {name: (method, overrides)}."""
    out = {m: (m, {}) for m in methods.split(",") if m}
    for spec in variants:
        name, _, rest = spec.partition("=")
        method, _, sets = rest.partition(":")
        out[name] = (method, apply_overrides({}, [s for s in sets.split(",") if s]))
    return out


def run_key(task: str, variant: str, method: str, overrides: dict, rate: float, seed: int, code: str,
            precision: str = "auto") -> str:
    parts = [task, variant, method, overrides, rate, seed, code] + ([] if precision == "auto" else [precision])
    return json.dumps(parts, sort_keys=True)


def sweep(a) -> None:
    out = Path(a.out)
    done = set()
    if out.is_file():
        done = {r["key"] for r in map(json.loads, out.read_text().splitlines()) if r.get("key")}
    code = code_version()
    variants = parse_variants(a.methods, a.variant or [])
    tasks = [t for t in load_tasks() if (a.split == "all" or t["split"] == a.split)
             and (not a.tasks or t["name"] in a.tasks.split(","))]
    for task in tasks:
        corrupted, test = task_data(task)
        train = corrupted.train
        runtime = task_runtime(task, a.precision)
        model, train_seconds = train_user_model(task, train, runtime, Path(a.work))
        evaluate = Evaluator(corrupted, test, runtime)
        trained = evaluate(model)
        print(f"# {task['name']} ({task['split']}): trained in {train_seconds:.0f}s: "
              f"{json.dumps({k: round(v, 2) for k, v in trained.items() if isinstance(v, float)})}", flush=True)
        for rate in (map(float, a.rates.split(",")) if a.rates else task["rates"]):
            for seed in map(int, a.seeds.split(",")):
                forget = discovered_ids(corrupted.corrupted_ids, rate, seed)
                for name, (method, overrides) in variants.items():
                    key = run_key(task["name"], name, method, overrides, rate, seed, code, a.precision)
                    if key in done:
                        continue
                    start = time.perf_counter()
                    record = {"key": key, "task": task["name"], "split": task["split"], "model": task["model"],
                              "corruption": task["corruption"], "variant": name, "method": method,
                              "overrides": overrides, "rate": rate, "seed": seed, "code": code, "trained": trained,
                              "precision": a.precision}
                    try:
                        repaired = unlearn_user_model(model, train, forget, method, runtime=runtime,
                                                      max_utility_drop=None, expand_seed=seed, seed=seed, **overrides)
                    except NonFiniteLossError as exc:  # a diverging run is a result of the setting: recorded
                        record.update(status="diverged", error=str(exc), seconds=time.perf_counter() - start)
                        with out.open("a") as f:
                            f.write(json.dumps(record) + "\n")
                        print(f"{task['name']:<34} {rate:<4} {name:<14} diverged: {exc}", flush=True)
                        continue
                    metrics = evaluate(runtime.prepare(repaired.model).eval(), forget)
                    record.update(status="ok", metrics=metrics, before=repaired.before, after=repaired.after,
                                  retain_drop=repaired.result.utility_drop, selected=repaired.result.selected,
                                  seconds=time.perf_counter() - start)
                    with out.open("a") as f:
                        f.write(json.dumps(record) + "\n")
                    m = metrics
                    asr = "" if m.get("attack_success") is None else f" asr {m['attack_success']:.1f}"
                    print(f"{task['name']:<34} {rate:<4} {name:<14} score {m['score']:5.1f} healed {m['healed']:5.1f} "
                          f"utility {m['utility']:5.1f} (trained {trained['utility']:5.1f}){asr} "
                          f"[{record['seconds']:.0f}s, {repaired.result.selected}]", flush=True)


# ----------------------------------------------------------------------------- table


def table(a) -> None:
    rows = [json.loads(line) for f in a.records for line in Path(f).read_text().splitlines()]
    for r in rows:  # runs at another precision are columns of their own: name@fp32
        if r.get("precision", "auto") != "auto":
            r["variant"] += "@" + r["precision"]
    if a.code:
        rows = [r for r in rows if r["code"] in a.code.split(",")]
    if a.split != "all":
        rows = [r for r in rows if r["split"] == a.split]
    wanted = a.variants.split(",") if a.variants else sorted({r["variant"] for r in rows})
    latest = {}  # a rerun of a run (same task, rate, variant and seed; newer code) replaces it
    for r in rows:
        latest[r["task"], r["rate"], r["variant"], r["seed"]] = r
    by = defaultdict(list)  # (task, rate, variant) -> runs over seeds
    for r in latest.values():
        by[r["task"], r["rate"], r["variant"]].append(r)
    cells = sorted({(r["split"], r["task"], r["rate"]) for r in rows}, key=lambda c: (c[0] != "dev", c[1], c[2]))
    labels = dict(pair.split("=", 1) for pair in a.labels.split(",")) if a.labels else {}
    print("| split | task | rate | " + " | ".join(labels.get(v, v) for v in wanted) + " |")
    print("|---|---|---:|" + "---:|" * len(wanted))
    means = defaultdict(lambda: defaultdict(list))  # split -> variant -> cell scores
    common = a.mean_over.split(",") if a.mean_over else []  # the means only over cells where these all ran
    for split, task, rate in cells:
        counted = all(by.get((task, rate, v)) for v in common)
        parts = []
        for v in wanted:
            runs = by.get((task, rate, v))
            if not runs:
                parts.append("–")
                continue
            if any(r.get("status") == "diverged" for r in runs):
                parts.append("diverged (0)")
                if counted:
                    means[split][v].append(0.0)
                continue
            score = statistics.mean(r["metrics"]["score"] for r in runs)
            drop = statistics.mean(r["trained"]["utility"] - r["metrics"]["utility"] for r in runs)
            asr = [r["metrics"]["attack_success"] for r in runs if r["metrics"].get("attack_success") is not None]
            text = f"{score:.1f} (−{drop:.1f}" if drop >= 0 else f"{score:.1f} (+{-drop:.1f}"
            text += f", asr {statistics.mean(asr):.0f})" if asr else ")"
            text += f" ×{len(runs)}" if len(runs) > 1 else ""
            parts.append(text)
            if counted:
                means[split][v].append(score)
        print(f"| {split} | {task} | {rate:g} | " + " | ".join(parts) + " |")
    for split, per in means.items():
        n = max(len(s) for s in per.values())
        print(f"| **{split} mean** | ({n} cells) | | " + " | ".join(
            f"**{statistics.mean(per[v]):.1f}**" + ("" if len(per[v]) == n else f" ({len(per[v])})") if per.get(v)
            else "–" for v in wanted) + " |")
    print("\nEach entry: score (healed x utility / 100), its utility change against the trained model, and attack "
          "success for the poison; mean over seeds (×n: n seeds). A run that diverged (NaN loss) counts as score 0.")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--split", choices=("dev", "held-out", "all"), default="dev", help="the tasks run, or tabled")
    p.add_argument("--tasks", help="comma-separated task names (default: every task of --split)")
    p.add_argument("--methods", default="rem,rem-official,finetune,ga")
    p.add_argument("--variant", action="append", help="name=method:key=value,... (repeatable)")
    p.add_argument("--seeds", default="0", help="discovery, expansion and unlearning seeds")
    p.add_argument("--rates", help="discovery rates (default: the task's, 0.1 and 0.5)")
    p.add_argument("--precision", default="auto", choices=("auto", "bf16", "fp32"),
                   help="unlearning and evaluation precision (auto: bf16 autocast); trained models are shared")
    p.add_argument("--out", default=str(RECORDS))
    p.add_argument("--work", default=str(WORK), help="cache of the trained models")
    p.add_argument("--table", action="store_true", help="print the table of --records instead of running")
    p.add_argument("--records", nargs="*", default=[str(RECORDS)])
    p.add_argument("--variants", help="table columns (default: every variant in the records)")
    p.add_argument("--code", help="table: only runs of these code versions")
    p.add_argument("--mean-over", help="table: mean only over the cells where all these variants ran")
    p.add_argument("--labels", help="table: column headers for variants, e.g. 'rem-dpo-full=REM (final)'")
    a = p.parse_args()
    table(a) if a.table else sweep(a)


if __name__ == "__main__":
    main()
