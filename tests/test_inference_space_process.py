"""`python -m inference_space` as the local hub runs it: a child process with PORT and the
Space's variables in its environment."""
from __future__ import annotations

import os
import shutil
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


def poll_health(url: str, until: set[str], timeout: float = 120, exit_of=None, log: Path | None = None) -> dict:
    """/health once its status is in `until`; fails early when the process `exit_of` has exited."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if exit_of is not None and exit_of.poll() is not None:
            pytest.fail(f"the Space exited ({exit_of.returncode}): {log.read_text()[-3000:] if log else ''}")
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


CODE_PARTS_NOT_SERVED = (".git", "tests", "data", "bench", "outputs", ".localhub", "wandb", "__pycache__")


def unprivileged(command: list[str]) -> list[str]:
    """The command as a user who cannot write what it does not own. Root ignores file modes, so
    as root the process runs with every capability dropped (CAP_DAC_OVERRIDE included); /root's
    Python stays readable, which a switch to uid 1000 would not allow here."""
    if os.geteuid() != 0:
        return command
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("running as root without setpriv (util-linux): cannot drop CAP_DAC_OVERRIDE")
    return [setpriv, "--bounding-set=-all", "--inh-caps=-all", "--no-new-privs", *command]


@pytest.fixture
def read_only_code(tmp_path):
    """A copy of the project code that nobody may write (as a Space's code folder is to its user)."""
    code = tmp_path / "code"
    shutil.copytree(REPO_ROOT, code, ignore=shutil.ignore_patterns(*CODE_PARTS_NOT_SERVED))
    for path in [code, *code.rglob("*")]:
        path.chmod(path.stat().st_mode & ~0o222)
    yield code
    for path in [code, *code.rglob("*")]:
        path.chmod(path.stat().st_mode | 0o200)


def test_space_runs_from_a_read_only_code_folder_with_state_under_home(
        read_only_code, local_hub, space_hub, publish_space_version, space_model_repo, tmp_path):
    """Issue 13: the image's code folder is not writable by its user; the feedback store used to
    default to .localhub/ next to the code and the Space crashed at start."""
    probe = subprocess.run(unprivileged([sys.executable, "-c", f"open({str(read_only_code / 'x')!r}, 'w')"]),
                           capture_output=True, text=True)
    assert probe.returncode != 0 and "Permission denied" in probe.stderr  # the set-up really is read-only
    home, port = tmp_path / "home", free_port()
    home.mkdir()
    publish_space_version(space_hub, "v20260101_000000")
    env = {k: v for k, v in os.environ.items()
           if k not in ("HF_HOME", "CACHE_DIR", "DATA_DIR", "LOCALHUB_DATA_DIR", "FEEDBACK_DB_URL", "MODEL_REVISION",
                        "HF_TOKEN")}
    env.update(HOME=str(home), PYTHONPATH=str(read_only_code), PYTHONDONTWRITEBYTECODE="1", LABEL="urgency",
               MODEL_ID=space_model_repo, HF_ENDPOINT=local_hub.url, PORT=str(port))
    log = tmp_path / "space.log"
    with log.open("w") as out:
        process = subprocess.Popen(unprivileged([sys.executable, "-m", "inference_space"]), cwd=read_only_code,
                                   env=env, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        health = poll_health(url, until={"ok", "error"}, exit_of=process, log=log)
        predicted = httpx.post(f"{url}/predict", json={"text": "pani aayena"}, timeout=30)
        reported = httpx.post(f"{url}/feedback", json={"text": "pani aayena", "predicted_label": "NORMAL"}, timeout=30)
    finally:
        process.terminate()
        process.wait(timeout=30)
    assert health["status"] == "ok", log.read_text()[-3000:]
    assert predicted.status_code == 200 and predicted.json()["label"] in ("NORMAL", "URGENT", "HIGHLY URGENT")
    assert reported.status_code == 201, reported.text
    from feedback.store import FeedbackStore

    stored = FeedbackStore(f"sqlite:///{home / '.cache' / 'retrainspace' / 'feedback.db'}", create=False)
    assert [r.text for r in stored.list_pending()] == ["pani aayena"]


def test_schema_conflict_stops_the_space_at_start_naming_the_table(tmp_path):
    import sqlite3

    with sqlite3.connect(tmp_path / "feedback.db") as connection:
        connection.execute("CREATE TABLE retrainspace_feedback (id INTEGER PRIMARY KEY, note TEXT)")
    env = space_process_env(tmp_path, LABEL="urgency", FEEDBACK_DB_URL=f"sqlite:///{tmp_path / 'feedback.db'}",
                            HF_ENDPOINT=f"http://127.0.0.1:{free_port()}")
    done = subprocess.run([sys.executable, "-m", "inference_space"], cwd=REPO_ROOT, capture_output=True, text=True,
                          env=env, timeout=120)
    assert done.returncode == 2 and "table retrainspace_feedback exists with other columns" in done.stderr
