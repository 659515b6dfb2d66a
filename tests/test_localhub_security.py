"""The local hub as an attacker tries it: file reads through oids and paths, cross-origin writes from
a web page, Space environments, bad variables, secrets across restarts, orphan Spaces, malformed
requests and files."""
from __future__ import annotations

import base64
import json
import os
import signal
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import httpx
import pytest

import localhub
from hub import HubClient, SpaceController
from localhub.spaces import free_port, process_start
from localhub.spaces import running as alive
from tests.fixtures.hub import TEST_TOKEN

ROOT = Path(__file__).resolve().parents[1]
ZERO_OID = "0" * 64
DUMP_ENV = "import json, os, sys; open(sys.argv[1], 'w').write(json.dumps(dict(os.environ)))"
SERVE_PID = textwrap.dedent("""
    import os
    from http.server import BaseHTTPRequestHandler, HTTPServer

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            body = f'{os.getpid()} {os.environ.get("API_KEY")}'.encode()
            self.send_response(200)
            self.end_headers()
            self.wfile.write(body)

    HTTPServer(("127.0.0.1", int(os.environ["PORT"])), Handler).serve_forever()
""")


def commit_payload(*operations: dict) -> bytes:
    lines = [{"key": "header", "value": {"summary": "attack"}}, *operations]
    return b"\n".join(json.dumps(line).encode() for line in lines)


def post_commit(url: str, repo_id: str, *operations: dict) -> httpx.Response:
    return httpx.post(f"{url}/api/models/{repo_id}/commit/main", content=commit_payload(*operations),
                      headers={"content-type": "application/x-ndjson"}, timeout=10)


def wait_dead(pid: int, timeout: float = 15) -> bool:
    deadline = time.monotonic() + timeout
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    return not alive(pid)


def wait_for(predicate, timeout: float = 30, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)
    return value


# --- 1. no request value reaches a file path unvalidated -----------------------------------
def test_an_lfs_oid_cannot_name_a_host_file(local_hub, hub_client, unique_repo_id):
    hub_client.ensure_repo(unique_repo_id)
    response = post_commit(local_hub.url, unique_repo_id,
                           {"key": "lfsFile", "value": {"path": "leak.txt", "oid": "../../../../../../etc/passwd"}})
    assert response.status_code == 422 and "oid" in response.json()["error"]
    leaked = httpx.get(f"{local_hub.url}/{unique_repo_id}/resolve/main/leak.txt", timeout=10)
    assert leaked.status_code == 404 and b"root:" not in leaked.content

    batch = httpx.post(f"{local_hub.url}/{unique_repo_id}.git/info/lfs/objects/batch", timeout=10,
                       headers={"content-type": "application/vnd.git-lfs+json"},
                       json={"operation": "upload", "objects": [{"oid": "../../x", "size": 1}]})
    assert batch.status_code == 422
    put = httpx.put(f"{local_hub.url}/api/localhub/lfs/models/{unique_repo_id}/..?sig=x", content=b"x", timeout=10)
    assert put.status_code in (404, 422)


@pytest.mark.parametrize("path", ["../escape.txt", "a/../../b.txt", "/etc/cron.d/x", "a//b.txt", "./a.txt",
                                  "..\\x.txt", "C:/x.txt", "a/b/"], ids=lambda path: f"path{hash(path) % 1000}")
def test_commit_paths_must_stay_inside_the_repo(local_hub, hub_client, unique_repo_id, path):
    hub_client.ensure_repo(unique_repo_id)
    content = base64.b64encode(b"data").decode()
    response = post_commit(local_hub.url, unique_repo_id, {"key": "file", "value": {"path": path, "content": content}})
    assert response.status_code == 422, response.text
    assert path not in [s.rfilename for s in hub_client.api.model_info(unique_repo_id).siblings]


