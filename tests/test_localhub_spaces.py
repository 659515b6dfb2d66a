"""Local Spaces: restart runs the bound command as a child process, pause kills it."""
import json
import os
import sys
import textwrap
import time

import httpx
import pytest

import localhub
from hub import HubClient, SpaceController, SpaceError

APP = textwrap.dedent("""
    import json, os
    from http.server import BaseHTTPRequestHandler, HTTPServer

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            keys = ("SPACE_ID", "GREETING", "API_KEY", "HF_ENDPOINT", "LOCALHUB_URL", "HF_HUB_DISABLE_XET", "PORT")
            body = json.dumps({"pid": os.getpid(), **{k: os.environ.get(k) for k in keys}}).encode()
            self.send_response(200)
            self.end_headers()
            self.wfile.write(body)

    print("serving on", os.environ["PORT"], flush=True)
    HTTPServer(("127.0.0.1", int(os.environ["PORT"])), Handler).serve_forever()
""")


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False


def wait_dead(pid: int, timeout: float = 10) -> bool:
    deadline = time.monotonic() + timeout
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    return not alive(pid)


@pytest.fixture
def app_script(tmp_path):
    path = tmp_path / "app.py"
    path.write_text(APP)
    return path


def make_space(hub_client, space_id, url, command, serves_http=True):
    hub_client.ensure_repo(space_id, "space")
    localhub.bind_space(url, space_id, command, serves_http=serves_http)
    return SpaceController(hub_client, space_id)


def test_restart_runs_app_with_variables_and_pause_stops_it(local_hub, hub_client, unique_repo_id, app_script):
    space = make_space(hub_client, unique_repo_id, local_hub.url, [sys.executable, str(app_script)])
    space.set_variable("GREETING", "namaste")
    space.set_secret("API_KEY", "s3cret")
    assert space.state().stage == "NO_APP_FILE"

    space.restart()
    state = space.wait_until("RUNNING", timeout=30, poll=0.1)
    seen = httpx.get(state.url, timeout=5).json()
    assert seen["SPACE_ID"] == unique_repo_id and seen["GREETING"] == "namaste" and seen["API_KEY"] == "s3cret"
    assert seen["HF_ENDPOINT"] == local_hub.url == seen["LOCALHUB_URL"] and seen["HF_HUB_DISABLE_XET"] == "1"
    assert state.url == f"http://127.0.0.1:{seen['PORT']}" and state.variables == {"GREETING": "namaste"}
    assert hub_client.api.space_info(unique_repo_id).runtime.stage == "RUNNING"
    hub_client.api.delete_space_variable(unique_repo_id, "GREETING")
    assert space.state().variables == {}

    space.pause()
    assert wait_dead(seen["pid"])
    assert space.state().stage == "PAUSED"

    space.restart()
    again = httpx.get(space.wait_until("RUNNING", timeout=30, poll=0.1).url, timeout=5).json()
    assert again["pid"] != seen["pid"]
    space.pause()
    assert wait_dead(again["pid"])


def test_secrets_are_written_only_to_the_owner_only_secrets_file(local_hub, hub_client, unique_repo_id, app_script):
    space = make_space(hub_client, unique_repo_id, local_hub.url, [sys.executable, str(app_script)])
    space.set_secret("API_KEY", "very-secret-value")
    holders = [p.name for p in local_hub.data_dir.rglob("*") if p.is_file() and b"very-secret-value" in p.read_bytes()]
    assert holders == ["spaces-secrets.json"]
    assert (local_hub.data_dir / "spaces-secrets.json").stat().st_mode & 0o777 == 0o600


def test_crashing_app_is_runtime_error_with_its_log(local_hub, hub_client, unique_repo_id):
    command = [sys.executable, "-c", "import sys; print('loading model failed', flush=True); sys.exit(3)"]
    space = make_space(hub_client, unique_repo_id, local_hub.url, command)
    space.restart()
    with pytest.raises(SpaceError, match=r"(?s)RUNTIME_ERROR.*loading model failed"):
        space.wait_until("RUNNING", timeout=30, poll=0.1)
    assert space.state().stage == "RUNTIME_ERROR"


def test_app_that_exits_cleanly_is_stopped(local_hub, hub_client, unique_repo_id):
    space = make_space(hub_client, unique_repo_id, local_hub.url, [sys.executable, "-c", "print('done')"],
                       serves_http=False)
    space.restart()
    assert space.wait_until({"STOPPED"}, timeout=30, poll=0.1).stage == "STOPPED"
    logs = httpx.get(f"{local_hub.url}/api/spaces/{unique_repo_id}/local-app/logs").json()["lines"]
    assert "done" in logs


def test_space_stuck_in_building_times_out_clearly(local_hub, hub_client, unique_repo_id):
    space = make_space(hub_client, unique_repo_id, local_hub.url, [sys.executable, "-c", "import time; time.sleep(60)"])
    space.restart()
    with pytest.raises(SpaceError, match=rf"Space '{unique_repo_id}' still BUILDING after 1s.*stuck in BUILDING"):
        space.wait_until("RUNNING", timeout=1, poll=0.2)
    space.pause()


def test_stopping_the_hub_kills_space_processes(tmp_path, app_script):
    server = localhub.start_background(tmp_path / "data")
    try:
        client = HubClient(server.url, cache_dir=tmp_path / "cache")
        space = make_space(client, "team/app", server.url, [sys.executable, str(app_script)])
        space.restart()
        pid = httpx.get(space.wait_until("RUNNING", timeout=30, poll=0.1).url, timeout=5).json()["pid"]
    finally:
        server.stop()
    assert wait_dead(pid)


def test_bind_rejects_bad_command(local_hub, hub_client, unique_repo_id):
    hub_client.ensure_repo(unique_repo_id, "space")
    with pytest.raises(localhub.LocalHubError, match="non-empty list of strings"):
        localhub.bind_space(local_hub.url, unique_repo_id, [])
    with pytest.raises(localhub.LocalHubError, match="404"):
        localhub.bind_space(local_hub.url, "nobody/no-space", ["true"])


def test_space_ports_come_from_the_settable_range(tmp_path, monkeypatch, app_script):
    low = localhub.spaces.free_port()
    monkeypatch.setenv("LOCALHUB_SPACE_PORTS", f"{low}-{low}")
    with localhub.start_background(tmp_path / "data") as hub:
        client = HubClient(hub.url, cache_dir=tmp_path / "cache")
        first = make_space(client, "ports/first", hub.url, [sys.executable, str(app_script)])
        first.restart()
        assert first.wait_until("RUNNING", timeout=30, poll=0.1).url == f"http://127.0.0.1:{low}"
        second = make_space(client, "ports/second", hub.url, [sys.executable, str(app_script)])
        with pytest.raises(Exception, match=f"no free port left in LOCALHUB_SPACE_PORTS={low}-{low}"):
            second.restart()
        assert second.state().stage == "RUNTIME_ERROR"
        first.pause()


def test_a_bad_space_port_range_is_refused_at_start_naming_the_setting(tmp_path, monkeypatch):
    monkeypatch.setenv("LOCALHUB_SPACE_PORTS", "80-90")
    with pytest.raises(ValueError, match="LOCALHUB_SPACE_PORTS='80-90'"):
        localhub.spaces.SpaceRuntimes("http://127.0.0.1:1")
