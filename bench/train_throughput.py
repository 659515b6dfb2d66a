"""Training throughput (samples/s) of three pipelines on the same model, data and device:

  (a) this pipeline: FocalLossTrainer, dynamic padding, length-grouped batches
  (b) the same with the plain Trainer (the model's cross-entropy): the cost of the focal loss
  (c) upstream style: every sample padded to max_length 128, random batches, focal loss

and the ratios (a)/(b) (target >= 0.95) and (a)/(c) (target >= 2).

    python bench/train_throughput.py                 # tiny model built on the fly, CPU or GPU
    python bench/train_throughput.py --model DIR     # any local HF encoder folder
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
import tempfile
from pathlib import Path

import datasets
import numpy as np
import pandas as pd
from transformers import Trainer, set_seed
from transformers.utils import logging as hf_logging

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import model_pipeline as mp  # noqa: E402
from configs import JobConfig  # noqa: E402
from offline_models.tiny import build_tiny_model  # noqa: E402

DATA_DIR = Path(__file__).resolve().parents[1] / "data" / "complaints"
UPSTREAM_MAX_LENGTH = 128


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, help="local base model folder (default: tiny BERT built now)")
    parser.add_argument("--label", default="department", choices=["department", "urgency"])
    parser.add_argument("--data", type=Path, default=DATA_DIR / "pool.csv", help="training CSV")
    parser.add_argument("--samples", type=int, default=1024, help="training rows used (first N)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--epochs", type=float, default=1.0)
    parser.add_argument("--repeats", type=int, default=2, help="timed runs per pipeline; the best is kept")
    return parser.parse_args()


def load_data(cfg: JobConfig, path: Path, samples: int) -> datasets.DatasetDict:
    frame = pd.read_csv(path).head(samples)
    split = datasets.Dataset.from_pandas(
        pd.DataFrame({"text": frame.text, "label": frame[cfg.label].map(cfg.label2id)}), preserve_index=False)
    return datasets.DatasetDict(train=split, validation=split.select(range(32)), test=split.select(range(32)))


def samples_per_second(cfg, model_dir, data, out_dir, trainer_cls, pad_to_max: bool) -> float:
    """Train once from the same seed and return the Trainer's train_samples_per_second."""
    set_seed(cfg.seed)
    model, tokenizer = mp.load_base_model(model_dir, cfg)
    tokenized = mp.tokenize_splits(data, tokenizer, cfg.max_length, pad_to_max=pad_to_max)
    args = mp.training_arguments(cfg, out_dir, mp.resolve_precision(cfg.precision), epoch_steps=10**9,
                                 group_by_length=not pad_to_max)
    # Training only: no evaluation, checkpoints or logging inside the timed loop.
    args = dataclasses.replace(args, eval_strategy="no", save_strategy="no", load_best_model_at_end=False,
                               logging_strategy="no", disable_tqdm=True)
    alpha = mp.class_alpha(cfg, data["train"]["label"])
    trainer = mp.build_trainer(cfg, model, tokenizer, tokenized, args, alpha, trainer_cls=trainer_cls)
    return trainer.train().metrics["train_samples_per_second"]


def padding_share(data, model_dir, max_length: int) -> float:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    lengths = np.array([len(ids) for ids in tokenizer(list(data["train"]["text"]), truncation=True,
                                                       max_length=max_length)["input_ids"]])
    return 1 - lengths.mean() / max_length


def main() -> None:
    options = parse_args()
    hf_logging.set_verbosity_error()
    datasets.disable_progress_bars()
    cfg = JobConfig(label=options.label, train_batch_size=options.batch_size, num_train_epochs=options.epochs,
                    max_length=UPSTREAM_MAX_LENGTH, wandb_mode="disabled")
    data = load_data(cfg, options.data, options.samples)
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = options.model or build_tiny_model(Path(tmp) / "tiny", list(data["train"]["text"]))
        pipelines = {
            "(a) focal + dynamic padding + length groups": (mp.FocalLossTrainer, False),
            "(b) plain cross-entropy Trainer, same batching": (Trainer, False),
            "(c) upstream: pad to 128, random batches": (mp.FocalLossTrainer, True),
        }
        samples_per_second(cfg, model_dir, data, Path(tmp) / "warmup", Trainer, False)  # warm caches, threads
        rates = {name: 0.0 for name in pipelines}
        for repeat in range(options.repeats):  # interleaved, so a noisy neighbour hurts all alike
            for name, (trainer_cls, pad) in pipelines.items():
                rate = samples_per_second(cfg, model_dir, data, Path(tmp) / "run", trainer_cls, pad)
                rates[name] = max(rates[name], rate)
        share = padding_share(data, model_dir, UPSTREAM_MAX_LENGTH)

    print(f"model: {options.model or 'tiny BERT (built on the fly)'}; {len(data['train'])} samples of "
          f"{options.data.name}, batch {options.batch_size}, precision {mp.resolve_precision('auto')}, "
          f"best of {options.repeats}")
    print(f"padding under pad-to-{UPSTREAM_MAX_LENGTH}: {share:.0%} of tokens")
    for name, rate in rates.items():
        print(f"  {name:<50} {rate:8.1f} samples/s")
    a, b, c = rates.values()
    print(f"(a)/(b) = {a / b:.2f}  (target >= 0.95: {'ok' if a / b >= 0.95 else 'MISSED'})")
    print(f"(a)/(c) = {a / c:.2f}  (target >= 2:    {'ok' if a / c >= 2 else 'MISSED'})")


if __name__ == "__main__":
    main()
