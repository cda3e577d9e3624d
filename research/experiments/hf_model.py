"""REM on a Hugging Face image classifier trained on the embedded default: what to expect from --hf-model.

For each corruption of the embedded default (10k-image Fashion-MNIST subset,
200 corrupted samples, the preset's 20-epoch recipe) it

1. builds a small ``transformers`` ResNetForImageClassification from a config
   (random weights, nothing downloads) and trains it with the package's own
   training loop, through the ``pixel_values -> logits`` wrapper;
2. saves it with ``save_pretrained`` plus a ``preprocessor_config.json`` that
   holds the dataset's normalisation, as a user's folder would;
3. unlearns it through the ``--hf-model`` path: ``from_pretrained`` (the
   processor's mean/std applied to the data), ``expand`` with an example
   batch, REM with the benchmark's budget (one round), ``save_pretrained``;
4. reloads the written folder with ``AutoModelForImageClassification`` and
   scores it with the package's evaluator (healed, utility, score, attack
   success), the same task as ``research/experiments/any_model.py``.

    OMP_NUM_THREADS=1 .venv/bin/python research/experiments/hf_model.py [--corruptions poison] [--rates 0.1,1.0] \\
        [--record research/records/hf_model.jsonl]
    .venv/bin/python research/experiments/hf_model.py --table research/records/hf_model.jsonl  # the docs' table

Trained folders are kept under ``--work`` and reused by a second run. ``--record`` appends each row, with the
commit and the command that made it, to a JSON-lines file; ``--table`` prints the table from such a file.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch

from rem_unlearn import expand, unlearn
from rem_unlearn.checkpoint import source_commit
from rem_unlearn.config import ExperimentConfig, load_config
from rem_unlearn.corruptions import discovered_ids
from rem_unlearn.data.images import per_channel
from rem_unlearn.experiment import corrupted_data
from rem_unlearn.metrics import Evaluator
from rem_unlearn.models.hf import HFClassifier, from_pretrained, save_pretrained
from rem_unlearn.presets import experiment_preset
from rem_unlearn.training import Batcher, Runtime, train_model


def hf_resnet(num_classes: int, channels: int):
    """A small HF ResNet for 28x28 grey images (0.7 M parameters): basic blocks, widths 32-256."""
    import transformers

    cfg = transformers.ResNetConfig(num_channels=channels, embedding_size=32, hidden_sizes=[32, 64, 128, 256],
                                    depths=[1, 1, 1, 1], layer_type="basic", num_labels=num_classes)
    return transformers.ResNetForImageClassification(cfg)


def trained_folder(cfg: ExperimentConfig, corrupted, runtime: Runtime, work: Path) -> tuple[Path, float]:
    """Train (or reuse) the HF model on the corrupted training set; a save_pretrained folder with a processor."""
    folder = work / f"trained-{cfg.corruption.kind}"
    meta = folder / "train.json"
    if meta.is_file():
        return folder, json.loads(meta.read_text())["train_seconds"]
    train = corrupted.train
    torch.manual_seed(cfg.train.seed)
    model = runtime.prepare(HFClassifier(hf_resnet(train.num_classes, train.channels)))
    start = time.perf_counter()
    train_model(model, train, cfg.train, runtime, desc=f"train HF ResNet {cfg.corruption.kind}")
    seconds = time.perf_counter() - start
    folder.mkdir(parents=True, exist_ok=True)
    model.hf.cpu().save_pretrained(folder)
    processor = {"image_processor_type": "ViTImageProcessor", "do_rescale": True, "rescale_factor": 1 / 255,
                 "do_normalize": True, "image_mean": list(train.mean), "image_std": list(train.std),
                 "do_resize": False}
    (folder / "preprocessor_config.json").write_text(json.dumps(processor, indent=2))
    meta.write_text(json.dumps({"train_seconds": seconds}))
    return folder, seconds


def main() -> None:
    import transformers

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--corruptions", default="poison,interclass,random")
    p.add_argument("--rates", default="0.1,1.0")
    p.add_argument("--seed", type=int, default=0, help="discovery and unlearning seed")
    p.add_argument("--epochs", type=float, default=1.0, help="REM's budget in passes over D_tr (the benchmark's 1)")
    p.add_argument("--work", default="hf_model_runs", help="trained and unlearned folders")
    p.add_argument("--record", type=Path, help="append every row to this JSON-lines file")
    p.add_argument("--table", type=Path, metavar="RECORD", help="print the table of a JSON-lines record and stop")
    a = p.parse_args()
    if a.table:
        print_table([json.loads(line) for line in a.table.read_text().splitlines() if line.strip()])
        return
    work = Path(a.work)
    stamp = {"commit": source_commit(), "command": shlex.join(["research/experiments/hf_model.py", *sys.argv[1:]])}
    rows = []

    def keep(row: dict) -> None:
        rows.append(row)
        print(json.dumps(row), flush=True)
        if a.record:
            with a.record.open("a") as f:
                f.write(json.dumps({**stamp, **row}) + "\n")
    for corruption in a.corruptions.split(","):
        cfg = load_config(ExperimentConfig, base=experiment_preset("fashion-mnist"),
                          overrides=[f"corruption.kind={corruption}", "runtime.progress=false"])
        runtime = Runtime.from_config(replace(cfg.runtime, channels_last=False))  # as --hf-model runs it
        corrupted, test = corrupted_data(cfg)
        evaluate = Evaluator(corrupted, test, runtime)
        folder, train_seconds = trained_folder(cfg, corrupted, runtime, work)
        # The --hf-model path: the folder, its processor's normalisation, expand with an example batch.
        model = runtime.prepare(from_pretrained(folder))
        train = corrupted.train
        pre = model.preprocessing
        train = replace(train, mean=per_channel(pre.mean, train.channels, "image_mean", pre.source),
                        std=per_channel(pre.std, train.channels, "image_std", pre.source))
        x, _, _ = Batcher(train, runtime).batch(torch.arange(2), augment=False)
        model.check_images(train.channels, train.image_size, x)
        trained = evaluate(model)
        keep({"corruption": corruption, "rate": None, "model": "HF ResNet, trained", **trained,
              "seconds": train_seconds})
        for rate in (float(r) for r in a.rates.split(",")):
            forget = discovered_ids(corrupted.corrupted_ids, rate, seed=a.seed)
            big = expand(model, example_input=x, num_classes=train.num_classes, seed=a.seed)
            result = unlearn(big, train, forget, "rem", runtime=runtime,
                             max_utility_drop=None, epochs=a.epochs, seed=a.seed)
            out = save_pretrained(result.model, work / f"rem-{corruption}-{rate:g}", {"forget": len(forget)},
                                  force=True)
            reloaded = transformers.AutoModelForImageClassification.from_pretrained(out)
            metrics = evaluate(runtime.prepare(HFClassifier(reloaded)).eval(), forget)
            keep({"corruption": corruption, "rate": rate, "model": "HF ResNet + expand, REM", **metrics,
                  "seconds": result.wall_time_s, "selected": result.selected})
    print()
    print_table(rows)


def print_table(rows: list[dict]) -> None:
    print("| corruption | discovery | model | healed | utility | score | attack success | time (s) |")
    print("|---|---|---|---:|---:|---:|---:|---:|")
    for r in rows:
        asr = "–" if r["attack_success"] is None else f"{r['attack_success']:.1f}"
        rate = "–" if r["rate"] is None else f"{r['rate']:g}"
        seconds = f"{r['seconds']:.1f}" + (" (training)" if r["rate"] is None else "")
        print(f"| {r['corruption']} | {rate} | {r['model']} | "
              f"{r['healed']:.1f} | {r['utility']:.1f} | {r['score']:.1f} | {asr} | {seconds} |")


if __name__ == "__main__":
    main()
