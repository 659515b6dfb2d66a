"""The job's promises, each against the local hub and real local Spaces:
the retrain Space ends PAUSED, the error is in the summary and the exit code, no tag points at a
half-upload, the inference Space serves a working version, and nothing is promoted blindly."""
from __future__ import annotations

import errno

import pandas as pd
import pytest

import train_model
from configs import load_config
from deploy import push_and_tag
from hub import HubError
from run_lock import RunLock
from tests.fixtures.scenarios import OLD_TAG, SAMPLE_DATA
from tests.fixtures.servers import free_port
from text_cleaning import clean

QUICK = {"max_train_samples": 64}


def assert_paused_with(loop, exit_code: int, expected: int, outcome: str, error: str | None = None) -> dict:
    summary = loop.summary()
    assert exit_code == expected, summary.get("error")
    assert summary["outcome"] == outcome
    assert loop.stage(loop.retrain_space) == "PAUSED"
    if error:
        assert error in (summary["error"] or "")
    for tag in loop.tags():  # every tag points at a complete upload
        assert "metadata.json" in loop.client.list_files(loop.model_repo, tag) or tag == OLD_TAG
    return summary


def test_first_deploy_promotes_tags_the_upload_and_serves_it(loop, monkeypatch):
    loop.start_inference_space(serving=False)  # no model yet: the Space runs, nothing to serve
    code = loop.run(monkeypatch)
    summary = assert_paused_with(loop, code, 0, "promoted")
    tag = summary["version"]
    assert tag.startswith("v") and set(loop.tags()) == {tag}
    files = loop.client.list_files(loop.model_repo, tag)
    assert {"metadata.json", "README.md", "config.json", "model.safetensors"} <= set(files)
    assert loop.served_revision() == tag and loop.pinned_revision() == tag
    metadata = loop.client.download_file(loop.model_repo, "metadata.json", tag).read_text()
    assert '"first deploy' in metadata and loop.dataset_repo in metadata


def test_better_candidate_is_promoted_and_served(loop, monkeypatch, constant_model_dir):
    loop.deploy_model(constant_model_dir)
    loop.start_inference_space()
    code = loop.run(monkeypatch)
    summary = assert_paused_with(loop, code, 0, "promoted")
    assert summary["comparison"]["deployed_revision"] == OLD_TAG
    assert summary["comparison"]["delta_f1_ci"][0] > 0  # clearly better, not by luck of the draw
    assert loop.served_revision() == summary["version"]


def test_worse_candidate_keeps_the_deployed_model(loop, monkeypatch, constant_model_dir, fake_deployed):
    url, faults = fake_deployed
    test = pd.read_csv(SAMPLE_DATA / "test.csv")
    # the deployed model is never wrong on the texts the job sends (cleaned as in training)
    faults.label_for = dict(zip(test.text.map(clean), test.urgency))
    loop.deploy_model(constant_model_dir)
    code = loop.run(monkeypatch, api_endpoint=url, **QUICK)
    summary = assert_paused_with(loop, code, 0, "kept")
    assert summary["decision"]["outcome"] == "keep" and set(loop.tags()) == {OLD_TAG}
    assert summary["comparison"]["deployed"]["macro_f1"] == 1.0


def test_deployed_api_down_never_promotes_and_stops_before_training(loop, monkeypatch, constant_model_dir):
    loop.deploy_model(constant_model_dir)
    code = loop.run(monkeypatch, api_endpoint=f"http://127.0.0.1:{free_port()}", **QUICK)
    summary = assert_paused_with(loop, code, 1, "failed", "Stopped before training. Not promoting")
    assert summary["step"] == "check deployed" and not summary["training"]
    assert set(loop.tags()) == {OLD_TAG}


@pytest.mark.parametrize("fault", ["5xx", "malformed", "slow"])
def test_broken_deployed_api_stops_the_run_before_training(loop, monkeypatch, constant_model_dir,
                                                           fake_deployed, fault):
    url, faults = fake_deployed
    faults.status, faults.malformed, faults.delay = {"5xx": (503, False, 0), "malformed": (None, True, 0),
                                                     "slow": (None, False, 3.0)}[fault]
    loop.deploy_model(constant_model_dir)
    code = loop.run(monkeypatch, api_endpoint=url, deployed_timeout_s=1, deployed_retries=0, **QUICK)
    summary = assert_paused_with(loop, code, 1, "failed", "failed the pre-training check")
    assert not summary["training"] and set(loop.tags()) == {OLD_TAG}


