"""The inference Space over HTTP: a tiny classifier published as tagged versions on the local
hub, the app on a real port (uvicorn in a thread), called with httpx."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from configs import LABEL_SETS
from feedback.store import FeedbackStore
from hub import HubError
from inference_space.app import create_app
from inference_space.settings import load_settings
from tests.fixtures.space import BlockingHub, free_port, serve, wait_for_status

LABELS = LABEL_SETS["urgency"]
V1, V2 = "v20260101_000000", "v20260102_000000"
TEXTS = ["सडकमा पानी जमेको छ", "The school has no teacher for three months and the children wait outside",
         "बिजुली", "police did not register my complaint"]


@pytest.fixture
def space(space_env, space_hub, publish_space_version):
    """A running Space serving V1 from the local hub; yields (httpx client, app)."""
    publish_space_version(space_hub, V1)
    app = create_app(load_settings())
    with serve(app) as url, httpx.Client(base_url=url, timeout=30) as client:
        assert wait_for_status(client)["status"] == "ok"
        yield client, app


def test_health_is_loading_at_once_then_serves_the_newest_tag(space_env, space_hub, publish_space_version):
    """Never pinned (no MODEL_REVISION): the newest version tag, by version, not by push time."""
    publish_space_version(space_hub, V1)
    commit = publish_space_version(space_hub, V2)
    publish_space_version(space_hub, "v20251231_235959")  # pushed last, an older version
    hub = BlockingHub(space_hub)
    with serve(create_app(load_settings(), hub=hub)) as url, httpx.Client(base_url=url) as client:
        assert client.get("/health").json()["status"] == "loading"
        waiting = client.post("/predict", json={"text": "water"})
        assert waiting.status_code == 503 and waiting.headers["Retry-After"] == "5"
        hub.release.set()
        health = wait_for_status(client)
    assert health["status"] == "ok" and health["label_type"] == "urgency"
    assert health["model_id"] == load_settings().model_repo
    assert (health["revision"], health["commit"]) == (V2, commit)
    assert health["loaded_at"]


def test_predict_returns_label_confidence_and_scores(space):
    client, _ = space
    answer = client.post("/predict", json={"text": TEXTS[1]}).json()
    assert set(answer["scores"]) == set(LABELS) and answer["label"] in LABELS
    assert answer["confidence"] == max(answer["scores"].values()) == answer["scores"][answer["label"]]
    assert sum(answer["scores"].values()) == pytest.approx(1.0, abs=1e-5)
    assert client.get("/").json()["health"]["status"] == "ok"


def test_batch_keeps_the_order_of_the_texts(space):
    client, _ = space
    texts = (TEXTS * 16)[:64]  # two forward chunks of 32, sorted by length inside the server
    batch = client.post("/predict/batch", json={"texts": texts}).json()["predictions"]
    assert len(batch) == 64
    for text, prediction in zip(texts[:8], batch[:8]):
        single = client.post("/predict", json={"text": text}).json()
        assert prediction["label"] == single["label"]
        for label in LABELS:
            assert prediction["scores"][label] == pytest.approx(single["scores"][label], abs=1e-4)
    assert batch[0]["scores"] != batch[1]["scores"]  # different texts really differ: order is observable


def test_concurrent_requests_all_succeed(space):
    client, _ = space
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
    client, _ = space
    response = client.post(path, json=body)
    assert response.status_code == 422
    assert message in response.json()["detail"]


def test_malformed_json_is_422(space):
    client, _ = space
    response = client.post("/predict", content=b'{"text": "unterminated', headers={"content-type": "application/json"})
    assert response.status_code == 422 and "JSON" in response.json()["detail"]


def test_hub_unreachable_at_start_is_retried(space_env, space_hub, publish_space_version):
    commit = publish_space_version(space_hub, V1)

    class FlakyHub(BlockingHub):
        failures = 2

        def newest_version_tag(self, repo_id):
            if self.failures:
                self.failures -= 1
                raise HubError("cannot reach the Hub (ConnectError)")
            return self.hub.newest_version_tag(repo_id)

    hub = FlakyHub(space_hub)
    hub.release.set()
    with serve(create_app(load_settings(), hub=hub)) as url, httpx.Client(base_url=url) as client:
        health = wait_for_status(client)
    assert (health["status"], health["commit"], hub.failures) == ("ok", commit, 0)


def test_repo_without_version_tag_is_an_error_in_health(space_env, space_hub, space_model_repo):
    space_hub.ensure_repo(space_model_repo)
    with serve(create_app(load_settings())) as url, httpx.Client(base_url=url) as client:
        health = wait_for_status(client, "error")
        refused = client.post("/predict", json={"text": "water"})
    assert health["status"] == "error"
    assert "no v* version tag" in health["error"] and "MODEL_REVISION" in health["error"]
    assert refused.status_code == 503 and "Retry-After" in refused.headers


def test_unknown_pinned_revision_is_an_error_naming_it(space_env, space_hub, publish_space_version, monkeypatch):
    publish_space_version(space_hub, V1)
    monkeypatch.setenv("MODEL_REVISION", "v20990101_000000")
    with serve(create_app(load_settings())) as url, httpx.Client(base_url=url) as client:
        health = wait_for_status(client, "error")
    assert "v20990101_000000" in health["error"]


def test_load_error_never_shows_the_token(space_env, token_hub, monkeypatch, space_model_repo):
    monkeypatch.setenv("HF_ENDPOINT", token_hub.url)
    monkeypatch.setenv("HF_TOKEN", "hf_verysecret123")  # a wrong token: the hub refuses it
    with serve(create_app(load_settings())) as url, httpx.Client(base_url=url) as client:
        health = wait_for_status(client, "error")
        metrics = client.get("/metrics").text
    assert health["status"] == "error" and space_model_repo in health["error"]
    assert "hf_verysecret123" not in str(health) + metrics


def test_model_for_another_label_set_is_refused(space_env, space_hub, publish_space_version, monkeypatch):
    publish_space_version(space_hub, V1)  # an urgency classifier
    monkeypatch.setenv("LABEL", "department")
    with serve(create_app(load_settings())) as url, httpx.Client(base_url=url) as client:
        health = wait_for_status(client, "error")
    assert "ModelLabelsMismatch" in health["error"] and "LABEL" in health["error"]


def test_pinned_revision_is_served_instead_of_the_newest(space_env, space_hub, publish_space_version, monkeypatch):
    old = publish_space_version(space_hub, V1)
    publish_space_version(space_hub, V2)
    monkeypatch.setenv("MODEL_REVISION", V1)
    with serve(create_app(load_settings())) as url, httpx.Client(base_url=url) as client:
        health = wait_for_status(client)
    assert (health["revision"], health["commit"]) == (V1, old)


def test_restart_after_a_new_tag_serves_the_new_revision(space, space_hub, publish_space_version):
    client, _ = space
    assert client.get("/health").json()["revision"] == V1
    new = publish_space_version(space_hub, V2)
    with serve(create_app(load_settings())) as url, httpx.Client(base_url=url) as restarted:
        health = wait_for_status(restarted)
    assert (health["revision"], health["commit"]) == (V2, new)


def test_feedback_is_stored_for_this_label_type(space):
    client, _ = space
    response = client.post("/feedback", json={"text": TEXTS[0], "complaint_id": "C-12", "predicted_label": "NORMAL",
                                               "corrected_label": "URGENT", "reporter": "ward-4"})
    assert response.status_code == 201
    [report] = FeedbackStore(load_settings().feedback_db_url).list_pending()
    assert report.id == response.json()["id"]
    assert (report.text, report.complaint_id, report.label_type, report.predicted_label, report.corrected_label,
            report.reporter) == (TEXTS[0], "C-12", "urgency", "NORMAL", "URGENT", "ward-4")


@pytest.mark.parametrize("body,message", [
    ({"text": "x", "predicted_label": "SOON"}, "predicted_label: 'SOON' is not one of the LABEL=urgency labels"),
    ({"text": "x", "predicted_label": "NORMAL", "corrected_label": "Security & Law Enforcement"},
     "corrected_label"),
    ({"text": " ", "predicted_label": "NORMAL"}, "text: the text is empty"),
    ({"complaint_id": "C-7", "predicted_label": "NORMAL"}, "text: Field required"),
    ({"text": "x"}, "predicted_label: Field required"),
])
def test_bad_feedback_is_422_and_stores_nothing(space, body, message):
    client, _ = space
    response = client.post("/feedback", json=body)
    assert response.status_code == 422 and message in response.json()["detail"]
    assert FeedbackStore(load_settings().feedback_db_url).list_pending() == []


def test_the_same_report_twice_is_409(space):
    client, _ = space
    report = {"text": TEXTS[1], "predicted_label": "URGENT"}
    first = client.post("/feedback", json=report)
    again = client.post("/feedback", json=report)
    assert again.status_code == 409 and f"report {first.json()['id']}" in again.json()["detail"]


def test_feedback_database_down_is_503_naming_no_database(space, monkeypatch, caplog):
    monkeypatch.setenv("FEEDBACK_DB_URL", f"postgresql://space:dbpass42@127.0.0.1:{free_port()}/feedback")
    with serve(create_app(load_settings())) as base, httpx.Client(base_url=base) as client:
        response = client.post("/feedback", json={"text": "x", "predicted_label": "URGENT"})
        wait_for_status(client)
        predicted = client.post("/predict", json={"text": "x"})
    assert response.status_code == 503 and response.headers["Retry-After"]
    assert "unavailable" in response.json()["detail"] and "dbpass42" not in response.text
    for name in ("127.0.0.1", "space", "postgresql"):  # no host, user or database in an answer
        assert name not in response.text
    logged = "\n".join(r.getMessage() for r in caplog.records if r.name == "inference_space")
    assert "127.0.0.1" in logged and "dbpass42" not in logged  # the detail is in the log, password masked
    assert predicted.status_code == 200  # predictions do not depend on the database


def metric_value(text: str, sample: str) -> float | None:
    for line in text.splitlines():
        if line.startswith(sample + " "):
            return float(line.rsplit(" ", 1)[1])
    return None


def test_metrics_count_predictions_feedback_and_show_the_version(space):
    client, _ = space
    labels = [p["label"] for p in client.post("/predict/batch", json={"texts": TEXTS}).json()["predictions"]]
    labels.append(client.post("/predict", json={"text": TEXTS[0]}).json()["label"])
    assert client.post("/feedback", json={"text": TEXTS[0], "predicted_label": labels[-1]}).status_code == 201
    text = client.get("/metrics").text
    for label in set(labels):
        assert metric_value(text, f'inference_predictions_total{{label="{label}"}}') == labels.count(label)
    assert metric_value(text, "inference_feedback_reports_total") == 1
    assert metric_value(text, 'inference_request_seconds_count{endpoint="predict"}') == 1
    assert metric_value(text, 'inference_request_seconds_count{endpoint="predict_batch"}') == 1
    assert metric_value(text, "inference_feedback_pending_reviews") == 1
    assert f'revision="{V1}"' in text and metric_value(text, "inference_model_ready") == 1
    assert "inference_last_retrain_delta_f1" not in text  # V1 has no metadata.json


def test_metrics_show_the_last_retrain_outcome_from_metadata(space_env, space_hub, publish_space_version):
    publish_space_version(space_hub, V1, metadata={"decision": {"promote": True}, "comparison": {"delta_f1": 0.042}})
    with serve(create_app(load_settings())) as url, httpx.Client(base_url=url) as client:
        wait_for_status(client)
        text = client.get("/metrics").text
    assert metric_value(text, "inference_last_retrain_delta_f1") == pytest.approx(0.042)
    assert metric_value(text, "inference_last_retrain_promoted") == 1


def test_admin_endpoints_need_the_admin_token(space, monkeypatch):
    client, _ = space
    assert client.get("/admin/status").status_code == 503  # no ADMIN_TOKEN: disabled, never open
    monkeypatch.setenv("ADMIN_TOKEN", "admin-secret-1")
    with serve(create_app(load_settings())) as url, httpx.Client(base_url=url) as admin:
        assert admin.get("/admin/status").status_code == 401
        status = admin.get("/admin/status", headers={"Authorization": "Bearer admin-secret-1"})
    # authorised: the answer is about the data (here: the test hub has no dataset repo for this label)
    assert status.status_code == 502 and "dataset" in status.json()["detail"]
