"""Versioned dataset loading and validation: each rule with small hand-made splits."""
from __future__ import annotations

import json
import random

import pandas as pd
import pytest

from load_dataset import (
    DatasetRevisionError,
    DatasetValidationError,
    JaccardIndex,
    char_ngrams,
    find_split_files,
    jaccard,
    load_versioned_dataset,
    normalize_text,
    resolve_dataset_revision,
    to_dataset_dict,
    validate_splits,
)
from tests.fixtures.datasets import frames_with_extra_row
from tests.fixtures.models import DATA_DIR

FILES = {"train": "train.csv", "validation": "validation.csv", "test": "test.csv"}


def validate(frames, cfg):
    return validate_splits(frames, cfg, "owner/data@v1", FILES)


def add_rows(frame: pd.DataFrame, rows: list[tuple[str, str]]) -> pd.DataFrame:
    return pd.concat([frame, pd.DataFrame(rows, columns=frame.columns)], ignore_index=True)


def restyle(text: str) -> str:
    """A copy in other case and spacing: the same text after normalisation."""
    return "  ".join(text.split()).upper()


def swap_middle_word(text: str) -> str:
    """A copy with one word changed: a near-duplicate when the text has a dozen words or more."""
    words = text.split()
    words[len(words) // 2] = "XYZ"
    return " ".join(words)


def reshout(text: str) -> str:
    """A copy with its final punctuation replaced: a near-duplicate even for a short text."""
    return text.rstrip(".!?।") + "!!"


# --- the shipped fixture ---------------------------------------------------------------


@pytest.mark.parametrize("label", ["department", "urgency"])
def test_shipped_fixture_passes_with_defaults(sample_splits, make_cfg, label):
    clean, report = validate(sample_splits, make_cfg(label))
    assert {s: len(f) for s, f in clean.items()} == {"train": 350, "validation": 80, "test": 120}
    assert report.dropped == []
    assert [(l.split, l.leaked) for l in report.leakage] == [("validation", 0), ("test", 0)]
    assert sum(report.counts["test"].values()) == 120


def test_shipped_fixture_shares_stock_sentences_but_stays_below_threshold(sample_splits):
    # Group-disjoint splits still share suffixes like "Many families affected." and place names;
    # no test row may come near the 0.8 default (measured: the closest is 0.35).
    def with_stock_suffix(frame):
        return frame.text.str.contains("Many families affected.", regex=False).sum()

    assert with_stock_suffix(sample_splits["train"]) > 0 and with_stock_suffix(sample_splits["test"]) > 0
    index = JaccardIndex(sample_splits["train"].text, 0.6, all_texts=sample_splits["test"].text)
    assert [t for t in sample_splits["test"].text if index.best_match(t)] == []


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
    index = JaccardIndex(sample_splits["train"].text, 0.85)
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


def test_split_with_no_usable_rows_fails(small_splits, make_cfg):
    small_splits["validation"]["text"] = ["", " ", "\t"]
    with pytest.raises(DatasetValidationError, match=r"validation\.csv \(validation split of owner/data@v1\): no usable rows left out of 3 \(dropped: 3 empty_text\)"):
        validate(small_splits, make_cfg())


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
    train = small_splits["train"].text
    small_splits["test"] = add_rows(small_splits["test"], [(restyle(train[0]), "URGENT"), (reshout(train[1]), "NORMAL")])
    clean, report = validate(small_splits, make_cfg(leakage_policy="drop"))
    assert len(clean["train"]) == 8
    assert clean["test"].text.tolist() == small_splits["test"].text[:4].tolist()
    test_leak = report.leakage[1]
    assert (test_leak.split, test_leak.exact, test_leak.near, test_leak.rows) == ("test", 1, 1, 6)
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
    pool = pd.read_csv(DATA_DIR / "pool.csv").text.tolist()[:100]
    train = sample_splits["train"].text.tolist()
    train_grams = [char_ngrams(t) for t in train]
    closest = [max(jaccard(char_ngrams(text), g) for g in train_grams) for text in pool]
    for threshold in (0.5, 0.8):
        index = JaccardIndex(train, threshold, all_texts=pool)
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
    queries = rng.sample(pool, 250) + [swap_middle_word(t) for t in rng.sample(corpus, 250)]
    index = JaccardIndex(corpus, 0.8, all_texts=queries)
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
    paths = ["README.md", ".gitattributes", "train.csv", "validation.csv", "pool.csv", "notes/test.txt",
             "data/test-00000-of-00002.parquet", "data/test-00001-of-00002.parquet"]
    assert find_split_files(paths) == {
        "train": ["train.csv"], "validation": ["validation.csv"],
        "test": ["data/test-00000-of-00002.parquet", "data/test-00001-of-00002.parquet"],
    }


def test_split_in_two_layouts_is_ambiguous():
    with pytest.raises(DatasetValidationError, match=r"split train has files in 2 layouts"):
        find_split_files(["train.csv", "data/train-00000-of-00001.parquet"])


# --- versions on the local hub ---------------------------------------------------------------


def test_newest_version_tag_is_ordered_by_version_not_name_or_time(push_dataset, unique_repo_id, small_splits, make_cfg, local_hub):
    repo = unique_repo_id
    push_dataset(repo, small_splits, tag="v2")
    v10 = push_dataset(repo, frames_with_extra_row(small_splits, "Version ten row about a broken culvert."), tag="v10")
    push_dataset(repo, frames_with_extra_row(small_splits, "Version nine row about a dry well."), tag="v9")
    assert resolve_dataset_revision(local_hub.client, make_cfg(dataset_repo_id=repo)) == ("v10", v10)
    dataset, report = load_versioned_dataset(make_cfg(dataset_repo_id=repo), local_hub.client)
    assert "Version ten row about a broken culvert." in dataset["train"]["text"]
    assert (report.repo, report.revision, report.commit) == (repo, "v10", v10)


def test_pinned_revision_gets_the_old_bytes_after_main_changed(push_dataset, unique_repo_id, small_splits, make_cfg, local_hub):
    repo = unique_repo_id
    v1 = push_dataset(repo, small_splits, tag="v1")
    push_dataset(repo, frames_with_extra_row(small_splits, "Added on main after v1 was tagged."))  # untagged
    for pin in ("v1", v1):
        dataset, report = load_versioned_dataset(make_cfg(dataset_repo_id=repo, dataset_revision=pin), local_hub.client)
        assert dataset["train"].num_rows == 8 and report.commit == v1
    # Unpinned also means the newest tag, never the untagged main.
    dataset, report = load_versioned_dataset(make_cfg(dataset_repo_id=repo), local_hub.client)
    assert dataset["train"].num_rows == 8 and report.revision == "v1"
    dataset, _ = load_versioned_dataset(make_cfg(dataset_repo_id=repo, dataset_revision="main"), local_hub.client)
    assert dataset["train"].num_rows == 9


def test_untagged_repo_fails(push_dataset, unique_repo_id, small_splits, make_cfg, local_hub):
    repo = unique_repo_id
    push_dataset(repo, small_splits)
    with pytest.raises(DatasetRevisionError, match=rf"no v\* tag on dataset {repo}; tag a version .* or set DATASET_REVISION"):
        load_versioned_dataset(make_cfg(dataset_repo_id=repo), local_hub.client)


def test_missing_pinned_revision_names_the_setting_and_the_tags(push_dataset, unique_repo_id, small_splits, make_cfg, local_hub):
    repo = unique_repo_id
    push_dataset(repo, small_splits, tag="v1")
    push_dataset(repo, small_splits, tag="v2")
    with pytest.raises(DatasetRevisionError, match=r"DATASET_REVISION='v7' is not a tag.*its tags: \['v1', 'v2'\]"):
        resolve_dataset_revision(local_hub.client, make_cfg(dataset_repo_id=repo, dataset_revision="v7"))


def test_missing_repo_names_the_setting(make_cfg, local_hub):
    with pytest.raises(DatasetRevisionError, match=r"tests-data/never-created does not exist.*DATASET_REPO_ID"):
        resolve_dataset_revision(local_hub.client, make_cfg(dataset_repo_id="tests-data/never-created"))


# --- bad datasets on the local hub ---------------------------------------------------------


def test_leaky_dataset_on_the_hub_fails(push_dataset, unique_repo_id, sample_splits, make_cfg, local_hub):
    repo = unique_repo_id
    train = sample_splits["train"]
    longest = train[train.text.str.len() > 150].head(4)
    copies = pd.concat([train.head(4).assign(text=train.text.head(4).map(restyle)),
                        longest.assign(text=longest.text.map(swap_middle_word))])
    push_dataset(repo, dict(sample_splits, test=pd.concat([sample_splits["test"], copies], ignore_index=True)), tag="v1")
    with pytest.raises(DatasetValidationError, match=rf"test\.csv \(test split of {repo}@v1\), column 'text': "
                       r"8 of 128 rows \(6\.2%\) also occur in train\.csv or validation\.csv: 4 exact .*, 4 near"):
        load_versioned_dataset(make_cfg("department", dataset_repo_id=repo), local_hub.client)
    dataset, report = load_versioned_dataset(
        make_cfg("department", dataset_repo_id=repo, leakage_policy="drop"), local_hub.client)
    assert dataset["test"].num_rows == 120 and report.leakage[1].leaked == 8


def test_unknown_label_dataset_on_the_hub_fails(push_dataset, unique_repo_id, small_splits, make_cfg, local_hub):
    repo = unique_repo_id
    small_splits["validation"].loc[1, "urgency"] = "LOW"
    push_dataset(repo, small_splits, tag="v1")
    with pytest.raises(DatasetValidationError, match=r"validation\.csv .*column 'urgency': 1 of 3 rows .*'LOW' x1.*UNKNOWN_LABEL_POLICY=drop"):
        load_versioned_dataset(make_cfg(dataset_repo_id=repo), local_hub.client)


def test_missing_split_file_on_the_hub_lists_the_files(push_dataset, unique_repo_id, small_splits, make_cfg, local_hub):
    repo = unique_repo_id
    del small_splits["test"]
    push_dataset(repo, small_splits, tag="v1")
    with pytest.raises(DatasetValidationError, match=r"no file for split\(s\) \['test'\].*'train\.csv'.*Add test\.csv"):
        load_versioned_dataset(make_cfg(dataset_repo_id=repo), local_hub.client)


def test_shipped_fixture_loads_from_the_hub_as_integer_labels(push_dataset, unique_repo_id, sample_splits, make_cfg, local_hub):
    repo = unique_repo_id
    commit = push_dataset(repo, sample_splits, tag="v1")
    cfg = make_cfg("department", dataset_repo_id=repo)
    dataset, report = load_versioned_dataset(cfg, local_hub.client)
    assert {s: dataset[s].num_rows for s in dataset} == {"train": 350, "validation": 80, "test": 120}
    assert dataset["test"]["label"][:5] == [cfg.label2id[n] for n in sample_splits["test"].department[:5]]
    summary = json.loads(json.dumps(report.to_dict()))
    assert (summary["repo"], summary["revision"], summary["commit"]) == (repo, "v1", commit)
    assert summary["files"]["train"] == "train.csv"


def test_parquet_shards_load_like_csv(push_dataset, unique_repo_id, small_splits, make_cfg, local_hub):
    repo = unique_repo_id
    push_dataset(repo, small_splits, tag="v1", fmt="parquet")
    dataset, report = load_versioned_dataset(make_cfg(dataset_repo_id=repo), local_hub.client)
    assert dataset["train"]["text"] == small_splits["train"].text.tolist()
    assert report.files["test"] == "data/test-00000-of-00001.parquet"


def test_texts_are_cleaned_as_the_inference_space_cleans_them(push_dataset, unique_repo_id, small_splits, make_cfg,
                                                               local_hub):
    raw = "Street light <b>broken</b> again,\nsee https://example.org/photo for the pole"
    push_dataset(unique_repo_id, frames_with_extra_row(small_splits, raw), tag="v1")
    cleaned, _ = load_versioned_dataset(make_cfg(dataset_repo_id=unique_repo_id), local_hub.client)
    assert "Street light broken again, see for the pole" in cleaned["train"]["text"]
    as_sent, _ = load_versioned_dataset(make_cfg(dataset_repo_id=unique_repo_id, text_cleaning="none"),
                                        local_hub.client)
    assert raw in as_sent["train"]["text"]
