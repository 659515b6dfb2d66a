"""Coming from Sambodhan: their dataset versions (DatasetDict.push_to_hub) load, a leaky one is
resplit into a clean new version, and their inference Spaces are checked before training and
scored after it."""
from __future__ import annotations

import json

import pandas as pd
import pytest

import dataset_tools
from configs import LABEL_SETS
from dataset_mapping import near_duplicate_families
from deployed_api import DeployedModelClient
from deployed_check import DeployedCheckError, check_deployed_before_training
from load_dataset import DatasetValidationError, load_versioned_dataset
from tests.fixtures.sambodhan import sambodhan_rows, start_sambodhan_space
from tests.fixtures.scenarios import SAMPLE_DATA
from text_cleaning import clean

URGENCY = LABEL_SETS["urgency"]
TAG = "v20251017_045551"


def sample(split: str) -> pd.DataFrame:
    return pd.read_csv(SAMPLE_DATA / f"{split}.csv")


def their_splits(**renamed) -> dict[str, list[list]]:
    """Our group-disjoint sample splits in their shape: train/eval/test, grievance + integer label."""
    names = {"train": "train", "validation": "eval", "test": "test", **renamed}
    return {names[s]: sambodhan_rows(sample(s), "urgency", URGENCY) for s in ("train", "validation", "test") if names[s]}


def leaky_random_split(seed: int = 42) -> dict[str, list[list]]:
    """What their prepare_dataset does to a pool with template families: a random 80/10/10 split."""
    pool = pd.read_csv(SAMPLE_DATA / "pool.csv").sample(n=600, random_state=seed).reset_index(drop=True)
    rows = sambodhan_rows(pool, "urgency", URGENCY)
    return {"train": rows[:480], "eval": rows[480:540], "test": rows[540:]}


# --- datasets ---------------------------------------------------------------------------------


def test_their_push_to_hub_version_loads_with_eval_grievance_and_classlabel_ids(
        push_sambodhan, local_hub, unique_repo_id, make_cfg):
    push_sambodhan(unique_repo_id, their_splits(), "urgency", TAG, class_names=URGENCY)
    dataset, report = load_versioned_dataset(make_cfg(dataset_repo_id=unique_repo_id), local_hub.client)
    assert report.revision == TAG
    for split in ("train", "validation", "test"):
        expected = sample(split)
        assert list(dataset[split]["text"]) == expected.text.map(clean).tolist()  # TEXT_CLEANING=sambodhan
        assert [URGENCY[i] for i in dataset[split]["label"]] == expected.urgency.tolist()
    mapping = report.mapping
    assert mapping["layout"] == "data" and mapping["splits"]["validation"] == "eval"
    assert (mapping["text_column"], mapping["label_column"]) == ("grievance", "label")
    assert "ClassLabel" in mapping["label_ids"] and "'eval'" in report.summary()


def test_plain_integer_ids_are_named_by_the_label_order_and_metadata_must_match_the_label(
        push_sambodhan, local_hub, unique_repo_id, make_cfg):
    push_sambodhan(unique_repo_id, their_splits(), "urgency", TAG)  # Dataset.from_pandas: int64, no ClassLabel
    dataset, report = load_versioned_dataset(make_cfg(dataset_repo_id=unique_repo_id), local_hub.client)
    assert "LABEL=urgency id order" in report.mapping["label_ids"]
    assert [URGENCY[i] for i in dataset["test"]["label"]] == sample("test").urgency.tolist()
    with pytest.raises(DatasetValidationError,
                       match=rf"{unique_repo_id}@{TAG}: dataset_metadata.json says its labels are 'urgency' but "
                             r"LABEL=department; set DATASET_REPO_ID"):
        load_versioned_dataset(make_cfg("department", dataset_repo_id=unique_repo_id), local_hub.client)


def test_their_version_pushed_on_our_csvs_names_the_tag_and_the_layout_setting(
        push_dataset, push_sambodhan, local_hub, unique_repo_id, make_cfg, small_splits):
    push_dataset(unique_repo_id, small_splits, tag="v1")
    push_sambodhan(unique_repo_id, their_splits(), "urgency", TAG, class_names=URGENCY)
    with pytest.raises(DatasetValidationError, match=rf"{unique_repo_id}@{TAG} holds two versions.*DATASET_LAYOUT=data"):
        load_versioned_dataset(make_cfg(dataset_repo_id=unique_repo_id), local_hub.client)
    dataset, report = load_versioned_dataset(make_cfg(dataset_repo_id=unique_repo_id, dataset_layout="data"),
                                             local_hub.client)
    assert len(dataset["validation"]) == len(sample("validation")) and "ignored: ['root']" in report.summary()
    _, ours = load_versioned_dataset(make_cfg(dataset_repo_id=unique_repo_id, dataset_revision="v1"), local_hub.client)
    assert ours.mapping["layout"] == "root" and ours.rows("train") == len(small_splits["train"])


