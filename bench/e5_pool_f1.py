"""Macro-F1 of the converted multilingual-e5-small fine-tuned on pool.csv, evaluated on the
group-disjoint fixture test split (pool and test share no template family; see data/complaints/README.md).

    python bench/e5_pool_f1.py [--label urgency] [--epochs 2] [--freeze-word-embeddings]
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("WANDB_MODE", "disabled")

import datasets  # noqa: E402
import pandas as pd  # noqa: E402

from configs import JobConfig  # noqa: E402
from load_dataset import validate_splits  # noqa: E402
from localhub.seed import SAMPLE_DATA, build_base_model  # noqa: E402
from model_pipeline import train  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--label", choices=["department", "urgency"], default="urgency")
    parser.add_argument("--epochs", type=float, default=2)
    parser.add_argument("--freeze-word-embeddings", action="store_true")
    args = parser.parse_args()
    cfg = JobConfig(label=args.label, num_train_epochs=args.epochs, eval_steps=100,
                    freeze_word_embeddings=args.freeze_word_embeddings, hf_endpoint="http://127.0.0.1:1")
    frames = {"train": pd.read_csv(SAMPLE_DATA / "pool.csv"), "validation": pd.read_csv(SAMPLE_DATA / "validation.csv"),
              "test": pd.read_csv(SAMPLE_DATA / "test.csv")}
    frames, report = validate_splits(frames, cfg, source="data/complaints (pool as train)")
    dataset = datasets.DatasetDict({
        split: datasets.Dataset.from_pandas(pd.DataFrame({"text": f["text"], "label": f[cfg.label].map(cfg.label2id)}),
                                            preserve_index=False)
        for split, f in frames.items()})
    with tempfile.TemporaryDirectory() as work:
        result = train(cfg, dataset, build_base_model("e5"), Path(work))
    print(report.summary())
    print(f"e5-small on pool.csv ({len(dataset['train'])} rows, {args.epochs} epochs, "
          f"frozen word embeddings: {args.freeze_word_embeddings}), {result.train_seconds:.0f}s of training")
    print(f"validation macro-F1 {result.eval_metrics['macro_f1']:.4f}")
    print(f"test macro-F1 {result.test_metrics['macro_f1']:.4f}  per class {result.test_metrics['per_class_f1']}")


if __name__ == "__main__":
    main()
