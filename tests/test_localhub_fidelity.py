"""The local hub answers like the real Hub, or refuses clearly (bench/hub_fidelity.py measures the rest)."""
import httpx
import pytest
from huggingface_hub import CommitOperationAdd, CommitOperationDelete, HfApi
from huggingface_hub.errors import (
    BadRequestError,
    EntryNotFoundError,
    HfHubHTTPError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)

from tests.fixtures.hub import TEST_TOKEN


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


def test_create_pr_commits_to_a_new_pr_ref_and_never_to_main(api, unique_repo_id):
    api.create_repo(unique_repo_id)
    api.create_tag(unique_repo_id, tag="v1")
    main_before = api.list_repo_commits(unique_repo_id)
    info = api.create_commit(unique_repo_id, [CommitOperationAdd("a.txt", b"a")], commit_message="pr", create_pr=True)
    assert info.pr_revision == "refs/pr/1" and info.pr_num == 1
    assert api.list_repo_commits(unique_repo_id) == main_before
    assert api.file_exists(unique_repo_id, "a.txt", revision="refs/pr/1")
    api.upload_file(path_or_fileobj=b"b", path_in_repo="b.txt", repo_id=unique_repo_id, revision="refs/pr/1")
    refs = api.list_repo_refs(unique_repo_id, include_pull_requests=True)
    assert [(pr.ref, pr.target_commit) for pr in refs.pull_requests] == [
        ("refs/pr/1", api.list_repo_commits(unique_repo_id, revision="refs/pr/1")[0].commit_id)]
    with pytest.raises(RevisionNotFoundError):  # like the Hub: a pull request targets a branch
        api.create_commit(unique_repo_id, [CommitOperationAdd("c.txt", b"c")], commit_message="pr", revision="v1",
                          create_pr=True)
    with pytest.raises(EntryNotFoundError):  # a failed commit opens no pull request
        api.create_commit(unique_repo_id, [CommitOperationDelete("missing.txt")], commit_message="pr", create_pr=True)
    assert len(api.list_repo_refs(unique_repo_id, include_pull_requests=True).pull_requests) == 1


@pytest.fixture
def owner(token_hub) -> HfApi:
    return HfApi(endpoint=token_hub.url, token=TEST_TOKEN)


def test_private_repos_are_their_owners_only(owner, token_hub, unique_repo_id):
    anonymous = HfApi(endpoint=token_hub.url, token=False)
    owner.create_repo(unique_repo_id, private=True)
    owner.upload_file(path_or_fileobj=b"secret", path_in_repo="a.txt", repo_id=unique_repo_id)
    assert owner.model_info(unique_repo_id).private is True
    with pytest.raises(RepositoryNotFoundError) as caught:
        anonymous.model_info(unique_repo_id)
    assert caught.value.response.status_code == 401
    assert httpx.get(f"{token_hub.url}/{unique_repo_id}/resolve/main/a.txt").status_code == 401
    assert unique_repo_id not in [m.id for m in anonymous.list_models()]
    assert unique_repo_id not in httpx.get(f"{token_hub.url}/api/localhub/overview").text
    owner.update_repo_settings(unique_repo_id, private=False)
    assert anonymous.model_info(unique_repo_id).private is False
    with pytest.raises(HfHubHTTPError) as refused:
        owner.update_repo_settings(unique_repo_id, gated="auto")
    assert refused.value.response.status_code == 501 and "gated" in str(refused.value)


def test_a_bare_repo_name_is_the_users_like_on_the_hub(api, unique_repo_id):
    name, user = unique_repo_id.split("/")[1], httpx.get(f"{api.endpoint}/api/whoami-v2").json()["name"]
    assert api.create_repo(name).repo_id == f"{user}/{name}"
    api.delete_repo(name)
    assert not api.repo_exists(f"{user}/{name}")
    api.delete_repo(name, missing_ok=True)
    assert not api.repo_exists(name)  # one-segment ids are the Hub's canonical repos: none here
    assert not api.file_exists(name, "config.json")


