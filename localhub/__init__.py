"""Embedded local Hub: the Hub HTTP API subset the job uses, plus local Spaces.

    hub = start_background(data_dir)          # in-process, free port: hub.url, hub.stop()
    url = ensure_running(url, data_dir)       # connect, or spawn `python -m localhub serve` detached
    bind_space(url, "ns/app", ["python", "app.py"], cwd=".")
"""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import uvicorn

from .server import create_app
from .spaces import port_open, tail

DEFAULT_URL = "http://127.0.0.1:18765"
DEFAULT_DATA_DIR = Path(".localhub")
START_TIMEOUT_S = 30.0


class LocalHubError(RuntimeError):
    """The local hub could not be started or reached; the message says what to do."""


@dataclass
class LocalHub:
    url: str
    data_dir: Path
    server: uvicorn.Server
    thread: threading.Thread

    def stop(self) -> None:
        """Stop serving and kill the Space children (the app's lifespan does the killing)."""
        self.server.should_exit = True
        self.thread.join(timeout=30)

    def __enter__(self) -> "LocalHub":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def start_background(data_dir: str | Path, port: int = 0, token: str | None = None,
                     host: str = "127.0.0.1") -> LocalHub:
    """Serve the hub from a thread of this process on `port` (0: a free one)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    url = f"http://{host}:{sock.getsockname()[1]}"
    app = create_app(Path(data_dir), token=token, public_url=url)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    server.install_signal_handlers = lambda: None  # only the main thread may own signals
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True, name="localhub")
    thread.start()
    deadline = time.monotonic() + START_TIMEOUT_S
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise LocalHubError(f"the local hub did not start on {url} (data dir {data_dir})")
        time.sleep(0.02)
    return LocalHub(url=url, data_dir=Path(data_dir), server=server, thread=thread)


def is_running(url: str) -> bool:
    try:
        response = httpx.get(f"{url.rstrip('/')}/api/localhub/health", timeout=2)
        return response.status_code == 200 and response.json().get("service") == "localhub"
    except (httpx.HTTPError, ValueError):
        return False


def ensure_running(url: str = DEFAULT_URL, data_dir: str | Path = DEFAULT_DATA_DIR,
                   token: str | None = None) -> str:
    """Return `url` once a local hub answers there, spawning a detached server if none does."""
    url = url.rstrip("/")
    if is_running(url):
        return url
    parts = urlsplit(url)
    if parts.hostname not in ("127.0.0.1", "localhost") or parts.port is None:
        raise LocalHubError(f"no local hub answers at {url}; an embedded hub must be http://127.0.0.1:<port>")
    if port_open(parts.port):
        raise LocalHubError(f"port {parts.port} is taken by something that is not a local hub; "
                            "set LOCALHUB_URL to a free port, e.g. http://127.0.0.1:18766")
    data_dir = Path(data_dir).resolve()
    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    command = [sys.executable, "-m", "localhub", "serve", "--data-dir", str(data_dir), "--port", str(parts.port)]
    env = {**os.environ, **({"LOCALHUB_TOKEN": token} if token else {})}
    log_path = data_dir / "server.log"
    with os.fdopen(os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600), "ab") as log:
        # a new session: the hub outlives this process and is not hit by its Ctrl-C
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                   start_new_session=True, env=env, cwd=Path(__file__).resolve().parents[1])
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if is_running(url):
            return url
        if process.poll() is not None:
            if is_running(url):  # another caller's hub won the race for the port
                return url
            last = "\n".join(tail(log_path, 10))
            raise LocalHubError(f"`{' '.join(command)}` exited with {process.returncode}:\n{last}")
        time.sleep(0.2)
    raise LocalHubError(f"started `{' '.join(command)}` but nothing answers at {url} after {START_TIMEOUT_S:.0f}s; "
                        f"see {log_path}")


def bind_space(url: str, space_id: str, command: list[str], cwd: str | Path | None = None,
               serves_http: bool = True, token: str | None = None) -> dict:
    """Bind a local Space to the command its restart runs (local-only endpoint)."""
    headers = {"authorization": f"Bearer {token}"} if token else {}
    try:
        response = httpx.put(f"{url.rstrip('/')}/api/spaces/{space_id}/local-app", headers=headers, timeout=10,
                             json={"command": command, "cwd": str(cwd) if cwd else None, "serves_http": serves_http})
    except httpx.HTTPError as error:
        raise LocalHubError(f"no local hub answers at {url} ({type(error).__name__}): start it with "
                            "`python -m localhub serve` or set LOCALHUB_URL") from None
    if response.status_code != 200:
        message = response.headers.get("x-error-message") or response.text
        raise LocalHubError(f"cannot bind Space {space_id!r} at {url}: {response.status_code} {message}")
    return response.json()


__all__ = ["LocalHub", "LocalHubError", "start_background", "ensure_running", "bind_space", "is_running",
           "create_app", "DEFAULT_URL", "DEFAULT_DATA_DIR"]
