"""The slim inference image: a release exported to ONNX at promotion, served without torch."""
from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import httpx
import numpy as np
import pytest

from configs import LABEL_SETS
from inference_space.classifier import TorchClassifier, load_classifier
from inference_space.onnx_model import ONNX_MODEL, OrtClassifier, load_onnx_release
from onnx_export import add_onnx_to_release, save_samples
from tests.fixtures.space import SPACE_LABEL, free_port

ROOT = Path(__file__).resolve().parents[1]
TEXTS = ["सडकमा पानी जमेको छ", "no teacher at the school for three months", "बिजुली छैन", "police",
         "water " * 300]  # the last one is truncated to max_length
HEAVY = ("torch", "transformers", "datasets", "sklearn", "scipy", "pandas", "pyarrow")


def release_copy(classifier_dir: Path, folder: Path, metadata: dict | None = None) -> Path:
    shutil.copytree(classifier_dir, folder)
    (folder / "metadata.json").write_text(json.dumps(metadata or {"version": "v1"}))
    return folder


@pytest.fixture(scope="session")
def onnx_release(space_classifier_dir, tmp_path_factory) -> Path:
    """The tiny classifier's release folder after the promotion's ONNX step."""
    tmp = tmp_path_factory.mktemp("onnx-release")
    folder = release_copy(space_classifier_dir, tmp / "release")
    save_samples(tmp, TEXTS * 4, [i % 3 for i in range(len(TEXTS) * 4)])
    add_onnx_to_release(folder, tmp, LABEL_SETS[SPACE_LABEL], 128)
    return folder


def test_promotion_ships_the_first_variant_that_keeps_f1(onnx_release):
    record = json.loads((onnx_release / "metadata.json").read_text())["onnx"]
    assert record["variant"] == "int8-matmul" and "error" not in record
    assert (onnx_release / ONNX_MODEL).stat().st_size == record["variants"]["int8-matmul"]["bytes"]
    for variant in record["variants"].values():
        assert variant["within_tolerance"] == (variant["macro_f1"] >= record["eager_macro_f1"] - 0.01)
        assert 0 <= variant["agreement"] <= 1
    assert json.loads((onnx_release / "metadata.json").read_text())["version"] == "v1"  # the rest kept


def test_release_without_a_fast_tokenizer_ships_without_onnx_and_says_why(space_classifier_dir, tmp_path):
    folder = release_copy(space_classifier_dir, tmp_path / "release")
    (folder / "tokenizer.json").unlink()
    save_samples(tmp_path, TEXTS, [0, 1, 2, 0, 1])
    record = add_onnx_to_release(folder, tmp_path, LABEL_SETS[SPACE_LABEL], 128)
    assert record["variant"] is None and "tokenizer.json" in record["error"]
    assert not (folder / ONNX_MODEL).exists()
    assert json.loads((folder / "metadata.json").read_text())["onnx"] == record


def test_fp32_onnx_scores_match_the_torch_backend(space_classifier_dir, tmp_path):
    from inference_space.onnx_backend import export_folder_fp32

    folder = release_copy(space_classifier_dir, tmp_path / "release")
    export_folder_fp32(folder, folder / ONNX_MODEL)
    torch_model = load_classifier(folder, LABEL_SETS[SPACE_LABEL], "torch")
    onnx_model = load_onnx_release(folder, LABEL_SETS[SPACE_LABEL])
    assert onnx_model.labels == torch_model.labels
    np.testing.assert_allclose(onnx_model.predict_proba(TEXTS), torch_model.predict_proba(TEXTS), atol=1e-4)


