"""`python -m inference_space` as the local hub runs it: a child process with PORT and the
Space's variables in its environment."""
from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import pytest

from tests.fixtures.space import free_port

REPO_ROOT = Path(__file__).resolve().parents[1]


def space_process_env(tmp_path, **variables) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("LABEL", "MODEL_ID", "MODEL_REVISION", "HF_TOKEN")}
    env.update(HOME=str(tmp_path), HF_HOME=str(tmp_path / "hf"), PYTHONPATH=str(REPO_ROOT), **variables)
    return env


def test_bad_label_exits_with_the_variable_named(tmp_path):
    done = subprocess.run([sys.executable, "-m", "inference_space"], cwd=REPO_ROOT, capture_output=True, text=True,
                          env=space_process_env(tmp_path, LABEL="priority"), timeout=120)
    assert done.returncode == 2 and "LABEL" in done.stderr


def test_module_serves_health_on_port_even_when_the_hub_is_unreachable(tmp_path):
    port, dead_hub = free_port(), f"http://127.0.0.1:{free_port()}"
    env = space_process_env(tmp_path, LABEL="urgency", PORT=str(port), HF_ENDPOINT=dead_hub, LOAD_RETRY_S="0.1")
    process = subprocess.Popen([sys.executable, "-m", "inference_space"], cwd=REPO_ROOT, env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        health = poll_health(f"http://127.0.0.1:{port}", until={"error"})
    finally:
        process.terminate()
        process.wait(timeout=30)
    assert health["status"] == "error" and health["label_type"] == "urgency"
    assert "cannot reach the Hub" in health["error"] and dead_hub in health["error"]
    assert (tmp_path / "hf" / "inference_space").is_dir()  # its cache lives under HF_HOME


def poll_health(url: str, until: set[str], timeout: float = 120) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            health = httpx.get(f"{url}/health", timeout=5).json()
            if health["status"] in until:
                return health
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    pytest.fail(f"{url}/health never reached {until}")


@pytest.mark.slow  # two child processes importing torch: ~30 s on a busy 2-core machine
def test_local_hub_restart_after_a_new_tag_moves_the_served_revision(
        local_hub, space_hub, publish_space_version, space_model_repo, tmp_path):
    """The embedded loop: the local hub runs `python -m inference_space` as the bound Space; a
    restart after a new tag makes /health report that tag."""
    import localhub
    from hub import SpaceController
    from feedback.store import FeedbackStore

    space_id = f"test/space-api-{uuid.uuid4().hex[:8]}"
    space_hub.ensure_repo(space_id, "space")
    localhub.bind_space(local_hub.url, space_id, [sys.executable, "-m", "inference_space"], cwd=REPO_ROOT)
    space = SpaceController(space_hub, space_id)
    feedback_url = f"sqlite:///{tmp_path / 'feedback.db'}"
    for key, value in {"LABEL": "urgency", "MODEL_ID": space_model_repo, "CACHE_DIR": str(tmp_path / "cache"),
                       "FEEDBACK_DB_URL": feedback_url}.items():
        space.set_variable(key, value)
    publish_space_version(space_hub, "v20260101_000000")
    try:
        space.restart()
        first = poll_health(space.wait_until("RUNNING", timeout=120, poll=0.2).url, until={"ok", "error"})
        new_commit = publish_space_version(space_hub, "v20260102_000000")
        space.restart()
        url = space.wait_until("RUNNING", timeout=120, poll=0.2).url
        second = poll_health(url, until={"ok", "error"})
        reported = httpx.post(f"{url}/feedback", json={"text": "pani aayena", "predicted_label": "NORMAL"}, timeout=30)
    finally:
        space.pause()
    assert (first["status"], first["revision"]) == ("ok", "v20260101_000000")
    assert (second["status"], second["revision"], second["commit"]) == ("ok", "v20260102_000000", new_commit)
    assert reported.status_code == 201
    assert [r.text for r in FeedbackStore(feedback_url).list_pending()] == ["pani aayena"]
