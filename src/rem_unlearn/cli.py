"""The ``rem-unlearn`` command: train, evaluate, data, unlearn, discover, bench, report, methods.

Every input and output path is checked before any work; outputs are written
atomically and never over an input.  Exit status: 0 success; 1 an internal
error (a bug: Python prints the traceback) or a benchmark with failed cells;
2 a user mistake (one line on stderr, nothing written); 3 ``unlearn`` found
no round better than the original model, or its result lost more retain
accuracy than ``--max-utility-drop`` allows (nothing written); 141 the reader
of stdout went away.  ``--debug`` shows the traceback of any error.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shlex
import sys
from pathlib import Path

from .bench.cli import add_bench_parser
from .config import (CORRUPTION_KINDS, DATASET_NAMES, ConfigError, ExperimentConfig, apply_overrides,
                     load_config, to_dict)
from .errors import EXIT_BROKEN_PIPE, EXIT_NOT_IMPROVED, EXIT_USER, MAX_UTILITY_DROP, UserError, UtilityDropError
from .files import PathError, check_input, check_output, check_writable_folder
from .ids import read_ids
from .tracking import add_tracking_args

log = logging.getLogger("rem_unlearn")

OVERRIDE_HELP = ("config overrides as dotted key=value, e.g. corruption.kind=poison train.epochs=5 "
                 f"(datasets: {', '.join(DATASET_NAMES)}; corruptions: {', '.join(CORRUPTION_KINDS)})")
MODEL_SUFFIXES = (".safetensors",)  # the format `unlearn` writes
FIGURE_SUFFIXES = (".png", ".pdf", ".svg", ".jpg", ".jpeg")
FORCE_HELP = "replace an existing output file (an input is never replaced)"


class ArgumentParser(argparse.ArgumentParser):
    """argparse with a one-line error (argparse names the valid choices) and exit status 2."""

    def error(self, message: str):
        self.exit(EXIT_USER, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


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


def add_user_model_args(p: argparse.ArgumentParser):
    """``--model``, ``--model-kwargs``, ``--hf-model``, ``--train-data``, ``--mean``, ``--std``, ``--flip``
    (unlearn, discover)."""
    g = p.add_argument_group("your own model (instead of a preset's)")
    g.add_argument("--model", metavar="MODULE:FACTORY",
                   help="callable returning your untrained nn.Module, e.g. mypkg.nets:Net or nets.py:make_net; "
                        "--checkpoint then holds its state_dict (.safetensors, or .pt/.pth via weights_only)")
    g.add_argument("--model-kwargs", metavar="JSON", help='keyword arguments for the factory, e.g. \'{"num_classes": 10}\'')
    g.add_argument("--hf-model", metavar="DIR",
                   help="a Hugging Face image classifier saved with save_pretrained (needs rem-unlearn[hf]); its "
                        "image processor's normalisation is used (with unlearn, --out is then a save_pretrained "
                        "folder)")
    g.add_argument("--train-data", metavar="PATH",
                   help="the training set: a .npz (images, labels, optional ids/mean/std/class_names) or a folder "
                        "<class>/<image> (ids = positions in the sorted file list)")
    g.add_argument("--mean", help="per-channel normalisation your model was trained with, e.g. 0.49,0.48,0.45 "
                                  "(default: the .npz's, else the training set's own)")
    g.add_argument("--std", help="per-channel std, as --mean")
    g.add_argument("--flip", action="store_true", help="horizontal flips are a valid augmentation for this data")
    return g


def experiment_of(args) -> tuple[ExperimentConfig, dict | None]:
    """The experiment of ``--checkpoint``'s sidecar (and the sidecar), else of ``--preset``/``--config``/``--set``."""
    from .experiment import checkpoint_experiment

    if args.checkpoint:
        check_input(args.checkpoint, "--checkpoint")
        return checkpoint_experiment(args.checkpoint)
    return experiment_config(args), None


def model_of(args, task, meta: dict | None):
    """The ``--checkpoint`` model when one was given, else the task's trained model."""
    from .experiment import checkpoint_model

    return task.model if meta is None else checkpoint_model(args.checkpoint, meta, task)


