import json

import numpy as np
import pytest

import calibration as cal


def sampled_logits(n: int, classes: int, sharpness: float, seed: int = 0):
    """Logits whose softmax at T=1 is the true label distribution (labels drawn from it),
    then multiplied by `sharpness`: 1 is calibrated, > 1 overconfident."""
    rng = np.random.default_rng(seed)
    base = rng.normal(scale=1.5, size=(n, classes))
    probs = cal.softmax(base)
    labels = np.array([rng.choice(classes, p=p) for p in probs])
    return base * sharpness, labels


def test_softmax_rows_sum_to_one_and_temperature_flattens():
    logits = np.array([[2.0, 0.0, -1.0]])
    assert cal.softmax(logits).sum() == pytest.approx(1.0)
    assert cal.softmax(logits, 4.0).max() < cal.softmax(logits).max()
    assert cal.softmax(logits, 4.0).argmax() == cal.softmax(logits).argmax()


def test_perfectly_calibrated_probabilities_have_ece_near_zero():
    logits, labels = sampled_logits(20000, 3, sharpness=1.0)
    assert cal.ece(cal.softmax(logits), labels) < 0.02


def test_ece_of_always_wrong_full_confidence_is_one():
    probs = np.array([[1.0, 0.0], [0.0, 1.0]])
    assert cal.ece(probs, np.array([1, 0])) == pytest.approx(1.0)


def test_ece_weights_bins_by_their_share_of_samples():
    # Two samples at confidence 0.9 (one right: gap 0.4), two at 0.6 (both right: gap 0.4).
    probs = np.array([[0.9, 0.1], [0.9, 0.1], [0.6, 0.4], [0.6, 0.4]])
    assert cal.ece(probs, np.array([0, 1, 0, 0])) == pytest.approx(0.4)


def test_brier_is_zero_for_certain_truth_and_two_for_certain_error():
    assert cal.brier(np.array([[1.0, 0.0, 0.0]]), np.array([0])) == 0.0
    assert cal.brier(np.array([[0.0, 1.0, 0.0]]), np.array([0])) == pytest.approx(2.0)
    assert cal.brier(np.full((1, 3), 1 / 3), np.array([0])) == pytest.approx(2 / 3)


def test_overconfident_logits_get_t_above_one_and_lower_ece():
    logits, labels = sampled_logits(4000, 3, sharpness=3.0)
    temperature = cal.fit_temperature(logits, labels)
    assert temperature == pytest.approx(3.0, rel=0.15)
    assert cal.ece(cal.softmax(logits, temperature), labels) < cal.ece(cal.softmax(logits), labels) / 3


def test_underconfident_logits_get_t_below_one():
    logits, labels = sampled_logits(4000, 3, sharpness=0.25)
    assert cal.fit_temperature(logits, labels) == pytest.approx(0.25, rel=0.15)


def test_fitted_temperature_minimises_the_nll():
    logits, labels = sampled_logits(500, 4, sharpness=2.0, seed=1)
    temperature = cal.fit_temperature(logits, labels)
    best = cal.nll(logits, labels, temperature)
    assert best <= cal.nll(logits, labels, temperature * 1.05)
    assert best <= cal.nll(logits, labels, temperature / 1.05)


def test_a_perfectly_separated_split_keeps_t_in_bounds():
    logits = np.array([[10.0, -10.0], [-10.0, 10.0]])
    temperature = cal.fit_temperature(logits, np.array([0, 1]))
    assert 0.05 <= temperature <= 20.0


def test_report_fits_on_validation_and_scores_test(tmp_path):
    val_logits, val_labels = sampled_logits(2000, 3, sharpness=3.0, seed=2)
    test_logits, test_labels = sampled_logits(2000, 3, sharpness=3.0, seed=3)
    report = cal.calibration_report(val_logits, val_labels, test_logits, test_labels)
    assert report["temperature"] > 2
    assert report["calibrated"]["ece"] < report["uncalibrated"]["ece"]
    assert report["calibrated"]["brier"] < report["uncalibrated"]["brier"]
    assert report["calibrated"]["nll"] < report["uncalibrated"]["nll"]
    cal.save_temperature(tmp_path, report)
    assert cal.load_temperature(tmp_path) == pytest.approx(report["temperature"])


def test_a_model_folder_without_calibration_uses_plain_softmax(tmp_path):
    assert cal.load_temperature(tmp_path) == 1.0


@pytest.mark.parametrize("bad", [0, -1.5])
def test_a_nonpositive_saved_temperature_is_refused(tmp_path, bad):
    (tmp_path / cal.CALIBRATION_FILE).write_text(json.dumps({"temperature": bad}))
    with pytest.raises(ValueError, match="temperature must be a positive number"):
        cal.load_temperature(tmp_path)


def test_the_space_classifier_serves_softmax_of_logits_over_the_saved_temperature(tiny_model_dir, tmp_path):
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from configs import LABEL_SETS
    from inference_space.classifier import load_classifier

    labels = LABEL_SETS["urgency"]
    model = AutoModelForSequenceClassification.from_pretrained(
        tiny_model_dir, num_labels=3, id2label=dict(enumerate(labels)), label2id={n: i for i, n in enumerate(labels)})
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    with torch.no_grad():
        model.classifier.weight.mul_(300)  # a fresh head's logits are near 0, where T barely shows
    model.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    cal.save_temperature(tmp_path, {"temperature": 2.5})
    texts = ["पानी आएन", "road blocked for a week"]
    with torch.inference_mode():
        logits = model.eval()(**tokenizer(texts, padding=True, return_tensors="pt")).logits.numpy()
    served = load_classifier(tmp_path, labels, "torch").predict_proba(texts)
    assert np.allclose(served, cal.softmax(logits, 2.5), atol=1e-5)
    assert not np.allclose(served, cal.softmax(logits), atol=1e-3)


def test_ece_floor_is_what_perfect_calibration_shows_on_that_many_samples():
    # Labels drawn from the model's own probabilities: calibrated by construction, yet on 120
    # samples the measured ECE sits well above 0, about where ece_floor says.
    observed = [cal.ece(cal.softmax(logits), labels)
                for logits, labels in (sampled_logits(120, 3, 1.0, seed) for seed in range(40))]
    floor = cal.ece_floor(cal.softmax(sampled_logits(120, 3, 1.0)[0]))
    assert 0.05 < floor["mean"] < floor["p90"]
    assert np.mean(observed) == pytest.approx(floor["mean"], rel=0.25)
    assert cal.ece_floor(cal.softmax(sampled_logits(5000, 3, 1.0)[0]))["mean"] < 0.02


def test_calibration_report_says_what_it_was_measured_on():
    val_logits, val_labels = sampled_logits(80, 3, 2.0, seed=1)
    test_logits, test_labels = sampled_logits(120, 3, 2.0, seed=2)
    report = cal.calibration_report(val_logits, val_labels, test_logits, test_labels)
    assert (report["validation_samples"], report["test_samples"]) == (80, 120)
    assert report["ece_floor"]["mean"] > 0.03
