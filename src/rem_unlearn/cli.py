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

from .api import unlearn
from .bench.cli import add_bench_parser, add_tune_parser, run_bench, run_tune
from .config import CORRUPTION_KINDS, DATASET_NAMES, ConfigError, apply_overrides, from_dict, to_dict
from .data.hf_dataset import DatasetColumns
from .data.store import STORE_CHOICES
from .discovery import discover, make_scorer, scorer_names
from .errors import (EXIT_BROKEN_PIPE, EXIT_NOT_IMPROVED, EXIT_NOT_REMOVED, EXIT_USER, MAX_UTILITY_DROP, UserError,
                     UtilityDropError)
from .experiment import corrupted_data, method_overrides, prepare
from .files import PathError, atomic_write_json, check_input, check_output
from .methods import get_method, method_names
from .methods.registry import method_config
from .methods.rem import REMConfig, mechanics_of
from .metrics import format_table
from .models.expand import expansion_summary
from .presets import EXPERIMENTS
from .report import build_report, load_records
from .report.examples import plot_corrupted_examples
from .tracking import add_tracking_args, tracked
from .training import Batcher
from .workflow import (UserModel, check_discovery_outputs, check_model_output, experiment_config, experiment_of,
                       input_files, load_task, report_folders, tracking_dir, write_discovery, write_task_model)

log = logging.getLogger("rem_unlearn")

OVERRIDE_HELP = ("config overrides as dotted key=value, e.g. corruption.kind=poison train.epochs=5 "
                 f"(datasets: {', '.join(DATASET_NAMES)}; corruptions: {', '.join(CORRUPTION_KINDS)})")
FIGURE_SUFFIXES = (".png", ".pdf", ".svg", ".jpg", ".jpeg")
FORCE_HELP = "replace an existing output file (an input is never replaced)"


