"""SIGTERM/SIGINT sent to a real `python train_model.py` against the local hub: the run ends
'interrupted' with its step, releases the lock, leaves nothing half-deployed, and does not pause
its own Space (the platform is stopping or restarting it)."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from run_lock import LOCK_BRANCH
from tests.fixtures.scenarios import OLD_TAG, PROJECT_ROOT
from tests.test_canary_scenarios import canary_variables, decision_record

PICKY_SPACE = [sys.executable, "tests/apps/picky_space.py"]


class Job:
    """`python train_model.py [args]` in a subprocess; its output collected line by line."""

    def __init__(self, loop, *args: str, **settings):
        env = {**os.environ, **loop.env, **{k.upper(): str(v) for k, v in settings.items()}}
        env.pop("SPACE_ID", None)
        self.lines: list[str] = []
        self.process = subprocess.Popen([sys.executable, "train_model.py", *args], cwd=PROJECT_ROOT, env=env, text=True,
                                        stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        self.reader = threading.Thread(target=lambda: self.lines.extend(self.process.stdout), daemon=True)
        self.reader.start()

    def wait_for(self, text: str, timeout: float = 300) -> None:
        deadline = time.monotonic() + timeout
        while not any(text in line for line in self.lines):
            assert self.process.poll() is None, f"the job ended before {text!r}:\n{''.join(self.lines[-30:])}"
            assert time.monotonic() < deadline, f"no {text!r} within {timeout}s:\n{''.join(self.lines[-30:])}"
            time.sleep(0.2)

    def stop(self, signum: int, timeout: float = 180) -> int:
        self.process.send_signal(signum)
        try:
            return self.process.wait(timeout)
        finally:
            self.reader.join(10)

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


@pytest.fixture
def job_of():
    started: list[Job] = []

    def start(loop, *args: str, **settings) -> Job:
        started.append(Job(loop, *args, **settings))
        return started[-1]

    yield start
    for job in started:
        job.kill()


def assert_interrupted(loop, job, code: int, expected: int, step: str) -> dict:
    summary = loop.summary()
    assert code == expected, "".join(job.lines[-30:])
    assert summary["outcome"] == "interrupted" and summary["step"] == step
    assert signal.Signals(expected - 128).name in summary["error"]
    assert LOCK_BRANCH not in loop.client.list_branches(loop.model_repo)
    assert loop.stage(loop.retrain_space) != "PAUSED"
    assert "not paused" in summary["paused"]
    return summary


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_signal_during_training_cleans_up_without_pausing(loop, job_of, signum):
    job = job_of(loop, num_train_epochs=500, max_train_samples=64)  # far longer than the test waits
    job.wait_for("step: train")
    time.sleep(3)  # into the Trainer, not only the model load
    code = job.stop(signum)
    assert_interrupted(loop, job, code, 128 + signum, "train")
    assert loop.tags() == {}


def test_signal_during_the_push_leaves_a_complete_release_or_none_and_pins_nothing(loop, job_of, faulty_hub):
    url, faults = faulty_hub
    faults.commit_delay = 5.0  # the hub answers the release commit slowly: the signal lands inside it
    loop.start_inference_space(serving=False)  # first deploy: the Space runs, nothing pinned yet
    job = job_of(loop, hf_endpoint=url, max_train_samples=64)
    assert faults.commit_started.wait(600), "".join(job.lines[-30:])
    code = job.stop(signal.SIGTERM)
    summary = assert_interrupted(loop, job, code, 143, "restart + verify")
    tags = loop.tags()
    assert set(tags) == {summary["version"]}  # the push was completed and tagged, then the job stopped
    files = loop.client.list_files(loop.model_repo, summary["version"])
    assert {"metadata.json", "config.json", "model.safetensors"} <= set(files)
    assert loop.pinned_revision() is None  # the Space was never pointed at it


def test_signal_while_waiting_for_the_new_version_pins_the_served_one_back_at_once(loop, job_of, constant_model_dir):
    """The new version may take SERVING_TIMEOUT_S to serve, the platform kills a stopped Space
    seconds after its SIGTERM: the job must not hold the signal for the whole wait."""
    loop.deploy_model(constant_model_dir)
    loop.start_inference_space(PICKY_SPACE, GOOD_REVISION=OLD_TAG, PICKY_MODE="hang",
                               MODEL_REVISION=OLD_TAG)  # any other version: 'loading' forever
    job = job_of(loop, serving_timeout_s=900, max_train_samples=64)
    job.wait_for("step: restart + verify")
    time.sleep(2)  # into the wait for /health
    code = job.stop(signal.SIGTERM, timeout=60)  # far less than the serving timeout
    summary = assert_interrupted(loop, job, code, 143, "restart + verify")
    assert f"pinned back to {OLD_TAG}" in summary["error"], summary["error"]
    assert loop.pinned_revision() == OLD_TAG  # what it served before; the new tag stays, unserved
    assert summary["version"] in loop.tags() and summary["deployment"]["previous"] == OLD_TAG


def test_signal_while_starting_a_canary_removes_it_and_the_summary_says_so(loop, job_of, constant_model_dir):
    loop.deploy_model(constant_model_dir)
    loop.start_inference_space(PICKY_SPACE, GOOD_REVISION=OLD_TAG, PICKY_MODE="hang",
                               MODEL_REVISION=OLD_TAG)  # with any canary: 'loading' forever
    job = job_of(loop, promotion_mode="canary", serving_timeout_s=900, max_train_samples=64)
    job.wait_for("step: restart + verify")
    time.sleep(2)  # into the wait for both versions to load
    code = job.stop(signal.SIGTERM, timeout=60)
    summary = assert_interrupted(loop, job, code, 143, "restart + verify")
    assert f"the canary {summary['version']} was removed" in summary["error"], summary["error"]
    assert f"serves {OLD_TAG} alone" in summary["error"]
    assert not canary_variables(loop) and loop.pinned_revision() == OLD_TAG
    assert summary["version"] in loop.tags()  # tagged, never served


def wait_until_the_canary_is_removed(loop, job: Job, timeout: float = 120) -> None:
    """Its variables go just before the restart; then a little longer, into the wait for /health."""
    deadline = time.monotonic() + timeout
    while canary_variables(loop):
        assert time.monotonic() < deadline, "".join(job.lines[-30:])
        time.sleep(0.2)
    time.sleep(2)


def test_signal_while_completing_a_canary_still_writes_its_decision_record(loop, job_of, constant_model_dir):
    missing = "v20210101_000000"  # a canary tag that does not exist: the Space reports it 'error', the run aborts it
    loop.deploy_model(constant_model_dir)
    loop.start_inference_space(PICKY_SPACE, GOOD_REVISION=f"{OLD_TAG},{missing}", PICKY_MODE="hang",
                               MODEL_REVISION=OLD_TAG, CANARY_REVISION=missing, CANARY_MODE="canary", CANARY_SHARE="1")
    loop.client.space(loop.inference_space).set_variable("GOOD_REVISION", missing)  # next restart: 'loading' forever
    job = job_of(loop, promotion_mode="canary", serving_timeout_s=900)
    job.wait_for("step: canary")
    wait_until_the_canary_is_removed(loop, job)
    code = job.stop(signal.SIGTERM, timeout=60)
    summary = assert_interrupted(loop, job, code, 143, "canary")
    record = decision_record(loop, missing)
    assert (record["outcome"], record["serving"], record["interrupted"]) == ("abort", None, True), record
    assert summary["canary"] == record
    assert loop.pinned_revision() == OLD_TAG and not canary_variables(loop)


def test_signal_while_a_command_promotes_a_canary_pins_the_stable_version_back_and_records_it(
        loop, job_of, constant_model_dir):
    canary = "v20210101_000000"
    loop.deploy_model(constant_model_dir)
    loop.deploy_model(constant_model_dir, tag=canary)
    loop.start_inference_space(PICKY_SPACE, GOOD_REVISION=f"{OLD_TAG},{canary}", PICKY_MODE="hang",
                               MODEL_REVISION=OLD_TAG, CANARY_REVISION=canary, CANARY_MODE="canary", CANARY_SHARE="1")
    loop.client.space(loop.inference_space).set_variable("GOOD_REVISION", OLD_TAG)  # the canary alone: 'loading'
    job = job_of(loop, "canary", "promote", serving_timeout_s=900)
    wait_until_the_canary_is_removed(loop, job)
    code = job.stop(signal.SIGTERM, timeout=60)
    assert code == 143, "".join(job.lines[-30:])
    record = decision_record(loop, canary)
    assert (record["outcome"], record["serving"], record["interrupted"]) == ("promote", None, True), record
    assert f"pinned back to {OLD_TAG}" in record["reasons"][-1]
    assert loop.pinned_revision() == OLD_TAG and not canary_variables(loop)
