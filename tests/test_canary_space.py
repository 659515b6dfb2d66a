"""The inference Space with two versions (CANARY_REVISION): a canary answers a deterministic share
of the requests, a shadow never changes an answer, and a bad canary leaves the stable version
serving alone. The app on a real port, tiny classifiers published on the local hub."""
from __future__ import annotations

import hashlib
import shutil

import httpx
import pandas as pd
import pytest

from feedback.store import FeedbackStore
from inference_space.app import create_app
from inference_space.classifier import predict_in_chunks
from inference_space.settings import load_settings
from tests.fixtures.models import DATA_DIR
from tests.fixtures.space import build_classifier, serve, wait_for_metric, wait_for_status
from text_cleaning import clean

V1, V2 = "v20260101_000000", "v20260102_000000"
TEXTS = [clean(text) for text in pd.read_csv(DATA_DIR / "test.csv").text[:48]]


@pytest.fixture(scope="module")
def other_classifier_dir(tiny_model_dir, tmp_path_factory):
    """A second version whose random head labels many texts differently from the first."""
    return build_classifier(tiny_model_dir, tmp_path_factory.mktemp("other-classifier"), seed=1)


def publish_folder(hub, repo_id: str, folder, tag: str) -> None:
    hub.upload_folder(repo_id, folder, f"model {tag}")
    hub.create_tag(repo_id, tag, hub.resolve_revision(repo_id, "main"))


@pytest.fixture
def two_versions(space_env, space_hub, publish_space_version, space_model_repo, other_classifier_dir, monkeypatch):
    """V1 (stable, pinned) and V2 (the canary) in the Space's model repo."""
    publish_space_version(space_hub, V1)
    publish_folder(space_hub, space_model_repo, other_classifier_dir, V2)
    monkeypatch.setenv("MODEL_REVISION", V1)
    monkeypatch.setenv("CANARY_REVISION", V2)


def health_when_loaded(client: httpx.Client) -> dict:
    health = wait_for_status(client)
    while health["canary"]["status"] == "loading":
        health = wait_for_status(client)
    return health


def test_canary_answers_a_deterministic_share_and_reports_each_versions_figures(two_versions, monkeypatch):
    monkeypatch.setenv("CANARY_SHARE", "0.3")
    with serve(create_app(load_settings())) as url, httpx.Client(base_url=url, timeout=30) as client:
        assert health_when_loaded(client)["canary"]["status"] == "ok"
        answers = client.post("/predict/batch", json={"texts": TEXTS}).json()["predictions"]
        again = client.post("/predict", json={"text": TEXTS[0]}).json()
        reported = client.post("/feedback", json={"text": TEXTS[1], "predicted_label": answers[1]["label"],
                                                  "corrected_label": "URGENT"})
        health, metrics = client.get("/health").json(), client.get("/metrics").text
    expected = [V2 if int(hashlib.sha256(text.encode()).hexdigest()[:16], 16) / 2**64 < 0.3 else V1 for text in TEXTS]
    assert [answer["version"] for answer in answers] == expected and {V1, V2} == set(expected)
    assert again["version"] == expected[0]  # the same text goes to the same version
    stable, canary = health["versions"]["stable"], health["versions"]["canary"]
    assert (stable["revision"], canary["revision"]) == (V1, V2)
    assert (stable["answered"], canary["answered"]) == (expected.count(V1) + (V1 == expected[0]),
                                                        expected.count(V2) + (V2 == expected[0]))
    assert canary["compared"] == canary["answered"] and canary["agreement_rate"] is not None
    assert stable["mean_latency_s"] > 0 and canary["mean_latency_s"] > 0
    assert reported.status_code == 201 and stable["feedback_labelled"] == canary["feedback_labelled"] == 1
    assert {stable["feedback_accuracy"], canary["feedback_accuracy"]} <= {0.0, 1.0}
    assert f'inference_version_answered_total{{revision="{V2}",role="canary"}} {float(canary["answered"])}' in metrics


