"""prepare_dataset: reviewed reports -> the next dataset version (on a folder-backed hub)."""
import json

import pandas as pd
import pytest

from configs import load_config
from feedback.prepare import DatasetTooSmall, assign_splits, next_version, prepare_dataset
from feedback.settings import FeedbackSettings
from feedback.store import Report, utcnow

NEW_TEXTS = [
    "The bridge over the Bagmati river in Teku has cracked pillars and trucks still cross it daily.",
    "Garbage has not been collected in ward seven for three weeks and the smell reaches the school.",
    "Our village health post has had no vaccines for children since the start of the month.",
    "Police did not register my complaint about the stolen motorcycle outside the bus park.",
    "The drinking water pipe near the temple burst and the whole lane is flooded every morning.",
]


@pytest.fixture
def cfg(monkeypatch):
    monkeypatch.delenv("DATASET_REPO_ID", raising=False)
    return load_config({"label": "urgency"})


def reviewed(store, text, predicted="NORMAL", corrected="HIGHLY URGENT"):
    report_id = store.record_report(text=text, label_type="urgency", predicted_label=predicted)
    store.mark_reviewed(report_id, corrected, reviewer="admin")
    return report_id


def version_files(hub, tag):
    folder = hub.root / hub.tags[tag]
    return {name: pd.read_csv(folder / f"{name}.csv", keep_default_na=False) for name in ("train", "validation", "test")}


def test_reviewed_corrections_become_the_next_version_in_train(cfg, sqlite_feedback_store, folder_hub, tmp_path):
    ids = [reviewed(sqlite_feedback_store, text) for text in NEW_TEXTS]
    result = prepare_dataset(cfg, sqlite_feedback_store, folder_hub, report_dir=tmp_path / "reports")

    assert (result.published, result.base_version, result.version) == (True, "v1", "v2")
    assert folder_hub.uploads == 1 and folder_hub.tags["v2"] == result.commit
    train = version_files(folder_hub, "v2")["train"].set_index("text")
    assert all(train.loc[text, "urgency"] == "HIGHLY URGENT" for text in NEW_TEXTS)
    assert result.added == {"train": 5, "validation": 0, "test": 0}
    assert {sqlite_feedback_store.get(i).consumed_in_dataset_version for i in ids} == {"v2"}
    assert json.loads((tmp_path / "reports" / "feedback-urgency-v2.json").read_text())["corrections"] == 5
    in_repo = json.loads((folder_hub.root / result.commit / "feedback_report.json").read_text())
    assert sorted(in_repo["consumed_report_ids"]) == sorted(ids)


def test_running_twice_publishes_one_version(cfg, sqlite_feedback_store, folder_hub):
    reviewed(sqlite_feedback_store, NEW_TEXTS[0])
    assert prepare_dataset(cfg, sqlite_feedback_store, folder_hub).version == "v2"
    again = prepare_dataset(cfg, sqlite_feedback_store, folder_hub)
    assert not again.published and again.version is None and "no new reviewed reports" in again.note
    assert sorted(folder_hub.tags) == ["v1", "v2"] and folder_hub.uploads == 1


def test_a_run_that_died_after_tagging_is_finished_not_repeated(cfg, sqlite_feedback_store, folder_hub, monkeypatch):
    report_id = reviewed(sqlite_feedback_store, NEW_TEXTS[0])
    with monkeypatch.context() as patch:
        patch.setattr(type(sqlite_feedback_store), "mark_consumed", lambda *a: (_ for _ in ()).throw(ConnectionError("db gone")))
        with pytest.raises(ConnectionError):
            prepare_dataset(cfg, sqlite_feedback_store, folder_hub)
    assert "v2" in folder_hub.tags and sqlite_feedback_store.get(report_id).consumed_in_dataset_version is None
    again = prepare_dataset(cfg, sqlite_feedback_store, folder_hub)
    assert not again.published and folder_hub.uploads == 1
    assert sqlite_feedback_store.get(report_id).consumed_in_dataset_version == "v2"


def test_report_for_a_text_already_in_test_is_dropped_and_reported(cfg, sqlite_feedback_store, folder_hub, sample_splits):
    test_row = sample_splits["test"].iloc[0]
    other = next(label for label in cfg.labels if label != test_row.urgency)
    report_id = reviewed(sqlite_feedback_store, test_row.text, predicted=test_row.urgency, corrected=other)
    reviewed(sqlite_feedback_store, NEW_TEXTS[0])
    result = prepare_dataset(cfg, sqlite_feedback_store, folder_hub)

    assert result.dropped == {"text_in_heldout_split": 1}
    assert result.dropped_rows[0]["report_id"] == report_id
    test = version_files(folder_hub, "v2")["test"]
    assert test.set_index("text").loc[test_row.text, "urgency"] == test_row.urgency
    assert test_row.text not in set(version_files(folder_hub, "v2")["train"].text)
    assert sqlite_feedback_store.get(report_id).consumed_in_dataset_version == "v2"


