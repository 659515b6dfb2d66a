"""Upstream Sambodhan's backend database next to ours (issue 14 item 5). Their
misclassified_complaints (src/backend/app/models/complaint.py) has other columns than our reports
table had under the same name: our table now has its own name, an old-named table of ours keeps
its reports, a table of ours with other columns is a permanent SchemaConflict, and prepare can
read their reviewed rows, read-only, as a source."""
from __future__ import annotations

from datetime import datetime, timezone

import pandas as pd
import pytest
from sqlalchemy import (
    Boolean, Column, DateTime, ForeignKey, Integer, MetaData, String, Table, Text, create_engine, insert, inspect,
    text as sql_text,
)

from configs import load_config
from feedback.prepare import prepare_dataset
from feedback.settings import FeedbackSettings
from feedback.store import (
    Base, DatabaseUnavailable, FeedbackStore, SambodhanSource, SchemaConflict,
)
from inference_space.reports import rejection

URGENCY_TEXTS = [
    "The bridge over the Bagmati river in Teku has cracked pillars and trucks still cross it daily.",
    "Garbage has not been collected in ward seven for three weeks and the smell reaches the school.",
    "Our village health post has had no vaccines for children since the start of the month.",
]


def sambodhan_metadata() -> MetaData:
    """Their complaints and misclassified_complaints tables, column for column."""
    metadata = MetaData()
    Table("complaints", metadata,
          Column("id", Integer, primary_key=True), Column("citizen_id", Integer), Column("department", String(100)),
          Column("message", Text, nullable=False), Column("message_processed", Text), Column("urgency", String(20)),
          Column("current_status", String(20)), Column("date_submitted", DateTime(timezone=True)),
          Column("ward_id", Integer), Column("created_at", DateTime(timezone=True)),
          Column("updated_at", DateTime(timezone=True)))
    Table("misclassified_complaints", metadata,
          Column("id", Integer, primary_key=True),
          Column("complaint_id", Integer, ForeignKey("complaints.id", ondelete="CASCADE"), nullable=False),
          Column("model_predicted_department", String(100)), Column("model_predicted_urgency", String(20)),
          Column("correct_department", String(100)), Column("correct_urgency", String(20)),
          Column("reported_by_admin_id", Integer), Column("reviewed", Boolean, default=False),
          Column("reviewed_at", DateTime(timezone=True)), Column("created_at", DateTime(timezone=True)))
    return metadata


@pytest.fixture
def sambodhan_db(feedback_db_url):
    """Their tables, with rows, in the database our store uses (SQLite, and PostgreSQL when set)."""
    metadata, engine = sambodhan_metadata(), create_engine(feedback_db_url)
    Base.metadata.drop_all(engine)  # none of our tables either: a PostgreSQL database outlives each test
    metadata.drop_all(engine)
    metadata.create_all(engine)
    complaints, reports = metadata.tables["complaints"], metadata.tables["misclassified_complaints"]
    when = datetime(2026, 11, 20, 9, 30, tzinfo=timezone.utc)
    with engine.begin() as connection:
        connection.execute(insert(complaints), [{"id": i + 1, "message": text, "urgency": "NORMAL"}
                                                for i, text in enumerate(URGENCY_TEXTS + ["Ward office has no clerk."])])
        blank = {c.name: None for c in reports.columns}
        connection.execute(insert(reports), [blank | row for row in [
            dict(id=11, complaint_id=1, model_predicted_urgency="NORMAL", correct_urgency="HIGHLY URGENT",
                 reviewed=True, reviewed_at=when),
            dict(id=12, complaint_id=2, model_predicted_urgency="NORMAL", correct_urgency="URGENT", reviewed=True,
                 reviewed_at=when),
            dict(id=13, complaint_id=3, model_predicted_urgency="URGENT", correct_urgency="NORMAL", reviewed=False),
            dict(id=14, complaint_id=3, model_predicted_urgency=None, correct_urgency="URGENT", reviewed=True),
            dict(id=15, complaint_id=4, model_predicted_department="Security & Law Enforcement",
                 correct_department="Municipal Governance & Community Services", reviewed=True),
        ]])
    yield feedback_db_url
    metadata.drop_all(engine)
    engine.dispose()


def rows_of(url: str) -> list[tuple]:
    engine = create_engine(url)
    with engine.connect() as connection:
        rows = connection.execute(sql_text("SELECT * FROM misclassified_complaints ORDER BY id")).all()
    engine.dispose()
    return [tuple(row) for row in rows]


def test_our_store_works_next_to_their_table_and_leaves_it_alone(sambodhan_db):
    before = rows_of(sambodhan_db)
    store = FeedbackStore(sambodhan_db)
    report_id = store.record_report(text=URGENCY_TEXTS[0], label_type="urgency", predicted_label="NORMAL")
    assert [r.id for r in store.list_pending()] == [report_id]
    assert rows_of(sambodhan_db) == before
    columns = {c["name"] for c in inspect(store.engine).get_columns("misclassified_complaints")}
    assert "text_hash" not in columns and "correct_urgency" in columns
    store.close()


