"""How much of huggingface_hub's own test suite passes against the local hub.

Downloads the huggingface_hub sdist at the version pinned in requirements.txt (PyPI only: its
tests/ ship in the sdist, but not their conftest.py, so one is generated here), starts a fresh
local hub with a token on a free port, runs the in-scope tests against it and prints
passed/failed per feature group and the overall ratio.

    python bench/hub_fidelity.py [--keep DIR] [--timeout-per-test 60] [-k EXPR]
"""
import argparse
import json
import os
import subprocess
import sys
import tarfile
import tempfile
import urllib.request
import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

TOKEN = "hf_HubCITokenXXXXXXXXXXXXXXXXXXXXX"  # the token their tests send (testing_constants.TOKEN)

# feature group -> test node ids (file or file::Class) that exercise Hub features the local hub claims.
IN_SCOPE = {
    "repos": ["test_hf_api.py::TestHfApiEndpoints", "test_hf_api.py::TestHfApiRepoFileExists",
              "test_hf_api.py::TestHfApiPrivate", "test_hf_api.py::TestRepoUrl",
              "test_hf_api.py::TestHfApiPublicStaging"],
    "commits/files": ["test_hf_api.py::TestCommitApi", "test_hf_api.py::TestHfApiUploadEmptyFile",
                      "test_hf_api.py::TestHfApiDeleteFolder", "test_hf_api.py::TestHfApiDeleteFiles",
                      "test_hf_api.py::TestHfApiListRepoTree", "test_hf_api.py::TestListGitCommits",
                      "test_hf_api.py::TestSquashHistory", "test_hf_api.py::TestHfApiVerifyChecksums"],
    "refs/tags/branches": ["test_hf_api.py::TestHfApiTagEndpoint", "test_hf_api.py::TestHfApiBranchEndpoint",
                           "test_hf_api.py::TestListGitRefs"],
    "lfs": ["test_hf_api.py::TestHfLargefiles", "test_hf_api.py::TestListAndPermanentlyDeleteLFSFiles",
            "test_lfs.py"],
    "download": ["test_file_download.py"],
    "hf_file_system": ["test_hf_file_system.py"],
    "repo cards": ["test_repocard.py"],
    "spaces": ["test_hf_api.py::TestSpaceAPIProduction"],
}
# Left out on purpose (the local hub does not offer these; they answer 501):
OUT_OF_SCOPE = {
    "TestHfApiDiscussions, test_cli_discussions.py": "discussions/PRs as threads",
    "TestWebhookApi": "webhooks",
    "TestCollectionAPI": "collections",
    "TestAccessRequestAPI, TestAccessRequestHiddenPII": "gated repos",
    "TestUserApi, TestActivityApi (likes), TestPaperApi": "users, orgs, likes, papers",
    "TestHfApiPublicProduction, api_prod tests": "need the real huggingface.co",
    "test_inference_*.py, test_jobs_api.py, test_buckets*.py": "inference, jobs, buckets, billing",
}

CONFTEST = '''
import os
from unittest import mock
import pytest
from huggingface_hub import HfApi
from . import testing_constants
from .testing_utils import repo_name

testing_constants.ENDPOINT_STAGING = os.environ["HF_ENDPOINT"]
testing_constants.USER = os.environ["FIDELITY_USER"]


class RepoFactory:
    def __init__(self, api):
        self.api, self.made = api, []

    def __call__(self, repo_id=None, **kwargs):
        url = self.api.create_repo(repo_id or repo_name(), **kwargs)
        self.made.append((url.repo_id, kwargs.get("repo_type")))
        return url


@pytest.fixture
def api():
    return HfApi(endpoint=os.environ["HF_ENDPOINT"], token=testing_constants.TOKEN)


class _Patcher:  # the part of pytest-mock's `mocker` their tests use, so pytest-mock is not needed
    def __init__(self):
        self.started = []

    def _start(self, patcher):
        self.started.append(patcher)
        return patcher.start()

    def __call__(self, *args, **kwargs):
        return self._start(mock.patch(*args, **kwargs))

    def object(self, *args, **kwargs):
        return self._start(mock.patch.object(*args, **kwargs))

    def dict(self, *args, **kwargs):
        return self._start(mock.patch.dict(*args, **kwargs))


class _Mocker:
    MagicMock, Mock, ANY, call = mock.MagicMock, mock.Mock, mock.ANY, mock.call

    def __init__(self):
        self.patch = _Patcher()

    def spy(self, obj, name):
        return self.patch.object(obj, name, side_effect=getattr(obj, name), autospec=True)


@pytest.fixture
def mocker():
    m = _Mocker()
    yield m
    for patcher in reversed(m.patch.started):
        patcher.stop()


@pytest.fixture
def repo_factory(api):
    factory = RepoFactory(api)
    yield factory
    for repo_id, repo_type in factory.made:
        try:
            api.delete_repo(repo_id, repo_type=repo_type, missing_ok=True)
        except Exception:
            pass
'''


