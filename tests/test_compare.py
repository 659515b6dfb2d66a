import numpy as np
import pandas as pd
import pytest

from compare import (
    ComparisonError,
    build_comparison,
    decide,
    deployed_predictions,
    paired_bootstrap_ci,
    stratified_sample,
)
from configs import JobConfig


def cfg(**kwargs):
    return JobConfig(label="urgency", bootstrap_samples=200, **kwargs)


def test_stratified_sample_is_seeded_and_keeps_the_label_mix():
    frame = pd.DataFrame({"text": [f"t{i}" for i in range(1000)], "label": [0] * 600 + [1] * 300 + [2] * 100})
    first = stratified_sample(frame, "label", 300, seed=7)
    assert len(first) == 300
    assert first["label"].value_counts().to_dict() == {0: 180, 1: 90, 2: 30}
    assert first.equals(stratified_sample(frame, "label", 300, seed=7))
    assert not first.equals(stratified_sample(frame, "label", 300, seed=8))


def test_stratified_sample_keeps_rare_classes_and_takes_all_when_small():
    frame = pd.DataFrame({"text": list("abcdefghij"), "label": [0] * 9 + [1]})
    assert 1 in set(stratified_sample(frame, "label", 3, seed=0)["label"])
    assert len(stratified_sample(frame, "label", 50, seed=0)) == 10


def test_bootstrap_ci_brackets_the_observed_difference():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 300)
    better = np.where(rng.random(300) < 0.8, y, (y + 1) % 3)
    worse = np.where(rng.random(300) < 0.5, y, (y + 1) % 3)
    low, high = paired_bootstrap_ci(y, better, worse, 3, 300, seed=1)
    assert 0 < low < high
    same_low, same_high = paired_bootstrap_ci(y, better, better, 3, 100, seed=1)
    assert same_low == same_high == 0


def _comparison(candidate_pred, deployed_pred, config=None, failures=None):
    y = np.array([0, 0, 1, 1, 2, 2] * 10)
    return build_comparison(config or cfg(), y, np.array(candidate_pred * 10),
                            None if deployed_pred is None else np.array(deployed_pred * 10), failures or {})


def test_better_candidate_is_promoted():
    decision = decide(cfg(), _comparison([0, 0, 1, 1, 2, 2], [0, 1, 1, 0, 2, 2]))
    assert decision.promote and decision.outcome == "promote"


def test_worse_or_equal_candidate_is_kept():
    assert not decide(cfg(), _comparison([0, 1, 1, 0, 2, 2], [0, 0, 1, 1, 2, 2])).promote
    kept = decide(cfg(), _comparison([0, 0, 1, 1, 2, 2], [0, 0, 1, 1, 2, 2]))
    assert not kept.promote and "threshold" in kept.reasons[0]


def test_a_class_collapsing_blocks_promotion_even_with_higher_macro_f1():
    # candidate: perfect on 0 and 1, loses class 2 partly; deployed: mediocre everywhere but decent on 2
    comparison = _comparison([0, 0, 1, 1, 2, 0], [0, 1, 1, 2, 2, 2], cfg(class_f1_tolerance=0.01))
    decision = decide(cfg(class_f1_tolerance=0.01), comparison)
    assert comparison.delta_f1 > 0 and not decision.promote
    assert any("HIGHLY URGENT" in reason for reason in decision.reasons)


def test_first_deploy_needs_the_absolute_floor():
    good = _comparison([0, 0, 1, 1, 2, 2], None)
    assert decide(cfg(), good).promote and good.deployed is None
    assert not decide(cfg(first_deploy_min_f1=0.9), _comparison([0, 1, 1, 2, 2, 0], None)).promote


def test_failed_samples_are_excluded_for_both_models_or_fail_the_run():
    comparison = _comparison([0, 0, 1, 1, 2, 2], [0, 0, 1, 1, 2, 2], cfg(max_failed_samples=2), {0: "x", 5: "y"})
    assert comparison.n_samples == 58
    with pytest.raises(ComparisonError, match="MAX_FAILED_SAMPLES"):
        _comparison([0, 0, 1, 1, 2, 2], [0, 0, 1, 1, 2, 2], cfg(max_failed_samples=1), {0: "x", 5: "y"})


def test_unknown_deployed_label_counts_as_failure():
    failures = {2: "timeout"}
    ids = deployed_predictions(["NORMAL", "SPAM", None], {"NORMAL": 0}, failures)
    assert ids.tolist() == [0, -1, -1]
    assert "SPAM" in failures[1] and failures[2] == "timeout"
