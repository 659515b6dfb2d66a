"""The int8 ONNX fast path: same API, same labels, export cached beside the snapshot."""
from __future__ import annotations

import httpx
import numpy as np

from configs import LABEL_SETS
from inference_space.app import create_app
from inference_space.classifier import load_classifier
from inference_space.onnx_backend import ONNX_FILE
from inference_space.settings import load_settings
from tests.fixtures.space import serve, wait_for_status

TEXTS = ["सडकमा पानी जमेको छ", "no teacher at the school for three months", "बिजुली छैन", "police"]


def test_onnx_int8_gives_the_same_labels_as_torch(space_classifier_dir, tmp_path):
    import shutil

    folder = shutil.copytree(space_classifier_dir, tmp_path / "snapshot")
    torch_probs = load_classifier(folder, LABEL_SETS["urgency"], "torch").predict_proba(TEXTS)
    onnx_model = load_classifier(folder, LABEL_SETS["urgency"], "onnx")
    assert (folder / ONNX_FILE).exists()
    onnx_probs = onnx_model.predict_proba(TEXTS)
    assert onnx_probs.shape == torch_probs.shape
    np.testing.assert_allclose(onnx_probs, torch_probs, atol=0.02)
    np.testing.assert_array_equal(onnx_probs.argmax(-1), torch_probs.argmax(-1))


def test_onnx_backend_serves_the_same_api(space_env, space_hub, publish_space_version, monkeypatch):
    publish_space_version(space_hub, "v20260101_000000")
    monkeypatch.setenv("INFERENCE_BACKEND", "onnx")
    with serve(create_app(load_settings())) as url, httpx.Client(base_url=url) as client:
        health = wait_for_status(client)
        answer = client.post("/predict/batch", json={"texts": TEXTS}).json()["predictions"]
    assert health["status"] == "ok" and health["backend"] == "onnx"
    assert [set(p["scores"]) for p in answer] == [set(LABEL_SETS["urgency"])] * len(TEXTS)
    assert list(space_env.rglob("model.int8.onnx"))  # cached beside the snapshot in CACHE_DIR