# --- 2. a web page cannot write through the open hub ----------------------------------------
def test_cross_origin_and_non_json_writes_are_refused(local_hub, hub_client, unique_repo_id):
    create = f"{local_hub.url}/api/repos/create"
    name = unique_repo_id.split("/")[1]
    body = json.dumps({"name": name, "organization": "test"})
    port = local_hub.url.rsplit(":", 1)[1]
    refused = [
        httpx.post(create, content=body, headers={"origin": "http://evil.example", "content-type": "application/json"}),
        httpx.post(create, content=body, headers={"origin": f"http://localhost:{int(port) + 1}",
                                                  "content-type": "application/json"}),
        httpx.post(create, content=body, headers={"sec-fetch-site": "cross-site", "content-type": "application/json"}),
        httpx.post(create, content=body, headers={"content-type": "text/plain"}),  # a no-cors form post
        httpx.post(f"{local_hub.url}/api/spaces/{unique_repo_id}/restart", headers={"origin": "http://evil.example"}),
    ]
    assert [r.status_code for r in refused] == [403, 403, 403, 415, 403]
    assert not hub_client.repo_exists(unique_repo_id)
    assert httpx.get(f"{local_hub.url}/api/models", headers={"origin": "http://evil.example"}).status_code == 200

    for origin in (local_hub.url, f"http://localhost:{port}"):  # the page itself
        page_post = httpx.post(create, content=body, headers={"origin": origin, "content-type": "application/json"})
        assert page_post.status_code in (200, 409), page_post.text
    assert hub_client.repo_exists(unique_repo_id)


def test_a_rebound_domain_cannot_read_the_hub(local_hub):
    port = local_hub.url.rsplit(":", 1)[1]
    rebound = httpx.get(f"{local_hub.url}/api/localhub/overview", headers={"host": f"evil.example:{port}"}, timeout=10)
    assert rebound.status_code == 403 and "Host" in rebound.json()["error"]
    for host in (f"localhost:{port}", f"127.0.0.1:{port}", f"[::1]:{port}"):
        assert httpx.get(f"{local_hub.url}/api/localhub/health", headers={"host": host}).status_code == 200, host


def test_an_open_hub_refuses_variables_that_change_how_python_starts(local_hub, hub_client, token_hub,
                                                                     unique_repo_id):
    hub_client.ensure_repo(unique_repo_id, "space")
    for key in ("PYTHONPATH", "LD_PRELOAD", "PYTHONSTARTUP"):
        response = httpx.post(f"{local_hub.url}/api/spaces/{unique_repo_id}/variables",
                              json={"key": key, "value": "/tmp/evil"}, timeout=10)
        assert response.status_code == 422 and "open hub" in response.json()["error"], key
    token_hub.client.ensure_repo(unique_repo_id, "space")
    token_hub.client.space(unique_repo_id).set_variable("PYTHONPATH", "/opt/lib")  # the token holder may


# --- 3. a Space sees only its own settings --------------------------------------------------
def test_a_space_environment_holds_no_hub_token_and_no_other_space_setting(local_hub, hub_client, unique_repo_id,
                                                                          tmp_path, monkeypatch):
    monkeypatch.setenv("LOCALHUB_TOKEN", "hf_hub_token_of_the_hub_process")
    monkeypatch.setenv("WANDB_API_KEY", "wandb-key-of-the-hub-user")
    other = f"{unique_repo_id}-other"
    hub_client.ensure_repo(other, "space")
    hub_client.space(other).set_variable("OTHER_SETTING", "other-space-value")
    hub_client.space(other).set_secret("OTHER_SECRET", "other-space-secret")

    hub_client.ensure_repo(unique_repo_id, "space")
    dump = tmp_path / "env.json"
    localhub.bind_space(local_hub.url, unique_repo_id, [sys.executable, "-c", DUMP_ENV, str(dump)], serves_http=False)
    space = hub_client.space(unique_repo_id)
    space.set_variable("OWN_SETTING", "mine")
    space.set_secret("OWN_SECRET", "my-secret")
    space.restart()
    space.wait_until("STOPPED", timeout=30, poll=0.1)
    env = json.loads(dump.read_text())
    assert not {"LOCALHUB_TOKEN", "WANDB_API_KEY", "OTHER_SETTING", "OTHER_SECRET"} & set(env)
    assert (env["OWN_SETTING"], env["OWN_SECRET"], env["SPACE_ID"]) == ("mine", "my-secret", unique_repo_id)
    assert env["PATH"] == os.environ["PATH"] and env["HF_ENDPOINT"] == local_hub.url


