"""Retrain triggers: enough new reviewed reports (or old enough ones, or an admin) publish the
next dataset version and restart the retrain Space.

    python -m feedback.trigger --label urgency            # check once; act when due
    python -m feedback.trigger --label urgency --force    # admin: publish and restart now
    python -m feedback.trigger --label urgency --loop --interval 3600

Due when the reviewed reports not yet in a dataset version number FEEDBACK_THRESHOLD (50), or
when there is at least one and the oldest was reviewed FEEDBACK_MAX_AGE_DAYS (7) ago. Two
triggers at once: one holds the job lock in the feedback database, the other gets
JobAlreadyRunning and does nothing.

Reviewed predictions from the review queue count toward the threshold like reviewed reports: both
are human labels that the next version takes, and an active-learning row is worth at least a report.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import time
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from configs import LABEL_SETS, ConfigError, JobConfig, load_config
from feedback.settings import FeedbackSettings
from feedback.store import FeedbackError, FeedbackStore, JobAlreadyRunning, job_name, utcnow

if TYPE_CHECKING:  # feedback.prepare needs pandas, which the slim inference image leaves out
    from feedback.prepare import PrepareReport

# What publishing a dataset version needs beyond the slim inference image: feedback.prepare reads
# and writes the splits with pandas, parquet ones (Sambodhan's layout) with pyarrow.
PUBLISHING_MODULES = ("pandas", "pyarrow")


class TriggerError(FeedbackError):
    """The trigger published nothing usable or could not restart the retrain Space."""


class PublishingUnavailable(TriggerError):
    """This installation cannot publish dataset versions (the slim inference image)."""


def missing_publishing_modules() -> list[str]:
    def missing(name: str) -> bool:
        try:
            return importlib.util.find_spec(name) is None
        except (ImportError, ValueError):  # an import hook refusing it, or a broken install
            return True
    return [name for name in PUBLISHING_MODULES if missing(name)]


def check_can_publish() -> None:
    missing = missing_publishing_modules()
    if missing:
        raise PublishingUnavailable(
            f"publishing the next dataset version needs {' and '.join(PUBLISHING_MODULES)}; {', '.join(missing)} "
            "not installed here (the slim inference image). Build the inference image with "
            "--build-arg REQUIREMENTS=inference_space/requirements-admin.txt, or run "
            "`python -m feedback.trigger --force` where requirements.txt is installed and FEEDBACK_DB_URL "
            "names this Space's feedback database")


@dataclass(frozen=True)
class DueCheck:
    due: bool
    reason: str
    new_reviewed: int
    oldest_reviewed_at: datetime | None
    next_due_at: datetime | None  # when the age limit makes it due (None: no new reports)


@dataclass(frozen=True)
class TriggerResult:
    outcome: str  # not_due | nothing_to_publish | restarted
    check: DueCheck
    dataset_version: str | None = None
    retrain_space: str | None = None
    data_report: PrepareReport | None = None

    def to_dict(self) -> dict:
        result = asdict(self)
        if result["data_report"]:
            result["data_report"].pop("dropped_rows")
        return json.loads(json.dumps(result, default=str))


def retrain_space_id(cfg: JobConfig) -> str:
    return cfg.retrain_space or f"{cfg.namespace}/grievance-{cfg.label}-retrain"


def check_due(store: FeedbackStore, label: str, settings: FeedbackSettings, now: datetime | None = None) -> DueCheck:
    """Is a retrain due: count threshold reached, or the oldest new report past the age limit?"""
    now = now or utcnow()
    reports = store.list_reviewed_unconsumed(label)
    if not reports:
        return DueCheck(False, "no new reviewed reports", 0, None, None)
    oldest = min(r.reviewed_at for r in reports)
    next_due_at = oldest + timedelta(days=settings.max_age_days)
    if len(reports) >= settings.threshold:
        return DueCheck(True, f"{len(reports)} new reviewed reports >= threshold {settings.threshold}",
                        len(reports), oldest, now)
    if now >= next_due_at:
        return DueCheck(True, f"oldest new reviewed report is older than {settings.max_age_days:g} days",
                        len(reports), oldest, now)
    return DueCheck(False, f"{len(reports)} of {settings.threshold} new reviewed reports", len(reports),
                    oldest, next_due_at)


def wait_for_tag(hub, repo: str, tag: str, timeout: float, poll: float = 0.5) -> str:
    """The commit of `tag` once the Hub lists it (the retrain run must see the new version)."""
    deadline = time.monotonic() + timeout
    while True:
        commit = hub.list_tags(repo, repo_type="dataset").get(tag)
        if commit:
            return commit
        if time.monotonic() > deadline:
            raise TriggerError(f"tag {tag} of dataset {repo} did not appear within {timeout:g}s; "
                               "check the Hub, then run `python -m feedback.trigger --force`")
        time.sleep(poll)


def restart_retrain_space(hub, space_id: str, controller_class=None) -> None:
    if controller_class is None:
        from hub import SpaceController as controller_class
    controller_class(hub, space_id).restart()


def run_trigger(cfg: JobConfig, store: FeedbackStore, hub, settings: FeedbackSettings | None = None,
                force: bool = False, report_dir: Path | None = None, controller_class=None,
                now: datetime | None = None) -> TriggerResult:
    """Check; when due (or forced) publish the next dataset version and restart the retrain Space.

    With `force` and nothing new to publish, the retrain Space restarts on the current version."""
    settings = settings or FeedbackSettings()
    check = check_due(store, cfg.label, settings, now)
    if not (check.due or force):
        return TriggerResult("not_due", check)
    check_can_publish()
    with store.job(job_name(cfg.label), settings.job_lock_ttl_s) as job:
        result = _publish_and_restart(cfg, store, hub, settings, force, report_dir, controller_class, check)
        job.outcome, job.dataset_version = result.outcome, result.dataset_version
        job.detail = "forced by an admin" if force else check.reason
    return result


def _publish_and_restart(cfg, store, hub, settings, force, report_dir, controller_class, check) -> TriggerResult:
    from feedback.prepare import prepare_dataset

    data = prepare_dataset(cfg, store, hub, settings, report_dir)
    version = data.version if data.published else hub.newest_version_tag(cfg.dataset_repo, repo_type="dataset")
    if not data.published and not force:
        return TriggerResult("nothing_to_publish", check, version, data_report=data)
    if version is None:
        raise TriggerError(f"dataset {cfg.dataset_repo} has no version to train on; seed it or add reviewed reports")
    wait_for_tag(hub, cfg.dataset_repo, version, settings.tag_timeout_s)
    space = retrain_space_id(cfg)
    restart_retrain_space(hub, space, controller_class)
    return TriggerResult("restarted", check, version, space, data)


def trigger_status(cfg: JobConfig, store: FeedbackStore, hub, settings: FeedbackSettings | None = None) -> dict:
    """Last dataset version, pending reviews, when the next retrain is due, last trigger outcome."""
    settings = settings or FeedbackSettings()
    check = check_due(store, cfg.label, settings)
    last = store.last_finished_job(job_name(cfg.label))
    running = store.running_job(job_name(cfg.label))
    return {
        "label": cfg.label,
        "last_dataset_version": hub.newest_version_tag(cfg.dataset_repo, repo_type="dataset"),
        "last_feedback_version": store.newest_consumed_version(cfg.label),
        "pending_reviews": store.pending_count(cfg.label),
        "new_reviewed_reports": check.new_reviewed,
        "threshold": settings.threshold,
        "due": check.due,
        "due_reason": check.reason,
        "next_due": check.next_due_at.isoformat() if check.next_due_at else None,
        "running_since": running.started_at.isoformat() if running else None,
        "missing_for_publishing": missing_publishing_modules(),
        "last_job": None if last is None else {
            "outcome": last.outcome, "dataset_version": last.dataset_version,
            "finished_at": last.finished_at.isoformat(), "detail": last.detail,
        },
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Publish the next dataset version and restart the retrain Space when due.")
    parser.add_argument("--label", choices=sorted(LABEL_SETS), help="label to check (default: LABEL)")
    parser.add_argument("--force", action="store_true", help="admin trigger: publish and restart now, due or not")
    parser.add_argument("--loop", action="store_true", help="check every --interval seconds until stopped")
    parser.add_argument("--interval", type=float, default=3600, help="seconds between checks with --loop")
    parser.add_argument("--report-dir", type=Path, default=Path("outputs"), help="where data reports are written")
    args = parser.parse_args(argv)
    from hub import HubClient, HubError

    try:
        cfg = load_config({"label": args.label})
        store, hub = FeedbackStore.from_env(), HubClient.from_config(cfg)
        settings = FeedbackSettings()
    except (ConfigError, FeedbackError, HubError, ValueError) as error:
        print(f"feedback.trigger: {error}", file=sys.stderr)
        return 2
    while True:
        try:
            result = run_trigger(cfg, store, hub, settings, force=args.force, report_dir=args.report_dir)
            print(json.dumps(result.to_dict(), indent=2), flush=True)
            code = 0
        except JobAlreadyRunning as error:
            print(f"feedback.trigger: {error}", file=sys.stderr, flush=True)
            code = 3
        except (FeedbackError, HubError) as error:
            print(f"feedback.trigger failed: {error}", file=sys.stderr, flush=True)
            code = 1
        if not args.loop:
            return code
        args.force = False  # --force acts on the first round only
        time.sleep(args.interval)


if __name__ == "__main__":
    sys.exit(main())