def model_inputs(args) -> list[Path]:
    """Every file the command reads: an output may never be one of them."""
    from .checkpoint import sidecar_path

    files = [getattr(args, name, None) for name in ("checkpoint", "train_data", "forget_ids", "config", "hf_model")]
    if getattr(args, "checkpoint", None):
        files.append(sidecar_path(Path(args.checkpoint)))
    module = (getattr(args, "model", None) or "").rpartition(":")[0]
    if module.endswith(".py"):
        files.append(module)
    return [Path(f) for f in files if f]


def check_model_output(out: str | Path, inputs: list[Path], force: bool, cache_dir: str | None = None) -> Path:
    """``--out`` and its JSON sidecar: a ``.safetensors`` path that is no input, no folder and not taken."""
    from .checkpoint import sidecar_path
    from .experiment import models_dir

    out = check_output(out, "--out", suffixes=MODEL_SUFFIXES, inputs=inputs, force=force)
    check_output(sidecar_path(out), f"--out {out}: its sidecar", inputs=inputs, force=force)
    if cache_dir:
        models = os.path.realpath(models_dir(cache_dir))
        if os.path.realpath(out).startswith(models + os.sep):
            raise PathError(f"--out {out} is inside the model cache {models}; choose a path outside it")
    return out


def save_model_output(model, out: Path, meta: dict, inputs: list[Path], force: bool) -> None:
    """Write the unlearned model, checking ``--out`` once more: the run took a while."""
    from .checkpoint import save_checkpoint

    check_model_output(out, inputs, force)
    save_checkpoint(model, out, meta)


def not_improved(method: str) -> int:
    print(f"rem-unlearn unlearn: no round of {method} improved on the original model (its model selection kept "
          "the start), so nothing was written; try a lower learning rate (--set optim.lr=...) or more epochs "
          "(--set epochs=...), or --set select_best=false to keep the last round", file=sys.stderr)
    return EXIT_NOT_IMPROVED


def utility_dropped(exc: UtilityDropError) -> int:
    print(f"rem-unlearn unlearn: {exc}, so nothing was written; try another method (--method finetune), a lower "
          f"learning rate (--set optim.lr=...) or fewer epochs, or accept it with --max-utility-drop "
          f"{int(exc.drop) + 1}", file=sys.stderr)
    return EXIT_NOT_IMPROVED


def max_drop(text: str) -> float | None:
    """``--max-utility-drop``: points of retain accuracy (>= 0), or ``none``."""
    if text.lower() == "none":
        return None
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of points >= 0 or none")
    return value


def cmd_train(args) -> int:
    from .experiment import prepare
    from .metrics import format_table

    cfg = experiment_config(args)
    task = prepare(cfg)
    print(f"checkpoint: {task.checkpoint}  (trained in {task.train_seconds:.1f}s)")
    print(format_table({"trained": task.evaluate(task.model)}))
    return 0


def cmd_evaluate(args) -> int:
    from .api import forget_rows
    from .experiment import prepare
    from .files import atomic_write_json
    from .metrics import format_table

    inputs = model_inputs(args)
    cfg, meta = experiment_of(args)
    if args.json:
        check_output(args.json, "--json", suffixes=(".json",), inputs=inputs, force=args.force)
    forget = read_ids(args.forget_ids) if args.forget_ids else None
    task = prepare(cfg)
    model = model_of(args, task, meta)
    if forget is not None:
        forget_rows(task.corrupted.train, forget)
    metrics = task.evaluate(model, forget)
    print(format_table({"model": metrics}))
    if args.json:
        check_output(args.json, "--json", suffixes=(".json",), inputs=inputs, force=args.force)
        atomic_write_json(args.json, {"metrics": metrics, "config": to_dict(task.cfg)})
        print(f"metrics written to {args.json}")
    return 0


