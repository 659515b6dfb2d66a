import json
import subprocess
import sys
from pathlib import Path

import pytest

from metrics import classification_metrics, confusion_matrix_png

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
            "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'transformers'))))")
    loaded = subprocess.run([sys.executable, "-c", code], cwd=PROJECT_ROOT, capture_output=True, text=True,
                            check=True).stdout
    assert json.loads(loaded) == []
