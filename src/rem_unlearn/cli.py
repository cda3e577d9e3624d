"""The ``rem-unlearn`` command: train, evaluate, data, unlearn, bench, report, methods."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from .config import (CORRUPTION_KINDS, DATASET_NAMES, ConfigError, ExperimentConfig, apply_overrides,
                     load_config, to_dict)

log = logging.getLogger("rem_unlearn")

OVERRIDE_HELP = ("config overrides as dotted key=value, e.g. corruption.kind=poison train.epochs=5 "
                 f"(datasets: {', '.join(DATASET_NAMES)}; corruptions: {', '.join(CORRUPTION_KINDS)})")


def experiment_config(args) -> ExperimentConfig:
    from .presets import experiment_preset

    base = experiment_preset(args.preset)
    overrides = list(args.overrides)
    if getattr(args, "device", None):
        overrides.append(f"runtime.device={args.device}")
    return load_config(ExperimentConfig, args.config, overrides, base=base)


def add_experiment_args(p: argparse.ArgumentParser) -> None:
    from .presets import EXPERIMENTS

    p.add_argument("--config", help="TOML/YAML experiment config file")
    p.add_argument("--preset", default="fashion-mnist", choices=sorted(EXPERIMENTS),
                   help="experiment preset the config and overrides apply to (default: %(default)s)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), help="compute device")
    p.add_argument("overrides", nargs="*", metavar="key=value", help=OVERRIDE_HELP)


def cmd_train(args) -> int:
    from .experiment import prepare
    from .metrics import format_table

    cfg = experiment_config(args)
    task = prepare(cfg)
    print(f"checkpoint: {task.checkpoint}  (trained in {task.train_seconds:.1f}s)")
    print(format_table({"trained": task.evaluate(task.model)}))
    return 0


def read_ids(path: str | Path):
    """Sample ids from a .npy file, or a .txt/.csv file (one or more per line, '#' comments, optional header)."""
    import numpy as np
    import torch

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"forget-ids file not found: {path}")
    if path.suffix == ".npy":
        return torch.as_tensor(np.load(path, allow_pickle=False)).long().flatten()
    ids: list[int] = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        tokens = line.split("#", 1)[0].replace(",", " ").split()
        for token in tokens:
            try:
                ids.append(int(token))
            except ValueError:
                if number == 1 and not ids:
                    break  # a CSV header such as "id"
                raise ValueError(f"{path}:{number}: {token!r} is not an integer sample id") from None
    return torch.tensor(ids, dtype=torch.long)


def cmd_evaluate(args) -> int:
    from .checkpoint import load_weights, read_meta
    from .config import from_dict
    from .experiment import prepare
    from .metrics import format_table

    if args.checkpoint:
        meta = read_meta(args.checkpoint)
        cfg = from_dict(ExperimentConfig, meta["config"])
        cfg.validate()
        task = prepare(cfg)
        model = _model_from_meta(meta, task)
        load_weights(model, args.checkpoint)
        model = task.runtime.prepare(model).eval()
    else:
        task = prepare(experiment_config(args))
        model = task.model
    forget = read_ids(args.forget_ids) if args.forget_ids else None
    metrics = task.evaluate(model, forget)
    print(format_table({"model": metrics}))
    if args.json:
        from .checkpoint import atomic_write_json

        atomic_write_json(Path(args.json), {"metrics": metrics, "config": to_dict(task.cfg)})
        print(f"metrics written to {args.json}")
    return 0


def _model_from_meta(meta: dict, task):
    """Rebuild the module a checkpoint was saved from (a partitioned or an exported model)."""
    from .models import ResNet9

    arch = meta.get("arch")
    cls = meta.get("class")
    if cls == "ResNet9" and arch:
        return ResNet9(**arch)
    if cls == "ViT" and arch:
        from .models.vit import ViT

        return ViT(**arch)
    return type(task.model)(**task.model.arch)


def cmd_data(args) -> int:
    from .experiment import corrupted_data
    from .report.examples import plot_corrupted_examples

    cfg = experiment_config(args)
    corrupted, test = corrupted_data(cfg)
    train = corrupted.train
    print(f"dataset      {train.name}: {len(train)} train / {len(test)} test images, "
          f"{train.channels}x{train.image_size}x{train.image_size}, {train.num_classes} classes")
    print(f"corruption   {corrupted.kind}: {len(corrupted.corrupted_ids)} samples "
          f"({100 * len(corrupted.corrupted_ids) / len(train):.1f} %) {corrupted.info or ''}")
    rows = corrupted.corrupted_rows
    changed = int((train.labels[rows] != corrupted.true_labels[rows]).sum())
    print(f"labels       {changed} of {len(rows)} corrupted samples carry a wrong label")
    out = Path(args.out)
    plot_corrupted_examples(corrupted, out, n=args.n)
    print(f"grid of corrupted examples: {out}")
    return 0


def cmd_unlearn(args) -> int:
    from .api import forget_rows, unlearn
    from .checkpoint import load_weights, read_meta, save_checkpoint
    from .config import from_dict
    from .experiment import prepare
    from .metrics import format_table
    from .methods import get_method
    from .models import discard

    get_method(args.method)  # unknown names fail before any work
    forget = read_ids(args.forget_ids)
    overrides = apply_overrides({}, args.set or [])
    if args.model or args.train_data:
        return _unlearn_user_model(args, forget, overrides)
    if args.checkpoint:
        meta = read_meta(args.checkpoint)
        cfg = from_dict(ExperimentConfig, meta["config"])
        cfg.validate()
        task = prepare(cfg)
        model = _model_from_meta(meta, task)
        load_weights(model, args.checkpoint)
    else:
        task = prepare(experiment_config(args))
        model = task.model
    forget_rows(task.corrupted.train, forget)  # validate before any work, nothing is written on error
    out = Path(args.out)
    result = unlearn(model, task.corrupted.train, forget, args.method, runtime=task.runtime,
                     pretrain=task.cfg.train, patch_size=task.cfg.corruption.patch_size, **overrides)
    metrics = task.evaluate(result.model, forget)
    print(format_table({"trained": task.evaluate(task.model, forget), args.method: metrics}))
    final = result.model
    if not args.keep_capacity:
        try:
            final = discard(result.model)
        except TypeError:
            pass
    save_checkpoint(final, out, {"config": to_dict(task.cfg), "method": args.method, "method_config": result.config,
                                 "forget_ids": forget.tolist(), "metrics": metrics, "wall_time_s": result.wall_time_s,
                                 "source_checkpoint": str(args.checkpoint or task.checkpoint)})
    print(f"unlearned model written to {out} ({result.wall_time_s:.1f}s)")
    return 0


def _floats(text: str | None, what: str):
    if text is None:
        return None
    try:
        return tuple(float(v) for v in text.split(","))
    except ValueError:
        raise ConfigError(f"{what} must be comma-separated numbers, got {text!r}") from None


def _unlearn_user_model(args, forget, overrides: dict) -> int:
    """``--model module:factory --checkpoint w --train-data d``: REM (or any method) on a user's classifier.

    A model without partition gates is expanded first and the capacity is
    discarded at the end, so the written state_dict has the user's own keys
    and shapes and loads with their code.
    """
    from dataclasses import replace

    import torch

    from .api import forget_rows, unlearn
    from .checkpoint import load_weights, save_checkpoint
    from .config import RuntimeConfig
    from .data.user import load_training_set
    from .models import check_classifier, discard, expand, gates
    from .metrics import known_data_accuracy
    from .models.factory import build_user_model
    from .training import Batcher, Runtime

    missing = [flag for flag, v in (("--model", args.model), ("--checkpoint", args.checkpoint),
                                    ("--train-data", args.train_data)) if not v]
    if missing:
        raise ConfigError(f"a user model needs --model, --checkpoint and --train-data; missing {', '.join(missing)}")
    train = load_training_set(args.train_data, flip=args.flip)
    mean, std = _floats(args.mean, "--mean"), _floats(args.std, "--std")
    if mean or std:
        if not (mean and std) or len(mean) != train.channels or len(std) != train.channels:
            raise ConfigError(f"--mean and --std need {train.channels} value(s) each")
        train = replace(train, mean=mean, std=std)
    rows = forget_rows(train, forget)  # validated before any work; nothing is written on error
    try:
        kwargs = json.loads(args.model_kwargs) if args.model_kwargs else {}
    except json.JSONDecodeError as exc:
        raise ConfigError(f"--model-kwargs is not valid JSON ({exc})") from None
    model = load_weights(build_user_model(args.model, kwargs), args.checkpoint)
    # channels_last stays off: arbitrary user layers are not all safe with it on CPU.
    runtime = Runtime.from_config(RuntimeConfig(device=args.device or "auto", channels_last=False))
    batcher = Batcher(train, runtime)
    x, _, _ = batcher.batch(torch.arange(min(2, len(train))), augment=False)
    check_classifier(model, x, train.num_classes)
    if gates(model):
        big = model
    else:
        layers = [n.strip() for n in args.expand_layers.split(",")] if args.expand_layers else None
        big = expand(model, layers=layers, width=args.expand_width, p_mem=args.p_mem, seed=args.seed)
    before = known_data_accuracy(runtime.prepare(big), batcher, rows)
    result = unlearn(big, train, forget, args.method, runtime=runtime, **overrides)
    final = result.model if args.keep_capacity else discard(result.model)
    after = known_data_accuracy(runtime.prepare(final), batcher, rows)
    print(f"{'':<10}{'forget_accuracy':>17}{'retain_accuracy':>17}")
    for name, row in (("trained", before), (args.method, after)):
        print(f"{name:<10}{row['forget_accuracy']:>17.2f}{row['retain_accuracy']:>17.2f}")
    out = Path(args.out)
    save_checkpoint(final.cpu(), out, {"model": args.model, "model_kwargs": kwargs, "train_data": str(args.train_data),
                                       "method": args.method, "method_config": result.config,
                                       "forget_ids": forget.tolist(), "before": before, "after": after,
                                       "wall_time_s": result.wall_time_s, "source_checkpoint": str(args.checkpoint)})
    print(f"unlearned model written to {out} ({result.wall_time_s:.1f}s; "
          f"{'with' if args.keep_capacity else 'without'} the redirection capacity)")
    return 0


def cmd_methods(args) -> int:
    from .methods import get_method, method_names

    for name in method_names():
        print(f"{name:<14} {get_method(name).summary}")
    return 0


def cmd_bench(args) -> int:
    from .bench.cli import run_bench

    return run_bench(args)


def cmd_report(args) -> int:
    from .report import build_report, load_records

    records = load_records(args.results_dir)
    if not records:
        print(f"no records under {args.results_dir}/records", file=sys.stderr)
        return 1
    paths = build_report(records, args.out or args.results_dir)
    print(f"report: {paths['index']}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    from .methods import method_names

    parser = argparse.ArgumentParser(prog="rem-unlearn", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="train (or load from the cache) the corrupted model")
    add_experiment_args(p)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("evaluate", help="healed / utility / score / ASR of a model")
    add_experiment_args(p)
    p.add_argument("--checkpoint", help="a .safetensors checkpoint with its JSON sidecar")
    p.add_argument("--forget-ids", help="ids file for forget/retain accuracy")
    p.add_argument("--json", help="write metrics here")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("data", help="summarise a dataset and its corruption, draw corrupted examples")
    add_experiment_args(p)
    p.add_argument("--out", default="corrupted_examples.png")
    p.add_argument("--n", type=int, default=24, help="number of examples in the grid")
    p.set_defaults(func=cmd_data)

    p = sub.add_parser("unlearn", help="unlearn known corrupted samples from a trained model")
    add_experiment_args(p)
    p.add_argument("--checkpoint", help="trained model (default: the cached model of the config)")
    p.add_argument("--forget-ids", required=True, help=".txt/.csv/.npy file of sample ids")
    p.add_argument("--method", default="rem", choices=method_names(), help="unlearning method")
    p.add_argument("--set", action="append", metavar="key=value", help="method config override (repeatable)")
    p.add_argument("--out", required=True, help="output .safetensors (the unlearned model)")
    p.add_argument("--keep-capacity", action="store_true", help="write the partitioned model, not the discarded one")
    g = p.add_argument_group("your own model (instead of a preset's)")
    g.add_argument("--model", metavar="MODULE:FACTORY",
                   help="callable returning your untrained nn.Module, e.g. mypkg.nets:Net or nets.py:make_net; "
                        "--checkpoint then holds its state_dict (.safetensors, or .pt/.pth via weights_only)")
    g.add_argument("--model-kwargs", metavar="JSON", help='keyword arguments for the factory, e.g. \'{"num_classes": 10}\'')
    g.add_argument("--train-data", metavar="PATH",
                   help="the training set: a .npz (images, labels, optional ids/mean/std) or a folder "
                        "<class>/<image> (ids = positions in the sorted file list)")
    g.add_argument("--mean", help="per-channel normalisation your model was trained with, e.g. 0.49,0.48,0.45 "
                                  "(default: the .npz's, else the training set's own)")
    g.add_argument("--std", help="per-channel std, as --mean")
    g.add_argument("--flip", action="store_true", help="horizontal flips are a valid augmentation for this data")
    g.add_argument("--expand-layers", help="comma-separated layer names to expand "
                                           "(default: every Conv2d and Linear but the classifier)")
    g.add_argument("--expand-width", type=float, default=0.5, help="added units per layer, as a fraction of "
                                                                   "its outputs (default: %(default)s)")
    g.add_argument("--p-mem", type=float, default=0.2, help="keep-probability of an added unit (default: %(default)s)")
    g.add_argument("--seed", type=int, default=0, help="mask and branch-init seed (default: %(default)s)")
    p.set_defaults(func=cmd_unlearn)

    p = sub.add_parser("methods", help="list registered methods")
    p.set_defaults(func=cmd_methods)

    p = sub.add_parser("report", help="tables, heatmaps and index.html from a results folder")
    p.add_argument("results_dir")
    p.add_argument("--out", help="output folder (default: the results folder)")
    p.set_defaults(func=cmd_report)

    try:
        from .bench.cli import add_bench_parser

        add_bench_parser(sub, cmd_bench)
    except ImportError:
        pass
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(message)s")
    try:
        return args.func(args)
    except (ConfigError, ValueError, FileNotFoundError, KeyError, TypeError) as exc:
        if args.verbose:
            raise
        print(f"rem-unlearn {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