def cmd_data(args) -> int:
    from .experiment import corrupted_data
    from .report.examples import plot_corrupted_examples

    cfg = experiment_config(args)
    if args.n < 1:
        raise ConfigError(f"--n must be at least 1, got {args.n}")
    out = check_output(args.out, "--out", suffixes=FIGURE_SUFFIXES, inputs=model_inputs(args), force=args.force)
    corrupted, test = corrupted_data(cfg)
    train = corrupted.train
    print(f"dataset      {train.name}: {len(train)} train / {len(test)} test images, "
          f"{train.channels}x{train.image_size}x{train.image_size}, {train.num_classes} classes")
    print(f"corruption   {corrupted.kind}: {len(corrupted.corrupted_ids)} samples "
          f"({100 * len(corrupted.corrupted_ids) / len(train):.1f} %) {corrupted.info or ''}")
    rows = corrupted.corrupted_rows
    changed = int((train.labels[rows] != corrupted.true_labels[rows]).sum())
    print(f"labels       {changed} of {len(rows)} corrupted samples carry a wrong label")
    plot_corrupted_examples(corrupted, out, n=args.n)
    print(f"grid of corrupted examples: {out}")
    return 0


def cmd_unlearn(args) -> int:
    from .api import forget_rows, unlearn
    from .experiment import method_overrides, prepare
    from .methods.registry import method_config
    from .metrics import format_table
    from .models import discard
    from .tracking import tracked

    overrides = apply_overrides({}, args.set or [])
    if getattr(method_config(args.method, overrides), "ideal", False):
        raise ConfigError(f"--method {args.method} is the benchmark's oracle ablation (it needs every corrupted "
                          "id); run it with `rem-unlearn bench`")
    inputs = model_inputs(args)
    if args.model or args.train_data or args.hf_model:
        return _unlearn_user_model(args, inputs, overrides)
    cfg, meta = experiment_of(args)
    out = check_model_output(args.out, inputs, args.force, cfg.runtime.cache_dir)
    log_dir = _log_dir(args)
    forget = read_ids(args.forget_ids)
    task = prepare(cfg)
    model = model_of(args, task, meta)
    rows = forget_rows(task.corrupted.train, forget)  # validate before any work, nothing is written on error
    params = {"command": "unlearn", "config": to_dict(task.cfg), "method": args.method,
              "method_config": to_dict(method_config(args.method, overrides)), "n_forget": len(rows)}
    with tracked(args.log, log_dir, f"unlearn_{args.method}_{cfg.corruption.kind}", params,
                 task.evaluate.train_batcher, rows) as observer:
        result = unlearn(model, task.corrupted.train, forget, args.method, runtime=task.runtime,
                         pretrain=task.cfg.train, on_epoch=observer, max_utility_drop=args.max_utility_drop,
                         **method_overrides(task.cfg, overrides))
        metrics = task.evaluate(result.model, forget)
        if observer is not None:
            observer.finish(result.history, {f"after/{k}": v for k, v in metrics.items()})
    print(format_table({"trained": task.evaluate(task.model, forget), args.method: metrics}))
    if result.improved is False:
        return not_improved(args.method)
    final = result.model
    if not args.keep_capacity:
        try:
            final = discard(result.model)
        except TypeError:
            pass
    save_model_output(final, out, {"config": to_dict(task.cfg), "method": args.method,
                                   "method_config": result.config, "forget_ids": forget.tolist(), "metrics": metrics,
                                   "wall_time_s": result.wall_time_s,
                                   "source_checkpoint": str(args.checkpoint or task.checkpoint)}, inputs, args.force)
    print(f"unlearned model written to {out} ({result.wall_time_s:.1f}s)")
    return 0


def _floats(text: str | None, what: str):
    if text is None:
        return None
    try:
        return tuple(float(v) for v in text.split(","))
    except ValueError:
        raise ConfigError(f"{what} must be comma-separated numbers, got {text!r}") from None


def _model_kwargs(text: str | None) -> dict:
    try:
        kwargs = json.loads(text) if text else {}
    except json.JSONDecodeError as exc:
        raise ConfigError(f"--model-kwargs is not valid JSON ({exc})") from None
    if not isinstance(kwargs, dict):
        raise ConfigError(f"--model-kwargs must be a JSON object of keyword arguments, got {text!r}")
    return kwargs


