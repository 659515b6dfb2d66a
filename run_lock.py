"""The run lock: a branch on the model repo holding lock.json; creating a branch is atomic on the Hub.

A second run stops with LockBusy while the holder is alive; a lock left by a dead run (expired,
a previous run of the same Space, or a dead pid on this host) is taken over.
"""
from __future__ import annotations

import json
import os
import socket
import time
import uuid
from pathlib import Path

from hub import BranchExists, HubClient, HubError, RevisionNotFound
from processes import running

LOCK_BRANCH = "retrain-lock"


class LockBusy(RuntimeError):
    """Another live run holds the lock."""


def _lock_owner() -> dict:
    return {"run_id": uuid.uuid4().hex, "space_id": os.environ.get("SPACE_ID"), "host": socket.gethostname(),
            "pid": os.getpid(), "started_at": time.time()}


def lock_is_stale(holder: dict, ttl: float) -> bool:
    """Expired, or left by a run that cannot be alive: a restart of the same Space kills the
    previous run, and a dead pid on this host is dead."""
    if time.time() - holder.get("started_at", 0) > ttl:
        return True
    if holder.get("space_id") and holder["space_id"] == os.environ.get("SPACE_ID"):
        return True
    same_host = not holder.get("space_id") and holder.get("host") == socket.gethostname()
    return same_host and not running(int(holder.get("pid", 0)))


class RunLock:
    def __init__(self, hub: HubClient, repo_id: str, ttl: float, workdir: Path, write_grace: float = 10.0):
        self.hub, self.repo_id, self.ttl, self.workdir = hub, repo_id, ttl, workdir
        self.write_grace = write_grace
        self.owner = _lock_owner()
        self.held = False

    def __enter__(self) -> "RunLock":
        self.hub.ensure_repo(self.repo_id)
        for _ in range(2):
            if self._try_create():
                return self
            holder = self._holder_after_grace()
            if holder is not None and not lock_is_stale(holder, self.ttl):
                raise LockBusy(f"another retrain run holds {self.repo_id}@{LOCK_BRANCH} since "
                               f"{time.ctime(holder['started_at'])} (run {holder['run_id']}); "
                               "not starting a second one")
            self.hub.delete_branch(self.repo_id, LOCK_BRANCH)
        raise LockBusy(f"could not take the run lock {self.repo_id}@{LOCK_BRANCH}")

    def _try_create(self) -> bool:
        try:
            self.hub.create_branch(self.repo_id, LOCK_BRANCH, exist_ok=False)
        except BranchExists:
            return False
        self.held = True
        folder = self.workdir / "lock"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "lock.json").write_text(json.dumps(self.owner))
        try:
            self.hub.upload_folder(self.repo_id, folder, message="retrainspace: run lock", revision=LOCK_BRANCH)
        except BaseException:
            self.__exit__()
            raise
        return True

    def _holder_after_grace(self) -> dict | None:
        """The lock's owner; a branch without lock.json may be a run between its two steps,
        so wait write_grace seconds for the file before calling the lock half-made."""
        deadline = time.monotonic() + self.write_grace
        while (holder := self._holder()) is None and time.monotonic() < deadline:
            time.sleep(0.5)
        return holder

    def _holder(self) -> dict | None:
        try:
            return json.loads(self.hub.download_file(self.repo_id, "lock.json", LOCK_BRANCH).read_text())
        except (HubError, ValueError):
            return None  # a lock branch without a readable lock.json: half-made, treat as stale

    def __exit__(self, *exc) -> None:
        if self.held:
            try:
                self.hub.delete_branch(self.repo_id, LOCK_BRANCH)
            except RevisionNotFound:
                pass
            self.held = False