def pinned_version() -> str:
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        if line.strip().lower().startswith("huggingface_hub=="):
            return line.split("==", 1)[1].strip()
    raise SystemExit("requirements.txt pins no huggingface_hub==VERSION; pin one first")


def fetch_tests(version: str, workdir: Path) -> Path:
    print(f"downloading huggingface_hub=={version} sdist from PyPI...", flush=True)
    subprocess.run([sys.executable, "-m", "pip", "download", f"huggingface_hub=={version}",
                    "--no-binary", ":all:", "--no-deps", "-q", "-d", str(workdir)], check=True)
    sdist = next(workdir.glob("huggingface_hub-*.tar.gz"))
    with tarfile.open(sdist) as tar:
        tar.extractall(workdir, filter="data")
    tests = workdir / f"huggingface_hub-{version}" / "tests"
    if not tests.is_dir():
        raise SystemExit(f"{sdist.name} has no tests/ folder: cannot measure fidelity")
    (tests / "__init__.py").touch()
    (tests / "conftest.py").write_text(CONFTEST)
    return tests


def run_tests(tests: Path, url: str, user: str, timeout: int, keyword: str | None) -> Path:
    report = tests.parent / "report.xml"
    ids = [node for nodes in IN_SCOPE.values() for node in nodes]
    env = {**os.environ, "HF_ENDPOINT": url, "FIDELITY_USER": user,
           "HF_HUB_DISABLE_XET": "1", "HF_TOKEN": "", "HF_HOME": str(tests.parent / "hf_home"),
           "HF_HUB_DISABLE_TELEMETRY": "1"}
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-o", "addopts=",
           f"--timeout={timeout}", f"--junitxml={report}", "-m", "not production and not xet",
           *(["-k", keyword] if keyword else []), *[f"tests/{node}" for node in ids]]
    print(f"running {len(ids)} in-scope test groups against {url} ...", flush=True)
    subprocess.run(cmd, cwd=tests.parent, env=env)
    return report


def group_of(classname: str, file: str) -> str:
    for group, nodes in IN_SCOPE.items():
        for node in nodes:
            node_file, _, node_class = node.partition("::")
            if node_file.removesuffix(".py") in classname and (not node_class or node_class in classname):
                return group
    return "other"


def summarize(report: Path) -> float:
    passed, failed = Counter(), Counter()
    for case in ET.parse(report).iter("testcase"):
        if case.find("skipped") is not None:
            continue
        group = group_of(case.get("classname", ""), case.get("file", ""))
        bad = case.find("failure") is not None or case.find("error") is not None
        (failed if bad else passed)[group] += 1
    print(f"\n{'group':<22}{'passed':>8}{'failed':>8}{'ratio':>8}")
    for group in [*IN_SCOPE, "other"]:
        total = passed[group] + failed[group]
        if total:
            print(f"{group:<22}{passed[group]:>8}{failed[group]:>8}{passed[group] / total:>8.0%}")
    total_pass, total = sum(passed.values()), sum(passed.values()) + sum(failed.values())
    ratio = total_pass / total if total else 0.0
    print(f"{'all in scope':<22}{total_pass:>8}{total - total_pass:>8}{ratio:>8.0%}")
    return ratio


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--keep", help="work in this folder and keep it (default: a temp folder, removed)")
    parser.add_argument("--timeout-per-test", type=int, default=60, help="seconds before one test counts as failed")
    parser.add_argument("-k", dest="keyword", help="pytest -k expression to run a subset")
    args = parser.parse_args()
    import localhub

    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(args.keep or tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        tests = fetch_tests(pinned_version(), workdir)
        hub = localhub.start_background(workdir / "hub-data", port=0, token=TOKEN)
        whoami = urllib.request.Request(f"{hub.url}/api/whoami-v2", headers={"authorization": f"Bearer {TOKEN}"})
        user = json.load(urllib.request.urlopen(whoami))["name"]
        try:
            report = run_tests(tests, hub.url, user, args.timeout_per_test, args.keyword)
        finally:
            hub.stop()
        summarize(report)


if __name__ == "__main__":
    main()
