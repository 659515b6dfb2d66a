"""Triggers: threshold, age limit, admin force, one winner, and the status view."""
import threading
from datetime import timedelta

import pytest

from configs import load_config
from feedback.settings import FeedbackSettings
from feedback.store import FeedbackStore, JobAlreadyRunning, utcnow
from feedback.trigger import check_due, run_trigger, trigger_status

TEXTS = [f"Complaint number {i}: the {thing} in our ward needs attention from the municipality."
         for i, thing in enumerate(["water supply", "health post", "school wall", "road surface", "street light"])]


@pytest.fixture
def cfg(monkeypatch):
    monkeypatch.delenv("DATASET_REPO_ID", raising=False)
    monkeypatch.delenv("RETRAIN_SPACE_ID", raising=False)
    monkeypatch.delenv("SPACE_ID", raising=False)
    return load_config({"label": "urgency"})


def add_reviewed(store, texts):
    for text in texts:
        store.mark_reviewed(store.record_report(text=text, label_type="urgency", predicted_label="NORMAL"), "URGENT")


def test_threshold_of_new_reviewed_reports_restarts_the_retrain_space(
        cfg, sqlite_feedback_store, folder_hub, recording_controller):
    settings = FeedbackSettings(threshold=3)
    add_reviewed(sqlite_feedback_store, TEXTS[:2])
    sqlite_feedback_store.record_report(text="pending only, not reviewed yet", label_type="urgency", predicted_label="NORMAL")
    first = run_trigger(cfg, sqlite_feedback_store, folder_hub, settings, controller_class=recording_controller)
    assert first.outcome == "not_due" and first.check.new_reviewed == 2 and recording_controller.restarts == []

    add_reviewed(sqlite_feedback_store, TEXTS[2:3])
    result = run_trigger(cfg, sqlite_feedback_store, folder_hub, settings, controller_class=recording_controller)
    assert (result.outcome, result.dataset_version) == ("restarted", "v2")
    assert recording_controller.restarts == ["retrainspace/grievance-urgency-retrain"]
    assert check_due(sqlite_feedback_store, "urgency", settings).new_reviewed == 0
    status = trigger_status(cfg, sqlite_feedback_store, folder_hub, settings)
    assert status["last_dataset_version"] == status["last_feedback_version"] == "v2"
    assert status["pending_reviews"] == 1
    assert status["last_job"]["outcome"] == "restarted" and status["next_due"] is None


def test_old_reports_are_due_below_the_threshold(sqlite_feedback_store):
    settings = FeedbackSettings(threshold=50, max_age_days=7)
    add_reviewed(sqlite_feedback_store, TEXTS[:1])
    now = utcnow()
    waiting = check_due(sqlite_feedback_store, "urgency", settings, now)
    assert not waiting.due and timedelta(days=6.9) < waiting.next_due_at - now <= timedelta(days=7)
    later = check_due(sqlite_feedback_store, "urgency", settings, now + timedelta(days=7, minutes=1))
    assert later.due and "older than 7 days" in later.reason


def test_admin_force_restarts_even_with_nothing_new(cfg, sqlite_feedback_store, folder_hub, recording_controller):
    result = run_trigger(cfg, sqlite_feedback_store, folder_hub, force=True, controller_class=recording_controller)
    assert (result.outcome, result.dataset_version) == ("restarted", "v1")
    assert folder_hub.uploads == 0 and len(recording_controller.restarts) == 1


def test_a_failed_restart_is_recorded_and_raised(cfg, sqlite_feedback_store, folder_hub):
    class Broken:
        def __init__(self, hub, space_id): ...
        def restart(self):
            raise RuntimeError("space runtime unreachable")

    add_reviewed(sqlite_feedback_store, TEXTS[:1])
    with pytest.raises(RuntimeError, match="unreachable"):
        run_trigger(cfg, sqlite_feedback_store, folder_hub, force=True, controller_class=Broken)
    status = trigger_status(cfg, sqlite_feedback_store, folder_hub)
    assert status["last_job"]["outcome"] == "failed" and "unreachable" in status["last_job"]["detail"]
    assert status["last_dataset_version"] == "v2"  # published; a forced rerun restarts on it


def test_concurrent_triggers_one_wins(cfg, tmp_path, folder_hub, recording_controller):
    url = f"sqlite:///{tmp_path / 'race.db'}"
    add_reviewed(FeedbackStore(url), TEXTS)
    gate = threading.Event()

    class SlowController(recording_controller):
        def restart(self):
            gate.wait(10)  # hold the lock until the rival has tried
            super().restart()

    outcomes = []

    def trigger():
        try:
            outcomes.append(run_trigger(cfg, FeedbackStore(url), folder_hub, force=True,
                                        controller_class=SlowController).outcome)
        except JobAlreadyRunning:
            outcomes.append("busy")
            gate.set()

    threads = [threading.Thread(target=trigger) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert sorted(outcomes) == ["busy", "restarted"]
    assert len(recording_controller.restarts) == 1 and sorted(folder_hub.tags) == ["v1", "v2"]