class ArgumentParser(argparse.ArgumentParser):
    """argparse with a one-line error (argparse names the valid choices) and exit status 2."""

    def error(self, message: str):
        self.exit(EXIT_USER, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def add_experiment_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", help="TOML/YAML experiment config file")
    p.add_argument("--preset", default="fashion-mnist", choices=sorted(EXPERIMENTS),
                   help="experiment preset the config and overrides apply to (default: %(default)s)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), help="compute device")
    p.add_argument("overrides", nargs="*", metavar="key=value", help=OVERRIDE_HELP)


def add_user_model_args(p: argparse.ArgumentParser):
    """``--model``, ``--model-kwargs``, ``--hf-model``, ``--train-data``, ``--mean``, ``--std``, ``--flip``,
    ``--image-size`` (unlearn, discover)."""
    g = p.add_argument_group("your own model (instead of a preset's)")
    g.add_argument("--model", metavar="MODULE:FACTORY",
                   help="callable returning your untrained nn.Module, e.g. mypkg.nets:Net or nets.py:make_net; "
                        "--checkpoint then holds its state_dict (.safetensors, or .pt/.pth via weights_only)")
    g.add_argument("--model-kwargs", metavar="JSON",
                   help='keyword arguments for the factory, e.g. \'{"num_classes": 10}\'')
    g.add_argument("--hf-model", metavar="DIR",
                   help="a Hugging Face image classifier saved with save_pretrained (needs rem-unlearn[hf]); its "
                        "image processor's normalisation is used (with unlearn, --out is then a save_pretrained "
                        "folder)")
    g.add_argument("--train-data", metavar="PATH",
                   help="the training set: a .npz (images, labels, optional ids/mean/std/class_names) or a folder "
                        "<class>/<image> of any sizes and modes (ids = positions in the sorted file list), or a Hugging "
                        "Face dataset folder written by save_to_disk")
    g.add_argument("--mean", help="per-channel normalisation your model was trained with, e.g. 0.49,0.48,0.45 "
                                  "(default: the .npz's, else the training set's own)")
    g.add_argument("--std", help="per-channel std, as --mean")
    g.add_argument("--flip", action="store_true", help="horizontal flips are a valid augmentation for this data")
    g.add_argument("--image-size", type=int, metavar="N",
                   help="resize images of other sizes (shortest edge) and crop the centre N x N (default: the "
                        "--hf-model's image processor, else the images must already share one square size)")
    g.add_argument("--store", choices=STORE_CHOICES, default="auto",
                   help="hold an image folder or dataset in memory, or in a store on disk read a batch at a time "
                        "(default: auto, on disk when it would take more than half the available memory)")
    h = p.add_argument_group("a Hugging Face dataset as --train-data (a save_to_disk folder; rem-unlearn[datasets])")
    h.add_argument("--image-column", help="the column of images (default: the one Image feature)")
    h.add_argument("--label-column", help="the column of labels (default: the one ClassLabel, else label/labels)")
    h.add_argument("--id-column", help="the column of sample ids (default: the row index)")
    h.add_argument("--split", help="the split of a DatasetDict (default: train, or its only split)")
    return g


def experiment(args) -> dict:
    """``--preset``, ``--config``, the overrides and ``--device``: :func:`experiment_config`'s arguments."""
    return {"preset": args.preset, "config": args.config, "overrides": args.overrides, "device": args.device}


def model_inputs(args) -> list[Path]:
    """Every file the command reads: an output may never be one of them."""
    a = vars(args)
    return input_files(checkpoint=a.get("checkpoint"), train_data=a.get("train_data"), forget_ids=a.get("forget_ids"),
                       config=a.get("config"), hf_folder=a.get("hf_model"), factory=a.get("model"))


def _floats(text: str | None, what: str):
    if text is None:
        return None
    try:
        return tuple(float(v) for v in text.split(","))
    except ValueError:
        raise ConfigError(f"{what} must be comma-separated numbers, got {text!r}") from None


def _model_kwargs(text: str | None) -> dict | None:
    try:
        kwargs = json.loads(text) if text else {}
    except json.JSONDecodeError as exc:
        raise ConfigError(f"--model-kwargs is not valid JSON ({exc})") from None
    if not isinstance(kwargs, dict):
        raise ConfigError(f"--model-kwargs must be a JSON object of keyword arguments, got {text!r}")
    return kwargs if text else None


def user_model(args) -> UserModel | None:
    """``--model``/``--hf-model``/``--train-data`` as a :class:`UserModel`, checked; None without them."""
    if not (args.model or args.train_data or args.hf_model):
        return None
    source = UserModel(args.train_data, args.model, args.checkpoint, _model_kwargs(args.model_kwargs),
                       args.hf_model, _floats(args.mean, "--mean"), _floats(args.std, "--std"), args.flip,
                       args.device or "auto", args.image_size,
                       DatasetColumns(args.image_column, args.label_column, args.id_column, args.split), args.store)
    source.validate(keep_capacity=getattr(args, "keep_capacity", False))
    return source


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
    task = prepare(experiment_config(**experiment(args)))
    print(f"checkpoint: {task.checkpoint}  (trained in {task.train_seconds:.1f}s)")
    print(format_table({"trained": task.evaluate(task.model)}))
    return 0


def cmd_evaluate(args) -> int:
    inputs = model_inputs(args)
    cfg, meta = experiment_of(args.checkpoint, **experiment(args))
    if args.json:
        check_output(args.json, "--json", suffixes=(".json",), inputs=inputs, force=args.force)
    task, model, forget, _ = load_task(cfg, meta, args.checkpoint, args.forget_ids)
    metrics = task.evaluate(model, forget)
    print(format_table({"model": metrics}))
    if args.json:
        check_output(args.json, "--json", suffixes=(".json",), inputs=inputs, force=args.force)
        atomic_write_json(args.json, {"metrics": metrics, "config": to_dict(task.cfg)})
        print(f"metrics written to {args.json}")
    return 0


def cmd_data(args) -> int:
    cfg = experiment_config(**experiment(args))
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
    overrides = apply_overrides({}, args.set or [])
    method_cfg = method_config(args.method, overrides)
    if isinstance(method_cfg, REMConfig) and mechanics_of(method_cfg).ideal:
        raise ConfigError(f"--method {args.method} is the benchmark's oracle ablation (it needs every corrupted "
                          "id); run it with `rem-unlearn bench`")
    inputs = model_inputs(args)
    source = user_model(args)
    if source is not None:
        return unlearn_user_model(args, source, inputs, overrides, to_dict(method_cfg))
    cfg, meta = experiment_of(args.checkpoint, **experiment(args))
    out = check_model_output(args.out, inputs, args.force, cfg.runtime.cache_dir)
    log_dir = tracking_dir(args.log, args.log_dir)
    task, model, forget, rows = load_task(cfg, meta, args.checkpoint, args.forget_ids)
    params = {"command": "unlearn", "config": to_dict(task.cfg), "method": args.method,
              "method_config": to_dict(method_cfg), "n_forget": len(rows)}
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
    write_task_model(result, task, forget, metrics, out, args.checkpoint or task.checkpoint, inputs, args.force,
                     args.keep_capacity)
    print(f"unlearned model written to {out} ({result.wall_time_s:.1f}s)")
    return 0


def unlearn_user_model(args, source: UserModel, inputs: list[Path], overrides: dict, method_cfg: dict) -> int:
    """``--model module:factory --checkpoint w`` or ``--hf-model DIR``, with ``--train-data d``: any method on a
    user's classifier, expanded first (unless it has partition gates) and written back in its own form."""
    out = source.check_output(args.out, inputs, args.force)
    log_dir = tracking_dir(args.log, args.log_dir)
    loaded = source.load(args.forget_ids)
    prefix = "hf." if source.hf else ""
    layers = [prefix + n.strip() for n in args.expand_layers.split(",")] if args.expand_layers else None
    params = {"command": "unlearn", "model": str(source.hf_folder or source.factory),
              "train_data": str(args.train_data), "method": args.method, "method_config": method_cfg,
              "n_forget": len(loaded.forget_rows), "expand": {"how": args.expand_how, "width": args.expand_width,
                                                              "p_mem": args.p_mem, "seed": args.seed}}
    with tracked(args.log, log_dir, f"unlearn_{args.method}_{source.label}", params,
                 Batcher(loaded.train, loaded.runtime), loaded.forget_rows) as observer:
        repaired = loaded.unlearn(args.method, keep_capacity=args.keep_capacity, expand_layers=layers,
                                  expand_width=args.expand_width, p_mem=args.p_mem, expand_seed=args.seed,
                                  expand_how=args.expand_how, on_expand=lambda report: print_expansion(report, prefix),
                                  on_epoch=observer, max_utility_drop=args.max_utility_drop, **overrides)
        result = repaired.result
        if observer is not None:
            observer.finish(result.history, {f"after/{k}": v for k, v in repaired.after.items()})
    print(f"{'':<10}{'forget_accuracy':>17}{'retain_accuracy':>17}")
    for name, row in (("trained", repaired.before), (args.method, repaired.after)):
        print(f"{name:<10}{row['forget_accuracy']:>17.2f}{row['retain_accuracy']:>17.2f}")
    if result.improved is False:
        return not_improved(args.method)
    source.write(loaded, repaired, out, inputs, args.force)
    if source.hf:
        print(f"unlearned model written to {out} (a save_pretrained folder; {result.wall_time_s:.1f}s)")
    else:
        print(f"unlearned model written to {out} ({result.wall_time_s:.1f}s; "
              f"{'with' if args.keep_capacity else 'without'} the redirection capacity)")
    return 0


def print_expansion(report: dict[str, str], prefix: str = "") -> None:
    """What ``expand`` did, in one line: counts per kind and the layers it skipped."""
    names = {k[len(prefix):] if prefix and k.startswith(prefix) else k: v for k, v in report.items()}
    print(f"expand: {expansion_summary(names)}", flush=True)


def known_task(args, source: UserModel | None):
    """The model, training set, known ids, runtime, recipe (a preset's only) and, for a preset, its corrupted
    data (the ground truth, printed but never used) that ``discover`` and ``advise`` work from."""
    if source is not None:
        loaded = source.load(args.forget_ids)
        return loaded.model, loaded.train, loaded.forget_ids, loaded.runtime, None, None
    task, model, known, _ = load_task(*experiment_of(args.checkpoint, **experiment(args)), args.checkpoint,
                                      args.forget_ids)
    return model, task.corrupted.train, known, task.runtime, task.cfg.train, task.corrupted


def cmd_discover(args) -> int:
    """Rank every training id by how likely it shares the known ids' corruption; write the chosen ids."""
    overrides = apply_overrides({}, args.set or [])
    make_scorer(args.scorer, overrides)  # a bad key or a missing extra: before any work
    inputs = model_inputs(args)
    source = user_model(args)
    if source is None and args.checkpoint:
        check_input(args.checkpoint, "--checkpoint")
    out, ranking = check_discovery_outputs(args.out, args.ranking, inputs, args.force)
    model, train, known, runtime, pretrain, corrupted = known_task(args, source)
    truth = None if corrupted is None else corrupted.corrupted_ids
    result = discover(model, train, known, args.scorer, args.budget, runtime=runtime, pretrain=pretrain,
                      **overrides)
    print(f"scorer {result.scorer}{' (' + result.info['chosen'] + ')' if 'chosen' in result.info else ''}: "
          f"{result.k} ids chosen ({len(result.known_ids)} known + {result.k - len(result.known_ids)} found; "
          f"rule: {result.rule}, estimated unfound corrupted samples: {result.estimated_size:.0f}) "
          f"in {result.seconds['total']:.1f}s")
    if truth is not None:
        p, r = result.precision_recall(truth)
        print(f"against the preset's ground truth (never used for scoring): precision {p:.1f} %, recall {r:.1f} %")
    write_discovery(result, out, ranking, inputs, args.force)
    print(f"chosen ids written to {out}" + (f", ranking to {ranking}" if ranking else ""))
    return 0


def cmd_advise(args) -> int:
    """Estimate the task's discovery rate and regularity; name the method the benchmark records favour there."""
    from .advise import advise

    make_scorer(args.scorer, {})
    inputs = model_inputs(args)
    source = user_model(args)
    if source is None and args.checkpoint:
        check_input(args.checkpoint, "--checkpoint")
    if args.json:
        check_output(args.json, "--json", suffixes=(".json",), inputs=inputs, force=args.force)
    model, train, known, runtime, pretrain, truth = known_task(args, source)
    result = advise(model, train, known, scorer=args.scorer, runtime=runtime, pretrain=pretrain, seed=args.seed)
    for line in result.lines():
        print(line)
    if truth is not None:
        rate = len(known) / len(truth.corrupted_ids)
        print(f"the preset's ground truth (never used above): {truth.kind} corruption, discovery rate {rate:.2f}")
    print(f"({result.seconds:.0f} s)")
    if args.json:
        check_output(args.json, "--json", suffixes=(".json",), inputs=inputs, force=args.force)
        atomic_write_json(args.json, result.to_dict())
        print(f"advice written to {args.json}")
    return 0


def cmd_verify(args) -> int:
    """Stress-test a repaired model against the original: was the corruption removed, or only hidden?"""
    from .verify import VerifyConfig, verify

    config = from_dict(VerifyConfig, apply_overrides({"seed": args.seed}, args.set or []))
    config.validate()
    source = user_model(args)
    if source is None:
        raise ConfigError("verify works on your own model: give --model with --checkpoint (or --hf-model), "
                          "--train-data, and the repaired model as --repaired")
    folders = source.hf
    repaired = check_input(args.repaired, "--repaired", folder_ok=folders)
    reference = check_input(args.reference, "--reference", folder_ok=folders) if args.reference else None
    inputs = [*model_inputs(args), *(p for p in (repaired, reference) if p)]
    if args.json:
        check_output(args.json, "--json", suffixes=(".json",), inputs=inputs, force=args.force)
    loaded = source.load(args.forget_ids)
    result = verify(loaded.model, source.other_weights(loaded, repaired), loaded.train, loaded.forget_ids,
                    reference=source.other_weights(loaded, reference) if reference else None,
                    runtime=loaded.runtime, config=config)
    for line in result.lines():
        print(line)
    print(f"({result.seconds:.0f} s)")
    if args.json:
        check_output(args.json, "--json", suffixes=(".json",), inputs=inputs, force=args.force)
        atomic_write_json(args.json, result.to_dict())
        print(f"verification written to {args.json}")
    return 0 if result.verdict == "removed" else EXIT_NOT_REMOVED


def cmd_methods(args) -> int:
    for name in method_names():
        space = get_method(name).Config.search_space
        tuned = " Tune: " + ", ".join(f"{k} {'/'.join(map(repr, v))}" for k, v in space.items()) if space else ""
        print(f"{name:<14} {get_method(name).summary}{tuned}")
    return 0


def cmd_report(args) -> int:
    results, out = report_folders(args.results_dir, args.out)
    records = load_records(results)
    if not records:
        raise PathError(f"no records under {results / 'records'}; run `rem-unlearn bench --results {results}` first")
    paths = build_report(records, out, results_dir=results)
    print(f"report: {paths['index']}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)  # accepted after the sub-command too
    common.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS, help="log more")
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                        help="show the full traceback of any error")
    parser = ArgumentParser(prog="rem-unlearn", description=__doc__, parents=[common],
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)

    def command(name: str, func, experiment: bool = True, **kwargs) -> argparse.ArgumentParser:
        p = sub.add_parser(name, parents=[common], **kwargs)
        p.set_defaults(func=func)
        if experiment:
            add_experiment_args(p)
        return p

    command("train", cmd_train, help="train (or load from the cache) the corrupted model")

    p = command("evaluate", cmd_evaluate, help="healed / utility / score / ASR of a model")
    p.add_argument("--checkpoint", help="a .safetensors checkpoint with its JSON sidecar")
    p.add_argument("--forget-ids", help="ids file for forget/retain accuracy")
    p.add_argument("--json", help="write metrics here (a .json file)")
    p.add_argument("--force", action="store_true", help=FORCE_HELP)

    p = command("data", cmd_data, help="summarise a dataset and its corruption, draw corrupted examples")
    p.add_argument("--out", default="corrupted_examples.png",
                   help=f"the picture ({', '.join(FIGURE_SUFFIXES)}; default: %(default)s)")
    p.add_argument("--n", type=int, default=24, help="number of examples in the grid")
    p.add_argument("--force", action="store_true", help=FORCE_HELP)

    p = command("unlearn", cmd_unlearn, help="unlearn known corrupted samples from a trained model")
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
    g.add_argument("--expand-width", type=float, default=0.5,
                   help="added units per channel group (or layer), as a fraction of its units (default: %(default)s)")
    g.add_argument("--p-mem", type=float, default=0.2, help="keep-probability of an added unit (default: %(default)s)")
    g.add_argument("--seed", type=int, default=0, help="mask and branch-init seed (default: %(default)s)")
    add_tracking_args(p, "runs/ (tensorboard) or mlflow.db (mlflow) in the current folder")

    p = command("discover", cmd_discover, help="from a few known corrupted ids to a ranked list and a forget set")
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

    p = command("advise", cmd_advise, help="where the task lies in the space, and the method the benchmark favours")
    p.add_argument("--checkpoint", help="trained model (default: the cached model of the config)")
    p.add_argument("--forget-ids", required=True, help="the known corrupted ids: a .txt/.csv/.npy file")
    p.add_argument("--scorer", default="auto", choices=scorer_names(),
                   help="the discovery scorer that estimates the unfound corrupted samples (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="seed of the scorer's folds and the probe's split")
    p.add_argument("--json", help="write the estimates and the ranking here (a .json file)")
    p.add_argument("--force", action="store_true", help=FORCE_HELP)
    add_user_model_args(p)

    p = command("verify", cmd_verify, experiment=False,
                help="stress-test a repaired model: was the corruption removed, or only hidden?")
    p.add_argument("--checkpoint", help="the original (trained) model's state_dict")
    p.add_argument("--repaired", required=True,
                   help="the repaired model: a state_dict of the same model (what `unlearn --out` wrote), or with "
                        "--hf-model a save_pretrained folder")
    p.add_argument("--reference", help="optional: a model retrained without the corruption, in the same form")
    p.add_argument("--forget-ids", required=True, help="the known corrupted ids: a .txt/.csv/.npy file")
    p.add_argument("--seed", type=int, default=0, help="seed of the clean sample, the relearn split and the views")
    p.add_argument("--set", action="append", metavar="key=value",
                   help="stress test setting, e.g. tests=[relearn] or relearn_epochs=10 (repeatable; docs/verify.md)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), help="compute device")
    p.add_argument("--json", help="write the verification here (a .json file)")
    p.add_argument("--force", action="store_true", help=FORCE_HELP)
    add_user_model_args(p)

    command("methods", cmd_methods, experiment=False, help="list registered methods")

    p = command("report", cmd_report, experiment=False, help="tables, heatmaps and index.html from a results folder")
    p.add_argument("results_dir")
    p.add_argument("--out", help="output folder (default: the results folder)")

    add_bench_parser(sub, run_bench, parents=[common])
    add_tune_parser(sub, run_tune, parents=[common])
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