def test_both_backends_serve_the_calibrated_temperature_alike(space_classifier_dir, tmp_path):
    from inference_space.onnx_backend import export_folder_fp32

    folder = release_copy(space_classifier_dir, tmp_path / "release")
    export_folder_fp32(folder, folder / ONNX_MODEL)
    plain = load_onnx_release(folder, LABEL_SETS[SPACE_LABEL]).predict_proba(TEXTS)
    (folder / "calibration.json").write_text(json.dumps({"temperature": 3.0}))
    onnx_model = load_onnx_release(folder, LABEL_SETS[SPACE_LABEL])
    torch_model = load_classifier(folder, LABEL_SETS[SPACE_LABEL], "torch")
    np.testing.assert_allclose(onnx_model.predict_proba(TEXTS), torch_model.predict_proba(TEXTS), atol=1e-4)
    calibrated = onnx_model.predict_proba(TEXTS)
    assert (calibrated.max(axis=1) < plain.max(axis=1)).all()  # T > 1 softens every answer
    assert (calibrated.argmax(axis=1) == plain.argmax(axis=1)).all()  # and never changes the label


def test_auto_backend_serves_onnx_only_when_the_release_has_it(onnx_release, space_classifier_dir):
    assert isinstance(load_classifier(onnx_release, LABEL_SETS[SPACE_LABEL], "auto"), OrtClassifier)
    assert isinstance(load_classifier(space_classifier_dir, LABEL_SETS[SPACE_LABEL], "auto"), TorchClassifier)


def test_onnx_backend_predicts_like_torch_without_importing_torch(onnx_release):
    script = textwrap.dedent(f"""
        import json, sys
        from inference_space.classifier import load_classifier, predict_in_chunks
        model = load_classifier({str(onnx_release)!r}, {LABEL_SETS[SPACE_LABEL]!r}, "onnx")
        predictions = predict_in_chunks(model, {TEXTS!r}, 2)
        print(json.dumps({{"predictions": predictions, "loaded": [m for m in {HEAVY!r} if m in sys.modules]}}))
    """)
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    answer = json.loads(done.stdout.strip().splitlines()[-1])
    assert answer["loaded"] == []
    torch_probs = load_classifier(onnx_release, LABEL_SETS[SPACE_LABEL], "torch").predict_proba(TEXTS)
    labels = load_classifier(onnx_release, LABEL_SETS[SPACE_LABEL], "torch").labels
    assert [p["label"] for p in answer["predictions"]] == [labels[i] for i in torch_probs.argmax(-1)]
    onnx_probs = np.array([[p["scores"][label] for label in labels] for p in answer["predictions"]])
    np.testing.assert_allclose(onnx_probs, torch_probs, atol=0.02)  # int8 weights


# Runs `python -m inference_space` as the slim image would: torch & co. cannot be imported at all.
BLOCKING_LAUNCHER = textwrap.dedent(f"""
    import runpy, sys

    class Blocked:
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in {HEAVY!r}:
                raise ModuleNotFoundError(f"{{name}} is not in the slim image", name=name)
            return None

    sys.meta_path.insert(0, Blocked())
    runpy.run_module("inference_space", run_name="__main__", alter_sys=True)
""")


