"""Classification metrics and the confusion-matrix plot: numpy, scikit-learn and matplotlib only.

The decision (compare.py) imports these, so deciding never loads torch.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score


def classification_metrics(y_true: Sequence[int], y_pred: Sequence[int], labels: list[str]) -> dict[str, Any]:
    """accuracy, macro/weighted F1 and per-class F1 over every label id, also absent ones."""
    ids = list(range(len(labels)))
    per_class = f1_score(y_true, y_pred, labels=ids, average=None, zero_division=0)
    return {
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "macro_f1": float(f1_score(y_true, y_pred, labels=ids, average="macro", zero_division=0)),
        "weighted_f1": float(f1_score(y_true, y_pred, labels=ids, average="weighted", zero_division=0)),
        "per_class_f1": {name: float(score) for name, score in zip(labels, per_class)},
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

    matrix = confusion_matrix(y_true, y_pred, labels=list(range(len(labels))))
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
