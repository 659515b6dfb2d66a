"""Local Spaces: a Space bound to a command runs as a child process of the hub.

restart = stop the old child, start the command in a new process group with the Space's
variables and secrets in its environment; pause = kill it. The stage is read from the child:
BUILDING until it serves (or right away for apps that serve no HTTP), RUNNING while it runs,
RUNTIME_ERROR when it exits non-zero on its own, STOPPED when it exits 0, PAUSED after pause.
Variables and the binding persist in space.json; secrets in DATA_DIR/spaces-secrets.json, which
only the owner can read (mode 0600), so Spaces restarted with the hub get theirs back.

A Space gets a minimal environment (PASSED_ENV from the hub's own, then its variables and secrets,
then what the hub sets), never the hub's token or another Space's settings. Children never outlive
the hub: stop_all at exit, PR_SET_PDEATHSIG on Linux for a SIGKILLed hub, and the pids recorded in
DATA_DIR/spaces-pids.json are killed when the next hub starts on the same data dir.
"""
from __future__ import annotations

import ctypes
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from processes import process_start, running

from .docker_space import docker_app
from .security import VARIABLE_NAME, scrub
from .storage import HubHTTPError, Repo, now_iso, read_json, write_json_atomic

LOG_NAME = "app.log"
SECRETS_FILE, PIDS_FILE = "spaces-secrets.json", "spaces-pids.json"
STOP_GRACE_S = 5.0
SPACE_PORTS_ENV = "LOCALHUB_SPACE_PORTS"
# What a Space takes from the hub's environment: where programs and the venv are, the locale and
# a few harmless process knobs. Everything else (LOCALHUB_TOKEN, HF_TOKEN, WANDB_API_KEY, ...) stays out.
PASSED_ENV = ("PATH", "HOME", "USER", "LOGNAME", "LANG", "LANGUAGE", "TZ", "TMPDIR", "TEMP", "TMP",
              "VIRTUAL_ENV", "SYSTEMROOT", "HF_HOME", "HF_HUB_DISABLE_TELEMETRY", "HF_HUB_OFFLINE", "WANDB_MODE",
              "TOKENIZERS_PARALLELISM", "CUDA_VISIBLE_DEVICES", "OMP_NUM_THREADS")
PASSED_ENV_PATTERN = re.compile(r"^LC_[A-Z_]+$")
PR_SET_PDEATHSIG = 1
HARDWARE_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{1,40}$")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def parse_port_range(text: str) -> range:
    """'7860-7999' as a range; ValueError naming the setting otherwise."""
    low, sep, high = text.partition("-")
    try:
        ports = range(int(low), int(high if sep else low) + 1)
    except ValueError:
        ports = range(0)
    if not ports or ports.start < 1024 or ports.stop > 65536:
        raise ValueError(f"{SPACE_PORTS_ENV}={text!r}: use a range of ports above 1023 such as 7860-7999")
    return ports


def can_bind(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def space_env(variables: dict[str, str], secrets: dict[str, str], hub_set: dict[str, str]) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if k in PASSED_ENV or PASSED_ENV_PATTERN.match(k)}
    return {**base, **variables, **secrets, **hub_set}


def die_with_parent():
    """A preexec_fn: on Linux the child gets SIGKILL when the thread that spawned it ends, so a
    SIGKILLed hub leaves no Space behind (None elsewhere)."""
    if not sys.platform.startswith("linux"):
        return None
    libc, parent = ctypes.CDLL(None, use_errno=True), os.getpid()

    def preexec() -> None:
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != parent:  # the hub died before prctl took effect
            os._exit(1)
    return preexec




