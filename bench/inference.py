"""Eager PyTorch vs int8 ONNX Runtime for the inference Space, on the same texts.

    python bench/inference.py                  # tiny model, trained briefly on the fixture
    python bench/inference.py --model DIR      # a saved sequence-classification model

Prints single-request p50/p95 latency and req/s, batch throughput, and macro-F1 of both
backends on data/complaints/test.csv, then the ONNX/eager ratios. Target: ONNX int8 >= 2x
eager req/s with macro-F1 within 0.01.
"""
from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import f1_score

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from configs import LABEL_SETS  # noqa: E402
from inference_space.classifier import load_classifier, predict_in_chunks  # noqa: E402

DATA_DIR = Path(__file__).resolve().parents[1] / "data" / "complaints"


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, help="saved classification model (default: train the tiny model)")
    parser.add_argument("--label", choices=sorted(LABEL_SETS), default="urgency")
    parser.add_argument("--epochs", type=int, default=8, help="training epochs of the default tiny model")
    parser.add_argument("--hidden", type=int, default=32, help="hidden size of the default tiny model")
    parser.add_argument("--layers", type=int, default=2, help="layers of the default tiny model")
    parser.add_argument("--lr", type=float, default=3e-3, help="learning rate of the default tiny model")
    parser.add_argument("--batch-size", type=int, default=32, help="texts per forward in the throughput run")
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--threads", type=int, default=1, help="intra-op threads of both backends")
    parser.add_argument("--repeats", type=int, default=3, help="passes over the test split when timing")
    return parser.parse_args(argv)


def train_tiny_classifier(out_dir: Path, label: str, epochs: int, hidden: int, layers: int, lr: float,
                          max_length: int) -> Path:
    """The offline tiny BERT fine-tuned on the fixture train split (a plain loop: seconds)."""
    from offline_models.tiny import build_tiny_model

    texts = pd.concat(pd.read_csv(DATA_DIR / f"{s}.csv") for s in ("train", "validation", "test")).text.tolist()
    base = build_tiny_model(out_dir / "base", texts, hidden_size=hidden, layers=layers)
    return fine_tune(base, out_dir / "classifier", label, epochs, lr, max_length)


def fine_tune(base: Path, out_dir: Path, label: str, epochs: int, lr: float, max_length: int) -> Path:
    """`base` with a new head trained on the fixture train split (a plain loop), saved to out_dir."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    labels, train = LABEL_SETS[label], pd.read_csv(DATA_DIR / "train.csv")
    tokenizer = AutoTokenizer.from_pretrained(base)
    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_pretrained(
        base, num_labels=len(labels), id2label=dict(enumerate(labels)), label2id={n: i for i, n in enumerate(labels)})
    targets = torch.tensor(train[label].map(labels.index).to_numpy())
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr)
    model.train()
    for _ in range(epochs):
        for batch in torch.randperm(len(train)).split(16):
            enc = tokenizer(train.text.iloc[batch.numpy()].tolist(), padding=True, truncation=True,
                            max_length=max_length, return_tensors="pt")
            loss = model(**enc, labels=targets[batch]).loss
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    return out_dir


def single_request_latencies(classifier, texts: list[str], repeats: int) -> list[float]:
    classifier.predict_proba(texts[:2])  # warm-up: first call allocates
    latencies = []
    for _ in range(repeats):
        for text in texts:
            start = time.perf_counter()
            classifier.predict_proba([text])
            latencies.append(time.perf_counter() - start)
    return latencies


def batch_throughput(classifier, texts: list[str], batch_size: int, repeats: int) -> float:
    """Texts/s through the /predict/batch path (length-sorted chunks of batch_size)."""
    start = time.perf_counter()
    for _ in range(repeats):
        predict_in_chunks(classifier, texts, batch_size)
    return repeats * len(texts) / (time.perf_counter() - start)


def measure(classifier, texts: list[str], gold: list[str], args) -> dict:
    predicted = [p["label"] for p in predict_in_chunks(classifier, texts, args.batch_size)]
    latencies = single_request_latencies(classifier, texts, args.repeats)
    return {
        "p50_ms": 1000 * statistics.median(latencies),
        "p95_ms": 1000 * float(np.percentile(latencies, 95)),
        "req_per_s": len(latencies) / sum(latencies),
        "batch_texts_per_s": batch_throughput(classifier, texts, args.batch_size, args.repeats),
        "macro_f1": f1_score(gold, predicted, labels=classifier.labels, average="macro", zero_division=0),
    }


def report(results: dict[str, dict]) -> None:
    eager, onnx = results["eager"], results["onnx_int8"]
    print(f"{'backend':<10} {'p50 ms':>8} {'p95 ms':>8} {'req/s':>8} {'batch texts/s':>14} {'macro-F1':>9}")
    for name, r in results.items():
        print(f"{name:<10} {r['p50_ms']:8.2f} {r['p95_ms']:8.2f} {r['req_per_s']:8.1f} "
              f"{r['batch_texts_per_s']:14.1f} {r['macro_f1']:9.4f}")
    speedup = onnx["req_per_s"] / eager["req_per_s"]
    delta_f1 = onnx["macro_f1"] - eager["macro_f1"]
    print(f"ratio onnx/eager: req/s {speedup:.2f}x, batch throughput "
          f"{onnx['batch_texts_per_s'] / eager['batch_texts_per_s']:.2f}x, p50 latency "
          f"{onnx['p50_ms'] / eager['p50_ms']:.2f}x; macro-F1 delta {delta_f1:+.4f}")
    met = speedup >= 2 and abs(delta_f1) <= 0.01
    print(f"target (>= 2x req/s, |ΔF1| <= 0.01): {'met' if met else 'NOT met'}")


def main(argv=None) -> dict[str, dict]:
    args = parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    test = pd.read_csv(DATA_DIR / "test.csv")
    texts, gold = test.text.tolist(), test[args.label].tolist()
    with tempfile.TemporaryDirectory() as tmp:
        if args.model:
            # the ONNX export is cached inside the folder it serves: never write into the caller's model
            folder = Path(shutil.copytree(args.model, Path(tmp) / "model"))
        else:
            folder = train_tiny_classifier(Path(tmp), args.label, args.epochs, args.hidden, args.layers, args.lr,
                                           args.max_length)
        labels = LABEL_SETS[args.label]
        results = {
            backend_name: measure(load_classifier(folder, labels, backend, args.max_length, args.threads),
                                  texts, gold, args)
            for backend_name, backend in (("eager", "torch"), ("onnx_int8", "onnx"))
        }
    print(f"{len(texts)} test texts, label {args.label}, model {args.model or f'tiny BERT {args.layers}x{args.hidden} (trained here)'}, "
          f"{args.threads} thread(s)")
    report(results)
    return results


if __name__ == "__main__":
    main()
