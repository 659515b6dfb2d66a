"""Feedback store: reports, reviews, constraints and failures, on SQLite and PostgreSQL."""
import threading

import pytest
from sqlalchemy import text as sql_text
from sqlalchemy.exc import IntegrityError

from feedback.store import (
    DatabaseUnavailable, DuplicateReport, FeedbackError, FeedbackStore, InvalidLabel,
    InvalidReport, JobAlreadyRunning, ReportAlreadyConsumed, ReportNotFound, default_db_url,
)

TEXT = "Streetlights on the main road of Janakpur have been out for two weeks."


def report(store, text=TEXT, **kwargs):
    values = dict(text=text, label_type="urgency", predicted_label="NORMAL") | kwargs
    return store.record_report(**values)


def test_report_is_pending_until_reviewed(feedback_store):
    report_id = report(feedback_store, complaint_id="c-17", reporter="citizen")
    [pending] = feedback_store.list_pending("urgency")
    assert (pending.id, pending.complaint_id, pending.reviewed, pending.corrected_label) == (report_id, "c-17", False, None)
    assert feedback_store.pending_count("urgency") == 1
    assert feedback_store.pending_count("department") == 0

    reviewed = feedback_store.mark_reviewed(report_id, "URGENT", reviewer="admin")
    assert reviewed.reviewed and reviewed.corrected_label == "URGENT" and reviewed.reviewed_at is not None
    assert reviewed.reviewed_at.tzinfo is not None
    assert feedback_store.pending_count() == 0
    assert [r.id for r in feedback_store.list_reviewed_unconsumed("urgency")] == [report_id]


def test_review_equal_to_prediction_is_a_confirmed_prediction(feedback_store):
    report_id = report(feedback_store)
    assert feedback_store.mark_reviewed(report_id, "NORMAL").confirmed_correct
    other = report(feedback_store, text="another complaint text here")
    assert not feedback_store.mark_reviewed(other, "HIGHLY URGENT").confirmed_correct


def test_unknown_label_in_a_correction_is_refused(feedback_store):
    report_id = report(feedback_store)
    with pytest.raises(InvalidLabel, match=r"corrected_label 'VERY URGENT' is not a urgency label.*HIGHLY URGENT"):
        feedback_store.mark_reviewed(report_id, "VERY URGENT")
    with pytest.raises(InvalidLabel, match="predicted_label 'Roads' is not a department label"):
        report(feedback_store, label_type="department", predicted_label="Roads")
    with pytest.raises(InvalidLabel, match="label_type 'topic' is unknown"):
        report(feedback_store, label_type="topic")
    assert not feedback_store.get(report_id).reviewed


def test_database_constraints_refuse_labels_of_the_wrong_type(feedback_store):
    """Rows written around the store (another client) still obey LABEL_SETS."""
    with pytest.raises(IntegrityError), feedback_store.engine.begin() as connection:
        connection.execute(sql_text(
            "INSERT INTO retrainspace_feedback (text, text_hash, label_type, predicted_label, reviewed, created_at) "
            "VALUES ('x y z', 'h', 'department', 'URGENT', false, CURRENT_TIMESTAMP)"))


def test_duplicate_report_is_refused_until_consumed(feedback_store):
    first = report(feedback_store)
    with pytest.raises(DuplicateReport, match=f"report {first}") as error:
        report(feedback_store, text="  streetlights ON the main road of Janakpur   have been out for two weeks. ")
    assert error.value.existing_id == first
    # a different prediction or label type is another report
    report(feedback_store, predicted_label="URGENT")
    report(feedback_store, label_type="department", predicted_label="Security & Law Enforcement")
    feedback_store.mark_reviewed(first, "URGENT")
    feedback_store.mark_consumed([first], "v2")
    assert report(feedback_store) != first


def test_consumed_reports_are_frozen(feedback_store):
    report_id = report(feedback_store)
    feedback_store.mark_reviewed(report_id, "URGENT")
    assert feedback_store.mark_consumed([report_id], "v3") == 1
    assert feedback_store.mark_consumed([report_id], "v4") == 0
    assert feedback_store.get(report_id).consumed_in_dataset_version == "v3"
    assert feedback_store.newest_consumed_version("urgency") == "v3"
    with pytest.raises(ReportAlreadyConsumed, match="already in dataset version v3"):
        feedback_store.mark_reviewed(report_id, "NORMAL")


def test_missing_report_and_empty_text_are_clear_errors(feedback_store):
    with pytest.raises(ReportNotFound, match="no feedback report with id 999"):
        feedback_store.mark_reviewed(999, "URGENT")
    with pytest.raises(InvalidReport, match="text is empty"):
        report(feedback_store, text="   ")


