import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from metrics import classification_metrics, confusion_matrix, confusion_matrix_png

PROJECT_ROOT = Path(__file__).resolve().parents[1]


def test_metrics_include_every_label_even_if_absent():
    labels = ["a", "b", "c"]
    metrics = classification_metrics([0, 0, 1, 1], [0, 0, 1, 0], labels)
    assert metrics["accuracy"] == 0.75
    assert metrics["per_class_f1"] == {"a": pytest.approx(0.8), "b": pytest.approx(2 / 3), "c": 0.0}
    assert metrics["macro_f1"] == pytest.approx((0.8 + 2 / 3) / 3)


def test_confusion_matrix_png_is_written(tmp_path):
    path = confusion_matrix_png([0, 1, 2], [0, 2, 2], ["NORMAL", "URGENT", "HIGHLY URGENT"],
                                tmp_path / "cm" / "test.png", "urgency test")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("module", ["compare", "metrics"])
def test_deciding_does_not_load_torch(module):
    code = (f"import json, sys; import {module}; "
            "heavy = ('torch', 'transformers', 'sklearn', 'datasets'); "
            "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in heavy)))")
    loaded = subprocess.run([sys.executable, "-c", code], cwd=PROJECT_ROOT, capture_output=True, text=True,
                            check=True).stdout
    assert json.loads(loaded) == []


@pytest.mark.parametrize("seed", range(20))
def test_metrics_equal_scikit_learns(seed):
    from sklearn import metrics as sk

    rng = np.random.default_rng(seed)
    n_labels, n = int(rng.integers(2, 5)), int(rng.integers(1, 40))
    y_true = rng.integers(0, n_labels, n)
    y_pred = rng.integers(-1 if seed % 3 == 0 else 0, n_labels, n)  # -1: an answer outside the label set
    ids = list(range(n_labels))
    ours = classification_metrics(y_true, y_pred, [f"c{i}" for i in ids])
    assert ours["accuracy"] == pytest.approx(sk.accuracy_score(y_true, y_pred))
    for average in ("macro", "weighted"):
        assert ours[f"{average}_f1"] == pytest.approx(sk.f1_score(y_true, y_pred, labels=ids, average=average,
                                                                  zero_division=0))
    assert list(ours["per_class_f1"].values()) == pytest.approx(
        sk.f1_score(y_true, y_pred, labels=ids, average=None, zero_division=0))
    np.testing.assert_array_equal(confusion_matrix(y_true, y_pred, n_labels),
                                  sk.confusion_matrix(y_true, y_pred, labels=ids))


def test_help_answers_without_loading_the_model_stack():
    code = ("import json, runpy, sys\nsys.argv = ['train_model.py', '--help']\n"
            "try:\n    runpy.run_path('train_model.py', run_name='__main__')\nexcept SystemExit:\n    pass\n"
            "heavy = ('torch', 'transformers', 'sklearn', 'datasets', 'scipy')\n"
            "sys.stderr.write(json.dumps(sorted({m.split('.')[0] for m in sys.modules} & set(heavy))))")
    loaded = subprocess.run([sys.executable, "-c", code], cwd=PROJECT_ROOT, capture_output=True, text=True,
                            check=True).stderr
    assert json.loads(loaded.strip().splitlines()[-1]) == []
