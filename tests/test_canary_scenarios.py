"""PROMOTION_MODE=canary against the local hub and a real local inference Space: a better canary
completes on the next run, a worse one is aborted by `train_model.py canary`, and a canary that
cannot load is removed with the stable version serving alone."""
from __future__ import annotations

import json
import shutil

import httpx
import pandas as pd
import pytest

import train_model
from canary import CANARY_VARIABLES, record_path, start_canary
from configs import ConfigError, load_config
from deploy import DeployError
from inference_space.onnx_model import ONNX_MODEL
from tests.fixtures.scenarios import OLD_TAG, SAMPLE_DATA, add_model_onnx
from text_cleaning import clean

CANARY_TAG, BROKEN_TAG = "v20210101_000000", "v20210102_000000"
FEEDBACK = 20


def space_url(loop) -> str:
    return loop.client.space(loop.inference_space).state().url  # a restart moves a local Space to a new port


def send_feedback(loop, rows: pd.DataFrame) -> None:
    """Labelled feedback, as reporters would send it: the text, the answer they got, the right label."""
    with httpx.Client(base_url=space_url(loop), timeout=60) as client:
        for text, label in zip(rows.text.map(clean), rows.urgency):
            answer = client.post("/predict", json={"text": text}).json()
            report = {"text": text, "predicted_label": answer["label"], "corrected_label": label}
            assert client.post("/feedback", json=report).status_code == 201


def confirm_the_canary(loop, tag: str, rows: pd.DataFrame) -> None:
    """FEEDBACK reports that confirm the canary's answers: on them the canary is right every time,
    so it is never worse than the stable version, whatever the tiny model learnt."""
    confirmed = 0
    with httpx.Client(base_url=space_url(loop), timeout=60) as client:
        for text in rows.text.map(clean):
            answer = client.post("/predict", json={"text": text}).json()
            if answer["version"] != tag:
                continue
            report = {"text": text, "predicted_label": answer["label"], "corrected_label": answer["label"]}
            assert client.post("/feedback", json=report).status_code == 201
            confirmed += 1
            if confirmed == FEEDBACK:
                return
    raise AssertionError(f"the canary answered only {confirmed} of {len(rows)} texts")


def space_health(loop) -> dict:
    return httpx.get(space_url(loop) + "/health", timeout=30).json()


def canary_variables(loop) -> set[str]:
    return set(CANARY_VARIABLES) & set(loop.client.space(loop.inference_space).state().variables)


def decision_record(loop, tag: str) -> dict:
    return json.loads(loop.client.download_file(loop.model_repo, record_path(tag), "main").read_text())


def own_feedback_db(tmp_path) -> dict[str, str]:
    return {"FEEDBACK_DB_URL": f"sqlite:///{tmp_path / 'feedback.db'}"}


def test_a_better_canary_serves_a_share_then_completes_on_the_next_run(loop, monkeypatch, constant_model_dir,
                                                                        tmp_path):
    loop.deploy_model(constant_model_dir)
    loop.start_inference_space(MODEL_REVISION=OLD_TAG, **own_feedback_db(tmp_path))
    canary = {"promotion_mode": "canary", "canary_share": 0.5, "canary_min_feedback": FEEDBACK}
    code = loop.run(monkeypatch, max_train_samples=64, num_train_epochs=3, deployed_sample_size=60, **canary)
    summary = loop.summary()
    assert code == 0 and summary["outcome"] == "canary", summary["error"]
    tag = summary["version"]
    health = space_health(loop)
    assert (health["revision"], health["canary"]["revision"], health["canary"]["status"]) == (OLD_TAG, tag, "ok")
    assert loop.pinned_revision() == OLD_TAG

    confirm_the_canary(loop, tag, pd.read_csv(SAMPLE_DATA / "test.csv"))
    code = loop.run(monkeypatch, **canary)  # the next run decides before it trains anything
    summary = loop.summary()
    assert code == 0 and summary["outcome"] == "promoted" and summary["canary"]["outcome"] == "promote", summary
    assert not summary["training"] and summary["version"] == tag
    assert loop.pinned_revision() == loop.served_revision() == tag and not canary_variables(loop)
    assert space_health(loop)["canary"] is None
    record = decision_record(loop, tag)
    assert record["outcome"] == "promote" and record["figures"]["canary"]["feedback_labelled"] == FEEDBACK


