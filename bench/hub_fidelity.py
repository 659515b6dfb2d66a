"""How much of huggingface_hub's own test suite passes against the local hub.

Downloads the huggingface_hub sdist at the version pinned in requirements.txt (PyPI only: its
tests/ ship in the sdist, but not their conftest.py, so one is generated here), starts a fresh
local hub with a token on a free port, runs the in-scope tests against it and prints
passed/failed/skipped per feature group and the overall pass rate.

    python bench/hub_fidelity.py [--keep DIR] [--group NAME] [-k EXPR] [--min-pass-rate 0.9]

Exit status: 0; 1 when the pass rate is below --min-pass-rate (default 0: report only); other
non-zero statuses when nothing could be measured (no sdist, pytest wrote no report).
Tests that need what a one-user local hub cannot have (a second user, orgs, files the sdist
does not ship) are skipped and counted apart; the Spaces tests (recorded against production
upstream) run against a second, open local hub.
"""
import argparse
import json
import os
import shutil
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
import inspect
import os
from unittest import mock
import pytest
from huggingface_hub import HfApi
from . import testing_constants
from .testing_utils import repo_name

testing_constants.ENDPOINT_STAGING = os.environ["HF_ENDPOINT"]
testing_constants.USER = os.environ["FIDELITY_USER"]
testing_constants.FULL_NAME = os.environ["FIDELITY_FULL_NAME"]
if os.environ.get("FIDELITY_PRODUCTION_ENDPOINT"):  # the Spaces tests talk to "production"
    testing_constants.ENDPOINT_PRODUCTION = os.environ["FIDELITY_PRODUCTION_ENDPOINT"]

# A test whose source names one of these needs what the local hub does not have (see OUT_OF_SCOPE).
NEEDS = {"OTHER_TOKEN": "a second user", "ENTERPRISE_": "an enterprise org", "valid_org_hub": "an org",
         "SAMPLE_CARDS_DIR": "tests/fixtures/cards, which the sdist does not ship (no hub call)",
         "victor/static-space": "a Space that exists on huggingface.co"}


def pytest_collection_modifyitems(items):
    for item in items:
        source = inspect.getsource(item.function) if hasattr(item, "function") else ""
        for name, why in NEEDS.items():
            if name in source:
                item.add_marker(pytest.mark.skip(reason=f"out of scope: needs {why}"))


class RepoFactory:
    def __init__(self, api):
        self.api, self.made = api, []

    def __call__(self, repo_type=None, *, repo_id=None, **kwargs):
        url = self.api.create_repo(repo_id or repo_name(), repo_type=repo_type, **kwargs)
        self.made.append((url.repo_id, repo_type))
        return url


@pytest.fixture(scope="session")
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
    sdist = workdir / f"huggingface_hub-{version}.tar.gz"
    if not sdist.exists():  # a --keep folder keeps it for the next run
        print(f"downloading huggingface_hub=={version} sdist from PyPI...", flush=True)
        subprocess.run([sys.executable, "-m", "pip", "download", f"huggingface_hub=={version}",
                        "--no-binary", ":all:", "--no-deps", "-q", "-d", str(workdir)], check=True)
    with tarfile.open(sdist) as tar:
        tar.extractall(workdir, filter="data")
    tests = workdir / f"huggingface_hub-{version}" / "tests"
    if not tests.is_dir():
        raise SystemExit(f"{sdist.name} has no tests/ folder: cannot measure fidelity")
    (tests / "__init__.py").touch()
    (tests / "conftest.py").write_text(CONFTEST)
    return tests


