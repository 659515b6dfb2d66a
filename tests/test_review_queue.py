"""Active learning (issue 16 part 4): uncertain predictions fill a bounded, deduplicated review
queue in the feedback store, reviewers label them from the CLI and the local hub's page, and the
reviewed rows reach the next dataset version through feedback.prepare."""
from __future__ import annotations

import logging

import httpx
import pandas as pd
import pytest
from sqlalchemy import text as sql_text

from configs import LABEL_SETS, ConfigError, load_config
from feedback import review
from feedback.prepare import prepare_dataset
from feedback.store import FeedbackStore, InvalidReport
from inference_space.app import create_app
from inference_space.settings import load_settings
from tests.fixtures.space import free_port, serve, wait_for_metric, wait_for_status
from tests.fixtures.web import start_page_hub

V1 = "v20260101_000000"
TEXT = "Streetlights on the main road of Janakpur have been out for two weeks."
TEXTS = ["सडकमा पानी जमेको छ, बाटो हिँड्न सकिँदैन", "The school has no teacher for three months and the children wait",
         "बिजुली छैन", "police did not register my complaint"]


def queue(store, text=TEXT, **kwargs) -> str:
    values = dict(text=text, label_type="urgency", predicted_label="NORMAL", reason="low_confidence",
                  confidence=0.41, max_pending=2) | kwargs
    return store.queue_for_review(**values)


def test_queue_is_bounded_deduplicated_and_oldest_first(feedback_store):
    assert queue(feedback_store) == "queued"
    assert queue(feedback_store, text=f"  {TEXT.upper()}", predicted_label="URGENT") == "duplicate"
    assert queue(feedback_store, text="second uncertain complaint", reason="small_margin", confidence=None) == "queued"
    assert queue(feedback_store, text="third uncertain complaint") == "full"  # new ones wait for reviewers
    department = LABEL_SETS["department"][0]
    assert queue(feedback_store, text="third uncertain complaint", label_type="department",
                 predicted_label=department) == "queued"  # the bound is per label type
    first, second = feedback_store.list_pending("urgency", queued_only=True)
    assert [(r.text, r.source, r.confidence) for r in (first, second)] == [
        (TEXT, "low_confidence", 0.41), ("second uncertain complaint", "small_margin", None)]

    # a report of a queued text takes its row over: one item to review, and room in the queue
    taken = feedback_store.record_report(text="second uncertain complaint", label_type="urgency",
                                         predicted_label="URGENT", reporter="ward-4")
    assert taken == second.id and feedback_store.get(taken).source == "report"
    assert queue(feedback_store, text="third uncertain complaint") == "queued"
    feedback_store.mark_reviewed(first.id, "URGENT")
    assert [r.id for r in feedback_store.list_reviewed_unconsumed("urgency")] == [first.id]
    with pytest.raises(InvalidReport, match=r"reason 'bored' is unknown; use one of \['low_confidence'"):
        queue(feedback_store, text="fourth", reason="bored")


def test_a_reports_table_of_the_previous_version_gains_the_queue_columns(feedback_store):
    report_id = feedback_store.record_report(text=TEXT, label_type="urgency", predicted_label="NORMAL")
    with feedback_store.engine.begin() as connection:  # the table as the previous version made it
        for column in ("source", "confidence"):
            connection.execute(sql_text(f"ALTER TABLE retrainspace_feedback DROP COLUMN {column}"))
    reopened = FeedbackStore(feedback_store.url)
    try:
        assert reopened.get(report_id).source == "report"  # its rows are reports
        assert queue(reopened, text="an uncertain complaint") == "queued"
    finally:
        reopened.close()


def test_a_review_threshold_that_can_never_fire_is_refused(space_env, monkeypatch):
    monkeypatch.setenv("REVIEW_THRESHOLD", "0.3")  # 3 urgency labels: the top score is at least 1/3
    with pytest.raises(ConfigError, match=r"REVIEW_THRESHOLD=0.3 can never queue.*set it above 0.333, or to 0"):
        load_settings()