def test_a_correction_of_a_train_text_relabels_it(cfg, sqlite_feedback_store, folder_hub, sample_splits):
    row = sample_splits["train"].iloc[0]
    other = next(label for label in cfg.labels if label != row.urgency)
    reviewed(sqlite_feedback_store, row.text, predicted=row.urgency, corrected=other)
    result = prepare_dataset(cfg, sqlite_feedback_store, folder_hub)
    train = version_files(folder_hub, "v2")["train"]
    assert result.relabelled_train_rows == 1 and len(train) == len(sample_splits["train"])
    assert train.set_index("text").loc[row.text, "urgency"] == other


def test_bad_rows_are_dropped_with_their_reason(cfg, sqlite_feedback_store, folder_hub):
    conflicted = NEW_TEXTS[1]
    reviewed(sqlite_feedback_store, conflicted, predicted="NORMAL", corrected="URGENT")
    reviewed(sqlite_feedback_store, conflicted, predicted="URGENT", corrected="HIGHLY URGENT")
    reviewed(sqlite_feedback_store, "too short")
    reviewed(sqlite_feedback_store, "broken \ufffd\ufffd encoding of this complaint")
    reviewed(sqlite_feedback_store, "12345 67890 !!! ???")
    reviewed(sqlite_feedback_store, NEW_TEXTS[2], predicted="NORMAL")
    reviewed(sqlite_feedback_store, NEW_TEXTS[2].upper(), predicted="URGENT")  # same text, same correction
    result = prepare_dataset(cfg, sqlite_feedback_store, folder_hub)
    assert result.dropped == {"conflicting_labels": 2, "too_short": 1, "malformed": 2, "duplicate": 1}
    train_texts = set(version_files(folder_hub, "v2")["train"].text)
    assert NEW_TEXTS[2] in train_texts and conflicted not in train_texts
    assert sqlite_feedback_store.list_reviewed_unconsumed("urgency") == []


def test_a_share_of_confirmed_predictions_is_sampled(cfg, sqlite_feedback_store, folder_hub, sample_splits):
    pool = pd.read_csv("data/complaints/pool.csv").text.tolist()[:10]
    for text in pool:
        reviewed(sqlite_feedback_store, text, predicted="URGENT", corrected="URGENT")
    settings = FeedbackSettings(confirmed_share=0.5)
    result = prepare_dataset(cfg, sqlite_feedback_store, folder_hub, settings)
    assert (result.confirmed_sampled, result.confirmed_not_sampled, result.corrections) == (5, 5, 0)
    assert sum(result.added.values()) == 5 and result.reports_considered == 10
    assert sqlite_feedback_store.list_reviewed_unconsumed("urgency") == []


def test_refuses_to_publish_below_the_minimum_size(cfg, sqlite_feedback_store, folder_hub):
    report_id = reviewed(sqlite_feedback_store, NEW_TEXTS[0])
    with pytest.raises(DatasetTooSmall, match="FEEDBACK_MIN_TRAIN_ROWS=100000"):
        prepare_dataset(cfg, sqlite_feedback_store, folder_hub, FeedbackSettings(min_train_rows=100000))
    assert folder_hub.uploads == 0 and "v2" not in folder_hub.tags
    assert sqlite_feedback_store.get(report_id).consumed_in_dataset_version is None


def _report(i, text, label):
    now = utcnow()
    return Report(i, None, text, "urgency", "NORMAL", label, None, None, True, now, now, None)


def test_no_group_spans_two_splits(sample_splits):
    splits = {name: frame.copy() for name, frame in sample_splits.items()}
    test_text = splits["test"].text.iloc[5]
    families = [f"Families in {place} report that the {thing} has been broken for {n} days now."
                for n, thing in enumerate(["school roof", "water tank", "health post door", "road bridge",
                                           "street light", "drainage canal", "ward office gate", "bus shelter",
                                           "market toilet", "river embankment", "waste truck", "power line"])
                for place in ("Pokhara", "Dharan", "Butwal")]
    reports = [_report(i, text, "URGENT") for i, text in enumerate(families)]
    reports.append(_report(99, test_text + " Please act quickly.", "NORMAL"))
    targets = assign_splits(reports, splits, threshold=0.8, heldout_share=0.1, seed=42)

    assert targets[-1] == "test"  # a near-duplicate of a test text stays with its group
    by_family = {}
    for report, target in zip(reports[:-1], targets):
        by_family.setdefault(report.text.split(" has been")[0].split("the ")[-1], set()).add(target)
    assert all(len(s) == 1 for s in by_family.values())
    assert sorted(t for t in targets[:-1]).count("test") == 3  # floor(0.1 * 12 groups) * 3 texts


def test_next_version_names():
    assert next_version(None) == "v1"
    assert next_version("v9") == "v10"
    from datetime import datetime, timezone
    assert next_version("v20250101_000000", datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)) == "v20260102_030405"