def run_tests(tests: Path, hubs: dict, groups: list[str], timeout: int, keyword: str | None) -> list[Path]:
    """One pytest run per hub: the Spaces tests are production tests (their own fake token, the
    `production` marker), so they run apart, against an open hub standing in for huggingface.co."""
    runs = [("staging", [g for g in groups if g != "spaces"], "not production and not xet"),
            ("production", [g for g in groups if g == "spaces"], "not xet")]
    reports = []
    for name, run_groups, marker in runs:
        ids = [node for group in run_groups for node in IN_SCOPE[group]]
        if not ids:
            continue
        hub = hubs[name]
        report = tests.parent / f"report-{name}.xml"
        env = {**os.environ, "HF_ENDPOINT": hubs["staging"]["url"], "FIDELITY_USER": hub["user"]["name"],
               "FIDELITY_FULL_NAME": hub["user"]["fullname"], "FIDELITY_PRODUCTION_ENDPOINT": hubs["production"]["url"],
               "HF_HUB_DISABLE_XET": "1", "HF_TOKEN": "", "HF_HOME": str(tests.parent / "hf_home"),
               "HF_HUB_DISABLE_TELEMETRY": "1"}
        cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-o", "addopts=",
               f"--timeout={timeout}", f"--junitxml={report}", "-m", marker,
               *(["-k", keyword] if keyword else []), *[f"tests/{node}" for node in ids]]
        print(f"running {', '.join(run_groups)} ({len(ids)} test groups) against {hub['url']} ...", flush=True)
        report.unlink(missing_ok=True)  # a --keep folder's old report must not stand in for this run's
        subprocess.run(cmd, cwd=tests.parent, env=env)
        if not report.exists():
            raise SystemExit(f"pytest wrote no {report.name} (see its output above): nothing was measured")
        reports.append(report)
    return reports


def group_of(classname: str) -> str:
    for group, nodes in IN_SCOPE.items():
        for node in nodes:
            node_file, _, node_class = node.partition("::")
            if node_file.removesuffix(".py") in classname and (not node_class or classname.endswith(node_class)):
                return group
    return "other"


def summarize(reports: list[Path]) -> float:
    """Print passed/failed/skipped per group; return the overall pass rate (skipped tests left out)."""
    passed, failed, skipped = Counter(), Counter(), Counter()
    for report in reports:
        for case in ET.parse(report).iter("testcase"):
            group = group_of(case.get("classname", ""))
            if case.find("skipped") is not None:
                skipped[group] += 1
            elif case.find("failure") is not None or case.find("error") is not None:
                failed[group] += 1
            else:
                passed[group] += 1
    print(f"\n{'group':<22}{'passed':>8}{'failed':>8}{'ratio':>8}{'skipped':>9}")
    for group in [*IN_SCOPE, "other"]:
        total = passed[group] + failed[group]
        if total or skipped[group]:
            ratio = f"{passed[group] / total:.0%}" if total else "-"
            print(f"{group:<22}{passed[group]:>8}{failed[group]:>8}{ratio:>8}{skipped[group]:>9}")
    total_pass, total = sum(passed.values()), sum(passed.values()) + sum(failed.values())
    ratio = total_pass / total if total else 0.0
    print(f"{'all in scope':<22}{total_pass:>8}{total - total_pass:>8}{ratio:>8.1%}{sum(skipped.values()):>9}")
    return ratio


def start_hub(data_dir: Path, token: str | None):
    import localhub

    hub = localhub.start_background(data_dir, port=0, token=token)
    whoami = urllib.request.Request(f"{hub.url}/api/whoami-v2",
                                    headers={"authorization": f"Bearer {token}"} if token else {})
    return hub, {"url": hub.url, "user": json.load(urllib.request.urlopen(whoami))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--keep", help="work in this folder and keep it (default: a temp folder, removed)")
    parser.add_argument("--timeout-per-test", type=int, default=60, help="seconds before one test counts as failed")
    parser.add_argument("-k", dest="keyword", help="pytest -k expression to run a subset")
    parser.add_argument("--group", action="append", choices=list(IN_SCOPE),
                        help="run only this feature group (repeatable; default: all)")
    parser.add_argument("--min-pass-rate", type=float, default=0.0,
                        help="exit 1 when the overall pass rate is below this fraction (e.g. 0.9); default 0: report only")
    args = parser.parse_args()
    if not 0.0 <= args.min_pass_rate <= 1.0:
        parser.error(f"--min-pass-rate must be a fraction between 0 and 1, got {args.min_pass_rate}")

    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(args.keep or tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        tests = fetch_tests(pinned_version(), workdir)
        for old in ("hub-data", "hub-data-open"):  # every run starts from empty hubs
            shutil.rmtree(workdir / old, ignore_errors=True)
        staging, staging_info = start_hub(workdir / "hub-data", TOKEN)
        production, production_info = start_hub(workdir / "hub-data-open", None)
        try:
            reports = run_tests(tests, {"staging": staging_info, "production": production_info},
                                args.group or list(IN_SCOPE), args.timeout_per_test, args.keyword)
        finally:
            staging.stop()
            production.stop()
        ratio = summarize(reports)
    if ratio < args.min_pass_rate:
        print(f"pass rate {ratio:.1%} is below --min-pass-rate {args.min_pass_rate:.0%}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
