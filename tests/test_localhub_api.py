"""The local hub speaks the Hub protocol: raw headers, persistence, concurrency, datasets, the CLI."""
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pandas as pd
import pytest

import localhub
from configs import load_config
from hub import HubClient
from localhub.spaces import free_port

DATA = Path(__file__).resolve().parents[1] / "data" / "complaints"


def test_resolve_headers_range_and_error_codes(local_hub, hub_client, unique_repo_id):
    hub_client.ensure_repo(unique_repo_id)
    commit = hub_client.upload_file(unique_repo_id, "notes.txt", b"0123456789", "notes")
    url = f"{local_hub.url}/{unique_repo_id}/resolve/main/notes.txt"

    head = httpx.head(url)
    assert head.status_code == 200 and head.headers["x-repo-commit"] == commit
    assert head.headers["content-length"] == "10" and head.headers["etag"].strip('"')
    assert httpx.get(url, headers={"Range": "bytes=2-4"}).content == b"234"

    missing = httpx.get(f"{local_hub.url}/{unique_repo_id}/resolve/main/nope.txt")
    assert (missing.status_code, missing.headers["x-error-code"]) == (404, "EntryNotFound")
    bad_rev = httpx.get(f"{local_hub.url}/{unique_repo_id}/resolve/v9/notes.txt")
    assert (bad_rev.status_code, bad_rev.headers["x-error-code"]) == (404, "RevisionNotFound")
    unicode_missing = httpx.get(f"{local_hub.url}/{unique_repo_id}/resolve/main/उजुरी.csv")
    assert (unicode_missing.status_code, unicode_missing.headers["x-error-code"]) == (404, "EntryNotFound")
    assert "उजुरी.csv" in unicode_missing.json()["error"]
    no_repo = httpx.get(f"{local_hub.url}/api/models/nobody/none")
    assert (no_repo.status_code, no_repo.headers["x-error-code"]) == (404, "RepoNotFound")
    again = httpx.post(f"{local_hub.url}/api/repos/create", json={"name": unique_repo_id, "type": "model"})
    assert again.status_code == 409


def test_runtime_does_not_advertise_xet(local_hub, hub_client, unique_repo_id):
    hub_client.ensure_repo(unique_repo_id)
    hub_client.upload_file(unique_repo_id, "w.bin", b"\0\1" * 10, "binary")
    head = httpx.head(f"{local_hub.url}/{unique_repo_id}/resolve/main/w.bin")
    assert not any("xet" in key.lower() for key in head.headers)


def test_concurrent_commits_all_land(hub_client, unique_repo_id):
    hub_client.ensure_repo(unique_repo_id)

    def upload(i: int) -> str:
        return hub_client.upload_file(unique_repo_id, f"part-{i}.txt", f"part {i}".encode(), f"part {i}")

    with ThreadPoolExecutor(6) as pool:
        commits = list(pool.map(upload, range(6)))
    assert len(set(commits)) == 6
    files = hub_client.list_files(unique_repo_id, "main")
    assert {f"part-{i}.txt" for i in range(6)} <= set(files)
    assert len(hub_client.api.list_repo_commits(unique_repo_id)) == 7  # initial + 6, none lost


def test_data_survives_a_restart(tmp_path):
    big = os.urandom(11 * 1024 * 1024)
    with localhub.start_background(tmp_path / "data") as first:
        client = HubClient(first.url, cache_dir=tmp_path / "cache1")
        client.ensure_repo("team/model")
        commit = client.upload_file("team/model", "weights.bin", big, "weights")
        client.create_tag("team/model", "v1", commit)
        client.ensure_repo("team/app", "space")
        client.space("team/app").set_variable("MODEL_REVISION", "v1")
    with localhub.start_background(tmp_path / "data") as second:
        client = HubClient(second.url, cache_dir=tmp_path / "cache2")
        assert client.list_tags("team/model") == {"v1": commit}
        assert client.download_file("team/model", "weights.bin", "v1").read_bytes() == big
        assert client.space("team/app").state().variables == {"MODEL_REVISION": "v1"}


def test_datasets_load_dataset_by_tag_against_the_hub(local_hub, hub_client, unique_repo_id, tmp_path):
    """Unmodified `datasets.load_dataset(repo_id, revision=tag)`; HF_ENDPOINT must be set before import."""
    hub_client.ensure_repo(unique_repo_id, "dataset")
    folder = tmp_path / "data"
    folder.mkdir()
    for split in ("train", "validation", "test"):
        (folder / f"{split}.csv").write_bytes((DATA / f"{split}.csv").read_bytes())
    commit = hub_client.upload_folder(unique_repo_id, folder, "v1", repo_type="dataset")
    hub_client.create_tag(unique_repo_id, "v1", commit, repo_type="dataset")
    hub_client.api.delete_file("test.csv", repo_id=unique_repo_id, repo_type="dataset")
    code = textwrap.dedent(f"""
        import datasets
        old = datasets.load_dataset({unique_repo_id!r}, revision="v1")
        new = datasets.load_dataset({unique_repo_id!r}, revision="main")
        print(sorted(old), old["test"].num_rows, sorted(new))
    """)
    env = {**os.environ, "HF_ENDPOINT": local_hub.url, "HF_HOME": str(tmp_path / "hf"), "HF_HUB_DISABLE_XET": "1"}
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stderr[-2000:]
    expected_rows = len(pd.read_csv(DATA / "test.csv"))
    assert result.stdout.strip().splitlines()[-1] == f"['test', 'train', 'validation'] {expected_rows} ['train', 'validation']"


