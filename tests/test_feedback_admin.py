"""Admin endpoints: token-protected retrain trigger and status."""
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from configs import load_config
from feedback.admin import admin_router
from feedback.prepare import job_name
from feedback.settings import FeedbackSettings

TOKEN = "admin-test-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def admin_app(monkeypatch, sqlite_feedback_store, folder_hub, recording_controller):
    monkeypatch.delenv("DATASET_REPO_ID", raising=False)
    monkeypatch.setenv("ADMIN_TOKEN", TOKEN)
    app = FastAPI()
    app.include_router(admin_router(load_config({"label": "urgency"}), sqlite_feedback_store, folder_hub,
                                     FeedbackSettings(), controller_class=recording_controller))
    return TestClient(app)


def test_retrain_needs_the_admin_token(admin_app, recording_controller):
    assert admin_app.post("/admin/retrain").status_code == 401
    assert admin_app.post("/admin/retrain", headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert admin_app.get("/admin/status", headers={"Authorization": TOKEN}).status_code == 401
    assert recording_controller.restarts == []


def test_admin_retrain_restarts_and_status_reports_it(admin_app, sqlite_feedback_store, recording_controller):
    report_id = sqlite_feedback_store.record_report(
        text="The ward office has been closed for a month and nobody answers the phone.",
        label_type="urgency", predicted_label="NORMAL")
    sqlite_feedback_store.mark_reviewed(report_id, "URGENT")
    response = admin_app.post("/admin/retrain", headers=AUTH)
    assert response.status_code == 200, response.text
    assert response.json()["outcome"] == "restarted" and response.json()["dataset_version"] == "v2"
    assert recording_controller.restarts == ["retrainspace/grievance-urgency-retrain"]

    status = admin_app.get("/admin/status", headers=AUTH).json()
    assert status["last_dataset_version"] == "v2" and status["pending_reviews"] == 0
    assert status["last_job"]["outcome"] == "restarted" and status["last_job"]["detail"] == "forced by an admin"
    assert TOKEN not in response.text + str(status)


def test_retrain_where_publishing_cannot_run_answers_501_and_starts_nothing(
        admin_app, sqlite_feedback_store, recording_controller, monkeypatch):
    from feedback import trigger

    monkeypatch.setattr(trigger, "PUBLISHING_MODULES", ("pandas", "no_such_publishing_module"))
    response = admin_app.post("/admin/retrain", headers=AUTH)
    assert response.status_code == 501, response.text
    assert "no_such_publishing_module" in response.json()["detail"]
    assert "requirements-admin.txt" in response.json()["detail"]
    assert recording_controller.restarts == []
    status = admin_app.get("/admin/status", headers=AUTH).json()
    assert status["missing_for_publishing"] == ["no_such_publishing_module"] and status["last_job"] is None


def test_a_running_trigger_answers_409(admin_app, sqlite_feedback_store):
    sqlite_feedback_store.start_job(job_name("urgency"))
    response = admin_app.post("/admin/retrain", headers=AUTH)
    assert response.status_code == 409 and "already running" in response.json()["detail"]
    assert admin_app.get("/admin/status", headers=AUTH).json()["running_since"] is not None


def test_without_admin_token_the_endpoints_are_disabled(monkeypatch, sqlite_feedback_store, folder_hub):
    monkeypatch.delenv("ADMIN_TOKEN", raising=False)
    monkeypatch.delenv("FEEDBACK_ADMIN_TOKEN", raising=False)
    app = FastAPI()
    app.include_router(admin_router(load_config({"label": "urgency"}), sqlite_feedback_store, folder_hub))
    response = TestClient(app).post("/admin/retrain", headers=AUTH)
    assert response.status_code == 503 and "ADMIN_TOKEN" in response.json()["detail"]


def test_database_down_is_503_naming_no_database(monkeypatch, folder_hub, recording_controller):
    from feedback.store import FeedbackStore
    from localhub.spaces import free_port

    monkeypatch.setenv("ADMIN_TOKEN", TOKEN)
    store = FeedbackStore(f"postgresql+psycopg://admin:pw77@127.0.0.1:{free_port()}/grievances", create=False)
    app = FastAPI()
    app.include_router(admin_router(load_config({"label": "urgency"}), store, folder_hub, FeedbackSettings(),
                                     controller_class=recording_controller))
    for response in (TestClient(app).get("/admin/status", headers=AUTH),
                     TestClient(app).post("/admin/retrain", headers=AUTH)):
        assert response.status_code == 503 and "unavailable" in response.json()["detail"]
        for name in ("127.0.0.1", "admin", "grievances", "pw77"):
            assert name not in response.json()["detail"]