def _check_user_model_args(args) -> None:
    """``--model`` needs its checkpoint; ``--hf-model`` brings its own weights; both need ``--train-data``."""
    if args.hf_model:
        clash = [flag for flag, v in (("--model", args.model), ("--checkpoint", args.checkpoint),
                                      ("--model-kwargs", args.model_kwargs),
                                      ("--keep-capacity", getattr(args, "keep_capacity", False))) if v]
        if clash:
            raise ConfigError(f"--hf-model reads the model and its weights from its folder and writes a "
                              f"save_pretrained folder; drop {', '.join(clash)}")
        if not args.train_data:
            raise ConfigError("--hf-model needs --train-data (the training set as .npz or an image folder)")
        check_input(args.hf_model, "--hf-model", folder_ok=True)
    else:
        missing = [flag for flag, v in (("--model", args.model), ("--checkpoint", args.checkpoint),
                                        ("--train-data", args.train_data)) if not v]
        if missing:
            raise ConfigError(f"a user model needs --model, --checkpoint and --train-data; missing {', '.join(missing)}")
        check_input(args.checkpoint, "--checkpoint")
    check_input(args.train_data, "--train-data", folder_ok=True)


def _log_dir(args, base: str | Path = ".") -> Path | None:
    """``--log-dir`` (default under ``base``), checked with the tracker's package before any work."""
    from .tracking import check_tracker, default_log_dir

    if not getattr(args, "log", None):
        return None
    log_dir = Path(args.log_dir) if args.log_dir else default_log_dir(args.log, base)
    check_tracker(args.log, log_dir)
    return log_dir


def _print_expansion(report: dict[str, str], prefix: str = "") -> None:
    """What ``expand`` did, in one line: counts per kind and the layers it skipped."""
    from .models.expand import expansion_summary

    names = {k[len(prefix):] if prefix and k.startswith(prefix) else k: v for k, v in report.items()}
    print(f"expand: {expansion_summary(names)}", flush=True)


def _load_user_model(args):
    """``(runtime, train, model, forget, kwargs)`` of a user's ``--model`` or ``--hf-model``; the forget ids are
    validated against the training set before the model is built."""
    from dataclasses import replace

    import torch

    from .api import forget_rows, match_classes
    from .checkpoint import load_weights
    from .config import RuntimeConfig
    from .data.user import load_training_set, per_channel
    from .models.factory import build_user_model
    from .training import Batcher, Runtime

    hf = bool(args.hf_model)
    forget = read_ids(args.forget_ids)
    kwargs = {} if hf else _model_kwargs(args.model_kwargs)
    # channels_last stays off: arbitrary user layers are not all safe with it on CPU.
    runtime = Runtime.from_config(RuntimeConfig(device=args.device or "auto", channels_last=False))
    train = load_training_set(args.train_data, flip=args.flip)
    if hf:
        from .models.hf import from_pretrained

        model = from_pretrained(args.hf_model)
        model.check_images(train.channels, train.image_size)
        pre = model.preprocessing
        if pre.mean is not None:  # the image processor's normalisation, unless --mean/--std say otherwise
            train = replace(train, mean=per_channel(pre.mean, train.channels, "image_mean", pre.source),
                            std=per_channel(pre.std, train.channels, "image_std", pre.source))
    mean, std = _floats(args.mean, "--mean"), _floats(args.std, "--std")
    if mean or std:
        if not (mean and std):
            raise ConfigError("give both --mean and --std, or neither")
        train = replace(train, mean=per_channel(mean, train.channels, "mean", "--mean"),
                        std=per_channel(std, train.channels, "std", "--std"))
    forget_rows(train, forget)  # validated before any work; nothing is written on error
    if not hf:
        model = load_weights(build_user_model(args.model, kwargs), args.checkpoint)
    model = runtime.prepare(model)
    x, _, _ = Batcher(train, runtime).batch(torch.arange(min(2, len(train))), augment=False)
    if hf:
        model.check_images(train.channels, train.image_size, x)
    return runtime, match_classes(model, x, train), model, forget, kwargs


