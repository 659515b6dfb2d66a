"""python -m spaces_setup against the local hub, which then runs both Spaces from what was uploaded."""
from __future__ import annotations

from pathlib import Path

import pytest

import spaces_setup
from deployed_api import DeployedModelClient
from localhub.docker_space import dockerfile_command
from localhub.storage import HubHTTPError
from tests.fixtures.scenarios import OLD_TAG

JOB_SETTINGS = ("MODEL_CHECKPOINT", "NUM_TRAIN_EPOCHS", "EVAL_STEPS", "LEARNING_RATE", "EARLY_STOPPING_PATIENCE",
                "WANDB_MODE", "BOOTSTRAP_SAMPLES", "CLASS_F1_TOLERANCE", "SERVING_TIMEOUT_S", "HF_HOME")


def setup_args(loop) -> list[str]:
    variables = [f"--retrain-variable={key}={loop.env[key]}" for key in JOB_SETTINGS]
    return ["--label", "urgency", "--namespace", loop.namespace, *variables]


def test_dry_run_prints_the_plan_masks_secrets_and_changes_nothing(loop, monkeypatch, capsys):
    monkeypatch.setenv("HF_ENDPOINT", loop.hub_url)
    monkeypatch.setenv("WANDB_API_KEY", "wandb-secret-value-123")
    assert spaces_setup.main([*setup_args(loop), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert f"space   {loop.namespace}/grievance-urgency-retrain" in out and "secret   WANDB_API_KEY=***" in out
    assert "wandb-secret-value-123" not in out
    assert not loop.client.repo_exists(loop.model_repo)
    assert not loop.client.repo_exists(loop.inference_space, "space")


def test_setup_is_idempotent_and_the_local_hub_runs_both_spaces_from_their_repos(loop, monkeypatch, constant_model_dir):
    monkeypatch.setenv("HF_ENDPOINT", loop.hub_url)
    assert spaces_setup.main(setup_args(loop)) == 0
    retrain, api = loop.client.space(loop.retrain_space), loop.client.space(loop.inference_space)
    for space_id in (loop.retrain_space, loop.inference_space):
        files = loop.client.list_files(space_id, "main", "space")
        assert {"Dockerfile", "README.md", "train_model.py", "inference_space/app.py"} <= set(files)
        assert not any(f.startswith(("tests/", ".git/", "outputs/")) for f in files)
    readme = loop.client.download_file(loop.inference_space, "README.md", "main", "space").read_text()
    assert "sdk: docker" in readme and "app_port: 7860" in readme
    dockerfile = loop.client.download_file(loop.inference_space, "Dockerfile", "main", "space").read_text()
    assert dockerfile == (spaces_setup.INFERENCE_DOCKERFILE).read_text()
    assert api.state().variables == {"LABEL": "urgency", "MODEL_ID": loop.model_repo}
    assert retrain.state().variables["NUM_TRAIN_EPOCHS"] == "6"
    assert loop.client.api.get_space_runtime(loop.inference_space).raw["gcTimeout"] is None  # cpu-basic: fixed

    heads = {s: loop.client.resolve_revision(s, "main", "space") for s in (loop.retrain_space, loop.inference_space)}
    assert spaces_setup.main(setup_args(loop)) == 0  # again: nothing new to commit
    assert heads == {s: loop.client.resolve_revision(s, "main", "space") for s in heads}

    loop.deploy_model(constant_model_dir)
    # The image's `ENV INFERENCE_BACKEND=onnx`, which the local hub's Docker emulation does not run:
    # the Space serves the releases' model.onnx without torch, and starts in seconds less.
    api.set_variable("INFERENCE_BACKEND", "onnx")
    api.restart()
    client = DeployedModelClient(api.wait_until("RUNNING", timeout=120).url, retries=0)
    try:
        assert client.wait_until_ready(timeout=120, poll=0.5)["revision"] == OLD_TAG
    finally:
        client.close()

    retrain.restart()
    assert retrain.wait_until({"PAUSED", "STOPPED"}, timeout=480).stage == "PAUSED"
    new_tags = set(loop.tags()) - {OLD_TAG}
    assert len(new_tags) == 1, "the retrain Space promoted one new version"
    assert loop.served_revision() == new_tags.pop()


def test_a_docker_space_without_exec_form_cmd_fails_its_build_with_the_reason(loop, tmp_path):
    space_id = f"{loop.namespace}/broken-docker"
    loop.client.ensure_repo(space_id, "space")
    (tmp_path / "Dockerfile").write_text("FROM python:3.12-slim\nCMD python app.py\n")
    loop.client.upload_folder(space_id, tmp_path, "shell-form CMD", "space")
    space = loop.client.space(space_id)
    space.restart()
    assert space.state().stage == "BUILD_ERROR"
    assert "exec form" in (space.state().error or "")


@pytest.mark.parametrize("text, argv", [
    ('FROM x\nCMD ["python", "-m", "inference_space"]\n', ["-m", "inference_space"]),
    ('FROM x\nCMD ["python", \\\n     "train_model.py"]\n', ["train_model.py"]),
])
def test_dockerfile_command_reads_the_last_exec_form_cmd(text, argv):
    command = dockerfile_command(text)
    assert Path(command[0]).name.startswith("python") and command[1:] == argv


def test_dockerfile_without_cmd_is_refused():
    with pytest.raises(HubHTTPError, match="no CMD"):
        dockerfile_command("FROM python:3.12-slim\n")


def test_secrets_cannot_be_given_as_variables(capsys):
    with pytest.raises(SystemExit):
        spaces_setup.parse_args(["--label", "urgency", "--retrain-variable", "HF_TOKEN=hf_x"])
    assert "secret" in capsys.readouterr().err
