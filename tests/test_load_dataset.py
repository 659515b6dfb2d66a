"""Versioned dataset loading and validation: each rule with small hand-made splits."""
from __future__ import annotations

import json
import random

import pandas as pd
import pytest

from load_dataset import (
    DatasetValidationError,
    NearDuplicateIndex,
    char_ngrams,
    find_split_files,
    jaccard,
    normalize_text,
    to_dataset_dict,
    validate_splits,
)
from tests.fixtures.models import DATA_DIR

FILES = {"train": "train.csv", "validation": "validation.csv", "test": "test.csv"}


def validate(frames, cfg):
    return validate_splits(frames, cfg, "owner/data@v1", FILES)


def add_rows(frame: pd.DataFrame, rows: list[tuple[str, str]]) -> pd.DataFrame:
    return pd.concat([frame, pd.DataFrame(rows, columns=frame.columns)], ignore_index=True)


def lightly_edit(text: str) -> str:
    """What a copied-and-tweaked row looks like: other case, extra spaces, one word changed."""
    words = text.split()
    words[len(words) // 2] = "XYZ"
    return "  ".join(words).upper() + " !"


# --- the shipped fixture ---------------------------------------------------------------


@pytest.mark.parametrize("label", ["department", "urgency"])
def test_shipped_fixture_passes_with_defaults(sample_splits, make_cfg, label):
    clean, report = validate(sample_splits, make_cfg(label))
    assert {s: len(f) for s, f in clean.items()} == {"train": 350, "validation": 80, "test": 120}
    assert report.dropped == []
    assert [(l.split, l.leaked) for l in report.leakage] == [("validation", 0), ("test", 0)]
    assert sum(report.counts["test"].values()) == 120


def test_shipped_fixture_shares_stock_sentences_but_stays_below_threshold(sample_splits):
    # Group-disjoint splits still share suffixes like "Many families affected." and place names:
    # the closest test row to any train row must stay well below the 0.8 default.
    train = [char_ngrams(t) for t in sample_splits["train"].text]
    closest = max(max(jaccard(char_ngrams(t), g) for g in train) for t in sample_splits["test"].text)
    assert 0.2 < closest < 0.6


def test_fixture_test_rows_copied_from_train_fail(sample_splits, make_cfg):
    frames = dict(sample_splits)
    frames["test"] = pd.concat([frames["test"], frames["train"].head(10)], ignore_index=True)
    with pytest.raises(DatasetValidationError, match=r"test\.csv .*column 'text': 10 of 130 rows \(7\.7%\)") as error:
        validate(frames, make_cfg("department"))
    assert "10 exact after normalisation" in str(error.value)
    assert "LEAKAGE_POLICY=drop" in str(error.value)


def test_fixture_test_rows_lightly_edited_from_pool_fail(sample_splits, make_cfg):
    # pool.csv shares template families with train: its rows are train's near-duplicates.
    pool = pd.read_csv(DATA_DIR / "pool.csv").head(100)
    index = NearDuplicateIndex(sample_splits["train"].text, 0.85)
    variants = pool[[index.best_match(t) is not None for t in pool.text]].head(6)
    assert len(variants) == 6
    frames = dict(sample_splits, test=pd.concat([sample_splits["test"], variants], ignore_index=True))
    with pytest.raises(DatasetValidationError, match=r"6 near-duplicates \(5-gram Jaccard >= 0\.8\)"):
        validate(frames, make_cfg("department"))


# --- schema ----------------------------------------------------------------------------


def test_missing_split_names_the_split(small_splits, make_cfg):
    del small_splits["validation"]
    with pytest.raises(DatasetValidationError, match=r"lacks the split\(s\) \['validation'\].*validation\.csv"):
        validate(small_splits, make_cfg())


def test_missing_label_column_names_file_and_column(small_splits, make_cfg):
    with pytest.raises(DatasetValidationError, match=r"train\.csv .*has no column 'department'"):
        validate(small_splits, make_cfg("department"))


def test_missing_text_column_names_file_and_column(small_splits, make_cfg):
    small_splits["test"] = small_splits["test"].rename(columns={"text": "grievance"})
    with pytest.raises(DatasetValidationError, match=r"test\.csv .*has no column 'text'.*'grievance'"):
        validate(small_splits, make_cfg())


# --- labels ------------------------------------------------------------------------------


def test_unknown_labels_are_listed_with_counts(small_splits, make_cfg):
    small_splits["train"] = add_rows(small_splits["train"], [("Late bus again today.", "urgent"),
                                                             ("Noise at night from a factory.", "urgent"),
                                                             ("Broken tap at the school.", "")])
    with pytest.raises(DatasetValidationError) as error:
        validate(small_splits, make_cfg())
    message = str(error.value)
    assert "train.csv (train split of owner/data@v1), column 'urgency': 3 of 11 rows" in message
    assert "'urgent' x2, '' x1" in message
    assert "UNKNOWN_LABEL_POLICY=drop" in message


def test_unknown_labels_dropped_when_policy_is_drop(small_splits, make_cfg):
    small_splits["test"] = add_rows(small_splits["test"], [("Late bus again today.", "CRITICAL")])
    clean, report = validate(small_splits, make_cfg(unknown_label_policy="drop"))
    assert "CRITICAL" not in set(clean["test"].urgency)
    assert [(d.split, d.reason, d.count, d.examples) for d in report.dropped] == [
        ("test", "unknown_label", 1, ["Late bus again today."])]


def test_label_whitespace_is_not_an_unknown_label(small_splits, make_cfg):
    small_splits["train"].loc[0, "urgency"] = " URGENT "
    clean, report = validate(small_splits, make_cfg())
    assert clean["train"].urgency[0] == "URGENT" and report.dropped == []


# --- empty texts and duplicates --------------------------------------------------------------


def test_empty_texts_dropped_by_default(small_splits, make_cfg):
    small_splits["train"] = add_rows(small_splits["train"], [("   ", "NORMAL"), (None, "URGENT"), ("\n\t", "NORMAL")])
    clean, report = validate(small_splits, make_cfg())
    assert len(clean["train"]) == 8
    assert [(d.split, d.reason, d.count) for d in report.dropped] == [("train", "empty_text", 3)]


def test_empty_texts_fail_when_policy_is_fail(small_splits, make_cfg):
    small_splits["validation"] = add_rows(small_splits["validation"], [("", "NORMAL")])
    with pytest.raises(DatasetValidationError, match=r"validation\.csv .*column 'text': 1 of 4 rows have an empty.*EMPTY_TEXT_POLICY=drop"):
        validate(small_splits, make_cfg(empty_text_policy="fail"))


def test_duplicates_after_normalisation_dropped_by_default(small_splits, make_cfg):
    first = small_splits["train"].text[0]
    small_splits["train"] = add_rows(small_splits["train"], [(first.upper(), "URGENT"), ("  " + first + " ", "URGENT")])
    clean, report = validate(small_splits, make_cfg())
    assert clean["train"].text.tolist() == small_splits["train"].text[:8].tolist()
    assert [(d.reason, d.count) for d in report.dropped] == [("duplicate", 2)]


def test_duplicates_fail_when_policy_is_fail_and_note_conflicting_labels(small_splits, make_cfg):
    first = small_splits["train"].text[0]
    small_splits["train"] = add_rows(small_splits["train"], [(first, "NORMAL")])
    with pytest.raises(DatasetValidationError, match=r"1 of 9 rows repeat.*\(1 of these texts carry different labels\).*DUPLICATE_POLICY=drop"):
        validate(small_splits, make_cfg(duplicate_policy="fail"))


# --- leakage ---------------------------------------------------------------------------------


def test_exact_leak_after_normalisation_fails(small_splits, make_cfg):
    copied = small_splits["train"].text[2]
    small_splits["test"] = add_rows(small_splits["test"], [(" " + copied.casefold().replace(" ", "   "), "URGENT")])
    with pytest.raises(DatasetValidationError, match=r"test\.csv .*1 of 5 rows \(20\.0%\) also occur in train\.csv or validation\.csv: 1 exact"):
        validate(small_splits, make_cfg())


def test_fullwidth_and_case_variants_normalise_to_the_same_key():
    assert normalize_text("ＡＢＣ  Road\u00a0is\tBROKEN ") == normalize_text("abc road is broken") == "abc road is broken"


def test_near_duplicate_leak_into_validation_fails(small_splits, make_cfg):
    long_text = "The drainage channel beside the main market road is blocked with plastic waste and mud again"
    small_splits["train"] = add_rows(small_splits["train"], [(long_text, "URGENT")])
    small_splits["validation"] = add_rows(small_splits["validation"], [(long_text.replace("again", "today"), "URGENT")])
    with pytest.raises(DatasetValidationError, match=r"validation\.csv .*0 exact after normalisation, 1 near-duplicates") as error:
        validate(small_splits, make_cfg())
    assert "MAX_LEAKAGE_RATIO=0.01" in str(error.value)


def test_leak_between_validation_and_test_counts(small_splits, make_cfg):
    small_splits["test"] = add_rows(small_splits["test"], [(small_splits["validation"].text[0], "HIGHLY URGENT")])
    with pytest.raises(DatasetValidationError, match=r"test\.csv .*1 of 5 rows"):
        validate(small_splits, make_cfg())


def test_leaked_rows_dropped_from_test_not_train_when_policy_is_drop(small_splits, make_cfg):
    leaked = [small_splits["train"].text[0], lightly_edit(small_splits["train"].text[1])]
    small_splits["test"] = add_rows(small_splits["test"], [(leaked[0], "URGENT"), (small_splits["train"].text[1], "NORMAL")])
    clean, report = validate(small_splits, make_cfg(leakage_policy="drop"))
    assert len(clean["train"]) == 8
    assert clean["test"].text.tolist() == [t for t, _ in small_splits["test"].values[:4]]
    test_leak = report.leakage[1]
    assert (test_leak.split, test_leak.exact, test_leak.near, test_leak.rows) == ("test", 2, 0, 6)
    assert [(d.split, d.reason, d.count) for d in report.dropped] == [("test", "leakage", 2)]


def test_leak_share_within_max_ratio_is_kept_and_reported(sample_splits, make_cfg):
    frames = dict(sample_splits)
    frames["test"] = pd.concat([frames["test"], frames["train"].head(1)], ignore_index=True)
    clean, report = validate(frames, make_cfg("urgency", max_leakage_ratio=0.01))
    assert len(clean["test"]) == 121
    assert report.leakage[1].leaked == 1 and report.leakage[1].ratio == pytest.approx(1 / 121)


def test_every_problem_is_reported_at_once(small_splits, make_cfg):
    small_splits["train"] = add_rows(small_splits["train"], [("Late bus again.", "SOMEDAY")])
    small_splits["test"] = add_rows(small_splits["test"], [(small_splits["train"].text[0], "URGENT")])
    with pytest.raises(DatasetValidationError, match=r"failed validation \(2 problem\(s\)\)") as error:
        validate(small_splits, make_cfg())
    assert "UNKNOWN_LABEL_POLICY" in str(error.value) and "LEAKAGE_POLICY" in str(error.value)


# --- near-duplicate search -------------------------------------------------------------------


def test_index_finds_exactly_the_pairs_brute_force_finds(sample_splits):
    pool = pd.read_csv(DATA_DIR / "pool.csv").text.tolist()[:150]
    train = sample_splits["train"].text.tolist()
    train_grams = [char_ngrams(t) for t in train]
    closest = [max(jaccard(char_ngrams(text), g) for g in train_grams) for text in pool]
    for threshold in (0.5, 0.8):
        index = NearDuplicateIndex(train, threshold, all_texts=pool)
        for text, best in zip(pool, closest):
            found = index.best_match(text)
            assert (found is not None) == (best >= threshold)
            if found:
                assert found[1] == pytest.approx(best)


def test_index_verifies_few_pairs_on_5000_by_500_rows(sample_splits):
    pool = pd.read_csv(DATA_DIR / "pool.csv").text.tolist()
    rng = random.Random(0)
    corpus = sample_splits["train"].text.tolist() + pool
    corpus = (corpus + [t + " " + rng.choice(corpus)[:25] for t in corpus])[:5000]
    queries = rng.sample(pool, 250) + [lightly_edit(t) for t in rng.sample(corpus, 250)]
    index = NearDuplicateIndex(corpus, 0.8, all_texts=queries)
    hits = sum(index.best_match(q) is not None for q in queries)
    assert hits >= 250  # every pool row is in the corpus
    # The prefix filter must spare almost all of the 2.5 million exact comparisons.
    assert index.verified < 0.01 * len(corpus) * len(queries)


# --- report and output -----------------------------------------------------------------------


def test_report_is_json_ready_and_summarised(small_splits, make_cfg):
    small_splits["train"] = add_rows(small_splits["train"], [("", "NORMAL")])
    _, report = validate(small_splits, make_cfg())
    data = json.loads(json.dumps(report.to_dict()))
    assert data["rows"] == {"train": 8, "validation": 3, "test": 4}
    assert data["counts"]["train"] == {"NORMAL": 3, "URGENT": 3, "HIGHLY URGENT": 2}
    assert data["dropped"][0]["reason"] == "empty_text"
    assert data["leakage"][1]["ratio"] == 0 and data["near_duplicate_threshold"] == 0.8
    assert "train 8, validation 3, test 4" in report.summary() and "train 1 empty_text" in report.summary()


def test_dataset_dict_has_integer_labels_in_config_order(small_splits, make_cfg):
    cfg = make_cfg()
    clean, _ = validate(small_splits, cfg)
    dataset = to_dataset_dict(clean, cfg)
    assert dataset["train"].column_names == ["text", "label"]
    assert dataset["train"].features["label"].names == ["NORMAL", "URGENT", "HIGHLY URGENT"]
    assert dataset["train"]["label"][:3] == [1, 0, 2]


def test_split_files_found_in_csv_and_parquet_layouts():
    paths = ["README.md", ".gitattributes", "train.csv", "validation.csv", "pool.csv", "old/x/test.csv",
             "data/test-00000-of-00002.parquet", "data/test-00001-of-00002.parquet"]
    assert find_split_files(paths) == {
        "train": ["train.csv"], "validation": ["validation.csv"],
        "test": ["data/test-00000-of-00002.parquet", "data/test-00001-of-00002.parquet"],
    }


def test_split_in_two_layouts_is_ambiguous():
    with pytest.raises(DatasetValidationError, match=r"split train has files in 2 layouts"):
        find_split_files(["train.csv", "data/train-00000-of-00001.parquet"])
