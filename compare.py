"""Compare the candidate with the deployed model on the same samples, then decide.

Both models are scored on exactly the same stratified test samples; a sample the deployed API
failed on is removed for both. The decision record is complete before anything is pushed.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from metrics import classification_metrics, macro_f1


class ComparisonError(RuntimeError):
    """The deployed model could not be scored well enough to compare: never promote."""


@dataclass
class Comparison:
    n_samples: int
    candidate: dict
    deployed: dict | None             # None: no deployed model yet (first deploy)
    delta_f1: float | None
    delta_f1_ci: tuple[float, float] | None
    deployed_revision: str | None = None
    failed_samples: dict[int, str] = field(default_factory=dict)
    deployed_mode: str | None = None
    deployed_seconds: float | None = None

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Decision:
    promote: bool
    outcome: str          # "promote" | "keep"
    rule: str
    reasons: list[str]
    inputs: dict

    def to_dict(self) -> dict:
        return asdict(self)


def stratified_sample(frame, label_column: str, size: int, seed: int):
    """`size` rows with the label mix of `frame`, the same rows for the same seed.
    Every class keeps at least one row when there is room (largest-remainder allocation)."""
    if size >= len(frame):
        return frame.reset_index(drop=True)
    counts = frame[label_column].value_counts().sort_index()
    quotas = counts / counts.sum() * size
    allocation = np.minimum(np.maximum(np.floor(quotas).astype(int), 1), counts)
    remainders = (quotas - np.floor(quotas)).sort_values(ascending=False)
    for label in remainders.index:
        if allocation.sum() >= size:
            break
        if allocation[label] < counts[label]:
            allocation[label] += 1
    while allocation.sum() > size:  # the at-least-one rule can overshoot for many tiny classes
        allocation[allocation.idxmax()] -= 1
    rng = np.random.default_rng(seed)
    picked = [
        group.iloc[rng.permutation(len(group))[: allocation[label]]]
        for label, group in frame.groupby(label_column, sort=True)
    ]
    import pandas as pd  # here, not at the top: the CLI and the decision need no pandas

    return pd.concat(picked).sort_index().reset_index(drop=True)


def paired_bootstrap_ci(y_true: np.ndarray, candidate: np.ndarray, deployed: np.ndarray,
                        n_labels: int, resamples: int, seed: int) -> tuple[float, float]:
    """95% CI of macro-F1(candidate) - macro-F1(deployed), resampling the same indices for both."""
    rng = np.random.default_rng(seed)
    deltas = np.empty(resamples)
    for i in range(resamples):
        idx = rng.integers(0, len(y_true), len(y_true))
        deltas[i] = macro_f1(y_true[idx], candidate[idx], n_labels) - macro_f1(y_true[idx], deployed[idx], n_labels)
    low, high = np.percentile(deltas, [2.5, 97.5])
    return float(low), float(high)


def deployed_predictions(labels: list[str | None], label2id: dict[str, int],
                         failures: dict[int, str]) -> np.ndarray:
    """Label names to ids; an unknown name counts as a failed sample (-1)."""
    ids = np.full(len(labels), -1)
    for i, name in enumerate(labels):
        if name in label2id:
            ids[i] = label2id[name]
        elif i not in failures:
            failures[i] = f"deployed model answered unknown label {name!r}"
    return ids


def build_comparison(cfg, y_true: np.ndarray, candidate: np.ndarray,
                     deployed: np.ndarray | None, failures: dict[int, str]) -> Comparison:
    """Metrics of both models on the samples both were scored on."""
    if len(failures) > cfg.max_failed_samples:
        examples = "; ".join(f"#{i}: {why}" for i, why in list(failures.items())[:3])
        raise ComparisonError(
            f"the deployed API failed on {len(failures)} of {len(y_true)} samples "
            f"(MAX_FAILED_SAMPLES={cfg.max_failed_samples}); not promoting. First failures: {examples}")
    keep = np.array([i not in failures for i in range(len(y_true))])
    y_true, candidate = y_true[keep], candidate[keep]
    candidate_metrics = classification_metrics(y_true, candidate, cfg.labels)
    if deployed is None:
        return Comparison(int(keep.sum()), candidate_metrics, None, None, None, failed_samples=failures)
    deployed = deployed[keep]
    deployed_metrics = classification_metrics(y_true, deployed, cfg.labels)
    ci = paired_bootstrap_ci(y_true, candidate, deployed, len(cfg.labels), cfg.bootstrap_samples, cfg.seed)
    delta = candidate_metrics["macro_f1"] - deployed_metrics["macro_f1"]
    return Comparison(int(keep.sum()), candidate_metrics, deployed_metrics, float(delta), ci,
                      failed_samples=failures)


def decide(cfg, comparison: Comparison) -> Decision:
    """Promote iff the candidate beats the deployed model by the threshold without hurting a class."""
    candidate_f1 = comparison.candidate["macro_f1"]
    if comparison.deployed is None:
        rule = f"first deploy: candidate macro-F1 >= FIRST_DEPLOY_MIN_F1 ({cfg.first_deploy_min_f1})"
        reasons = [] if candidate_f1 >= cfg.first_deploy_min_f1 else [
            f"candidate macro-F1 {candidate_f1:.4f} is below the first-deploy floor {cfg.first_deploy_min_f1}"]
    else:
        rule = (f"ΔF1 > DECISION_THRESHOLD ({cfg.decision_threshold}) and no class F1 drops by more than "
                f"CLASS_F1_TOLERANCE ({cfg.class_f1_tolerance})"
                + (" and CI lower bound > 0" if cfg.require_ci_above_zero else ""))
        reasons = _blocking_reasons(cfg, comparison)
    promote = not reasons
    inputs = {
        "candidate_macro_f1": candidate_f1,
        "deployed_macro_f1": comparison.deployed["macro_f1"] if comparison.deployed else None,
        "delta_f1": comparison.delta_f1, "delta_f1_ci": comparison.delta_f1_ci,
        "n_samples": comparison.n_samples, "deployed_revision": comparison.deployed_revision,
    }
    if promote:
        reasons = ["all conditions hold"]
    return Decision(promote, "promote" if promote else "keep", rule, reasons, inputs)


def _blocking_reasons(cfg, comparison: Comparison) -> list[str]:
    reasons = []
    if comparison.delta_f1 <= cfg.decision_threshold:
        reasons.append(f"ΔF1 {comparison.delta_f1:+.4f} does not exceed the threshold {cfg.decision_threshold}")
    for label, f1 in comparison.candidate["per_class_f1"].items():
        drop = comparison.deployed["per_class_f1"][label] - f1
        if drop > cfg.class_f1_tolerance:
            reasons.append(f"F1 of class {label!r} drops by {drop:.4f} (> {cfg.class_f1_tolerance})")
    if cfg.require_ci_above_zero and comparison.delta_f1_ci[0] <= 0:
        reasons.append(f"the 95% CI of ΔF1 {comparison.delta_f1_ci} includes 0")
    return reasons
