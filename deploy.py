"""Promote a decided candidate: one commit, one tag on THAT commit, restart, verify, roll back.

Nothing here decides; it reads the decision record. Nothing is restarted unless the tag
verifiably points at the files just uploaded.
"""
from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Callable

from deployed_api import DeployedAPIError, DeployedModelClient
from hub import HubClient, HubError, SpaceController, TagExists, version_key
from interrupts import JobInterrupted, deferred_signals, interruptible

REVISION_VARIABLE = "MODEL_REVISION"
LIBRARIES = ("torch", "transformers", "datasets", "huggingface_hub", "scikit-learn", "accelerate", "wandb")


class DeployError(RuntimeError):
    """Push, tag, restart or verification failed; the message says what state was left."""


@dataclass
class Release:
    tag: str
    commit: str
    previous: str | None        # the release served before, the rollback target
    serving: str | None = None  # the revision the inference Space reported once it was verified


def version_tag(now: datetime | None = None) -> str:
    return (now or datetime.now(timezone.utc)).strftime("v%Y%m%d_%H%M%S")


def project_commit() -> str:
    if os.environ.get("GIT_COMMIT"):
        return os.environ["GIT_COMMIT"]
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True,
                              text=True, timeout=10, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def library_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in LIBRARIES:
        try:
            versions[name] = importlib_metadata.version(name)
        except importlib_metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def build_metadata(cfg, version: str, data_report: dict, comparison: dict, decision: dict,
                   train_metrics: dict) -> dict:
    return {
        "version": version,
        "label": cfg.label,
        "labels": cfg.labels,
        "base_model": cfg.base_model,
        "dataset": {"repo": cfg.dataset_repo, "revision": data_report.get("revision"),
                    "commit": data_report.get("commit")},
        "data_report": data_report,
        "training": train_metrics,
        "comparison": comparison,
        "decision": decision,
        "config": cfg.dump(),
        "libraries": library_versions(),
        "project_commit": project_commit(),
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def model_card(metadata: dict) -> str:
    comparison, decision = metadata["comparison"], metadata["decision"]
    candidate, deployed = comparison["candidate"], comparison.get("deployed") or {}
    rows = [("macro-F1", "macro_f1"), ("weighted-F1", "weighted_f1"), ("accuracy", "accuracy")]
    table = "\n".join(
        f"| {name} | {candidate[key]:.4f} | {deployed[key]:.4f} |" if deployed else
        f"| {name} | {candidate[key]:.4f} | - |" for name, key in rows)
    per_class = "\n".join(
        f"| {label} | {f1:.4f} | " + (f"{deployed['per_class_f1'][label]:.4f} |" if deployed else "- |")
        for label, f1 in candidate["per_class_f1"].items())
    ci = comparison.get("delta_f1_ci")
    delta = "first deploy (no model was deployed)" if comparison.get("delta_f1") is None else (
        f"{comparison['delta_f1']:+.4f} (95% paired bootstrap CI {ci[0]:+.4f} .. {ci[1]:+.4f})")
    return f"""---
base_model: {metadata['base_model']}
pipeline_tag: text-classification
tags: [retrainspace, {metadata['label']}]
---

# Grievance {metadata['label']} classifier {metadata['version']}

Fine-tuned from `{metadata['base_model']}` with focal loss by retrainspace on dataset
`{metadata['dataset']['repo']}` at `{metadata['dataset']['revision']}` (commit `{metadata['dataset']['commit']}`).

## Candidate vs deployed on the same {comparison['n_samples']} stratified test samples

| metric | this model | previously deployed |
|---|---|---|
{table}

| class F1 | this model | previously deployed |
|---|---|---|
{per_class}

ΔF1 (macro): {delta}

## Decision

{decision['outcome']}: {decision['rule']} — {'; '.join(decision['reasons'])}
"""


def release_folder(model_dir: Path, out_dir: Path, metadata: dict, extra_files: list[Path]) -> Path:
    """Weights, tokenizer, metadata.json, model card and plots in one folder: one commit."""
    if out_dir.exists():
        shutil.rmtree(out_dir)
    shutil.copytree(model_dir, out_dir, ignore=shutil.ignore_patterns("checkpoint-*", "training_args.bin"))
    (out_dir / "metadata.json").write_text(json.dumps(metadata, indent=2, ensure_ascii=False))
    (out_dir / "README.md").write_text(model_card(metadata), encoding="utf-8")
    for path in extra_files:
        shutil.copy(path, out_dir / path.name)
    return out_dir


def push_and_tag(hub: HubClient, repo_id: str, folder: Path, tag: str) -> tuple[str, str]:
    """Upload the folder as ONE commit, tag that commit (suffix on a clash, never move a tag),
    and verify the tag resolves to it with every file. Returns (tag, commit)."""
    hub.ensure_repo(repo_id)
    commit = hub.upload_folder(repo_id, folder, message=f"retrainspace: release {tag}")
    for candidate in [tag] + [f"{tag}_{n}" for n in range(1, 10)]:
        try:
            hub.create_tag(repo_id, candidate, commit, message=f"retrainspace release {candidate}")
            break
        except TagExists:
            continue
    else:
        raise DeployError(f"tags {tag} .. {tag}_9 all exist on {repo_id}; commit {commit} left untagged")
    verify_tag(hub, repo_id, candidate, commit, folder)
    return candidate, commit


def verify_tag(hub: HubClient, repo_id: str, tag: str, commit: str, folder: Path) -> None:
    resolved = hub.resolve_revision(repo_id, tag)
    if resolved != commit:
        raise DeployError(f"tag {tag} on {repo_id} resolves to {resolved}, not the uploaded commit {commit}")
    expected = {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}
    missing = expected - set(hub.list_files(repo_id, tag))
    if missing:
        raise DeployError(f"tag {tag} on {repo_id} lacks uploaded files: {sorted(missing)[:5]}")


def promote(hub: HubClient, cfg, folder: Path, version: str, previous: str | None,
            on_tagged: Callable[[Release], None] = lambda release: None, serve=None) -> Release:
    """Push and tag the release folder, then make the inference Space serve it and verify; if it
    never serves, the Space goes back to `previous` and DeployError says so. `on_tagged` hears of
    the tag before the restart, so a failed restart still names what was pushed. `serve(space, cfg,
    tag, previous)` puts the tag in front of users (default: `restart_with_rollback`; a canary:
    `canary.start_canary`) and returns the verified /health.

    A SIGTERM/SIGINT is held during push + tag and during pin + restart (+ rollback), then raised:
    nothing is left half-pushed or half-pinned. One landing between the two sections leaves a
    complete tagged release that was never served; MODEL_REVISION still pins the served one. One
    landing while the Space is being waited for (up to SERVING_TIMEOUT_S, far beyond the platform's
    grace period) pins `previous` again and restarts the Space at once, without waiting for it."""
    with deferred_signals():
        tag, commit = push_and_tag(hub, cfg.model_repo, folder, version)
        release = Release(tag, commit, previous)
        on_tagged(release)
    with deferred_signals():
        health = (serve or restart_with_rollback)(SpaceController(hub, cfg.inference_space), cfg, tag, previous)
    release.serving = health.get("revision")
    return release


def served_release(space: SpaceController, health_revision: str | None) -> str | None:
    """What the inference Space served before this run, the rollback target: its MODEL_REVISION,
    else the revision its /health reported (None before the first deploy). Never merely the
    newest tag: a run that crashed after tagging leaves a tag that was never served."""
    try:
        pinned = space.state().variables.get(REVISION_VARIABLE)
    except HubError:  # no Space (API_ENDPOINT only): /health is all there is
        pinned = None
    return pinned or health_revision


def unserved_tags(hub: HubClient, repo_id: str, served: str | None) -> list[str]:
    """Version tags newer than the served one: left by runs that crashed or were interrupted
    between tagging and serving, or whose release was rolled back."""
    served_key = version_key(served) if served else None
    if served_key is None:
        return []
    return [tag for tag in version_tags(hub, repo_id) if version_key(tag) > served_key]


def previously_served(hub: HubClient, repo_id: str, current: str | None, tags: list[str]) -> str | None:
    """The version served before `current`: the one its release replaced (its metadata.json names
    the deployed revision it was compared with), else the newest version tag older than it."""
    if current is None:
        return None
    try:
        metadata = json.loads(hub.download_file(repo_id, "metadata.json", current).read_text())
        replaced = (metadata.get("comparison") or {}).get("deployed_revision")
    except (HubError, ValueError, AttributeError):
        replaced = None
    if replaced in tags and replaced != current:
        return replaced
    current_key = version_key(current)
    older = [tag for tag in tags if current_key and version_key(tag) < current_key]
    return older[-1] if older else None


def version_tags(hub: HubClient, repo_id: str) -> list[str]:
    """Release tags, oldest first, by version rather than by name (a clash suffix _10 after _9)."""
    return sorted((t for t in hub.list_tags(repo_id) if version_key(t)), key=version_key)


def serve_revision(space: SpaceController, cfg, revision: str) -> dict:
    """Pin the Space to `revision`, restart it and wait until /health serves it. A signal cuts
    the wait short (interrupts.interruptible)."""
    space.set_variable(REVISION_VARIABLE, revision)
    return restart_until(space, cfg, lambda health: health.get("revision") == revision, f"serve {revision}")


def restart_until(space: SpaceController, cfg, serving: Callable[[dict], bool], what: str) -> dict:
    """Restart the Space and wait until its /health is ok and `serving(health)` holds (which may
    raise DeployError to stop waiting); returns that /health. A signal cuts the wait short
    (interrupts.interruptible)."""
    space.restart()
    with interruptible():
        return wait_until_serving(space, cfg, serving, what)


def wait_until_serving(space: SpaceController, cfg, serving: Callable[[dict], bool], what: str) -> dict:
    state = space.wait_until("RUNNING", timeout=cfg.serving_timeout_s)
    url = cfg.api_endpoint or state.url
    if not url:
        raise DeployError(f"Space {space.space_id} runs but reports no URL; set API_ENDPOINT")
    with DeployedModelClient.from_config(cfg, url) as client:
        return wait_for_health(client, serving, what, cfg.serving_timeout_s)


def wait_for_health(client: DeployedModelClient, serving: Callable[[dict], bool], what: str, timeout: float,
                    poll: float = 2.0) -> dict:
    deadline = time.monotonic() + timeout
    seen = None
    while time.monotonic() < deadline:
        try:
            health = client.health()
            seen = health
            if health.get("status") == "ok" and serving(health):
                return health
            if health.get("status") == "error":
                break
        except DeployedAPIError:
            pass
        time.sleep(poll)
    raise DeployError(f"the inference Space did not {what} within {timeout:.0f}s (last /health: {seen})")


def restart_with_rollback(space: SpaceController, cfg, new_tag: str, previous_tag: str | None) -> dict:
    """Serve new_tag; if it never serves, go back to previous_tag and fail loudly."""
    rollback = None if previous_tag is None else (lambda: serve_revision(space, cfg, previous_tag))
    undone = (f"rolled back: the Space serves {previous_tag} again" if previous_tag is not None
              else "no previous version to roll back to")
    return wait_or_undo(lambda: serve_revision(space, cfg, new_tag), f"{new_tag} to serve",
                        undo_now=lambda: pin_back(space, new_tag, previous_tag), undo=rollback,
                        undone=undone, undo_name=f"rollback to {previous_tag}")


def wait_or_undo(wait: Callable[[], dict], waiting_for: str, undo_now: Callable[[], str],
                 undo: Callable[[], object] | None, undone: str, undo_name: str) -> dict:
    """wait(); when it fails, undo() and raise DeployError saying `undone` (or that the undo failed too).
    A signal gets undo_now() instead: the platform kills this job in seconds, no time to verify."""
    try:
        return wait()
    except JobInterrupted as interrupted:
        raise interrupted_waiting(interrupted, waiting_for, undo_now()) from None
    except (DeployError, HubError) as error:
        if undo is not None:
            try:
                undo()
            except (DeployError, HubError) as undo_error:
                raise DeployError(f"{error}; {undo_name} ALSO failed: {undo_error}") from error
        raise DeployError(f"{error}; {undone}") from error


def interrupted_waiting(interrupted: JobInterrupted, what: str, undone: str) -> JobInterrupted:
    """The interruption to raise when a signal cut the wait for `what` short; `undone` says what was
    put back meanwhile (without waiting), for the summary."""
    return JobInterrupted(interrupted.signum, DeployError(f"interrupted waiting for {what}: {undone}"))


def pin_back(space: SpaceController, new_tag: str, previous_tag: str | None) -> str:
    """Pin the version served before and restart the Space, without waiting for it to serve;
    returns what was done, for the summary."""
    if previous_tag is None:
        return f"{new_tag} stays pinned: no version was served before it"
    try:
        space.set_variable(REVISION_VARIABLE, previous_tag)
        space.restart()
    except HubError as error:
        return f"pinning {previous_tag} back FAILED ({error}); {REVISION_VARIABLE} may still name {new_tag}"
    return f"pinned back to {previous_tag} and restarted the Space (not waited for)"
