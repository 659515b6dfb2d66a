import json
import os
import re
import shlex
import subprocess

import pytest

import train_model
from configs import JobConfig
from localhub.seed import seed
from tests.fixtures.scenarios import OLD_TAG, PROJECT_ROOT

NEWER_TAG = "v20200102_000000"


def test_help_lists_every_setting_but_no_secret_flag(capsys):
    with pytest.raises(SystemExit):
        train_model.main(["--help"])
    text = capsys.readouterr().out
    for name in JobConfig.model_fields:
        if name not in ("hf_token", "wandb_api_key"):
            assert "--" + name.replace("_", "-") in text
    assert "--hf-token" not in text and "rollback" in text and "--dry-run" in text
    assert "(default: None)" not in text  # a derived default is said once, in the description


def test_bad_setting_exits_2_naming_the_variable(monkeypatch, capsys):
    monkeypatch.setenv("LABEL", "urgency")
    monkeypatch.setenv("DEPLOYED_SAMPLE_SIZE", "-3")
    assert train_model.main([]) == 2
    assert "DEPLOYED_SAMPLE_SIZE" in capsys.readouterr().err


def test_missing_label_names_the_flag_and_the_choices(monkeypatch, capsys):
    monkeypatch.delenv("LABEL", raising=False)
    assert train_model.main(["--dry-run"]) == 2
    err = capsys.readouterr().err
    assert "LABEL (flag --label): required" in err and "'urgency'" in err


def test_readme_dry_run_command_runs(loop):
    readme = (PROJECT_ROOT / "README.md").read_text()
    (command,) = {m for m in re.findall(r"`(python train_model.py [^`]*--dry-run[^`]*)`", readme)}
    env = {**os.environ, **loop.env}
    env.pop("LABEL")
    done = subprocess.run(shlex.split(command), cwd=PROJECT_ROOT, env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    assert f"dataset: {loop.dataset_repo}@v1" in done.stdout


def test_dry_run_prints_masked_settings_and_the_dataset_version(token_loop, monkeypatch, capsys):
    for key, value in token_loop.env.items():
        monkeypatch.setenv(key, value)
    assert train_model.main(["--dry-run"]) == 0
    out = capsys.readouterr().out
    assert f"dataset: {token_loop.dataset_repo}@v1" in out
    assert token_loop.token not in out and '"hf_token": "***"' in out
    assert token_loop.tags() == {}  # a dry run writes nothing


def test_rollback_serves_the_previous_version_again(loop, monkeypatch, constant_model_dir, capsys):
    loop.deploy_model(constant_model_dir, OLD_TAG)
    loop.deploy_model(constant_model_dir, NEWER_TAG)
    loop.start_inference_space(MODEL_REVISION=NEWER_TAG)
    assert loop.served_revision() == NEWER_TAG
    for key, value in loop.env.items():
        monkeypatch.setenv(key, value)
    assert train_model.main(["rollback", "--to", "v19990101_000000"]) == 1
    assert "not a version tag" in capsys.readouterr().err
    assert train_model.main(["rollback"]) == 0
    assert loop.served_revision() == OLD_TAG and loop.pinned_revision() == OLD_TAG


def test_seed_builds_a_runnable_embedded_default_once(local_hub, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "disabled")
    seed(local_hub.url, ["urgency"], "tiny", namespace="seedtest")
    client = local_hub.client
    cfg = JobConfig(label="urgency", namespace="seedtest", hf_endpoint=local_hub.url)
    model_tags = client.list_tags(cfg.model_repo)
    assert client.newest_version_tag(cfg.dataset_repo, "dataset") == "v1" and len(model_tags) == 1
    state = client.space(cfg.inference_space).state()
    assert state.stage == "RUNNING" and state.variables["MODEL_ID"] == cfg.model_repo
    (tag,) = model_tags
    assert state.variables["MODEL_REVISION"] == tag  # promoted by the job's own deploy step
    decision = json.loads(client.download_file(cfg.model_repo, "metadata.json", tag).read_text())["decision"]
    assert decision["rule"].startswith("first deploy") and decision["outcome"] == "promote"
    retrain = client.space("seedtest/grievance-urgency-retrain").state()
    assert retrain.variables["LABEL"] == "urgency" and retrain.variables["MODEL_CHECKPOINT"] == "seedtest/tiny-bert"
    seed(local_hub.url, ["urgency"], "tiny", namespace="seedtest")  # idempotent
    assert client.list_tags(cfg.model_repo) == model_tags


def test_bad_setting_still_pauses_the_retrain_space(loop, monkeypatch):
    for key, value in {**loop.env, "DEPLOYED_SAMPLE_SIZE": "-3"}.items():
        monkeypatch.setenv(key, value)
    assert train_model.main([]) == 2
    assert loop.stage(loop.retrain_space) == "PAUSED"