def test_revisions_short_ids_and_ref_names_like_the_hub(api, unique_repo_id):
    api.create_repo(unique_repo_id)
    sha = api.upload_file(path_or_fileobj=b"x", path_in_repo="x.txt", repo_id=unique_repo_id).oid
    assert api.model_info(unique_repo_id, revision=sha[:7]).sha == sha
    for bad in ("invalid tag", "../../refs", "a..b", "x~1"):
        with pytest.raises(BadRequestError):
            api.create_tag(unique_repo_id, tag=bad)
        with pytest.raises(BadRequestError):
            api.create_branch(unique_repo_id, branch=bad)
    with pytest.raises(RevisionNotFoundError):  # the Hub checks the revision first
        api.create_tag(unique_repo_id, tag="invalid tag", revision="missing")
    with pytest.raises(HfHubHTTPError, match="Reference refs/heads/main already exists"):
        api.create_branch(unique_repo_id, branch="main")


def test_model_card_metadata_is_validated_without_a_token(owner, token_hub, unique_repo_id):
    anonymous = HfApi(endpoint=token_hub.url, token=False)
    anonymous._validate_yaml("---\nlicense: mit\n---\n# card")
    with pytest.raises(ValueError, match="Invalid metadata in README.md"):
        anonymous._validate_yaml("---\nmodel-index: foo\n---\n")
    owner.create_repo(unique_repo_id)
    with pytest.raises(ValueError, match="Invalid metadata"):
        owner.upload_file(path_or_fileobj=b"---\ntags: {a: 1}\n---\n", path_in_repo="README.md",
                          repo_id=unique_repo_id)


def test_errors_name_their_request_and_unoffered_routes_answer_501(api, local_hub, unique_repo_id):
    with pytest.raises(RepositoryNotFoundError, match=r"\(Request ID: Root=[0-9a-f-]+\)"):
        api.model_info(unique_repo_id)
    api.create_repo(unique_repo_id)
    for method, path in (("GET", f"/api/models/{unique_repo_id}/discussions"), ("POST", "/api/collections"),
                         ("GET", f"/api/models/{unique_repo_id}/lfs-files")):
        answer = httpx.request(method, local_hub.url + path, json={})
        assert answer.status_code == 501 and "not implemented by the local hub" in answer.json()["error"]
    assert httpx.delete(f"{local_hub.url}/api/models/{unique_repo_id}/refs").status_code == 405


def test_spaces_readme_gitignore_move_squash_and_expand(api, unique_repo_id, tmp_path):
    api.create_repo(unique_repo_id, repo_type="space", space_sdk="docker")
    assert api.file_exists(unique_repo_id, "README.md", repo_type="space")
    (tmp_path / "keep.txt").write_text("k")
    (tmp_path / "nested").mkdir()
    (tmp_path / "nested" / "skip.bin").write_bytes(b"s")
    (tmp_path / ".gitignore").write_text("nested/*\n")
    api.upload_folder(folder_path=tmp_path, repo_id=unique_repo_id, repo_type="space")
    assert not api.file_exists(unique_repo_id, "nested/skip.bin", repo_type="space")
    moved = unique_repo_id + "-moved"
    api.move_repo(unique_repo_id, moved, repo_type="space")
    assert api.space_info(unique_repo_id).id == moved  # the old id leads to the new one, like the Hub's redirect
    api.super_squash_history(moved, repo_type="space")
    assert len(api.list_repo_commits(moved, repo_type="space")) == 1
    [info] = api.get_paths_info(moved.upper(), ["keep.txt"], repo_type="space", expand=True)  # ids ignore case
    assert info.last_commit.title.startswith("Super-squash")
    assert api.list_repo_commits(moved, repo_type="space", formatted=True)[0].formatted_title
    info = api.space_info(moved, expand=["private", "usedStorage"])  # only what is asked, like the Hub
    stored = sum(f.size for f in api.list_repo_tree(moved, repo_type="space", recursive=True) if hasattr(f, "size"))
    assert (info.private, info.used_storage, info.siblings, info.sha) == (False, stored, None, None)
