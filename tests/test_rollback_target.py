"""Rollback goes to what the inference Space served before, never to a tag no one served; a
paused inference Space is woken for the comparison only with WAKE_DEPLOYED=true, and paused again."""
from __future__ import annotations

import json
import shutil
import sys

import train_model
from tests.fixtures.scenarios import OLD_TAG

CRASHED_TAG = "v20210101_000000"  # tagged by a run that crashed before serving it
NEW_TAG = "v20220101_000000"
QUICK = {"max_train_samples": 64}


def tag_like_a_crashed_run(loop, tag: str = CRASHED_TAG) -> None:
    loop.client.create_tag(loop.model_repo, tag, loop.tags()[OLD_TAG])


def test_a_release_that_cannot_serve_rolls_back_to_the_served_version_not_a_crashed_runs_tag(
        loop, monkeypatch, constant_model_dir):
    loop.deploy_model(constant_model_dir)
    tag_like_a_crashed_run(loop)
    loop.start_inference_space([sys.executable, "tests/apps/picky_space.py"], GOOD_REVISION=OLD_TAG,
                               PICKY_MODE="crash", MODEL_REVISION=OLD_TAG)
    code = loop.run(monkeypatch, serving_timeout_s=180)  # the rollback loads a real model
    summary = loop.summary()
    assert code == 1 and f"rolled back: the Space serves {OLD_TAG} again" in summary["error"], summary["error"]
    assert summary["outcome"] == "failed" and loop.stage(loop.retrain_space) == "PAUSED"
    assert summary["version"] in loop.tags()  # pushed and tagged, kept for the record, not served
    assert summary["deployment"]["previous"] == OLD_TAG
    assert loop.served_revision() == OLD_TAG and loop.pinned_revision() == OLD_TAG
    assert summary["unserved_tags"] == [CRASHED_TAG]
    assert CRASHED_TAG in (loop.out_dir / summary["run_dir"] / "summary.txt").read_text()


def test_rollback_command_serves_the_version_the_current_one_replaced(loop, monkeypatch, constant_model_dir,
                                                                     tmp_path):
    loop.deploy_model(constant_model_dir)
    tag_like_a_crashed_run(loop)
    release = tmp_path / "release"
    shutil.copytree(constant_model_dir, release)
    (release / "metadata.json").write_text(json.dumps({"version": NEW_TAG,
                                                       "comparison": {"deployed_revision": OLD_TAG}}))
    loop.deploy_model(release, tag=NEW_TAG)
    loop.start_inference_space(MODEL_REVISION=NEW_TAG)
    for key, value in loop.env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("SERVING_TIMEOUT_S", "120")
    assert train_model.main(["rollback"]) == 0
    assert loop.pinned_revision() == OLD_TAG and loop.served_revision() == OLD_TAG


def test_wake_deployed_restarts_a_paused_space_for_the_comparison_and_pauses_it_again(
        loop, monkeypatch, constant_model_dir):
    loop.deploy_model(constant_model_dir)
    loop.start_inference_space(MODEL_REVISION=OLD_TAG)
    loop.client.space(loop.inference_space).pause()
    code = loop.run(monkeypatch, wake_deployed="true", space_wake_timeout_s=180, **QUICK)
    summary = loop.summary()
    assert code == 0 and summary["outcome"] in ("promoted", "kept"), summary["error"]
    assert summary["comparison"]["deployed_revision"] == OLD_TAG
    assert loop.stage(loop.inference_space) == "PAUSED"


def test_wake_deployed_pauses_the_space_again_when_the_run_fails(loop, monkeypatch, constant_model_dir, tmp_path):
    loop.deploy_model(constant_model_dir)
    loop.start_inference_space(MODEL_REVISION=OLD_TAG)
    loop.client.space(loop.inference_space).pause()
    code = loop.run(monkeypatch, wake_deployed="true", model_checkpoint=str(tmp_path / "no-such-model"), **QUICK)
    assert code == 1 and loop.summary()["step"] == "train"
    assert loop.stage(loop.inference_space) == "PAUSED"