def _unlearn_user_model(args, inputs: list[Path], overrides: dict) -> int:
    """``--model module:factory --checkpoint w`` or ``--hf-model DIR``, with ``--train-data d``: REM (or any
    method) on a user's classifier.

    A model without partition gates is expanded first and the capacity is
    discarded at the end, so the written model has the user's own keys and
    shapes: a state_dict their code loads, or a ``save_pretrained`` folder
    that ``transformers`` loads.  The number of classes is the model's number
    of outputs.
    """
    from .api import forget_rows, unlearn_user_model
    from .checkpoint import versions
    from .files import check_output_folder
    from .methods.registry import method_config
    from .tracking import tracked
    from .training import Batcher

    _check_user_model_args(args)
    hf = bool(args.hf_model)
    if hf:
        from .models.hf import RECORD_FILE, save_pretrained, transformers_module

        transformers_module()  # the optional extra, before any work
        out = check_output_folder(args.out, "--out", inputs=inputs, force=args.force, marker=RECORD_FILE)
    else:
        out = check_model_output(args.out, inputs, args.force)
    log_dir = _log_dir(args)
    runtime, train, model, forget, kwargs = _load_user_model(args)
    rows = forget_rows(train, forget)
    prefix = "hf." if hf else ""
    layers = [prefix + n.strip() for n in args.expand_layers.split(",")] if args.expand_layers else None
    source = str(args.hf_model or args.model)
    params = {"command": "unlearn", "model": source, "train_data": str(args.train_data), "method": args.method,
              "method_config": to_dict(method_config(args.method, overrides)), "n_forget": len(rows),
              "expand": {"how": args.expand_how, "width": args.expand_width, "p_mem": args.p_mem,
                         "seed": args.seed}}
    with tracked(args.log, log_dir, f"unlearn_{args.method}_{Path(source.rpartition(':')[0] or source).name}",
                 params, Batcher(train, runtime), rows) as observer:
        repaired = unlearn_user_model(model, train, forget, args.method, runtime=runtime,
                                      keep_capacity=args.keep_capacity, expand_layers=layers,
                                      expand_width=args.expand_width, p_mem=args.p_mem, expand_seed=args.seed,
                                      expand_how=args.expand_how,
                                      on_expand=lambda report: _print_expansion(report, prefix),
                                      on_epoch=observer, max_utility_drop=args.max_utility_drop, **overrides)
        result, before, after = repaired.result, repaired.before, repaired.after
        if observer is not None:
            observer.finish(result.history, {f"after/{k}": v for k, v in after.items()})
    print(f"{'':<10}{'forget_accuracy':>17}{'retain_accuracy':>17}")
    for name, row in (("trained", before), (args.method, after)):
        print(f"{name:<10}{row['forget_accuracy']:>17.2f}{row['retain_accuracy']:>17.2f}")
    if result.improved is False:
        return not_improved(args.method)
    meta = {"train_data": str(args.train_data), "method": args.method, "method_config": result.config,
            "forget_ids": forget.tolist(), "num_classes": train.num_classes, "before": before, "after": after,
            "wall_time_s": result.wall_time_s, "expansion_report": repaired.expansion_report}
    if hf:
        save_pretrained(result.model, out, {**meta, "mean": train.mean, "std": train.std, "versions": versions()},
                        force=args.force, inputs=inputs)
        print(f"unlearned model written to {out} (a save_pretrained folder; {result.wall_time_s:.1f}s)")
        return 0
    save_model_output(repaired.model.cpu(), out, {"model": args.model, "model_kwargs": kwargs, **meta,
                                                  "source_checkpoint": str(args.checkpoint)}, inputs, args.force)
    print(f"unlearned model written to {out} ({result.wall_time_s:.1f}s; "
          f"{'with' if args.keep_capacity else 'without'} the redirection capacity)")
    return 0