def test_slim_space_serves_a_released_onnx_model_with_torch_blocked(
        onnx_release, local_hub, hub_client, space_model_repo, tmp_path):
    from tests.test_inference_space_process import poll_health, space_process_env

    hub_client.ensure_repo(space_model_repo)
    hub_client.create_tag(space_model_repo, "v20260101_000000",
                          hub_client.upload_folder(space_model_repo, onnx_release, "release"))
    dataset_repo = f"{space_model_repo}-data"
    hub_client.ensure_repo(dataset_repo, "dataset")
    port, log = free_port(), tmp_path / "space.log"
    env = space_process_env(tmp_path, LABEL=SPACE_LABEL, MODEL_ID=space_model_repo, HF_ENDPOINT=local_hub.url,
                            PORT=str(port), INFERENCE_BACKEND="onnx", CACHE_DIR=str(tmp_path / "cache"),
                            FEEDBACK_DB_URL=f"sqlite:///{tmp_path / 'feedback.db'}", ADMIN_TOKEN="admin-secret",
                            DATASET_REPO_ID=dataset_repo)
    with log.open("w") as out:
        process = subprocess.Popen([sys.executable, "-c", BLOCKING_LAUNCHER], cwd=ROOT, env=env,
                                   stdout=out, stderr=subprocess.STDOUT)
    admin = {"Authorization": "Bearer admin-secret"}
    try:
        url = f"http://127.0.0.1:{port}"
        health = poll_health(url, until={"ok", "error"}, exit_of=process, log=log)
        assert health["status"] == "ok", health
        answers = {route: httpx.post(f"{url}{route}", json={"text": TEXTS[0]}, timeout=30)
                   for route in ("/predict", f"/predict_{SPACE_LABEL}")}
        reported = httpx.post(f"{url}/feedback", json={"text": TEXTS[0], "predicted_label": "NORMAL"}, timeout=30)
        metrics = httpx.get(f"{url}/metrics", timeout=30)
        retrain = httpx.post(f"{url}/admin/retrain", headers=admin, timeout=30)
        status = httpx.get(f"{url}/admin/status", headers=admin, timeout=30)
    finally:
        process.terminate()
        process.wait(timeout=30)
    for answer in answers.values():
        assert answer.status_code == 200, answer.text
        assert answer.json()["label"] in LABEL_SETS[SPACE_LABEL]
    assert reported.status_code == 201, reported.text
    assert "inference_feedback_reports_total 1.0" in metrics.text
    # Publishing a dataset version needs pandas and pyarrow: the route says so and how to get them.
    assert retrain.status_code == 501, retrain.text
    assert "requirements-admin.txt" in retrain.json()["detail"] and "pandas" in retrain.json()["detail"]
    assert status.status_code == 200 and status.json()["missing_for_publishing"] == ["pandas", "pyarrow"]
    # Only the files the ONNX backend reads were downloaded, not the torch weights.
    assert list((tmp_path / "cache").rglob(ONNX_MODEL)) and not list((tmp_path / "cache").rglob("model.safetensors"))


def requirement_lines(path: Path) -> set[str]:
    return {line.strip() for line in path.read_text().splitlines() if line.strip() and not line.startswith("#")}


def requirement_names(lines: set[str]) -> set[str]:
    return {re.split(r"[\[=<>]", line)[0].lower() for line in lines}


def test_slim_requirements_pin_the_project_versions_without_torch():
    slim = requirement_lines(ROOT / "inference_space" / "requirements.txt")
    assert slim <= requirement_lines(ROOT / "requirements.txt")
    names = requirement_names(slim)
    assert {"onnxruntime", "tokenizers", "fastapi"} <= names and not names & {"torch", "transformers", "datasets",
                                                                                "scikit-learn", "pandas", "pyarrow"}
    admin = requirement_lines(ROOT / "inference_space" / "requirements-admin.txt")
    assert "-r requirements.txt" in admin  # the slim set, plus what publishing a dataset version needs
    assert requirement_names(admin - {"-r requirements.txt"}) == {"pandas", "pyarrow"}
    assert admin - {"-r requirements.txt"} <= requirement_lines(ROOT / "requirements.txt")
    dockerfile = (ROOT / "inference_space" / "Dockerfile").read_text()
    assert "ARG REQUIREMENTS=inference_space/requirements.txt" in dockerfile
    assert "ARG INFERENCE_BACKEND=onnx" in dockerfile


def test_promotion_pushes_a_checked_model_onnx_in_the_release_commit(loop, monkeypatch):
    loop.start_inference_space(serving=False)
    code = loop.run(monkeypatch)
    summary = loop.summary()
    assert code == 0 and summary["outcome"] == "promoted", summary.get("error")
    files = set(loop.client.list_files(loop.model_repo, summary["version"]))
    assert {ONNX_MODEL, "tokenizer.json", "config.json", "model.safetensors"} <= files
    metadata = json.loads(loop.client.download_file(loop.model_repo, "metadata.json", summary["version"]).read_text())
    record = metadata["onnx"]
    assert record["variant"] in record["variants"] and record["n_samples"] == summary["comparison"]["n_samples"]
    assert record["variants"][record["variant"]]["within_tolerance"]