def test_an_old_named_table_of_ours_keeps_its_reports(tmp_path):
    """A feedback.db made by the previous version: its table was misclassified_complaints."""
    url = f"sqlite:///{tmp_path / 'feedback.db'}"
    old = FeedbackStore(url)
    first = old.record_report(text=URGENCY_TEXTS[0], label_type="urgency", predicted_label="NORMAL")
    old.mark_reviewed(first, "URGENT")
    with old.engine.begin() as connection:
        connection.execute(sql_text("ALTER TABLE retrainspace_feedback RENAME TO misclassified_complaints"))
    old.close()
    store = FeedbackStore(url)
    assert [(r.id, r.corrected_label) for r in store.list_reviewed_unconsumed("urgency")] == [(first, "URGENT")]
    second = store.record_report(text=URGENCY_TEXTS[1], label_type="urgency", predicted_label="NORMAL")
    assert second > first
    assert "misclassified_complaints" not in inspect(store.engine).get_table_names()


def test_a_table_of_our_name_with_other_columns_is_a_schema_conflict(feedback_db_url):
    engine = create_engine(feedback_db_url)
    with engine.begin() as connection:
        connection.execute(sql_text("DROP TABLE IF EXISTS retrainspace_feedback"))
        connection.execute(sql_text("CREATE TABLE retrainspace_feedback (id INTEGER PRIMARY KEY, note TEXT)"))
    try:
        with pytest.raises(SchemaConflict, match=r"table retrainspace_feedback exists with other columns") as error:
            FeedbackStore(feedback_db_url)
        assert "text_hash" in str(error.value) and "note" in str(error.value)
        assert not isinstance(error.value, DatabaseUnavailable)  # not "try again later"
    finally:
        with engine.begin() as connection:
            connection.execute(sql_text("DROP TABLE retrainspace_feedback"))
        engine.dispose()


def test_a_schema_conflict_is_a_500_without_retry_after():
    answer = rejection(SchemaConflict("table retrainspace_feedback exists with other columns"))
    assert answer.status == 500 and "retrainspace_feedback" in str(answer)


def test_the_space_does_not_start_on_a_schema_conflict(space_env, tmp_path):
    from inference_space.app import create_app
    from inference_space.settings import load_settings

    engine = create_engine(load_settings().feedback_db_url)
    with engine.begin() as connection:
        connection.execute(sql_text("CREATE TABLE retrainspace_feedback (id INTEGER PRIMARY KEY, note TEXT)"))
    with pytest.raises(SchemaConflict, match="retrainspace_feedback"):
        create_app(load_settings())


def test_their_source_is_read_only(sambodhan_db):
    source = SambodhanSource(sambodhan_db)
    with pytest.raises(Exception, match="(?i)read.only|readonly"):
        with source.engine.begin() as connection:
            connection.execute(sql_text("DELETE FROM misclassified_complaints"))
    source.engine.dispose()
    assert len(rows_of(sambodhan_db)) == 5


def test_prepare_imports_their_reviewed_rows_once(sambodhan_db, tmp_path, folder_hub, monkeypatch):
    monkeypatch.delenv("DATASET_REPO_ID", raising=False)
    monkeypatch.setenv("FEEDBACK_SAMBODHAN_DB_URL", sambodhan_db)
    store, before = FeedbackStore(f"sqlite:///{tmp_path / 'ours.db'}"), rows_of(sambodhan_db)
    cfg, settings = load_config({"label": "urgency"}), FeedbackSettings()

    result = prepare_dataset(cfg, store, folder_hub, settings)
    assert result.upstream_import == {"imported": 2, "already_imported": 0, "no_prediction": 1, "invalid": 0,
                                      "duplicate_open_report": 0}
    assert result.published and result.corrections == 2
    train = pd.read_csv(folder_hub.root / folder_hub.tags[result.version] / "train.csv").set_index("text")
    assert train.loc[URGENCY_TEXTS[0], "urgency"] == "HIGHLY URGENT" and train.loc[URGENCY_TEXTS[1], "urgency"] == "URGENT"

    again = prepare_dataset(cfg, store, folder_hub, settings)
    assert again.upstream_import["imported"] == 0 and again.upstream_import["already_imported"] == 2
    assert not again.published
    assert rows_of(sambodhan_db) == before  # their database was only read
    reports = store.list_reviewed_unconsumed("urgency") + [store.get(i) for i in result.consumed_report_ids]
    assert {r.reporter for r in reports} == {"sambodhan:misclassified_complaints:11",
                                             "sambodhan:misclassified_complaints:12"}
    assert {r.text for r in reports} == set(URGENCY_TEXTS[:2])


def test_their_database_unreachable_is_a_clear_error_without_password(monkeypatch):
    from localhub.spaces import free_port

    source = SambodhanSource(f"postgresql+psycopg://sam:pw31@127.0.0.1:{free_port()}/sambodhan")
    with pytest.raises(DatabaseUnavailable, match="FEEDBACK_SAMBODHAN_DB_URL") as error:
        source.reviewed_reports("urgency")
    assert "pw31" not in str(error.value)