def cmd_discover(args) -> int:
    """Rank every training id by how likely it shares the known ids' corruption; write the chosen ids."""
    from .api import forget_rows
    from .discovery import discover, make_scorer
    from .experiment import prepare

    overrides = apply_overrides({}, args.set or [])
    make_scorer(args.scorer, overrides)  # a bad key or a missing extra: before any work
    inputs = model_inputs(args)
    if args.model or args.hf_model or args.train_data:
        _check_user_model_args(args)
    elif args.checkpoint:
        check_input(args.checkpoint, "--checkpoint")
    outputs = _discover_outputs(args, inputs)
    truth = None
    if args.model or args.hf_model or args.train_data:
        runtime, train, model, known, _ = _load_user_model(args)
        pretrain = None
    else:
        cfg, meta = experiment_of(args)
        known = read_ids(args.forget_ids)
        task = prepare(cfg)
        model = model_of(args, task, meta)
        train, runtime, pretrain = task.corrupted.train, task.runtime, task.cfg.train
        forget_rows(train, known)  # validate before any work, nothing is written on error
        truth = task.corrupted.corrupted_ids
    result = discover(model, train, known, args.scorer, args.budget, runtime=runtime, pretrain=pretrain,
                      **overrides)
    print(f"scorer {result.scorer}{' (' + result.info['chosen'] + ')' if 'chosen' in result.info else ''}: "
          f"{result.k} ids chosen ({len(result.known_ids)} known + {result.k - len(result.known_ids)} found; "
          f"rule: {result.rule}, estimated unfound corrupted samples: {result.estimated_size:.0f}) "
          f"in {result.seconds['total']:.1f}s")
    if truth is not None:
        p, r = result.precision_recall(truth)
        print(f"against the preset's ground truth (never used for scoring): precision {p:.1f} %, recall {r:.1f} %")
    _discover_outputs(args, inputs)  # once more: the run took a while
    result.write_ids(outputs[0])
    if outputs[1]:
        result.write_ranking(outputs[1])
    print(f"chosen ids written to {outputs[0]}" + (f", ranking to {outputs[1]}" if outputs[1] else ""))
    return 0