def test_split_names_need_an_alias_when_ambiguous_and_the_error_says_which_setting(
        push_sambodhan, local_hub, unique_repo_id, make_cfg):
    splits = their_splits(validation="dev")
    splits["eval"] = splits["dev"]
    push_sambodhan(unique_repo_id, splits, "urgency", TAG, class_names=URGENCY)
    with pytest.raises(DatasetValidationError, match=rf"{unique_repo_id}@{TAG} has no validation split but several "
                                                     r"candidates \['eval', 'dev'\]; set SPLIT_ALIASES=eval:validation"):
        load_versioned_dataset(make_cfg(dataset_repo_id=unique_repo_id), local_hub.client)
    dataset, report = load_versioned_dataset(make_cfg(dataset_repo_id=unique_repo_id, split_aliases="dev:validation"),
                                             local_hub.client)
    assert report.mapping["splits"]["validation"] == "dev" and report.mapping["ignored_splits"] == ["eval"]


def test_a_version_without_validation_gets_one_carved_from_train_by_family(
        push_sambodhan, local_hub, unique_repo_id, make_cfg):
    push_sambodhan(unique_repo_id, their_splits(validation=None), "urgency", TAG, class_names=URGENCY)
    cfg = make_cfg(dataset_repo_id=unique_repo_id, validation_fraction=0.2)
    dataset, report = load_versioned_dataset(cfg, local_hub.client)
    again, _ = load_versioned_dataset(cfg, local_hub.client)
    carved = report.mapping["carved_validation"]
    assert carved["rows"] == len(dataset["validation"]) == len(again["validation"])
    assert list(dataset["validation"]["text"]) == list(again["validation"]["text"])  # seeded
    assert 0.15 < carved["rows"] / len(sample("train")) < 0.25
    assert report.rows("train") + report.rows("validation") == len(sample("train"))
    families = near_duplicate_families(list(dataset["train"]["text"]) + list(dataset["validation"]["text"]), 0.8)
    n = len(dataset["train"])
    assert not set(families[:n]) & set(families[n:])  # no family in both
    assert "carved from train" in report.summary()


def test_resplit_turns_their_leaky_version_into_a_clean_new_one(
        push_sambodhan, local_hub, unique_repo_id, make_cfg, capsys):
    push_sambodhan(unique_repo_id, leaky_random_split(), "urgency", TAG, class_names=URGENCY)
    cfg = make_cfg(dataset_repo_id=unique_repo_id)
    with pytest.raises(DatasetValidationError, match=rf"(?s){unique_repo_id}@{TAG} failed validation.*LEAKAGE_POLICY"):
        load_versioned_dataset(cfg, local_hub.client)
    hub = local_hub.client
    before = hub.list_tags(unique_repo_id, "dataset")

    assert dataset_tools.resplit(cfg, hub, TAG, "v20251018_000000", dry_run=True) is None
    assert "dry run" in capsys.readouterr().out and hub.list_tags(unique_repo_id, "dataset") == before

    tag = dataset_tools.resplit(cfg, hub, TAG, "v20251018_000000", dry_run=False)
    tags = hub.list_tags(unique_repo_id, "dataset")
    assert tags[TAG] == before[TAG] and tag in tags  # old version untouched, new one tagged
    assert not any(b.startswith("resplit-") for b in hub.list_branches(unique_repo_id, "dataset"))
    files = hub.list_files(unique_repo_id, tag, "dataset")
    assert "resplit_report.json" in files and "data/eval-00000-of-00001.parquet" in files
    report = json.loads(hub.download_file(unique_repo_id, "resplit_report.json", tag, "dataset").read_text())
    assert report["source"] == f"{unique_repo_id}@{TAG}" and report["moved"]
    assert report["rows_in_train_families_before"]["test"] > 0 and report["leakage_after"] == {"validation": 0, "test": 0}
    for split, size in report["rows_before"].items():
        assert abs(report["rows_after"][split] - size) <= 0.25 * size

    dataset, data_report = load_versioned_dataset(cfg, local_hub.client)  # the newest tag: the resplit
    assert data_report.revision == tag and not data_report.dropped
    assert sum(data_report.rows(s) for s in ("train", "validation", "test")) == 600
    assert "ClassLabel" in data_report.mapping["label_ids"]  # the features survived the rewrite


