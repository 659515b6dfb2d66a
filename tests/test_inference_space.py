"""The inference Space over HTTP: a tiny classifier published as tagged versions, the app on a
real port (uvicorn), called with httpx."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from configs import LABEL_SETS
from inference_space.app import create_app
from inference_space.settings import load_settings
from tests.fixtures.space import BlockingHub, serve, wait_for_status

LABELS = LABEL_SETS["urgency"]
V1, V2 = "v20260101_000000", "v20260102_000000"
TEXTS = ["सडकमा पानी जमेको छ", "The school has no teacher for three months and the children wait outside",
         "बिजुली", "police did not register my complaint"]


class FakeStore:
    def __init__(self, error: Exception | None = None):
        self.reports, self.error = [], error

    def record_report(self, **report) -> int:
        if self.error:
            raise self.error
        self.reports.append(report)
        return len(self.reports)


@pytest.fixture
def space(space_env, model_hub, publish_version):
    """A running Space serving V1; yields (httpx client, hub, app)."""
    publish_version(model_hub, V1)
    app = create_app(load_settings(), hub=model_hub, feedback_store=FakeStore())
    with serve(app) as url, httpx.Client(base_url=url, timeout=30) as client:
        assert wait_for_status(client)["status"] == "ok"
        yield client, model_hub, app


def test_health_is_loading_at_once_then_serves_the_newest_tag(space_env, model_hub, publish_version):
    publish_version(model_hub, "v20251231_000000")
    commit = publish_version(model_hub, V1)
    hub = BlockingHub(model_hub)
    with serve(create_app(load_settings(), hub=hub)) as url, httpx.Client(base_url=url) as client:
        assert client.get("/health").json()["status"] == "loading"
        waiting = client.post("/predict", json={"text": "water"})
        assert waiting.status_code == 503 and waiting.headers["Retry-After"] == "5"
        hub.release.set()
        health = wait_for_status(client)
    assert health["status"] == "ok" and health["label_type"] == "urgency"
    assert health["model_id"] == "retrainspace/grievance-urgency-classifier"
    assert (health["revision"], health["commit"]) == (V1, commit)
    assert health["loaded_at"]


def test_predict_returns_label_confidence_and_scores(space):
    client, _, _ = space
    answer = client.post("/predict", json={"text": TEXTS[1]}).json()
    assert set(answer["scores"]) == set(LABELS) and answer["label"] in LABELS
    assert answer["confidence"] == max(answer["scores"].values()) == answer["scores"][answer["label"]]
    assert sum(answer["scores"].values()) == pytest.approx(1.0, abs=1e-5)


def test_batch_keeps_the_order_of_the_texts(space):
    client, _, _ = space
    texts = TEXTS * 20  # 80 > MAX_BATCH is refused; 64 spans two forward chunks of 32
    batch = client.post("/predict/batch", json={"texts": texts[:64]}).json()["predictions"]
    assert len(batch) == 64
    for text, prediction in zip(texts[:64:13], batch[::13]):
        single = client.post("/predict", json={"text": text}).json()
        assert prediction["label"] == single["label"]
        for label in LABELS:
            assert prediction["scores"][label] == pytest.approx(single["scores"][label], abs=1e-4)


def test_concurrent_requests_all_succeed(space):
    client, _, _ = space
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda text: client.post("/predict", json={"text": text}), TEXTS * 6))
    assert [a.status_code for a in answers] == [200] * len(answers)


@pytest.mark.parametrize("path,body,message", [
    ("/predict", {"text": ""}, "text: the text is empty"),
    ("/predict", {"text": "   \n"}, "text: the text is empty"),
    ("/predict", {"text": "x" * 5001}, "MAX_TEXT_CHARS=5000"),
    ("/predict", {"texts": ["a"]}, "text: Field required"),
    ("/predict", {"text": 42}, "text: Input should be a valid string"),
    ("/predict/batch", {"texts": []}, "texts: the list is empty"),
    ("/predict/batch", {"texts": ["ok"] * 65}, "MAX_BATCH=64"),
    ("/predict/batch", {"texts": ["ok", " "]}, "texts[1]: the text is empty"),
    ("/predict/batch", {"texts": "one text"}, "texts: Input should be a valid list"),
    ("/predict/batch", [1, 2], "Input should be a valid dictionary"),
])
def test_bad_requests_are_422_with_a_message(space, path, body, message):
    client, _, _ = space
    response = client.post(path, json=body)
    assert response.status_code == 422
    assert message in response.json()["detail"]


def test_malformed_json_is_422(space):
    client, _, _ = space
    response = client.post("/predict", content=b'{"text": "unterminated', headers={"content-type": "application/json"})
    assert response.status_code == 422 and "JSON" in response.json()["detail"]


def test_repo_without_version_tag_is_an_error_in_health(space_env, model_hub):
    with serve(create_app(load_settings(), hub=model_hub)) as url, httpx.Client(base_url=url) as client:
        health = wait_for_status(client, "error")
        refused = client.post("/predict", json={"text": "water"})
    assert health["status"] == "error"
    assert "no v* version tag" in health["error"] and "MODEL_REVISION" in health["error"]
    assert refused.status_code == 503 and "Retry-After" in refused.headers


def test_load_error_never_shows_the_token(space_env, model_hub, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "hf_verysecret123")

    class LeakyHub:
        def newest_version_tag(self, repo_id):
            raise PermissionError("401 for token hf_verysecret123 on " + repo_id)

    with serve(create_app(load_settings(), hub=LeakyHub())) as url, httpx.Client(base_url=url) as client:
        health = wait_for_status(client, "error")
        metrics = client.get("/metrics").text
    assert "401" in health["error"] and "grievance-urgency-classifier" in health["error"]
    assert "hf_verysecret123" not in str(health) + metrics


def test_model_for_another_label_set_is_refused(space_env, model_hub, publish_version, monkeypatch):
    publish_version(model_hub, V1, repo_id="retrainspace/grievance-department-classifier")
    monkeypatch.setenv("LABEL", "department")
    with serve(create_app(load_settings(), hub=model_hub)) as url, httpx.Client(base_url=url) as client:
        health = wait_for_status(client, "error")
    assert "ModelLabelsMismatch" in health["error"] and "LABEL" in health["error"]


def test_pinned_revision_is_served_instead_of_the_newest(space_env, model_hub, publish_version, monkeypatch):
    old = publish_version(model_hub, V1)
    publish_version(model_hub, V2)
    monkeypatch.setenv("MODEL_REVISION", V1)
    with serve(create_app(load_settings(), hub=model_hub)) as url, httpx.Client(base_url=url) as client:
        health = wait_for_status(client)
    assert (health["revision"], health["commit"]) == (V1, old)


def test_restart_after_a_new_tag_serves_the_new_revision(space, publish_version):
    client, hub, _ = space
    assert client.get("/health").json()["revision"] == V1
    new = publish_version(hub, V2)
    with serve(create_app(load_settings(), hub=hub)) as url, httpx.Client(base_url=url) as restarted:
        health = wait_for_status(restarted)
    assert (health["revision"], health["commit"]) == (V2, new)


def test_feedback_is_recorded_for_this_label_type(space):
    client, _, app = space
    response = client.post("/feedback", json={"text": TEXTS[0], "predicted_label": "NORMAL",
                                               "corrected_label": "URGENT", "reporter": "ward-4"})
    assert response.status_code == 201 and response.json()["id"] == 1
    [report] = app.state.recorder.store().reports
    assert report == {"text": TEXTS[0], "complaint_id": None, "label_type": "urgency",
                      "predicted_label": "NORMAL", "corrected_label": "URGENT", "reporter": "ward-4"}


@pytest.mark.parametrize("body,message", [
    ({"text": "x", "predicted_label": "SOON"}, "predicted_label: 'SOON' is not one of"),
    ({"text": "x", "predicted_label": "NORMAL", "corrected_label": "Security & Law Enforcement"},
     "corrected_label"),
    ({"text": " ", "predicted_label": "NORMAL"}, "text: the text is empty"),
    ({"complaint_id": "C-7", "predicted_label": "NORMAL"}, "text: Field required"),
    ({"text": "x"}, "predicted_label: Field required"),
])
def test_bad_feedback_is_422(space, body, message):
    client, _, app = space
    response = client.post("/feedback", json=body)
    assert response.status_code == 422 and message in response.json()["detail"]
    assert app.state.recorder.store().reports == []


def test_feedback_store_down_is_503_without_the_password(space_env, model_hub, monkeypatch):
    url = "postgresql://space:dbpass42@db.internal/feedback"
    monkeypatch.setenv("FEEDBACK_DB_URL", url)
    store = FakeStore(ConnectionError(f"could not connect to {url}"))
    with serve(create_app(load_settings(), hub=model_hub, feedback_store=store)) as base, \
            httpx.Client(base_url=base) as client:
        response = client.post("/feedback", json={"text": "x", "complaint_id": "C-7", "predicted_label": "URGENT"})
    assert response.status_code == 503 and "db.internal" in response.json()["detail"]
    assert "dbpass42" not in response.text


def test_duplicate_feedback_is_409(space_env, model_hub):
    class Duplicate(RuntimeError):
        existing_id = 3

    store = FakeStore(Duplicate("this text was already reported"))
    with serve(create_app(load_settings(), hub=model_hub, feedback_store=store)) as base, \
            httpx.Client(base_url=base) as client:
        response = client.post("/feedback", json={"text": "x", "predicted_label": "URGENT"})
    assert response.status_code == 409 and "report 3" in response.json()["detail"]


def metric_value(text: str, sample: str) -> float | None:
    for line in text.splitlines():
        if line.startswith(sample + " "):
            return float(line.rsplit(" ", 1)[1])
    return None


def test_metrics_count_predictions_feedback_and_show_the_version(space):
    client, _, _ = space
    labels = [p["label"] for p in client.post("/predict/batch", json={"texts": TEXTS}).json()["predictions"]]
    labels.append(client.post("/predict", json={"text": TEXTS[0]}).json()["label"])
    client.post("/feedback", json={"text": TEXTS[0], "predicted_label": labels[-1]})
    text = client.get("/metrics").text
    for label in set(labels):
        assert metric_value(text, f'inference_predictions_total{{label="{label}"}}') == labels.count(label)
    assert metric_value(text, "inference_feedback_reports_total") == 1
    assert f'revision="{V1}"' in text and metric_value(text, "inference_model_ready") == 1
    assert "inference_last_retrain_delta_f1" not in text  # V1 has no metadata.json


def test_metrics_show_the_last_retrain_outcome_from_metadata(space_env, model_hub, publish_version):
    publish_version(model_hub, V1, metadata={"decision": {"promote": True}, "comparison": {"delta_f1": 0.042}})
    with serve(create_app(load_settings(), hub=model_hub)) as url, httpx.Client(base_url=url) as client:
        wait_for_status(client)
        text = client.get("/metrics").text
    assert metric_value(text, "inference_last_retrain_delta_f1") == pytest.approx(0.042)
    assert metric_value(text, "inference_last_retrain_promoted") == 1