# --- 4. bad variables never break a Space or the hub -----------------------------------------
@pytest.mark.parametrize("kind", ["variables", "secrets"])
@pytest.mark.parametrize("key,value", [("BAD=KEY", "x"), ("1ABC", "x"), ("", "x"), ("GOOD", "nul\x00byte"),
                                       ("GOOD", None)], ids=["equals", "digit", "empty", "nul", "none"])
def test_variable_names_and_values_are_validated(local_hub, hub_client, unique_repo_id, kind, key, value):
    hub_client.ensure_repo(unique_repo_id, "space")
    response = httpx.post(f"{local_hub.url}/api/spaces/{unique_repo_id}/{kind}", json={"key": key, "value": value},
                          timeout=10)
    assert response.status_code == 422, response.text


def test_a_hub_starts_on_a_data_dir_with_a_broken_space(tmp_path):
    data = tmp_path / "data"
    with localhub.start_background(data) as hub:
        client = HubClient(hub.url, cache_dir=tmp_path / "cache")
        for space_id in ("team/broken", "team/old"):
            client.ensure_repo(space_id, "space")
            localhub.bind_space(hub.url, space_id, [sys.executable, "-c", "import time; time.sleep(60)"],
                                serves_http=False)
            client.space(space_id).restart()
    (data / "repos/spaces/team/broken/space.json").write_text('{"variables": [1, 2], "desired": "running"')
    old = json.loads((data / "repos/spaces/team/old/space.json").read_text())
    old["variables"]["BAD=KEY"] = {"value": "x"}  # stored by a hub that did not validate names
    (data / "repos/spaces/team/old/space.json").write_text(json.dumps(old))

    with localhub.start_background(data) as hub:
        broken = httpx.get(f"{hub.url}/api/spaces/team/broken/runtime", timeout=10).json()
        assert broken["stage"] == "RUNTIME_ERROR" and "space.json is unreadable" in broken["errorMessage"]
        assert httpx.get(hub.url + "/", timeout=10).status_code == 200
        client = HubClient(hub.url, cache_dir=tmp_path / "cache")
        assert client.space("team/old").wait_until("RUNNING", timeout=30, poll=0.1).stage == "RUNNING"
        logs = httpx.get(f"{hub.url}/api/spaces/team/old/local-app/logs", timeout=10).json()["lines"]
        assert any("'BAD=KEY' left out" in line for line in logs)
        client.space("team/broken").set_variable("FIXED", "1")  # a write starts space.json afresh
        assert client.space("team/broken").state().variables == {"FIXED": "1"}
        assert list((data / "repos/spaces/team/broken").glob("space.json.unreadable-*"))  # the old one is kept


# --- 5. secrets survive a restart; Spaces never outlive their hub ----------------------------
def test_secrets_survive_a_hub_restart_in_an_owner_only_file(tmp_path):
    data = tmp_path / "data"
    script = tmp_path / "app.py"
    script.write_text(SERVE_PID)
    with localhub.start_background(data) as hub:
        client = HubClient(hub.url, cache_dir=tmp_path / "cache")
        client.ensure_repo("team/app", "space")
        localhub.bind_space(hub.url, "team/app", [sys.executable, str(script)])
        client.space("team/app").set_secret("API_KEY", "kept-secret")
        client.space("team/app").restart()
        first = httpx.get(client.space("team/app").wait_until("RUNNING", 30, 0.1).url, timeout=5).text.split()
    assert first[1] == "kept-secret" and wait_dead(int(first[0]))
    secrets_file = data / "spaces-secrets.json"
    assert stat.S_IMODE(secrets_file.stat().st_mode) == 0o600
    assert all("kept-secret" not in p.read_text() for p in data.rglob("*.json") if p != secrets_file)

    with localhub.start_background(data) as hub:
        client = HubClient(hub.url, cache_dir=tmp_path / "cache")
        state = client.space("team/app").wait_until("RUNNING", 30, 0.1)
        pid, secret = httpx.get(state.url, timeout=5).text.split()
        assert secret == "kept-secret" and client.api.get_space_runtime("team/app").stage == "RUNNING"
    assert wait_dead(int(pid))


