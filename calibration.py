"""Temperature scaling and the figures that say whether a confidence can be trusted (numpy only).

The job fits one scalar T on the validation split (minimising the NLL of softmax(logits / T)) and
saves it as `calibration.json` next to the weights; the inference Space reads it back and serves
softmax(logits / T). T > 1 softens an overconfident model, T < 1 sharpens an underconfident one;
the argmax, hence every F1, is unchanged.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

CALIBRATION_FILE = "calibration.json"
ECE_BINS = 15
# log T is searched in [log 0.05, log 20]: wide enough for any model that learnt something,
# narrow enough that a validation split the model fits perfectly cannot send T to zero.
LOG_T_BOUNDS = (float(np.log(0.05)), float(np.log(20.0)))
# ECE of a finite split is biased upwards: even a perfectly calibrated model shows a gap per bin of
# about sqrt(p(1-p)/n_bin). ece_floor() measures that bias for the split at hand.
ECE_FLOOR_DRAWS = 200


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    scaled = np.asarray(logits, dtype=np.float64) / temperature
    shifted = np.exp(scaled - scaled.max(axis=-1, keepdims=True))
    return shifted / shifted.sum(axis=-1, keepdims=True)


def nll(logits: np.ndarray, labels: np.ndarray, temperature: float = 1.0) -> float:
    """Mean negative log-likelihood of the true labels under softmax(logits / T)."""
    scaled = np.asarray(logits, dtype=np.float64) / temperature
    log_norm = np.log(np.exp(scaled - scaled.max(-1, keepdims=True)).sum(-1)) + scaled.max(-1)
    return float(np.mean(log_norm - scaled[np.arange(len(labels)), labels]))


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    """The T minimising the NLL of logits / T (a bounded search over log T)."""
    from scipy.optimize import minimize_scalar  # only the job fits; the inference Space only reads T

    labels = np.asarray(labels, dtype=np.int64)
    if len(labels) == 0:
        return 1.0
    best = minimize_scalar(lambda log_t: nll(logits, labels, float(np.exp(log_t))),
                           bounds=LOG_T_BOUNDS, method="bounded", options={"xatol": 1e-4})
    return float(np.exp(best.x))


def ece(probs: np.ndarray, labels: np.ndarray, bins: int = ECE_BINS) -> float:
    """Top-label expected calibration error: |accuracy - confidence| per equal-width confidence
    bin, weighted by the bin's share of samples."""
    probs, labels = np.asarray(probs, dtype=np.float64), np.asarray(labels)
    confidence, predicted = probs.max(-1), probs.argmax(-1)
    correct = (predicted == labels).astype(np.float64)
    # Bin b holds confidences in (b/bins, (b+1)/bins]; a confidence of exactly 0 joins bin 0.
    which = np.clip(np.ceil(confidence * bins).astype(int) - 1, 0, bins - 1)
    total = 0.0
    for b in np.unique(which):
        members = which == b
        total += members.mean() * abs(correct[members].mean() - confidence[members].mean())
    return float(total)


def ece_floor(probs: np.ndarray, bins: int = ECE_BINS, draws: int = ECE_FLOOR_DRAWS,
              seed: int = 0) -> dict[str, float]:
    """The ECE a perfectly calibrated model with these confidences would show on this many samples:
    labels drawn from `probs` itself, `draws` times. An ECE inside this range is sampling noise."""
    probs = np.asarray(probs, dtype=np.float64)
    rng = np.random.default_rng(seed)
    cumulative = probs.cumsum(-1)
    values = []
    for _ in range(draws):
        labels = (rng.random((len(probs), 1)) > cumulative).sum(-1).clip(max=probs.shape[-1] - 1)
        values.append(ece(probs, labels, bins))
    return {"mean": float(np.mean(values)), "p90": float(np.quantile(values, 0.9))}


def brier(probs: np.ndarray, labels: np.ndarray) -> float:
    """Multiclass Brier score: mean over samples of sum_k (p_k - [k == y])^2 (0 best, 2 worst)."""
    probs = np.asarray(probs, dtype=np.float64)
    onehot = np.eye(probs.shape[-1])[np.asarray(labels)]
    return float(np.mean(np.sum((probs - onehot) ** 2, axis=-1)))


def calibration_report(val_logits: np.ndarray, val_labels: np.ndarray,
                       test_logits: np.ndarray, test_labels: np.ndarray) -> dict[str, Any]:
    """T fitted on validation; ECE, Brier and NLL on test before (T=1) and after, and the ECE a
    perfectly calibrated model with the calibrated confidences would show on this many test samples."""
    temperature = fit_temperature(val_logits, val_labels)
    report: dict[str, Any] = {"temperature": temperature, "fitted_on": "validation", "evaluated_on": "test",
                              "ece_bins": ECE_BINS, "validation_samples": len(val_labels),
                              "test_samples": len(test_labels),
                              "ece_floor": ece_floor(softmax(test_logits, temperature))}
    for name, t in (("uncalibrated", 1.0), ("calibrated", temperature)):
        probs = softmax(test_logits, t)
        report[name] = {"ece": ece(probs, test_labels), "brier": brier(probs, test_labels),
                        "nll": nll(test_logits, test_labels, t),
                        "mean_confidence": float(probs.max(-1).mean())}
    return report


def save_temperature(folder: Path, report: dict[str, Any]) -> Path:
    path = Path(folder) / CALIBRATION_FILE
    path.write_text(json.dumps(report, indent=2))
    return path


def load_temperature(folder: Path) -> float:
    """The saved T of a model folder; 1.0 (plain softmax) for a model saved without one."""
    path = Path(folder) / CALIBRATION_FILE
    if not path.is_file():
        return 1.0
    temperature = float(json.loads(path.read_text())["temperature"])
    if not np.isfinite(temperature) or temperature <= 0:
        raise ValueError(f"{path}: temperature must be a positive number, got {temperature!r}")
    return temperature
