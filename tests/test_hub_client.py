"""HubClient against a real local hub: versions, tags, downloads by revision, datasets."""
import os
from pathlib import Path

import pandas as pd
import pytest

from hub import HubClient, HubError, RevisionNotFound, TagExists, version_key
from load_dataset import download_splits
from localhub.spaces import port_open

BIG = 11 * 1024 * 1024  # above the 10 MB LFS threshold


def test_tag_keeps_old_bytes_after_main_changes(hub_client, unique_repo_id, tmp_path):
    folder = tmp_path / "model"
    folder.mkdir()
    big = os.urandom(BIG)
    (folder / "weights.bin").write_bytes(big)
    (folder / "config.json").write_text('{"version": 1}')
    hub_client.ensure_repo(unique_repo_id)
    first = hub_client.upload_folder(unique_repo_id, folder, "version 1")
    hub_client.create_tag(unique_repo_id, "v1", first)

    (folder / "weights.bin").write_bytes(os.urandom(BIG))
    (folder / "config.json").write_text('{"version": 2}')
    second = hub_client.upload_folder(unique_repo_id, folder, "version 2")

    assert second != first
    assert hub_client.resolve_revision(unique_repo_id, "v1") == first
    assert hub_client.resolve_revision(unique_repo_id, "main") == second
    assert hub_client.download_file(unique_repo_id, "weights.bin", "v1").read_bytes() == big
    assert hub_client.download_file(unique_repo_id, "config.json", "main").read_text() == '{"version": 2}'
    snapshot = hub_client.download_snapshot(unique_repo_id, "v1", local_dir=tmp_path / "snap")
    assert (snapshot / "weights.bin").read_bytes() == big
    assert (snapshot / "config.json").read_text() == '{"version": 1}'


def test_upload_is_one_commit_and_lists_files(hub_client, unique_repo_id, tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "a.txt").write_text("a")
    (tmp_path / "sub" / "b.txt").write_text("b")
    (tmp_path / "उजुरी नमूना.txt").write_text("नमस्ते")
    hub_client.ensure_repo(unique_repo_id)
    before = hub_client.api.list_repo_commits(unique_repo_id)
    commit = hub_client.upload_folder(unique_repo_id, tmp_path, "two files")
    after = hub_client.api.list_repo_commits(unique_repo_id)
    assert len(after) == len(before) + 1 and after[0].commit_id == commit
    assert hub_client.list_files(unique_repo_id, commit) == [".gitattributes", "a.txt", "sub/b.txt", "उजुरी नमूना.txt"]
    assert hub_client.download_file(unique_repo_id, "उजुरी नमूना.txt", commit).read_text() == "नमस्ते"


def test_existing_tag_is_never_moved(hub_client, unique_repo_id):
    hub_client.ensure_repo(unique_repo_id)
    first = hub_client.upload_file(unique_repo_id, "x.txt", b"1", "one")
    hub_client.create_tag(unique_repo_id, "v1", first)
    second = hub_client.upload_file(unique_repo_id, "x.txt", b"2", "two")
    with pytest.raises(TagExists, match=rf"tag 'v1' already exists in model repo '{unique_repo_id}'"):
        hub_client.create_tag(unique_repo_id, "v1", second)
    assert hub_client.list_tags(unique_repo_id)["v1"] == first


def test_delete_tag_and_branches(hub_client, unique_repo_id):
    hub_client.ensure_repo(unique_repo_id)
    head = hub_client.resolve_revision(unique_repo_id, "main")
    hub_client.create_tag(unique_repo_id, "v1", head)
    hub_client.delete_tag(unique_repo_id, "v1")
    assert "v1" not in hub_client.list_tags(unique_repo_id)
    hub_client.create_branch(unique_repo_id, "staging")
    assert hub_client.list_branches(unique_repo_id)["staging"] == head
    hub_client.delete_branch(unique_repo_id, "staging")
    with pytest.raises(RevisionNotFound, match="'staging'"):
        hub_client.resolve_revision(unique_repo_id, "staging")


@pytest.mark.parametrize(
    "tags, newest",
    [
        (["v1", "v2", "v10", "v9"], "v10"),
        (["v20250101_120000", "v20241231_235959", "v20250101_090000_retry"], "v20250101_120000"),
        (["latest", "release", "v3"], "v3"),
        (["latest"], None),
    ],
)
def test_newest_version_tag_orders_by_version(hub_client, unique_repo_id, tags, newest):
    hub_client.ensure_repo(unique_repo_id)
    head = hub_client.resolve_revision(unique_repo_id, "main")
    for tag in tags:
        hub_client.create_tag(unique_repo_id, tag, head)
    assert hub_client.newest_version_tag(unique_repo_id) == newest