def test_deployed_api_failing_on_the_test_samples_fails_the_run_without_promoting(
        loop, monkeypatch, constant_model_dir, fake_deployed):
    url, faults = fake_deployed
    # the pre-training probe (not a test text) still passes
    faults.fail_texts = set(pd.read_csv(SAMPLE_DATA / "test.csv").text.map(clean))
    loop.deploy_model(constant_model_dir)
    code = loop.run(monkeypatch, api_endpoint=url, deployed_retries=0, **QUICK)
    assert_paused_with(loop, code, 1, "failed", "MAX_FAILED_SAMPLES")
    assert set(loop.tags()) == {OLD_TAG}


def test_paused_inference_space_is_named_before_training(loop, monkeypatch, constant_model_dir):
    loop.deploy_model(constant_model_dir)
    loop.start_inference_space()
    loop.client.space(loop.inference_space).pause()
    code = loop.run(monkeypatch, **QUICK)
    summary = assert_paused_with(loop, code, 1, "failed", f"inference Space {loop.inference_space} is PAUSED")
    assert not summary["training"] and set(loop.tags()) == {OLD_TAG}


def test_a_few_failed_samples_are_reported_and_excluded(loop, monkeypatch, constant_model_dir, fake_deployed):
    url, faults = fake_deployed
    test = pd.read_csv(SAMPLE_DATA / "test.csv")
    faults.label_for = dict(zip(test.text.map(clean), test.urgency))
    faults.fail_texts = set(test.text[:2].map(clean))
    loop.deploy_model(constant_model_dir)
    code = loop.run(monkeypatch, api_endpoint=url, deployed_retries=0, max_failed_samples=3, **QUICK)
    summary = assert_paused_with(loop, code, 0, "kept")
    assert len(summary["comparison"]["failed_samples"]) == 2
    assert summary["comparison"]["n_samples"] == len(test) - 2


def test_push_failing_midway_leaves_no_tag_and_restarts_nothing(loop, monkeypatch, faulty_hub):
    url, faults = faulty_hub
    faults.fail_commits = True
    code = loop.run(monkeypatch, hf_endpoint=url, **QUICK)
    summary = assert_paused_with(loop, code, 1, "failed")
    assert summary["step"] == "deploy" and loop.tags() == {}
    assert loop.client.space(loop.inference_space).state().stage != "RUNNING" if loop.client.repo_exists(
        loop.inference_space, "space") else True


def test_existing_tag_gets_a_suffix_and_never_moves(loop, constant_model_dir, tmp_path):
    loop.deploy_model(constant_model_dir, tag="v20990101_000000")
    before = loop.tags()["v20990101_000000"]
    tag, commit = push_and_tag(loop.client, loop.model_repo, constant_model_dir, "v20990101_000000")
    assert tag == "v20990101_000000_1" and loop.tags()[tag] == commit
    assert loop.tags()["v20990101_000000"] == before


# A Space that crashes on the new version: tests/test_rollback_target.py (with a crashed run's tag too).
def test_space_that_hangs_on_the_new_version_is_rolled_back(loop, monkeypatch, constant_model_dir):
    import sys
    loop.deploy_model(constant_model_dir)
    loop.start_inference_space([sys.executable, "tests/apps/picky_space.py"],
                               GOOD_REVISION=OLD_TAG, PICKY_MODE="hang")
    # The hang costs the whole timeout; the rollback must fit in one too: the old release's model.onnx
    # loads in ~3 s (ONNX backend, no torch), ~10 s on a busy 2-core machine.
    code = loop.run(monkeypatch, serving_timeout_s=20)
    summary = assert_paused_with(loop, code, 1, "failed", f"rolled back: the Space serves {OLD_TAG} again")
    assert summary["version"] in loop.tags()  # pushed and tagged, kept for the record, not served
    assert loop.served_revision() == OLD_TAG and loop.pinned_revision() == OLD_TAG


def test_invalid_dataset_fails_before_training_and_pauses(loop, monkeypatch, tmp_path):
    bad = tmp_path / "bad"
    bad.mkdir()
    for split in ("train", "validation", "test"):
        frame = pd.read_csv(SAMPLE_DATA / f"{split}.csv")
        if split == "train":
            frame.loc[:4, "urgency"] = "SOMEDAY"
        frame.to_csv(bad / f"{split}.csv", index=False)
    loop.push_dataset(bad, "v2")
    code = loop.run(monkeypatch)
    summary = assert_paused_with(loop, code, 1, "failed", "SOMEDAY")
    assert summary["step"] == "dataset"


