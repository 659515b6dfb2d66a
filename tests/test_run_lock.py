"""The run lock (a branch holding lock.json) against the real local hub: who may take it over."""
import json
import socket
import threading
import time

import pytest

from run_lock import LOCK_BRANCH, LockBusy, RunLock


def write_holder(hub_client, repo_id, folder, **holder) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "lock.json").write_text(json.dumps(
        {"run_id": "other", "space_id": "someone/else-retrain", "host": "elsewhere", "pid": 1,
         "started_at": time.time(), **holder}))
    hub_client.upload_folder(repo_id, folder, message="other run's lock", revision=LOCK_BRANCH)


@pytest.fixture
def repo(hub_client, unique_repo_id, monkeypatch):
    monkeypatch.delenv("SPACE_ID", raising=False)
    hub_client.ensure_repo(unique_repo_id)
    return unique_repo_id


def lock(hub_client, repo, tmp_path, ttl=3600, grace=0.5) -> RunLock:
    return RunLock(hub_client, repo, ttl=ttl, workdir=tmp_path / "mine", write_grace=grace)


def test_the_lock_is_a_branch_while_held_and_gone_after(hub_client, repo, tmp_path):
    with lock(hub_client, repo, tmp_path):
        assert LOCK_BRANCH in hub_client.list_branches(repo)
    assert LOCK_BRANCH not in hub_client.list_branches(repo)


def test_a_live_holder_keeps_the_lock(hub_client, repo, tmp_path):
    hub_client.create_branch(repo, LOCK_BRANCH, exist_ok=False)
    write_holder(hub_client, repo, tmp_path / "other")
    with pytest.raises(LockBusy, match="another retrain run holds"):
        lock(hub_client, repo, tmp_path).__enter__()
    assert LOCK_BRANCH in hub_client.list_branches(repo)


@pytest.mark.parametrize("holder", [
    {"started_at": time.time() - 7200},                               # older than the TTL
    {"space_id": None, "host": socket.gethostname(), "pid": 2 ** 22 + 1},  # above Linux's pid_max: never alive
])
def test_a_dead_or_expired_holder_is_taken_over(hub_client, repo, tmp_path, holder):
    hub_client.create_branch(repo, LOCK_BRANCH, exist_ok=False)
    write_holder(hub_client, repo, tmp_path / "other", **holder)
    with lock(hub_client, repo, tmp_path) as mine:
        assert mine.held


def test_a_branch_that_never_gets_its_lock_file_is_taken_over_after_the_grace(hub_client, repo, tmp_path):
    hub_client.create_branch(repo, LOCK_BRANCH, exist_ok=False)  # a run killed between its two steps
    started = time.monotonic()
    with lock(hub_client, repo, tmp_path, grace=1.0) as mine:
        assert mine.held and time.monotonic() - started >= 1.0


def test_a_run_still_writing_its_lock_file_is_not_overrun(hub_client, repo, tmp_path):
    hub_client.create_branch(repo, LOCK_BRANCH, exist_ok=False)
    writer = threading.Timer(0.5, write_holder, (hub_client, repo, tmp_path / "other"))
    writer.start()
    try:
        with pytest.raises(LockBusy, match="another retrain run holds"):
            lock(hub_client, repo, tmp_path, grace=10).__enter__()
    finally:
        writer.join()
