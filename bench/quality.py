"""Test quality of the job's own training (model_pipeline.train, JobConfig defaults) on CPU.

Trains the offline multilingual-e5-small (or the tiny test model) on data/complaints and scores the group-disjoint test
split (test.csv shares no template family with train.csv or pool.csv; validation.csv neither).
`fixture` trains on train.csv (350 rows, the demo's v1), `pool` on pool.csv (2471 rows). One row
per (data, label, recipe, word embeddings), printed as soon as it is measured:

    python bench/quality.py                                  # fixture, urgency, RECIPE=auto
    python bench/quality.py --data fixture pool --label urgency department --recipe auto card
    python bench/quality.py --word-embeddings frozen sparse full --max-train-steps 120
    python bench/quality.py --base-model tiny --learning-rate 1e-4 1e-3 1e-2  # the 2-layer test model
    python bench/quality.py --data pool --head mean+probe cls+random       # how the classifier starts

Seconds are wall-clock training time on this machine as it is (a shared CPU inflates them).
"""
from __future__ import annotations

import argparse
import itertools
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("WANDB_MODE", "disabled")

import datasets  # noqa: E402
import pandas as pd  # noqa: E402

from configs import JobConfig  # noqa: E402
from load_dataset import validate_splits  # noqa: E402
from localhub.seed import SAMPLE_DATA, build_base_model  # noqa: E402
from model_pipeline import train  # noqa: E402

TRAIN_FILES = {"fixture": "train.csv", "pool": "pool.csv"}
HEADS = {"auto": {}} | {f"{pooling}+{start}": {"pooling": pooling, "head_init": start}
                        for pooling in ("mean", "cls") for start in ("probe", "random")}
HEADER = (f"{'data':<8} {'label':<10} {'recipe':<6} {'head':<11} {'emb':<7} {'lr':>7} {'steps':>5} {'train s':>8} {'test F1':>8} "
          f"{'ECE raw':>8} {'ECE T':>7} {'Brier raw':>9} {'Brier T':>8} {'T':>5}  per-class F1")


def load_splits(data: str, cfg: JobConfig) -> datasets.DatasetDict:
    frames = {"train": pd.read_csv(SAMPLE_DATA / TRAIN_FILES[data]),
              "validation": pd.read_csv(SAMPLE_DATA / "validation.csv"), "test": pd.read_csv(SAMPLE_DATA / "test.csv")}
    frames, _ = validate_splits(frames, cfg, source=f"data/complaints ({TRAIN_FILES[data]} as train)")
    return datasets.DatasetDict({
        split: datasets.Dataset.from_pandas(
            pd.DataFrame({"text": f["text"], "label": f[cfg.label].map(cfg.label2id)}), preserve_index=False)
        for split, f in frames.items()})


def measure(data: str, label: str, recipe: str, head: str, embeddings: str, base: Path, extra: dict) -> str:
    cfg = JobConfig(label=label, recipe=recipe, word_embeddings=embeddings, hf_endpoint="http://127.0.0.1:1",
                    **HEADS[head], **extra)
    dataset = load_splits(data, cfg)
    with tempfile.TemporaryDirectory() as work:
        result = train(cfg, dataset, base, Path(work))
    steps = max((h.get("step", 0) for h in result.history), default=0)
    cal = result.calibration
    per_class = ", ".join(f"{name[:12]} {f1:.2f}" for name, f1 in result.test_metrics["per_class_f1"].items())
    started = result.recipe["head"]
    return (f"{data:<8} {label:<10} {recipe:<6} {started['pooling'] + '+' + started['init']:<11} "
            f"{result.recipe['word_embeddings']:<7} "
            f"{result.recipe['learning_rate']:>7.0e} {steps:>5} "
            f"{result.train_seconds:>8.0f} {result.test_metrics['macro_f1']:>8.3f} "
            f"{cal['uncalibrated']['ece']:>8.3f} {cal['calibrated']['ece']:>7.3f} "
            f"{cal['uncalibrated']['brier']:>9.3f} {cal['calibrated']['brier']:>8.3f} {cal['temperature']:>5.2f}  {per_class}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", nargs="+", choices=list(TRAIN_FILES), default=["fixture"])
    parser.add_argument("--label", nargs="+", choices=["urgency", "department"], default=["urgency"])
    parser.add_argument("--recipe", nargs="+", choices=["auto", "card"], default=["auto"])
    parser.add_argument("--head", nargs="+", choices=list(HEADS), default=["auto"],
                        help="pooling + head start (POOLING, HEAD_INIT); auto: what the recipe chooses")
    parser.add_argument("--word-embeddings", nargs="+", choices=["auto", "full", "sparse", "frozen"], default=["auto"])
    parser.add_argument("--max-train-steps", type=int, help="cap the run (sets NUM_TRAIN_EPOCHS to match) for quick looks")
    parser.add_argument("--learning-rate", type=float, nargs="+", default=[None],
                        help="override LEARNING_RATE (one run each); default: what the recipe chooses")
    parser.add_argument("--base-model", choices=["e5", "tiny"], default="e5")
    args = parser.parse_args()
    base = build_base_model(args.base_model)
    print(HEADER, flush=True)
    started = time.perf_counter()
    for data, label, recipe, head, embeddings, lr in itertools.product(
            args.data, args.label, args.recipe, args.head, args.word_embeddings, args.learning_rate):
        run_extra = {"learning_rate": lr} if lr else {}
        if args.max_train_steps:
            rows = len(pd.read_csv(SAMPLE_DATA / TRAIN_FILES[data]))
            run_extra["num_train_epochs"] = args.max_train_steps * 16 / rows
        print(measure(data, label, recipe, head, embeddings, base, run_extra), flush=True)
    print(f"total {time.perf_counter() - started:.0f}s (CPU threads: {os.cpu_count()}; shared machine: seconds inflated)")


if __name__ == "__main__":
    main()