def test_ensure_running_spawns_cli_server_once(tmp_path):
    url = f"http://127.0.0.1:{free_port()}"
    data_dir = tmp_path / "hubdata"
    assert not localhub.is_running(url)
    try:
        assert localhub.ensure_running(url, data_dir) == url
        pid = int((data_dir / "server.pid").read_text())
        assert localhub.ensure_running(url, data_dir) == url  # connects, spawns nothing new
        assert int((data_dir / "server.pid").read_text()) == pid
        HubClient(url).ensure_repo("team/model")
        assert (data_dir / "repos" / "models" / "team" / "model" / "refs.json").exists()
    finally:
        if (data_dir / "server.pid").exists():
            os.kill(int((data_dir / "server.pid").read_text()), signal.SIGTERM)
    deadline = time.monotonic() + 15
    while localhub.is_running(url) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not localhub.is_running(url)


def test_ensure_running_refuses_a_remote_url(tmp_path):
    with pytest.raises(localhub.LocalHubError, match="must be http://127.0.0.1:<port>"):
        localhub.ensure_running("https://example.invalid", tmp_path)


def test_from_config_uses_the_embedded_hub(local_hub, monkeypatch):
    monkeypatch.setenv("LOCALHUB_URL", local_hub.url)
    monkeypatch.delenv("HF_ENDPOINT", raising=False)
    cfg = load_config({"label": "urgency"})
    client = HubClient.from_config(cfg)
    assert cfg.embedded and client.endpoint == local_hub.url
    client.ensure_repo(cfg.dataset_repo, "dataset")
    assert client.repo_exists(cfg.dataset_repo, "dataset")


def test_cli_bind_space(local_hub, hub_client, unique_repo_id, tmp_path):
    hub_client.ensure_repo(unique_repo_id, "space")
    result = subprocess.run(
        [sys.executable, "-m", "localhub", "bind-space", unique_repo_id, "--url", local_hub.url, "--no-http",
         "--cwd", str(tmp_path), "--", sys.executable, "-c", "print('hi')"],
        capture_output=True, text=True, timeout=60, cwd=Path(__file__).resolve().parents[1],
    )
    assert result.returncode == 0, result.stderr
    space = hub_client.space(unique_repo_id)
    space.restart()
    assert space.wait_until("STOPPED", timeout=30, poll=0.1).stage == "STOPPED"


def test_client_turns_xet_off_even_when_the_env_does_not(local_hub, tmp_path):
    code = textwrap.dedent(f"""
        import huggingface_hub  # imported before anyone could set HF_HUB_DISABLE_XET
        from hub import HubClient
        client = HubClient({local_hub.url!r}, cache_dir={str(tmp_path)!r})
        client.ensure_repo("xet/off")
        commit = client.upload_file("xet/off", "w.bin", bytes(range(256)) * 4, "binary via LFS")
        print(client.download_file("xet/off", "w.bin", commit).read_bytes() == bytes(range(256)) * 4)
    """)
    env = {k: v for k, v in os.environ.items() if k != "HF_HUB_DISABLE_XET"}
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120,
                            cwd=Path(__file__).resolve().parents[1])
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().splitlines()[-1] == "True"


def test_ensure_running_refuses_a_port_taken_by_something_else(tmp_path):
    import socket

    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        url = f"http://127.0.0.1:{other.getsockname()[1]}"
        with pytest.raises(localhub.LocalHubError, match="taken by something that is not a local hub.*LOCALHUB_URL"):
            localhub.ensure_running(url, tmp_path)


def test_cli_stop_stops_a_detached_hub_and_its_spaces(tmp_path):
    data, url = tmp_path / "data", f"http://127.0.0.1:{free_port()}"
    env = {k: v for k, v in os.environ.items() if k != "LOCALHUB_TOKEN"}
    root = Path(__file__).resolve().parents[1]
    stop = [sys.executable, "-m", "localhub", "stop", "--data-dir", str(data)]
    assert localhub.ensure_running(url, data) == url
    client = HubClient(url, cache_dir=tmp_path / "cache")
    client.ensure_repo("team/app", "space")
    localhub.bind_space(url, "team/app", [sys.executable, "-c", "import time; time.sleep(120)"], serves_http=False)
    client.space("team/app").restart()
    client.space("team/app").wait_until("RUNNING", timeout=30, poll=0.1)
    child = json.loads((data / "spaces-pids.json").read_text())["team/app"]["pid"]

    result = subprocess.run(stop, capture_output=True, text=True, timeout=60, env=env, cwd=root)
    assert result.returncode == 0 and "stopped the local hub" in result.stdout, result.stderr
    assert not localhub.is_running(url)
    deadline = time.monotonic() + 15
    while Path(f"/proc/{child}").exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not Path(f"/proc/{child}").exists(), "the Space outlived its stopped hub"
    again = subprocess.run(stop, capture_output=True, text=True, timeout=60, env=env, cwd=root)
    assert again.returncode != 0 and "no local hub runs on" in again.stderr