def test_a_worse_canary_is_aborted_and_one_that_cannot_load_is_removed(loop, monkeypatch, constant_model_dir,
                                                                       space_classifier_dir, tmp_path):
    loop.deploy_model(constant_model_dir)
    canary = add_model_onnx(shutil.copytree(space_classifier_dir, tmp_path / "canary"))
    loop.deploy_model(canary, tag=CANARY_TAG)  # random head: worse than always HIGHLY URGENT below
    broken = tmp_path / "broken"
    shutil.copytree(canary, broken)
    for name in ("model.safetensors", ONNX_MODEL):  # neither backend can load it
        (broken / name).write_bytes(b"not a model file")
    loop.deploy_model(broken, tag=BROKEN_TAG)
    settings = {"PROMOTION_MODE": "canary", "CANARY_SHARE": "1", "CANARY_MIN_FEEDBACK": str(FEEDBACK)}
    # the Space as start_canary leaves it (the next start_canary below checks that path), one restart less
    loop.start_inference_space(MODEL_REVISION=OLD_TAG, CANARY_REVISION=CANARY_TAG, CANARY_MODE="canary",
                               CANARY_SHARE="1", **own_feedback_db(tmp_path))
    for key, value in {**loop.env, **settings}.items():
        monkeypatch.setenv(key, value)

    assert train_model.main(["canary"]) == 0  # no feedback yet: it waits
    assert canary_variables(loop) == set(CANARY_VARIABLES)
    rows = pd.read_csv(SAMPLE_DATA / "test.csv").head(FEEDBACK)
    send_feedback(loop, rows.assign(urgency="HIGHLY URGENT"))  # the stable version is right every time
    assert train_model.main(["canary"]) == 0
    record = decision_record(loop, CANARY_TAG)
    assert record["outcome"] == "abort" and record["figures"]["stable"]["feedback_accuracy"] == 1.0
    assert space_health(loop)["canary"] is None and not canary_variables(loop)
    assert loop.pinned_revision() == loop.served_revision() == OLD_TAG
    assert train_model.main(["canary", "abort"]) == 1  # nothing left to abort

    with pytest.raises(DeployError, match=f"canary {BROKEN_TAG} failed to load.*serves {OLD_TAG} alone"):
        start_canary(loop.client.space(loop.inference_space), load_config(), BROKEN_TAG, OLD_TAG)
    assert space_health(loop)["canary"] is None and not canary_variables(loop)
    assert loop.served_revision() == OLD_TAG


def test_rollback_during_a_canary_ends_it_and_serves_the_stable_version(loop, monkeypatch, capsys, constant_model_dir,
                                                                         space_classifier_dir, tmp_path):
    loop.deploy_model(constant_model_dir, tag="v20190101_000000")  # served before the stable version
    loop.deploy_model(constant_model_dir)
    loop.deploy_model(space_classifier_dir, tag=CANARY_TAG)
    loop.start_inference_space(MODEL_REVISION=OLD_TAG, CANARY_REVISION=CANARY_TAG, CANARY_MODE="canary",
                               CANARY_SHARE="0.5", **own_feedback_db(tmp_path))
    for key, value in {**loop.env, "SERVING_TIMEOUT_S": "120"}.items():
        monkeypatch.setenv(key, value)
    assert train_model.main(["rollback", "--to", CANARY_TAG]) == 1
    assert "python train_model.py canary promote" in capsys.readouterr().err
    assert train_model.main(["rollback"]) == 0  # undoes the newest change: the canary, not the stable version
    assert not canary_variables(loop) and space_health(loop)["canary"] is None
    assert loop.pinned_revision() == loop.served_revision() == OLD_TAG
    record = decision_record(loop, CANARY_TAG)
    assert (record["action"], record["outcome"], record["serving"]) == ("rollback", "abort", OLD_TAG), record


def test_a_canary_share_outside_0_1_is_refused_naming_the_setting(monkeypatch):
    monkeypatch.setenv("LABEL", "urgency")
    with pytest.raises(ConfigError, match=r"CANARY_SHARE \(flag --canary-share\): 1.5 is not a share"):
        load_config({"canary_share": "1.5"})