def open_log(path: Path):
    return os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600), "ab", buffering=0)


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

    def __init__(self, hub_url: str, data_dir: Path | None = None, hidden: list[str] | None = None):
        """`data_dir` holds the secrets and child pids (None: secrets in memory only); `hidden`
        values (the hub token) are scrubbed from logs like secrets."""
        self.hub_url = hub_url
        self.data_dir, self.hidden = data_dir, list(hidden or [])
        self._children: dict[str, Child] = {}
        self._lock = threading.RLock()
        self._secrets: dict[str, dict[str, str]] = self._load_secrets()
        ports = os.environ.get(SPACE_PORTS_ENV)
        self.ports = parse_port_range(ports) if ports else None
        # children are spawned from one thread that lives until stop_all: PR_SET_PDEATHSIG fires
        # when the spawning *thread* ends, and request worker threads come and go
        self._spawner: ThreadPoolExecutor | None = None

    # --- persisted settings ----------------------------------------------------------
    @staticmethod
    def settings(repo: Repo) -> dict:
        """space.json with defaults; an unreadable one (hand edits, an older version) reads as a
        Space in RUNTIME_ERROR with the reason in "error", never as an exception."""
        path = repo.root / "space.json"
        try:
            data = read_json(path) if path.exists() else {}
            check_settings(data)
        except (OSError, ValueError, TypeError) as error:
            return {"variables": {}, "app": None, "desired": "stopped", "stage": "RUNTIME_ERROR",
                    "error": f"{path} is unreadable ({error}); set the Space's variables and bind it again"}
        data.setdefault("variables", {})
        data.setdefault("app", None)
        data.setdefault("desired", "stopped")
        data.setdefault("stage", "NO_APP_FILE")
        return data

    @staticmethod
    def save(repo: Repo, data: dict) -> None:
        path = repo.root / "space.json"
        if data.pop("error", None) and path.exists():
            os.replace(path, path.with_name(f"space.json.unreadable-{int(time.time())}"))  # kept, not lost
        write_json_atomic(path, data)

    def _load_secrets(self) -> dict[str, dict[str, str]]:
        path = self.data_dir / SECRETS_FILE if self.data_dir else None
        if path is None or not path.exists():
            return {}
        try:
            data = read_json(path)
            if all(isinstance(v, dict) for v in data.values()):
                return data
        except (OSError, ValueError, AttributeError):
            pass
        return {}  # an unreadable secrets file: the Spaces fail with 401 until their secrets are set again

    def _save_secrets(self) -> None:
        if self.data_dir:
            path = self.data_dir / SECRETS_FILE
            write_json_atomic(path, self._secrets)  # mkstemp + rename: created 0600
            path.chmod(0o600)

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
            self._save_secrets()

    def delete_secret(self, repo: Repo, key: str) -> None:
        with self._lock:
            self._secrets.get(repo.repo_id, {}).pop(key, None)
            self._save_secrets()

    def forget(self, repo: Repo) -> None:
        """A deleted Space: stop it and drop its secrets (a new repo of that name starts clean)."""
        with self._lock:
            self.pause(repo)
            if self._secrets.pop(repo.repo_id, None) is not None:
                self._save_secrets()

    def secret_names(self, repo: Repo) -> list[str]:
        return sorted(self._secrets.get(repo.repo_id, {}))

    def secret_values(self) -> list[str]:
        """Every Space's secret values: what the web page must never show."""
        with self._lock:
            return [value for secrets in self._secrets.values() for value in secrets.values()] + self.hidden

    def bind(self, repo: Repo, command: list[str], cwd: str | None, serves_http: bool) -> dict:
        if not command or not all(isinstance(part, str) for part in command):
            raise HubHTTPError(400, "local-app 'command' must be a non-empty list of strings")
        if cwd is not None and not Path(cwd).is_dir():
            raise HubHTTPError(400, f"local-app 'cwd' {cwd!r} is not a folder")
        return self.update(repo, app={"command": command, "cwd": cwd, "serves_http": serves_http})

    def request_hardware(self, repo: Repo, flavor, sleep_time_s=None) -> dict:
        if not isinstance(flavor, str) or not HARDWARE_NAME.match(flavor):
            raise HubHTTPError(400, f"invalid hardware flavor {flavor!r}: use a Hub flavor such as cpu-basic, "
                                    "t4-small")
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
                self.log_event(repo, f"build failed: {error.message}")
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

    @staticmethod
    def log_event(repo: Repo, message: str) -> None:
        with open_log(repo.root / LOG_NAME) as log:
            log.write(f"===== {now_iso()} {message}\n".encode())

    def _space_port(self) -> int:
        """Any free port, or the first free one of LOCALHUB_SPACE_PORTS (a firewall can then allow just those)."""
        if self.ports is None:
            return free_port()
        taken = {child.port for child in self._children.values()}
        for port in self.ports:
            if port not in taken and can_bind(port):
                return port
        raise HubHTTPError(503, f"no free port left in {SPACE_PORTS_ENV}={self.ports.start}-{self.ports.stop - 1}: "
                                "pause a Space or widen the range")

    def _spawn(self, repo: Repo, app: dict) -> Child:
        try:
            port = self._space_port()
        except HubHTTPError as error:
            self.log_event(repo, f"cannot start: {error.message}")
            self.update(repo, stage="RUNTIME_ERROR")
            raise
        log = open_log(repo.root / LOG_NAME)
        log.write(f"===== {now_iso()} restart: {' '.join(app['command'])} (PORT={port})\n".encode())
        variables, secrets = self._usable(repo, log)
        env = space_env(variables, secrets, {"PORT": str(port), "SPACE_ID": repo.repo_id, "HF_ENDPOINT": self.hub_url,
                                             "LOCALHUB_URL": self.hub_url, "HF_HUB_DISABLE_XET": "1"})
        try:
            if self._spawner is None:
                self._spawner = ThreadPoolExecutor(max_workers=1, thread_name_prefix="localhub-spawn")
            process = self._spawner.submit(
                subprocess.Popen, app["command"], cwd=app.get("cwd") or None, env=env, stdin=subprocess.DEVNULL,
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True, preexec_fn=die_with_parent(),
            ).result()
        except (OSError, ValueError, subprocess.SubprocessError) as error:
            log.write(f"cannot start the app: {error}\n".encode())
            log.close()
            self.update(repo, stage="RUNTIME_ERROR")
            raise HubHTTPError(400, f"cannot start the app of Space {repo.repo_id!r}: {error}") from None
        self._record_pid(repo.repo_id, process.pid)
        return Child(process=process, port=port, serves_http=app.get("serves_http", True), log=log)

    def _usable(self, repo: Repo, log) -> tuple[dict[str, str], dict[str, str]]:
        """The Space's variables and secrets that can enter an environment; the others (stored by an
        older hub that did not validate them) are left out with a line in the log."""
        variables = {key: item.get("value") for key, item in self.settings(repo)["variables"].items()}
        chosen = []
        for kind, items in (("variable", variables), ("secret", self._secrets.get(repo.repo_id, {}))):
            good = {k: v for k, v in items.items() if VARIABLE_NAME.match(k) and isinstance(v, str) and "\0" not in v}
            for key in sorted(set(items) - set(good)):
                log.write(f"{kind} {key!r} left out: invalid name or value; set it again\n".encode())
            chosen.append(good)
        return chosen[0], chosen[1]

    def _stop_child(self, space_id: str) -> None:
        child = self._children.pop(space_id, None)
        if child is None:
            return
        if child.process.poll() is None:
            kill_group(child.process)
        child.log.close()
        self._record_pid(space_id, None)

    # --- pids of the children, for the next hub on this data dir ---------------------
    def _pids(self) -> dict:
        path = self.data_dir / PIDS_FILE if self.data_dir else None
        try:
            data = read_json(path) if path and path.exists() else {}
            return data if isinstance(data, dict) else {}
        except (OSError, ValueError):
            return {}

    def _record_pid(self, space_id: str, pid: int | None) -> None:
        if not self.data_dir:
            return
        with self._lock:
            pids = self._pids()
            if pid is None:
                pids.pop(space_id, None)
            else:
                hub = os.getpid()
                pids[space_id] = {"pid": pid, "start": process_start(pid), "hub": hub, "hub_start": process_start(hub)}
            write_json_atomic(self.data_dir / PIDS_FILE, pids)

    def kill_previous_children(self) -> list[int]:
        """Kill the Space processes a dead hub on this data dir left running; their pids. (A hub
        still alive, e.g. one that won a race for the port, keeps its children.)"""
        killed = []
        for record in self._pids().values():
            pid = record.get("pid") if isinstance(record, dict) else None
            hub = record.get("hub") if isinstance(record, dict) else None
            hub_alive = isinstance(hub, int) and hub != os.getpid() and process_start(hub) == record.get("hub_start")
            if (isinstance(pid, int) and pid > 1 and record.get("start") and process_start(pid) == record["start"]
                    and not hub_alive):
                for sig in (signal.SIGTERM, signal.SIGKILL):
                    try:
                        os.killpg(pid, sig)
                    except (ProcessLookupError, PermissionError):
                        break
                    if wait_gone(pid, STOP_GRACE_S):
                        break
                killed.append(pid)
        with self._lock:  # forget the dead; a live hub's children stay recorded
            pids = {space_id: record for space_id, record in self._pids().items() if isinstance(record, dict)
                    and isinstance(record.get("pid"), int) and process_start(record["pid"]) == record.get("start")}
            if self.data_dir:
                write_json_atomic(self.data_dir / PIDS_FILE, pids)
        return killed

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
                self._record_pid(repo.repo_id, None)
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
            reason = [data["error"]] if data.get("error") else []
            runtime["errorMessage"] = "\n".join(reason + self.logs(repo, 20))
        return runtime

    def logs(self, repo: Repo, lines: int) -> list[str]:
        """The log tail, with every secret value (of any Space) and the hub token masked."""
        secrets = self.secret_values()
        return [scrub(line, secrets) for line in tail(repo.root / LOG_NAME, lines)]

    def resume_running(self, repos: list[Repo]) -> None:
        """After a hub restart, start again the Spaces that were running (as the Hub does after a
        reboot). A Space that cannot start is left in RUNTIME_ERROR: the hub itself always starts."""
        for repo in repos:
            data = self.settings(repo)
            if data["desired"] == "running" and data["app"]:
                try:
                    self.restart(repo)
                except HubHTTPError:
                    pass  # stage is RUNTIME_ERROR with the reason in app.log
                except Exception as error:  # noqa: BLE001 - one broken Space must not stop the hub
                    with open_log(repo.root / LOG_NAME) as log:
                        log.write(f"cannot resume the Space: {type(error).__name__}: {error}\n".encode())
                    self.update(repo, stage="RUNTIME_ERROR")

    def stop_all(self) -> None:
        with self._lock:
            for space_id in list(self._children):
                self._stop_child(space_id)
            if self._spawner is not None:
                self._spawner.shutdown(wait=False)
                self._spawner = None


def check_settings(data) -> None:
    """TypeError unless space.json has the shape this hub writes."""
    if not isinstance(data, dict) or not isinstance(data.get("variables", {}), dict):
        raise TypeError("not an object with a 'variables' object")
    if not all(isinstance(item, dict) for item in data.get("variables", {}).values()):
        raise TypeError("a variable is not an object")
    app = data.get("app")
    if app is not None and not (isinstance(app, dict) and isinstance(app.get("command"), list)):
        raise TypeError("'app' is not an object with a 'command' list")


def wait_gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not running(pid):
            return True
        time.sleep(0.05)
    return False


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