def test_missing_dataset_repo_fails_and_pauses(loop, monkeypatch):
    code = loop.run(monkeypatch, dataset_repo_id=f"{loop.namespace}/no-such-data")
    assert assert_paused_with(loop, code, 1, "failed")["step"] == "dataset"


def test_space_is_paused_after_training_crash(loop, monkeypatch, tmp_path):
    code = loop.run(monkeypatch, model_checkpoint=str(tmp_path / "no-such-model"))
    summary = assert_paused_with(loop, code, 1, "failed")
    assert summary["step"] == "train" and loop.tags() == {}


def test_second_overlapping_run_does_not_start(loop, monkeypatch, tmp_path):
    with RunLock(loop.client, loop.model_repo, ttl=3600, workdir=tmp_path / "other"):
        monkeypatch.setenv("SPACE_ID", "someone/else")  # the lock's holder is another live run
        code = loop.run(monkeypatch, **QUICK)
    summary = assert_paused_with(loop, code, 0, "skipped", "another retrain run holds")
    assert summary["training"] == {}


FAKE_WANDB_KEY = "wandb_FAKE_0123456789abcdef0123456789abcdef"


def test_no_secret_appears_in_any_log_file_card_or_error(token_loop, monkeypatch, capfd, token_hub):
    loop = token_loop
    loop.start_inference_space(serving=False)
    monkeypatch.setenv("WANDB_API_KEY", FAKE_WANDB_KEY)
    code = loop.run(monkeypatch, wandb_mode="offline", **QUICK)
    summary = assert_paused_with(loop, code, 0, "promoted")
    failing = loop.run(monkeypatch, model_checkpoint="/no/such/model", wandb_mode="offline", **QUICK)
    assert failing == 1
    secrets = [token_hub.token, FAKE_WANDB_KEY]
    output = capfd.readouterr()
    for secret in secrets:
        assert secret not in output.out + output.err
        for root in (loop.out_dir, token_hub.data_dir):
            for path in root.rglob("*"):
                if path.is_file() and path.stat().st_size < 50_000_000:
                    assert secret.encode() not in path.read_bytes(), f"{secret[:8]}... found in {path}"
    assert list(loop.out_dir.rglob("wandb/offline-run-*")), "the W&B offline run was written"
    assert summary["version"] in loop.tags()


def test_release_tags_are_ordered_by_version_not_by_name(loop, constant_model_dir):
    from deploy import version_tags

    loop.deploy_model(constant_model_dir, tag="v20990101_000000")
    commit = loop.tags()["v20990101_000000"]
    for tag in ("v20990101_000000_10", "v20990101_000000_9", "v20980101_000000", "not-a-version"):
        loop.client.create_tag(loop.model_repo, tag, commit)
    assert version_tags(loop.client, loop.model_repo) == [
        "v20980101_000000", "v20990101_000000", "v20990101_000000_9", "v20990101_000000_10"]


def run_job(loop, monkeypatch, **settings):
    """train_model.run with this loop's settings: the original error propagates to the test."""
    for key, value in {**loop.env, **{k.upper(): str(v) for k, v in settings.items()}}.items():
        monkeypatch.setenv(key, value)
    return train_model.run(load_config())


def test_space_is_paused_and_the_error_kept_when_the_summary_cannot_be_written(loop, monkeypatch, caplog):
    def disk_full(result):  # as root, no folder is unwritable: the disk is "full" instead
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(train_model, "write_summary", disk_full)
    with pytest.raises(HubError, match="such-model"):
        run_job(loop, monkeypatch, model_checkpoint="/no/such-model")
    assert loop.stage(loop.retrain_space) == "PAUSED"
    assert "could not write the summary: OSError" in caplog.text


def test_hub_gone_during_the_pause_does_not_mask_the_error(loop, monkeypatch, faulty_hub, caplog):
    url, faults = faulty_hub
    faults.gone_for = "/pause"
    with pytest.raises(HubError, match="such-model"):
        run_job(loop, monkeypatch, hf_endpoint=url, model_checkpoint="/no/such-model")
    summary = loop.summary()
    assert summary["outcome"] == "failed" and "such-model" in summary["error"]
    assert summary["paused"].startswith(f"{loop.retrain_space} NOT paused")
    assert f"could not pause {loop.retrain_space}" in caplog.text