def test_one_job_holds_the_lock(feedback_store):
    job = feedback_store.start_job("trigger:urgency")
    with pytest.raises(JobAlreadyRunning, match="'trigger:urgency' is already running"):
        feedback_store.start_job("trigger:urgency")
    feedback_store.start_job("trigger:department")  # other label, other lock
    feedback_store.finish_job(job, "published", dataset_version="v2")
    assert feedback_store.last_finished_job("trigger:urgency").outcome == "published"
    feedback_store.start_job("trigger:urgency")


def test_a_stale_lock_is_taken_over(feedback_store):
    feedback_store.start_job("trigger:urgency")
    feedback_store.start_job("trigger:urgency", stale_after_s=0)
    assert feedback_store.last_finished_job("trigger:urgency").outcome == "abandoned"


def test_concurrent_jobs_one_wins(feedback_db_url):
    stores = [FeedbackStore(feedback_db_url) for _ in range(4)]
    outcomes, barrier = [], threading.Barrier(len(stores))

    def start(store):
        barrier.wait()
        try:
            outcomes.append(store.start_job("race"))
        except JobAlreadyRunning:
            outcomes.append("lost")

    threads = [threading.Thread(target=start, args=(s,)) for s in stores]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for store in stores:
        store.close()
    assert outcomes.count("lost") == len(stores) - 1


def test_database_down_is_a_clear_error_without_the_password(tmp_path):
    url = "postgresql+psycopg://feedback:s3cret-pw@127.0.0.1:1/feedback"
    with pytest.raises(DatabaseUnavailable) as error:
        FeedbackStore(url)
    message = str(error.value)
    assert "s3cret-pw" not in message and "feedback:***@127.0.0.1:1" in message
    assert "FEEDBACK_DB_URL" in message and "Nothing was written" in message


def test_database_lost_after_start_is_a_clear_error(tmp_path):
    store = FeedbackStore(f"sqlite:///{tmp_path / 'f.db'}")
    with store.engine.begin() as connection:
        connection.execute(sql_text("DROP TABLE retrainspace_feedback"))
    with pytest.raises(DatabaseUnavailable, match="could not record a report"):
        report(store)


def test_from_env_defaults_to_an_sqlite_file(monkeypatch, tmp_path):
    monkeypatch.delenv("FEEDBACK_DB_URL", raising=False)
    monkeypatch.setenv("LOCALHUB_DATA_DIR", str(tmp_path / "hubhome"))
    store = FeedbackStore.from_env()
    report(store)
    assert (tmp_path / "hubhome" / "feedback.db").exists()
    monkeypatch.setenv("FEEDBACK_DB_URL", "not a url")
    with pytest.raises(FeedbackError, match="FEEDBACK_DB_URL is not a database URL"):
        FeedbackStore.from_env()


def test_default_file_is_under_data_dir_or_home_never_the_working_folder(monkeypatch, tmp_path):
    for name in ("FEEDBACK_DB_URL", "DATA_DIR", "LOCALHUB_DATA_DIR"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    assert default_db_url() == f"sqlite:///{tmp_path / 'home' / '.cache' / 'retrainspace' / 'feedback.db'}"
    monkeypatch.setenv("DATA_DIR", str(tmp_path / "data"))
    assert default_db_url() == f"sqlite:///{tmp_path / 'data' / 'feedback.db'}"


def test_a_feedback_db_of_the_previous_version_in_the_working_folder_stays_in_use(monkeypatch, tmp_path):
    for name in ("FEEDBACK_DB_URL", "DATA_DIR", "LOCALHUB_DATA_DIR"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    report(FeedbackStore(f"sqlite:///{tmp_path / '.localhub' / 'feedback.db'}"))
    assert [r.text for r in FeedbackStore.from_env().list_pending()] == [TEXT]


def test_sqlite_folder_that_cannot_be_made_is_a_clear_error(tmp_path):
    (tmp_path / "a-file").write_text("")  # a file where the folder should be: fails for root too
    url = f"sqlite:///{tmp_path / 'a-file' / 'sub' / 'feedback.db'}"
    with pytest.raises(DatabaseUnavailable, match="set DATA_DIR to a writable folder"):
        FeedbackStore(url)
    FeedbackStore(url, create=False)  # opening without creating touches no file


@pytest.mark.parametrize("field,value", [("text", "pani\x00 aayena"), ("text", "pani \ud800 aayena"),
                                         ("complaint_id", "C-\x00"), ("reporter", "ward\udfff")])
def test_nul_or_lone_surrogate_is_an_invalid_report_before_the_database(feedback_store, field, value):
    values = {"text": TEXT, field: value}
    with pytest.raises(InvalidReport, match=f"^{field} has a (NUL|lone surrogate)") as error:
        report(feedback_store, **values)
    assert "127.0.0.1" not in str(error.value) and feedback_store.pending_count() == 0