def test_a_new_hub_kills_the_space_processes_an_old_hub_left(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    orphan = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"], start_new_session=True)
    try:
        start = process_start(orphan.pid)
        (data / "spaces-pids.json").write_text(json.dumps({"team/app": {"pid": orphan.pid, "start": start}}))
        with localhub.start_background(data):
            assert wait_dead(orphan.pid)
    finally:
        orphan.kill()
        orphan.wait()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux-only")
def test_a_sigkilled_hub_takes_its_spaces_down(tmp_path):
    port, data = free_port(), tmp_path / "data"
    (tmp_path / "token").write_text(TEST_TOKEN + "\n")
    script = tmp_path / "app.py"
    script.write_text(SERVE_PID)
    env = {k: v for k, v in os.environ.items() if k != "LOCALHUB_TOKEN"}
    server = subprocess.Popen([sys.executable, "-m", "localhub", "serve", "--data-dir", str(data), "--port", str(port),
                               "--token-file", str(tmp_path / "token")], cwd=ROOT, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_for(lambda: localhub.is_running(url), 60, "the hub")
        assert httpx.post(f"{url}/api/repos/create", json={"name": "x"}, timeout=10).status_code == 401
        client = HubClient(url, token=TEST_TOKEN, cache_dir=tmp_path / "cache")
        client.ensure_repo("team/app", "space")
        localhub.bind_space(url, "team/app", [sys.executable, str(script)], token=TEST_TOKEN)
        space = SpaceController(client, "team/app")
        space.restart()
        pid = int(httpx.get(space.wait_until("RUNNING", 30, 0.1).url, timeout=5).text.split()[0])
        server.send_signal(signal.SIGKILL)
        server.wait(timeout=10)
        assert wait_dead(pid), "the Space outlived its SIGKILLed hub"
    finally:
        server.kill()
        server.wait()


# --- 6. secret values never come back ------------------------------------------------------
def test_logs_and_runtime_never_return_a_secret_value(local_hub, hub_client, unique_repo_id):
    secret = 'pa"ss<wo>rd&1'
    hub_client.ensure_repo(unique_repo_id, "space")
    localhub.bind_space(local_hub.url, unique_repo_id,
                        [sys.executable, "-c", "import os, sys; print('db pw:', os.environ['DB_PW']); sys.exit(2)"],
                        serves_http=False)
    space = hub_client.space(unique_repo_id)
    space.set_secret("DB_PW", secret)
    space.restart()
    wait_for(lambda: space.state().stage == "RUNTIME_ERROR", 30, "RUNTIME_ERROR")
    answers = [httpx.get(f"{local_hub.url}/api/spaces/{unique_repo_id}/local-app/logs", timeout=10).text,
               httpx.get(f"{local_hub.url}/api/spaces/{unique_repo_id}/runtime", timeout=10).text,
               httpx.get(f"{local_hub.url}/api/spaces/{unique_repo_id}", timeout=10).text]
    for text in answers:
        assert "db pw: ***" in text and "pa" + '\\"ss' not in text and "ss<wo" not in text, text


def test_page_masks_first_and_escapes_last(page_hub):
    from tests.fixtures.web import RETRAIN_SPACE

    space = page_hub.client.space(RETRAIN_SPACE)
    space.set_variable("FEEDBACK_DB_URL", "postgresql://app:db-pass-123@db.local/feedback")
    space.set_secret("ODD_SECRET", 'title="')  # matches the markup of the model rows
    space.set_variable("NOTE", '" autofocus onfocus="alert(1)')
    html = httpx.get(page_hub.url + "/localhub/sections", timeout=10).text
    assert "postgresql://app:***@db.local/feedback" in html and "db-pass-123" not in html
    assert '<small title="test">' in html  # the markup is intact: masking ran on the data, not the HTML
    assert 'onfocus="' not in html and "&quot; autofocus onfocus=&quot;alert(1)" in html
    assert html.count("<article") == html.count("</article>")


# --- 7. one malformed file does not take the page down ---------------------------------------
def test_a_malformed_metadata_or_parquet_shows_as_that_versions_error(page_hub, tmp_path):
    from tests.fixtures.web import DATASET_REPO, MODEL_REPO

    client = page_hub.client
    for tag, metadata in (("v20250104_000000", "[1, 2]"), ("v20250105_000000", '{"comparison": "x", "decision": 3}'),
                          ("v20250106_000000", '{"comparison": {"delta_f1": "big", "delta_f1_ci": [1]}}')):
        commit = client.upload_file(MODEL_REPO, "metadata.json", metadata.encode(), tag)
        client.create_tag(MODEL_REPO, tag, commit)
    commit = client.upload_file(DATASET_REPO, "data/train.parquet", b"PAR1 not a parquet file PAR1", "bad", "dataset")
    client.create_tag(DATASET_REPO, "v2", commit, "dataset")
    for path in ("/", "/localhub/sections", "/api/localhub/overview"):
        assert httpx.get(page_hub.url + path, timeout=10).status_code == 200, path
    html = httpx.get(page_hub.url + "/localhub/sections", timeout=10).text
    assert 'data-tag="v20250101_000000"' in html and 'data-tag="v1"' in html  # the good versions still show
    dataset = next(d for d in httpx.get(page_hub.url + "/api/localhub/overview").json()["datasets"]
                   if d["id"] == DATASET_REPO)
    assert "cannot read this version" in next(v for v in dataset["versions"] if v["tag"] == "v2")["error"]
    assert 'data-role="error"' in html


# --- 8. malformed requests are 4xx, files are the owner's -----------------------------------
MALFORMED = [
    ("POST", "/api/repos/create", "[1, 2]", "application/json"),
    ("POST", "/api/repos/create", "{}", "application/json"),
    ("POST", "/api/repos/create", '{"name": "x", "type": "bogus"}', "application/json"),
    ("POST", "/api/repos/create", "not json", "application/json"),
    ("DELETE", "/api/repos/delete", '{"organization": "test"}', "application/json"),
    ("POST", "/api/models/{repo}/preupload/main", '{"files": [{"path": "a", "sample": "%%%"}]}', "application/json"),
    ("POST", "/api/models/{repo}/preupload/main", '{"files": [{"sample": ""}]}', "application/json"),
    ("POST", "/api/models/{repo}/commit/main", '{"key": "header", "value": {"summary": "x"}}\nnot json',
     "application/x-ndjson"),
    ("POST", "/api/models/{repo}/commit/main", '["a"]', "application/x-ndjson"),
    ("POST", "/api/models/{repo}/commit/main", '{"key": "file", "value": {"path": "a", "content": "%%"}}',
     "application/x-ndjson"),
    ("POST", "/api/models/{repo}/commit/main", '{"key": "deletedFile", "value": {}}', "application/x-ndjson"),
    ("POST", "/{repo}.git/info/lfs/objects/batch", '{"operation": "upload", "objects": [{}]}',
     "application/vnd.git-lfs+json"),
    ("POST", "/api/models/{repo}/tag/main", '"v1"', "application/json"),
    ("POST", "/api/models/{repo}/branch/dev", "{bad", "application/json"),
    ("POST", "/api/models/{repo}/paths-info/main", '{"paths": [1]}', "application/json"),
    ("POST", "/api/spaces/{space}/variables", '{"value": "x"}', "application/json"),
    ("DELETE", "/api/spaces/{space}/secrets", "{}", "application/json"),
    ("PUT", "/api/spaces/{space}/local-app", "[]", "application/json"),
    ("GET", "/api/spaces/{space}/local-app/logs?lines=-1", "", ""),
]


@pytest.mark.parametrize("method,path,body,content_type", MALFORMED, ids=[f"case{i}" for i in range(len(MALFORMED))])
def test_malformed_requests_are_client_errors(local_hub, hub_client, unique_repo_id, method, path, body,
                                              content_type):
    hub_client.ensure_repo(unique_repo_id)
    space = f"{unique_repo_id}-space"
    hub_client.ensure_repo(space, "space")
    url = local_hub.url + path.format(repo=unique_repo_id, space=space)
    response = httpx.request(method, url, content=body.encode(), headers={"content-type": content_type} if body else {},
                             timeout=10)
    assert 400 <= response.status_code < 500, (response.status_code, response.text)


def test_data_files_are_readable_by_the_owner_only(local_hub, hub_client, unique_repo_id):
    hub_client.ensure_repo(unique_repo_id, "space")
    hub_client.upload_file(unique_repo_id, "big.bin", bytes(range(256)), "lfs", "space")
    localhub.bind_space(local_hub.url, unique_repo_id, [sys.executable, "-c", "print('hi')"], serves_http=False)
    hub_client.space(unique_repo_id).restart()
    hub_client.space(unique_repo_id).wait_until("STOPPED", 30, 0.1)
    assert stat.S_IMODE(local_hub.data_dir.stat().st_mode) == 0o700
    shared = [p for p in local_hub.data_dir.rglob("*") if p.is_file() and stat.S_IMODE(p.stat().st_mode) & 0o077]
    assert not shared, shared[:5]


def test_huggingface_hub_passes_the_guards_on_every_write_it_makes(local_hub, hub_client, unique_repo_id, tmp_path):
    api = hub_client.api  # unmodified HfApi: no Origin, the content types the real client sends
    api.create_repo(unique_repo_id)
    api.upload_file(path_or_fileobj=b"text", path_in_repo="dir/a.txt", repo_id=unique_repo_id)
    api.upload_file(path_or_fileobj=bytes(range(256)), path_in_repo="dir/w.bin", repo_id=unique_repo_id)  # LFS
    api.create_branch(unique_repo_id, branch="dev")
    api.create_tag(unique_repo_id, tag="v1", tag_message="first")
    assert {p.path for p in api.get_paths_info(unique_repo_id, ["dir/a.txt", "dir/w.bin"])} == {"dir/a.txt",
                                                                                                  "dir/w.bin"}
    api.delete_file("dir/a.txt", unique_repo_id)
    api.delete_folder("dir", unique_repo_id)
    api.delete_tag(unique_repo_id, tag="v1")
    api.delete_branch(unique_repo_id, branch="dev")
    api.delete_repo(unique_repo_id)
    space = f"{unique_repo_id}-space"
    api.create_repo(space, repo_type="space", space_sdk="docker")
    api.add_space_variable(space, "GREETING", "namaste")
    api.add_space_secret(space, "API_KEY", "s3cret")
    api.delete_space_variable(space, "GREETING")
    api.delete_space_secret(space, "API_KEY")
    assert api.restart_space(space).stage == "NO_APP_FILE" and api.pause_space(space).stage == "PAUSED"


def test_a_new_hub_leaves_the_children_of_a_live_hub_alone(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"], start_new_session=True)
    hub = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])  # stands in for a live hub
    try:
        start, hub_start = process_start(child.pid), process_start(hub.pid)
        (data / "spaces-pids.json").write_text(json.dumps({"team/app": {"pid": child.pid, "start": start,
                                                                        "hub": hub.pid, "hub_start": hub_start}}))
        with localhub.start_background(data):
            assert alive(child.pid)
    finally:
        for process in (child, hub):
            process.kill()
            process.wait()
