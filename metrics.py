"""Classification metrics and the confusion-matrix plot, in numpy (matplotlib only for the plot).

The decision (compare.py) and the job's CLI import these, so deciding loads neither torch nor
scikit-learn, and `python train_model.py --help` answers at once. The F1 figures are
scikit-learn's with `zero_division=0` (tests/test_metrics.py checks them against it).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np


def confusion_matrix(y_true: Sequence[int], y_pred: Sequence[int], n_labels: int) -> np.ndarray:
    """counts[true, predicted] over label ids 0..n_labels-1 (ids outside that range are not counted)."""
    y_true, y_pred = np.asarray(y_true, dtype=np.int64), np.asarray(y_pred, dtype=np.int64)
    inside = (y_true >= 0) & (y_true < n_labels) & (y_pred >= 0) & (y_pred < n_labels)
    counts = np.zeros((n_labels, n_labels), dtype=np.int64)
    np.add.at(counts, (y_true[inside], y_pred[inside]), 1)
    return counts


def per_class_f1(y_true: Sequence[int], y_pred: Sequence[int], n_labels: int) -> np.ndarray:
    """2·TP / (2·TP + FP + FN) per label id; 0 for a label neither true nor predicted."""
    y_true, y_pred = np.asarray(y_true, dtype=np.int64), np.asarray(y_pred, dtype=np.int64)
    ids = np.arange(n_labels)[:, None]
    true_positive = ((y_true == ids) & (y_pred == ids)).sum(axis=1)
    denominator = (y_true == ids).sum(axis=1) + (y_pred == ids).sum(axis=1)
    return np.divide(2 * true_positive, denominator, out=np.zeros(n_labels), where=denominator > 0)


def macro_f1(y_true: Sequence[int], y_pred: Sequence[int], n_labels: int) -> float:
    return float(per_class_f1(y_true, y_pred, n_labels).mean())


def classification_metrics(y_true: Sequence[int], y_pred: Sequence[int], labels: list[str]) -> dict[str, Any]:
    """accuracy, macro/weighted F1 and per-class F1 over every label id, also absent ones."""
    y_true, y_pred = np.asarray(y_true, dtype=np.int64), np.asarray(y_pred, dtype=np.int64)
    f1 = per_class_f1(y_true, y_pred, len(labels))
    support = np.bincount(y_true[(y_true >= 0) & (y_true < len(labels))], minlength=len(labels))
    return {
        "accuracy": float((y_true == y_pred).mean()) if len(y_true) else 0.0,
        "macro_f1": float(f1.mean()),
        "weighted_f1": float((f1 * support).sum() / support.sum()) if support.sum() else 0.0,
        "per_class_f1": {name: float(score) for name, score in zip(labels, f1)},
    }


def flat_metrics(metrics: dict[str, Any]) -> dict[str, float]:
    """Trainer logs and trackers want scalars: per_class_f1 becomes f1/<label>."""
    flat = {k: v for k, v in metrics.items() if k != "per_class_f1"}
    flat.update({f"f1/{name}": v for name, v in metrics.get("per_class_f1", {}).items()})
    return flat


def confusion_matrix_png(y_true, y_pred, labels: list[str], path: str | Path, title: str) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    matrix = confusion_matrix(y_true, y_pred, len(labels))
    fig, ax = plt.subplots(figsize=(2 + 1.3 * len(labels), 1.5 + 1.1 * len(labels)))
    ax.imshow(matrix, cmap="Blues")
    short = [name if len(name) <= 18 else name[:16] + "…" for name in labels]
    ax.set_xticks(range(len(labels)), short, rotation=30, ha="right")
    ax.set_yticks(range(len(labels)), short)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    for (row, col), count in np.ndenumerate(matrix):
        ax.text(col, row, str(count), ha="center", va="center",
                color="white" if count > matrix.max() / 2 else "black")
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