def test_version_key_rejects_impossible_dates():
    assert version_key("v20251399_000000") is None
    assert version_key("v1.0") is None


def test_load_dataset_by_tag_reads_that_version(hub_client, unique_repo_id, tmp_path):
    data = Path(__file__).resolve().parents[1] / "data" / "complaints"
    folder = tmp_path / "v1"
    folder.mkdir()
    for split in ("train", "validation", "test"):
        (folder / f"{split}.csv").write_bytes((data / f"{split}.csv").read_bytes())
    hub_client.ensure_repo(unique_repo_id, "dataset")
    commit = hub_client.upload_folder(unique_repo_id, folder, "v1 data", repo_type="dataset")
    hub_client.create_tag(unique_repo_id, "v1", commit, repo_type="dataset")
    hub_client.upload_file(unique_repo_id, "test.csv", b"text,department,urgency\nx,y,NORMAL\n", "shrink test",
                           repo_type="dataset")

    old, _ = download_splits(hub_client, unique_repo_id, hub_client.resolve_revision(unique_repo_id, "v1", "dataset"))
    new, _ = download_splits(hub_client, unique_repo_id, hub_client.resolve_revision(unique_repo_id, "main", "dataset"))

    assert set(old) == {"train", "validation", "test"}
    assert len(old["test"]) == len(pd.read_csv(data / "test.csv")) > 1
    assert len(new["test"]) == 1
    assert list(old["train"].columns) == ["text", "department", "urgency"]


def test_branch_as_atomic_lock(hub_client, unique_repo_id):
    from hub import BranchExists

    hub_client.ensure_repo(unique_repo_id)
    hub_client.create_branch(unique_repo_id, "lock", exist_ok=False)
    with pytest.raises(BranchExists, match=rf"branch 'lock' already exists in model repo '{unique_repo_id}'"):
        hub_client.create_branch(unique_repo_id, "lock", exist_ok=False)
    hub_client.create_branch(unique_repo_id, "lock")  # exist_ok=True by default


def test_embedded_job_fails_at_once_when_no_local_hub_answers(monkeypatch):
    from configs import JobConfig
    from tests.fixtures.servers import free_port

    url = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setenv("LOCALHUB_URL", url)
    cfg = JobConfig(label="urgency")
    with pytest.raises(HubError, match=r"no local hub answers at .*python -m localhub serve.*LOCALHUB_URL"):
        HubClient.from_config(cfg)
    assert not port_open(int(url.rsplit(":", 1)[1]))  # nothing was started there


def test_embedded_job_uses_a_running_local_hub(local_hub, monkeypatch):
    from configs import JobConfig

    monkeypatch.setenv("LOCALHUB_URL", local_hub.url)
    assert HubClient.from_config(JobConfig(label="urgency")).endpoint == local_hub.url


def test_list_repos_by_type_and_author(hub_client, unique_repo_id):
    namespace = unique_repo_id.replace("test/", "ns-")[:40]
    hub_client.ensure_repo(f"{namespace}/data", "dataset")
    hub_client.ensure_repo(f"{namespace}/model")
    hub_client.ensure_repo(f"{namespace}/app", "space")
    assert hub_client.list_repos("dataset", author=namespace) == [f"{namespace}/data"]
    assert hub_client.list_repos("model", author=namespace) == [f"{namespace}/model"]
    assert hub_client.list_repos("space", author=namespace) == [f"{namespace}/app"]


def test_model_folder_with_card_round_trips_through_a_tag(hub_client, unique_repo_id, tiny_model_dir, tmp_path):
    import shutil

    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    folder = tmp_path / "model"
    shutil.copytree(tiny_model_dir, folder)
    (folder / "README.md").write_text("---\nlicense: mit\n---\n# tiny\n")  # the client validates the card
    hub_client.ensure_repo(unique_repo_id)
    commit = hub_client.upload_folder(unique_repo_id, folder, "tiny model")
    hub_client.create_tag(unique_repo_id, "v20250101_120000", commit)

    snapshot = hub_client.download_snapshot(unique_repo_id, "v20250101_120000")
    model = AutoModelForSequenceClassification.from_pretrained(snapshot)
    tokenizer = AutoTokenizer.from_pretrained(snapshot)
    assert model.num_parameters() > 0 and tokenizer("namaste")["input_ids"]
    tree = hub_client.api.list_repo_tree(unique_repo_id, revision=commit)
    weights = [f for f in tree if f.path.endswith(".safetensors")]
    assert weights and all(f.lfs is not None for f in weights)  # binaries go through LFS like on the Hub