def test_uncertain_predictions_are_queued_reviewed_and_published(space_env, space_hub, publish_space_version,
                                                                 monkeypatch, folder_hub, capsys):
    monkeypatch.setenv("REVIEW_THRESHOLD", "1")  # every answer of the tiny model is unsure
    monkeypatch.setenv("REVIEW_QUEUE_MAX", "2")
    publish_space_version(space_hub, V1)
    with serve(create_app(load_settings())) as url, httpx.Client(base_url=url, timeout=30) as client:
        wait_for_status(client)
        client.post("/predict/batch", json={"texts": [TEXTS[3]]})  # the retrain job's evaluation route
        answers = [client.post("/predict", json={"text": text}).json() for text in TEXTS[:3]]
        client.post("/predict", json={"text": [TEXTS[0]]})  # upstream's list form; queued once only
        for outcome, count in (("queued", 2), ("full", 1), ("duplicate", 1)):
            wait_for_metric(client, f'inference_review_queue_total{{outcome="{outcome}"}}', count)

    store = FeedbackStore(load_settings().feedback_db_url)
    first, second = store.list_pending("urgency", queued_only=True)
    assert [(r.text, r.source, r.predicted_label, r.confidence) for r in (first, second)] == [
        (text, "low_confidence", answer["label"], pytest.approx(answer["confidence"]))
        for text, answer in zip(TEXTS[:2], answers)]
    assert review.main(["list", "--queue"]) == 0
    assert f"{first.id}\turgency\tpredicted={first.predicted_label}" in capsys.readouterr().out
    corrected = next(label for label in LABEL_SETS["urgency"] if label != second.predicted_label)
    assert review.main(["mark", str(first.id), first.predicted_label]) == 0  # confirmed: still a new row
    assert review.main(["mark", str(second.id), corrected]) == 0

    monkeypatch.delenv("DATASET_REPO_ID", raising=False)
    result = prepare_dataset(load_config({"label": "urgency"}), store, folder_hub)
    assert (result.version, result.from_review_queue, result.added["train"]) == ("v2", 2, 2)
    train = pd.read_csv(folder_hub.root / folder_hub.tags["v2"] / "train.csv", keep_default_na=False)
    labels = dict(zip(train.text, train.urgency))
    assert (labels[TEXTS[0]], labels[TEXTS[1]]) == (first.predicted_label, corrected)
    assert {store.get(r.id).consumed_in_dataset_version for r in (first, second)} == {"v2"}


def test_a_store_that_is_down_never_fails_predict_and_is_logged_once(space_env, space_hub, publish_space_version,
                                                                     monkeypatch, caplog):
    monkeypatch.setenv("REVIEW_THRESHOLD", "1")
    monkeypatch.setenv("FEEDBACK_DB_URL", f"postgresql+psycopg://space:dbpass42@127.0.0.1:{free_port()}/feedback")
    publish_space_version(space_hub, V1)
    with caplog.at_level(logging.INFO, "inference_space"), serve(create_app(load_settings())) as url, \
            httpx.Client(base_url=url, timeout=30) as client:
        wait_for_status(client)
        assert all(client.post("/predict", json={"text": text}).status_code == 200 for text in TEXTS)
        wait_for_metric(client, 'inference_review_queue_total{outcome="failed"}', len(TEXTS))
    logged = [r.getMessage() for r in caplog.records if "review queue" in r.getMessage()]
    assert len(logged) == 1 and "DatabaseUnavailable" in logged[0] and "dbpass42" not in logged[0]
    assert not any(text in r.getMessage() for r in caplog.records for text in TEXTS)  # user data stays out


def test_the_hub_page_labels_a_queued_item_and_refuses_foreign_writes(tmp_path, monkeypatch, browser):
    from selenium.webdriver.common.by import By

    from tests.test_web_page import message, wait_on_page

    url = f"sqlite:///{tmp_path / 'feedback.db'}"
    monkeypatch.setenv("FEEDBACK_DB_URL", url)
    store = FeedbackStore(url)
    queue(store, text='<img src=x onerror="alert(1)"> the drain overflows')
    [item] = store.list_pending()
    hub = start_page_hub(tmp_path, token=None)
    try:
        endpoint = f"{hub.url}/api/localhub/review/{item.id}"
        foreign = httpx.post(endpoint, json={"label": "URGENT"}, headers={"Origin": "https://evil.example"})
        form = httpx.post(endpoint, data={"label": "URGENT"})
        assert (foreign.status_code, form.status_code) == (403, 415)
        assert httpx.post(endpoint, json={"label": "SOON"}).status_code == 422
        assert not store.get(item.id).reviewed

        browser.get(hub.url + "/")
        assert '&lt;img src=x onerror=&quot;alert(1)&quot;&gt;' in httpx.get(hub.url + "/").text
        browser.find_element(By.CSS_SELECTOR, f'button[data-review="{item.id}"][data-label="URGENT"]').click()
        wait_on_page(browser, lambda d: f"item {item.id}: labelled URGENT" in message(d), 10, "no confirmation")
        wait_on_page(browser, lambda d: not d.find_elements(By.CSS_SELECTOR, f'[data-review-item="{item.id}"]'),
                     10, "the reviewed item is still listed")
    finally:
        hub.server.stop()
    reviewed = store.get(item.id)
    assert (reviewed.reviewed, reviewed.corrected_label, reviewed.reviewer) == (True, "URGENT", "localhub-page")