def test_shadow_scores_every_request_and_never_changes_an_answer(two_versions, monkeypatch):
    monkeypatch.setenv("CANARY_MODE", "shadow")
    heard = []
    app = create_app(load_settings(), on_disagreement=lambda text, stable, canary: heard.append((text, stable, canary)))
    with serve(app) as url, httpx.Client(base_url=url, timeout=30) as client:
        assert health_when_loaded(client)["canary"]["mode"] == "shadow"
        answers = client.post("/predict/batch", json={"texts": TEXTS}).json()["predictions"]
        canary = client.get("/health").json()["versions"]["canary"]
    stable_alone = predict_in_chunks(app.state.server.state.model.classifier, TEXTS, 32)
    assert answers == [prediction | {"version": V1} for prediction in stable_alone]
    assert (canary["answered"], canary["scored"], canary["compared"]) == (0, len(TEXTS), len(TEXTS))
    assert heard and len(heard) == canary["compared"] - canary["agreed"]
    assert all(stable["version"] == V1 and shadow["version"] == V2 and stable["label"] != shadow["label"]
               for _, stable, shadow in heard)


def test_shadow_disagreements_are_queued_for_review_with_the_canarys_label(two_versions, monkeypatch):
    monkeypatch.setenv("CANARY_MODE", "shadow")
    with serve(create_app(load_settings())) as url, httpx.Client(base_url=url, timeout=30) as client:
        health_when_loaded(client)
        # the batch route queues no low-confidence items: whatever is queued is a disagreement
        answers = client.post("/predict/batch", json={"texts": TEXTS}).json()["predictions"]
        canary = client.get("/health").json()["versions"]["canary"]
        disagreements = canary["compared"] - canary["agreed"]
        wait_for_metric(client, 'inference_review_queue_total{outcome="queued"}', float(disagreements))
    queued = FeedbackStore(load_settings().feedback_db_url).list_pending("urgency", queued_only=True)
    answered = dict(zip(TEXTS, answers))
    assert disagreements and len(queued) == disagreements
    for item in queued:
        assert item.source == "shadow_disagreement" and item.predicted_label == answered[item.text]["label"]
        assert item.corrected_label not in (None, item.predicted_label)  # the canary's label, unreviewed
        assert not item.reviewed


def broken_version(space_hub, space_model_repo, space_classifier_dir, tmp_path) -> str:
    """A version whose weights file is garbage: loading it raises."""
    folder = tmp_path / "broken"
    shutil.copytree(space_classifier_dir, folder)
    (folder / "model.safetensors").write_bytes(b"not a safetensors file")
    publish_folder(space_hub, space_model_repo, folder, "v20260103_000000")
    return "v20260103_000000"


@pytest.mark.parametrize("case", ["revision that does not exist", "share outside [0, 1]", "crashes while loading"])
def test_a_bad_canary_leaves_the_stable_version_serving_alone(two_versions, monkeypatch, case, space_hub,
                                                               space_model_repo, space_classifier_dir, tmp_path):
    if case == "revision that does not exist":
        monkeypatch.setenv("CANARY_REVISION", "v20990101_000000")
        expected = "v20990101_000000"
    elif case == "share outside [0, 1]":
        monkeypatch.setenv("CANARY_SHARE", "1.5")
        expected = "CANARY_SHARE=1.5 is outside [0, 1]"
    else:
        monkeypatch.setenv("CANARY_REVISION", broken_version(space_hub, space_model_repo, space_classifier_dir,
                                                             tmp_path))
        expected = "SafetensorError"
    monkeypatch.setenv("CANARY_SHARE", "1.5" if "share" in case else "1")  # else: every request to a canary
    with serve(create_app(load_settings())) as url, httpx.Client(base_url=url, timeout=30) as client:
        health = health_when_loaded(client)
        answers = client.post("/predict/batch", json={"texts": TEXTS[:8]}).json()["predictions"]
    assert health["status"] == "ok" and health["revision"] == V1
    assert health["canary"]["status"] == "error" and expected in health["canary"]["error"], health["canary"]
    assert [answer["version"] for answer in answers] == [V1] * 8