def test_resplit_cli_help_and_existing_tag(push_sambodhan, local_hub, unique_repo_id, monkeypatch, capsys):
    with pytest.raises(SystemExit):
        dataset_tools.main(["resplit", "--help"])
    assert "--dry-run" in capsys.readouterr().out
    push_sambodhan(unique_repo_id, their_splits(), "urgency", TAG, class_names=URGENCY)
    monkeypatch.setenv("HF_ENDPOINT", local_hub.url)
    code = dataset_tools.main(["resplit", "--label", "urgency", "--repo", unique_repo_id, "--to-tag", TAG])
    assert code == 1 and f"tag {TAG} exists" in capsys.readouterr().err


# --- deployed Spaces --------------------------------------------------------------------------


def test_their_space_is_checked_through_the_full_predict_url_and_scored(sambodhan_space, make_cfg, hub_client,
                                                                         unique_repo_id, constant_model_dir):
    hub_client.ensure_repo(unique_repo_id)
    commit = hub_client.upload_folder(unique_repo_id, constant_model_dir, "deployed")
    hub_client.create_tag(unique_repo_id, TAG, commit)
    logged = []
    cfg = make_cfg(hub_model_id=unique_repo_id, api_endpoint=f"{sambodhan_space}/predict_urgency",
                   hf_endpoint=hub_client.endpoint)
    answer = check_deployed_before_training(cfg, hub_client, log=logged.append)
    assert answer["label"] == "HIGHLY URGENT" and answer["revision"] == TAG and answer["via"] == "/predict_urgency"
    assert any("names the predict route" in line for line in logged)

    client = DeployedModelClient(sambodhan_space, label="urgency", retries=0)  # the Space URL: route found
    scores = client.predict_labels([f"complaint {i}" for i in range(12)])
    assert scores.mode == "list" and not scores.failures and set(scores.labels) == {"HIGHLY URGENT"}
    assert client.wait_until_ready(timeout=5)["revision"] == TAG


def test_a_space_of_the_other_label_fails_the_check_naming_the_labels(constant_model_dir, make_cfg, hub_client,
                                                                      unique_repo_id):
    process, url = start_sambodhan_space(constant_model_dir, label="department")
    try:
        hub_client.ensure_repo(unique_repo_id)
        commit = hub_client.upload_folder(unique_repo_id, constant_model_dir, "deployed")
        hub_client.create_tag(unique_repo_id, TAG, commit)
        cfg = make_cfg("department", hub_model_id=unique_repo_id, api_endpoint=f"{url}/predict",
                       hf_endpoint=hub_client.endpoint)
        with pytest.raises(DeployedCheckError, match=r"answered label 'HIGHLY URGENT', not one of LABEL=department"):
            check_deployed_before_training(cfg, hub_client, log=lambda line: None)
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_no_deployed_model_skips_the_check(make_cfg, hub_client, unique_repo_id):
    logged = []
    cfg = make_cfg(hub_model_id=unique_repo_id, api_endpoint="http://127.0.0.1:9/predict", hf_endpoint=hub_client.endpoint)
    assert check_deployed_before_training(cfg, hub_client, log=logged.append) is None
    assert "first deploy" in logged[0]


# --- the whole job ----------------------------------------------------------------------------


def test_job_trains_on_their_version_and_compares_with_their_space(
        loop, monkeypatch, push_sambodhan, constant_model_dir, sambodhan_space, unique_repo_id, capsys):
    push_sambodhan(unique_repo_id, their_splits(), "urgency", TAG, class_names=URGENCY)
    loop.deploy_model(constant_model_dir)
    code = loop.run(monkeypatch, dataset_repo_id=unique_repo_id, api_endpoint=f"{sambodhan_space}/predict_urgency",
                    decision_threshold=0.99, max_train_samples=64)
    summary = loop.summary()
    assert code == 0 and summary["outcome"] == "kept", summary.get("error")
    assert summary["dataset"]["revision"] == TAG and summary["dataset"]["mapping"]["splits"]["validation"] == "eval"
    comparison = summary["comparison"]
    assert comparison["deployed_revision"] == TAG and comparison["deployed_mode"] == "list"
    assert comparison["deployed"]["macro_f1"] > 0
    # Their pipeline does not truncate: a sample text longer than the model's 512 positions answers 500.
    failed = comparison["failed_samples"]
    assert len(failed) <= 3 and all("HTTP 500" in why for why in failed.values())
    assert "names the predict route" in capsys.readouterr().out