def _discover_outputs(args, inputs: list[Path]) -> tuple[Path, Path | None]:
    """``--out`` (.txt) and ``--ranking`` (.csv): checked before any work."""
    out = check_output(args.out, "--out", suffixes=(".txt",), inputs=inputs, force=args.force)
    ranking = None
    if args.ranking:
        ranking = check_output(args.ranking, "--ranking", suffixes=(".csv",), inputs=inputs, force=args.force)
    return out, ranking


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

    results = check_input(args.results_dir, "results folder", folder_ok=True)
    if not results.is_dir():
        raise PathError(f"results folder {results}: not a folder")
    out = Path(args.out or results)
    if out.exists() and not out.is_dir():
        raise PathError(f"--out {out}: not a folder")
    check_writable_folder(out, f"--out {out}")
    records = load_records(results)
    if not records:
        raise PathError(f"no records under {results / 'records'}; run `rem-unlearn bench --results {results}` first")
    paths = build_report(records, out, results_dir=results)
    print(f"report: {paths['index']}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    from .discovery import scorer_names
    from .methods import method_names

    common = argparse.ArgumentParser(add_help=False)  # accepted after the sub-command too
    common.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS, help="log more")
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                        help="show the full traceback of any error")
    parser = ArgumentParser(prog="rem-unlearn", description=__doc__, parents=[common],
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)

    def command(name: str, **kwargs) -> argparse.ArgumentParser:
        return sub.add_parser(name, parents=[common], **kwargs)

    p = command("train", help="train (or load from the cache) the corrupted model")
    add_experiment_args(p)
    p.set_defaults(func=cmd_train)

    p = command("evaluate", help="healed / utility / score / ASR of a model")
    add_experiment_args(p)
    p.add_argument("--checkpoint", help="a .safetensors checkpoint with its JSON sidecar")
    p.add_argument("--forget-ids", help="ids file for forget/retain accuracy")
    p.add_argument("--json", help="write metrics here (a .json file)")
    p.add_argument("--force", action="store_true", help=FORCE_HELP)
    p.set_defaults(func=cmd_evaluate)

    p = command("data", help="summarise a dataset and its corruption, draw corrupted examples")
    add_experiment_args(p)
    p.add_argument("--out", default="corrupted_examples.png",
                   help=f"the picture ({', '.join(FIGURE_SUFFIXES)}; default: %(default)s)")
    p.add_argument("--n", type=int, default=24, help="number of examples in the grid")
    p.add_argument("--force", action="store_true", help=FORCE_HELP)
    p.set_defaults(func=cmd_data)

    p = command("unlearn", help="unlearn known corrupted samples from a trained model")
    add_experiment_args(p)
    p.add_argument("--checkpoint", help="trained model (default: the cached model of the config)")
    p.add_argument("--forget-ids", required=True, help=".txt/.csv/.npy file of sample ids")
    p.add_argument("--method", default="rem", choices=method_names(), help="unlearning method")
    p.add_argument("--set", action="append", metavar="key=value", help="method config override (repeatable)")
    p.add_argument("--out", required=True,
                   help="output .safetensors (the unlearned model); its JSON sidecar goes next to it (.json); with "
                        "--hf-model a folder (save_pretrained, with rem_unlearn.json inside)")
    p.add_argument("--force", action="store_true", help=FORCE_HELP)
    p.add_argument("--keep-capacity", action="store_true", help="write the partitioned model, not the discarded one")
    p.add_argument("--max-utility-drop", type=max_drop, default=MAX_UTILITY_DROP, metavar="POINTS",
                   help="refuse (exit 3, nothing written) a result whose retain accuracy fell more than this many "
                        "points below the original's (default: %(default)s; none accepts any drop)")
    g = add_user_model_args(p)
    g.add_argument("--expand-layers", help="comma-separated layer names to expand (widen: the layers whose output "
                                           "group gets units; default: every group the tracer can widen, else "
                                           "every Conv2d and Linear but the classifier)")
    g.add_argument("--expand-how", choices=("auto", "widen", "branch"), default="auto",
                   help="widen: add real units to the traced model's channel groups; branch: a masked branch "
                        "beside each layer; auto (default): widen where the model traces, else branches")
    g.add_argument("--expand-width", type=float, default=0.5, help="added units per channel group (or "
                                                                   "layer), as a fraction of its units "
                                                                   "(default: %(default)s)")
    g.add_argument("--p-mem", type=float, default=0.2, help="keep-probability of an added unit (default: %(default)s)")
    g.add_argument("--seed", type=int, default=0, help="mask and branch-init seed (default: %(default)s)")
    add_tracking_args(p, "runs/ (tensorboard) or mlflow.db (mlflow) in the current folder")
    p.set_defaults(func=cmd_unlearn)

    p = command("discover", help="from a few known corrupted ids to a ranked list and a forget set")
    add_experiment_args(p)
    p.add_argument("--checkpoint", help="trained model (default: the cached model of the config)")
    p.add_argument("--forget-ids", required=True, help="the known corrupted ids: a .txt/.csv/.npy file")
    p.add_argument("--scorer", default="auto", choices=scorer_names(),
                   help="how to rank (default: %(default)s; see docs/discovery.md)")
    p.add_argument("--budget", type=int, help="number of ids to choose, the known ones included "
                                              "(default: the stopping rule's estimate)")
    p.add_argument("--set", action="append", metavar="key=value", help="scorer config override (repeatable)")
    p.add_argument("--out", required=True, help="the chosen ids, one per line (.txt; `unlearn --forget-ids` reads it)")
    p.add_argument("--ranking", help="every id with its score and rank (.csv)")
    p.add_argument("--force", action="store_true", help=FORCE_HELP)
    add_user_model_args(p)
    p.set_defaults(func=cmd_discover)

    p = command("methods", help="list registered methods")
    p.set_defaults(func=cmd_methods)

    p = command("report", help="tables, heatmaps and index.html from a results folder")
    p.add_argument("results_dir")
    p.add_argument("--out", help="output folder (default: the results folder)")
    p.set_defaults(func=cmd_report)

    add_bench_parser(sub, cmd_bench, parents=[common])
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    args.command_line = shlex.join(["rem-unlearn", *(sys.argv[1:] if argv is None else argv)])  # for records
    debug = getattr(args, "debug", False)  # --debug and -v are accepted before or after the sub-command
    verbose = getattr(args, "verbose", False) or debug
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, format="%(message)s")
    try:
        status = args.func(args)
        sys.stdout.flush()  # a closed pipe shows here, not in the interpreter's exit
        return status
    except UserError as exc:
        if debug:
            raise
        print(f"rem-unlearn {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_USER
    except UtilityDropError as exc:
        if debug:
            raise
        return utility_dropped(exc)
    except BrokenPipeError:
        if debug:
            raise
        # The reader went away (`rem-unlearn methods | head -3`): stop quietly, as other Unix tools do.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_BROKEN_PIPE


if __name__ == "__main__":
    sys.exit(main())
