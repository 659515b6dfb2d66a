"""Every bad input raises the adapter's clear exception, naming the repo/revision and the fix."""
import pytest

from hub import (
    AuthError,
    EntryNotFound,
    HubClient,
    HubError,
    RepoNotFound,
    RevisionNotFound,
    SpaceController,
    SpaceError,
    SpaceNotFound,
    TagExists,
)
from load_dataset import DatasetValidationError, download_splits
from tests.fixtures.hub import TEST_TOKEN


def test_unknown_repo(hub_client):
    with pytest.raises(RepoNotFound, match=r"model repo 'nobody/missing' not found on http://127\.0\.0\.1:\d+"):
        hub_client.list_tags("nobody/missing")
    with pytest.raises(RepoNotFound, match="dataset repo 'nobody/missing'"):
        hub_client.resolve_revision("nobody/missing", "v1", repo_type="dataset")
    assert hub_client.repo_exists("nobody/missing") is False


def test_malformed_repo_id(hub_client):
    with pytest.raises(RepoNotFound, match=r"invalid repo id 'not a repo//id'.*namespace/name"):
        hub_client.list_files("not a repo//id", "main")


def test_missing_revision(hub_client, unique_repo_id):
    hub_client.ensure_repo(unique_repo_id)
    with pytest.raises(RevisionNotFound, match=rf"revision 'v404' not found in model repo '{unique_repo_id}'"):
        hub_client.resolve_revision(unique_repo_id, "v404")
    with pytest.raises(RevisionNotFound, match="'v404'"):
        hub_client.download_file(unique_repo_id, "config.json", "v404")


def test_missing_file(hub_client, unique_repo_id):
    hub_client.ensure_repo(unique_repo_id)
    missing = rf"'nope.bin' not found in model repo '{unique_repo_id}' at revision 'main'"
    with pytest.raises(EntryNotFound, match=missing):
        hub_client.download_file(unique_repo_id, "nope.bin", "main")


def test_tag_that_exists(hub_client, unique_repo_id):
    hub_client.ensure_repo(unique_repo_id)
    head = hub_client.resolve_revision(unique_repo_id, "main")
    hub_client.create_tag(unique_repo_id, "v1", head)
    with pytest.raises(TagExists, match="tag 'v1' already exists.*never move"):
        hub_client.create_tag(unique_repo_id, "v1", head)


def test_dataset_without_splits(hub_client, unique_repo_id):
    hub_client.ensure_repo(unique_repo_id, "dataset")
    hub_client.upload_file(unique_repo_id, "train.csv", b"text,department,urgency\na,b,NORMAL\n", "train only",
                           repo_type="dataset")
    commit = hub_client.resolve_revision(unique_repo_id, "main", "dataset")
    no_splits = rf"dataset {unique_repo_id}@\w+ has no file for split\(s\) \['validation', 'test'\]"
    with pytest.raises(DatasetValidationError, match=no_splits):
        download_splits(hub_client, unique_repo_id, commit)


def test_wrong_token_is_an_auth_error(token_hub):
    wrong = HubClient(token_hub.url, token="hf_wrong")
    with pytest.raises(AuthError, match="check HF_TOKEN") as caught:
        wrong.ensure_repo("team/anything")
    assert "hf_wrong" not in str(caught.value) and TEST_TOKEN not in str(caught.value)
    with pytest.raises(AuthError, match="check HF_TOKEN"):
        wrong.list_tags("team/anything")


def test_no_token_cannot_write_but_right_token_can(token_hub, unique_repo_id):
    with pytest.raises(AuthError, match="check HF_TOKEN"):
        HubClient(token_hub.url).ensure_repo(unique_repo_id)
    token_hub.client.ensure_repo(unique_repo_id)
    commit = token_hub.client.upload_file(unique_repo_id, "x.bin", b"\0" * 10, "binary goes through LFS")
    assert HubClient(token_hub.url).resolve_revision(unique_repo_id, "main") == commit  # reads stay open


def test_unknown_space(hub_client):
    space = SpaceController(hub_client, "nobody/no-space")
    for action in (space.state, space.restart, space.pause, lambda: space.set_variable("A", "1")):
        with pytest.raises(SpaceNotFound, match="Space 'nobody/no-space' not found.*SPACE_REPO_ID"):
            action()
    assert issubclass(SpaceNotFound, SpaceError) and issubclass(SpaceNotFound, RepoNotFound)


def test_space_with_wrong_token(token_hub, unique_repo_id):
    token_hub.client.ensure_repo(unique_repo_id, "space")
    with pytest.raises(AuthError, match=rf"space repo '{unique_repo_id}'.*check HF_TOKEN"):
        SpaceController(HubClient(token_hub.url, token="hf_wrong"), unique_repo_id).restart()


def test_unreachable_hub():
    with pytest.raises(HubError, match=r"cannot reach the Hub at http://127\.0\.0\.1:9 .*HF_ENDPOINT"):
        HubClient("http://127.0.0.1:9").list_tags("team/model")
