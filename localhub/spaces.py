"""Local Spaces: a Space bound to a command runs as a child process of the hub.

restart = stop the old child, start the command in a new process group with the Space's
variables and secrets in its environment; pause = kill it. The stage is read from the child:
BUILDING until it serves (or right away for apps that serve no HTTP), RUNNING while it runs,
RUNTIME_ERROR when it exits non-zero on its own, STOPPED when it exits 0, PAUSED after pause.
Variables and the binding persist in space.json; secrets live in memory only (never on disk).
"""
from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

from .docker_space import docker_app
from .storage import HubHTTPError, Repo, now_iso, read_json, write_json_atomic

LOG_NAME = "app.log"
STOP_GRACE_S = 5.0
HARDWARE_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{1,40}$")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def tail(path: Path, lines: int) -> list[str]:
    if not path.exists():
        return []
    with open(path, errors="replace") as file:
        return [line.rstrip("\n") for line in deque(file, maxlen=lines)]


@dataclass
class Child:
    process: subprocess.Popen
    port: int
    serves_http: bool
    log: object
    started_at: str = field(default_factory=now_iso)


class SpaceRuntimes:
    """Runtime state of every local Space; one lock guards the children."""

    def __init__(self, hub_url: str):
        self.hub_url = hub_url
        self._children: dict[str, Child] = {}
        self._secrets: dict[str, dict[str, str]] = {}
        self._lock = threading.RLock()

    # --- persisted settings ----------------------------------------------------------
    @staticmethod
    def settings(repo: Repo) -> dict:
        path = repo.root / "space.json"
        data = read_json(path) if path.exists() else {}
        data.setdefault("variables", {})
        data.setdefault("app", None)
        data.setdefault("desired", "stopped")
        data.setdefault("stage", "NO_APP_FILE")
        return data

    @staticmethod
    def save(repo: Repo, data: dict) -> None:
        write_json_atomic(repo.root / "space.json", data)

    def update(self, repo: Repo, **changes) -> dict:
        with repo.lock:
            data = self.settings(repo)
            data.update(changes)
            self.save(repo, data)
            return data

    def set_variable(self, repo: Repo, key: str, value: str, description: str | None) -> dict:
        with repo.lock:
            data = self.settings(repo)
            data["variables"][key] = {"value": value, "description": description, "updatedAt": now_iso()}
            self.save(repo, data)
            return data["variables"]

    def delete_variable(self, repo: Repo, key: str) -> dict:
        with repo.lock:
            data = self.settings(repo)
            data["variables"].pop(key, None)
            self.save(repo, data)
            return data["variables"]

    def set_secret(self, repo: Repo, key: str, value: str) -> None:
        with self._lock:
            self._secrets.setdefault(repo.repo_id, {})[key] = value

    def delete_secret(self, repo: Repo, key: str) -> None:
        with self._lock:
            self._secrets.get(repo.repo_id, {}).pop(key, None)

    def secret_names(self, repo: Repo) -> list[str]:
        return sorted(self._secrets.get(repo.repo_id, {}))

    def secret_values(self) -> list[str]:
        """Every Space's secret values: what the web page must never show."""
        with self._lock:
            return [value for secrets in self._secrets.values() for value in secrets.values()]

    def bind(self, repo: Repo, command: list[str], cwd: str | None, serves_http: bool) -> dict:
        if not command or not all(isinstance(part, str) for part in command):
            raise HubHTTPError(400, "local-app 'command' must be a non-empty list of strings")
        if cwd is not None and not Path(cwd).is_dir():
            raise HubHTTPError(400, f"local-app 'cwd' {cwd!r} is not a folder")
        return self.update(repo, app={"command": command, "cwd": cwd, "serves_http": serves_http})

    def request_hardware(self, repo: Repo, flavor, sleep_time_s=None) -> dict:
        if not isinstance(flavor, str) or not HARDWARE_NAME.match(flavor):
            raise HubHTTPError(400, f"invalid hardware flavor {flavor!r}: use a Hub flavor such as cpu-basic or t4-small")
        self.update(repo, hardware=flavor)
        return self.set_sleep_time(repo, sleep_time_s) if sleep_time_s is not None else self.runtime(repo)

    def set_sleep_time(self, repo: Repo, seconds) -> dict:
        if not isinstance(seconds, int) or isinstance(seconds, bool) or not (seconds == -1 or seconds > 0):
            raise HubHTTPError(400, f"invalid sleep time {seconds!r}: seconds > 0, or -1 to never sleep")
        self.update(repo, sleep_time_s=seconds)
        return self.runtime(repo)

    # --- processes -----------------------------------------------------------------
    def restart(self, repo: Repo) -> dict:
        with self._lock:
            self._stop_child(repo.repo_id)
            try:
                app = self.settings(repo)["app"] or docker_app(repo)
            except HubHTTPError as error:  # what a failed image build is on the Hub
                with open(repo.root / LOG_NAME, "a") as log:
                    log.write(f"===== {now_iso()} build failed: {error.message}\n")
                self.update(repo, desired="running", stage="BUILD_ERROR")
                return self.runtime(repo)
            if app is None:
                self.update(repo, desired="running", stage="NO_APP_FILE")
                return self.runtime(repo)
            self.update(repo, desired="running", stage="BUILDING", started_at=now_iso())
            self._children[repo.repo_id] = self._spawn(repo, app)
            return self.runtime(repo)

    def pause(self, repo: Repo) -> dict:
        with self._lock:
            self._stop_child(repo.repo_id)
            self.update(repo, desired="paused", stage="PAUSED", stopped_at=now_iso())
            return self.runtime(repo)

    def _spawn(self, repo: Repo, app: dict) -> Child:
        port = free_port()
        data = self.settings(repo)
        env = {
            **os.environ,
            **{key: item["value"] for key, item in data["variables"].items()},
            **self._secrets.get(repo.repo_id, {}),
            "PORT": str(port),
            "SPACE_ID": repo.repo_id,
            "HF_ENDPOINT": self.hub_url,
            "LOCALHUB_URL": self.hub_url,
            "HF_HUB_DISABLE_XET": "1",
        }
        log = open(repo.root / LOG_NAME, "ab", buffering=0)
        log.write(f"===== {now_iso()} restart: {' '.join(app['command'])} (PORT={port})\n".encode())
        try:
            process = subprocess.Popen(
                app["command"], cwd=app.get("cwd") or None, env=env, stdin=subprocess.DEVNULL,
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )
        except OSError as error:
            log.write(f"cannot start the app: {error}\n".encode())
            log.close()
            self.update(repo, stage="RUNTIME_ERROR")
            raise HubHTTPError(400, f"cannot start the app of Space {repo.repo_id!r}: {error}") from None
        return Child(process=process, port=port, serves_http=app.get("serves_http", True), log=log)

    def _stop_child(self, space_id: str) -> None:
        child = self._children.pop(space_id, None)
        if child is None:
            return
        if child.process.poll() is None:
            kill_group(child.process)
        child.log.close()

    def stage(self, repo: Repo) -> str:
        """Current stage; a child that ended on its own moves the Space to RUNTIME_ERROR/STOPPED."""
        with self._lock:
            child = self._children.get(repo.repo_id)
            data = self.settings(repo)
            if child is None:
                return data["stage"]
            code = child.process.poll()
            if code is None:
                ready = not child.serves_http or port_open(child.port)
                stage = "RUNNING" if ready else "BUILDING"
            else:
                stage = "STOPPED" if code == 0 else "RUNTIME_ERROR"
                self._children.pop(repo.repo_id).log.close()
                self.update(repo, stopped_at=now_iso())
            if stage != data["stage"]:
                self.update(repo, stage=stage)
            return stage

    def host(self, repo: Repo) -> str | None:
        child = self._children.get(repo.repo_id)
        return f"http://127.0.0.1:{child.port}" if child else None

    def runtime(self, repo: Repo) -> dict:
        stage = self.stage(repo)
        host = self.host(repo)
        data = self.settings(repo)
        runtime = {
            "stage": stage,
            # Local Spaces all run on this machine's CPU; what was requested is recorded, not granted.
            "hardware": {"current": None if stage == "PAUSED" else "cpu-basic",
                         "requested": data.get("hardware", "cpu-basic")},
            "gcTimeout": data.get("sleep_time_s"),
            "storage": None,
            "devMode": False,
            "host": host,
            "domains": [{"domain": host.split("://")[1], "stage": "READY"}] if host else [],
            "localApp": data["app"],
        }
        if stage in ("RUNTIME_ERROR", "BUILD_ERROR"):
            runtime["errorMessage"] = "\n".join(tail(repo.root / LOG_NAME, 20))
        return runtime

    def logs(self, repo: Repo, lines: int) -> list[str]:
        return tail(repo.root / LOG_NAME, lines)

    def resume_running(self, repos: list[Repo]) -> None:
        """After a hub restart, start again the Spaces that were running (as the Hub does after a reboot)."""
        for repo in repos:
            data = self.settings(repo)
            if data["desired"] == "running" and data["app"]:
                try:
                    self.restart(repo)
                except HubHTTPError:
                    pass  # stage is RUNTIME_ERROR with the reason in app.log

    def stop_all(self) -> None:
        with self._lock:
            for space_id in list(self._children):
                self._stop_child(space_id)


def kill_group(process: subprocess.Popen) -> None:
    """SIGTERM the child's process group, SIGKILL it if it does not end in time."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(timeout=STOP_GRACE_S)
            return
        except subprocess.TimeoutExpired:
            continue
    process.wait()


def python_command(*args: str) -> list[str]:
    """A command that runs with this interpreter (helps `bind_space` callers)."""
    return [sys.executable, *args]
