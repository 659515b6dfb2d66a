"""The local hub answers like the real Hub, or refuses clearly (bench/hub_fidelity.py measures the rest)."""
import pytest
from huggingface_hub import CommitOperationAdd, HfApi
from huggingface_hub.errors import HfHubHTTPError


@pytest.fixture
def api(local_hub) -> HfApi:
    return HfApi(endpoint=local_hub.url)


def test_small_files_matching_the_default_gitattributes_go_through_lfs(api, unique_repo_id):
    api.create_repo(unique_repo_id)
    api.upload_file(path_or_fileobj=b"small text", path_in_repo="weights.bin", repo_id=unique_repo_id)
    api.upload_file(path_or_fileobj=b"plain", path_in_repo="notes.txt", repo_id=unique_repo_id)
    infos = {i.path: i for i in api.get_paths_info(unique_repo_id, ["weights.bin", "notes.txt"])}
    assert infos["weights.bin"].lfs is not None and infos["weights.bin"].lfs.size == 10
    assert infos["notes.txt"].lfs is None


def test_a_repos_own_gitattributes_decides_lfs(api, unique_repo_id):
    api.create_repo(unique_repo_id)
    api.upload_file(path_or_fileobj=b"*.txt filter=lfs diff=lfs merge=lfs -text\n",
                    path_in_repo=".gitattributes", repo_id=unique_repo_id)
    api.upload_file(path_or_fileobj=b"plain", path_in_repo="notes.txt", repo_id=unique_repo_id)
    api.upload_file(path_or_fileobj=b"small", path_in_repo="weights.bin", repo_id=unique_repo_id)
    infos = {i.path: i for i in api.get_paths_info(unique_repo_id, ["weights.bin", "notes.txt"])}
    assert infos["notes.txt"].lfs is not None
    assert infos["weights.bin"].lfs is None


def test_create_pr_is_refused_not_committed_to_main(api, unique_repo_id):
    api.create_repo(unique_repo_id)
    before = api.list_repo_commits(unique_repo_id)
    with pytest.raises(HfHubHTTPError) as caught:
        api.create_commit(unique_repo_id, [CommitOperationAdd("a.txt", b"a")], commit_message="pr",
                          create_pr=True)
    assert caught.value.response.status_code == 501
    assert "create_pr" in str(caught.value)
    assert api.list_repo_commits(unique_repo_id) == before


def test_private_repos_are_refused_not_created_public(api, unique_repo_id):
    with pytest.raises(HfHubHTTPError) as caught:
        api.create_repo(unique_repo_id, private=True)
    assert caught.value.response.status_code == 501
    assert "private" in str(caught.value)
    assert not api.repo_exists(unique_repo_id)
