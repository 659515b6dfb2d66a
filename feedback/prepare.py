"""prepare_dataset: reviewed feedback -> the next dataset version, pushed as ONE tagged commit.

    python -m feedback.prepare --label urgency

Rules (each dropped row is counted, with its reason, in the data report):
- Start from the newest `v*` version of the dataset repo; its rows stay in their splits, so a
  test row never moves into train between versions.
- Take every reviewed correction, and a seeded share (FEEDBACK_CONFIRMED_SHARE) of confirmed
  predictions (reviewed label == predicted label). Every reviewed report is stamped with the new
  version, sampled or not, so none is counted twice by the trigger.
- Reviewed predictions from the review queue are all taken, confirmed or corrected: the Space
  queued them because the model was unsure, so even a confirmed label is a new, informative row.
- Drop: empty, too short, malformed (replacement characters, control characters, no letters),
  exact duplicates (first kept), conflicting labels for the same text (all copies dropped).
- A text already in train with another label: the train row is relabelled (the correction wins).
  A text already in validation or test: dropped ("text_in_heldout_split"); held-out labels change
  only by a human edit of the dataset, and adding it to train would leak the evaluation.
- New rows are grouped by near-duplicate template; a group that touches an existing split joins
  that split; the remaining groups are split per label 80/10/10 (seed 42), held-out counts
  rounded down so a handful of corrections all go to train.
- Refuse to publish when the train split would be under FEEDBACK_MIN_TRAIN_ROWS.
- Idempotent: nothing reviewed and unconsumed -> no new version. The version's
  feedback_report.json lists the consumed report ids, so a run that died after tagging but before
  stamping the reports is finished by the next run instead of publishing twice.
"""
from __future__ import annotations

import argparse
import json
import random
import re
import sys
import tempfile
import unicodedata
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

from configs import LABEL_SETS, ConfigError, JobConfig, load_config, normalize_text
from feedback.groups import group_new_texts
from feedback.settings import FeedbackSettings
from feedback.store import FeedbackError, FeedbackStore, Report, SambodhanSource, job_name
from load_dataset import SPLITS, DatasetError, find_split_files, read_split_file, validate_splits


REPORT_FILE = "feedback_report.json"
COLUMNS = ["text", *LABEL_SETS]


class PrepareError(FeedbackError):
    """The new dataset version cannot be published; nothing was pushed."""


class DatasetTooSmall(PrepareError): ...


@dataclass
class PrepareReport:
    label: str
    base_version: str | None
    version: str | None = None
    commit: str | None = None
    reports_considered: int = 0
    corrections: int = 0
    from_review_queue: int = 0
    confirmed_sampled: int = 0
    confirmed_not_sampled: int = 0
    added: dict[str, int] = field(default_factory=dict)
    relabelled_train_rows: int = 0
    dropped: dict[str, int] = field(default_factory=dict)
    dropped_rows: list[dict] = field(default_factory=list)
    split_sizes: dict[str, int] = field(default_factory=dict)
    consumed_report_ids: list[int] = field(default_factory=list)
    upstream_import: dict[str, int] = field(default_factory=dict)
    published: bool = False
    note: str = ""

    def drop(self, reason: str, report: Report) -> None:
        self.dropped[reason] = self.dropped.get(reason, 0) + 1
        self.dropped_rows.append({"report_id": report.id, "reason": reason, "text": report.text[:200]})


# --------------------------------------------------------------------------------------
# Dataset files


def split_files(folder: Path) -> dict[str, Path]:
    """The train/validation/test file of a dataset snapshot (load_dataset's naming rules)."""
    paths = [p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()]
    found = find_split_files(paths)
    sharded = {split: names for split, names in found.items() if len(names) > 1}
    if sharded:
        raise PrepareError(f"splits stored in several files are not supported: {sharded}; "
                           "merge each split into one file (e.g. train.csv)")
    return {split: folder / names[0] for split, names in found.items()}


def read_split(path: Path, label: str) -> pd.DataFrame:
    frame = read_split_file(path)
    missing = [c for c in ("text", label) if c not in frame.columns]
    if missing:
        raise PrepareError(f"{path.name} lacks columns {missing}; LABEL={label} needs 'text' and '{label}'")
    return frame.fillna("").astype(str)


def write_split(frame: pd.DataFrame, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".parquet":
        frame.to_parquet(path, index=False)
    else:
        frame.to_csv(path, index=False)


def next_version(current: str | None, now: datetime | None = None) -> str:
    """v<N> -> v<N+1>; timestamp versions -> a new, later timestamp; no version yet -> v1."""
    if current is None:
        return "v1"
    numbered = re.fullmatch(r"v(\d+)", current)
    if numbered and len(numbered.group(1)) < 8:
        return f"v{int(numbered.group(1)) + 1}"
    stamp = f"v{(now or datetime.now(timezone.utc)):%Y%m%d_%H%M%S}"
    if stamp <= current:
        raise PrepareError(f"the new version {stamp} would not sort after {current}; check the clock")
    return stamp


# --------------------------------------------------------------------------------------
# Choosing and cleaning the new rows


def choose_reports(reports: list[Report], share: float, seed: int, data: PrepareReport) -> list[Report]:
    """All corrections and reviewed queue items, plus a seeded sample of the confirmed reports."""
    queued = [r for r in reports if r.queued]
    corrections = [r for r in reports if not r.queued and not r.confirmed_correct]
    confirmed = [r for r in reports if not r.queued and r.confirmed_correct]
    sampled = random.Random(seed).sample(confirmed, round(share * len(confirmed)))
    data.corrections, data.from_review_queue, data.confirmed_sampled = len(corrections), len(queued), len(sampled)
    data.confirmed_not_sampled = len(confirmed) - len(sampled)
    return sorted(queued + corrections + sampled, key=lambda r: r.id)


def malformed(text: str) -> bool:
    if "\ufffd" in text or not any(ch.isalpha() for ch in text):
        return True
    return any(unicodedata.category(ch) == "Cc" and ch not in "\t\n\r" for ch in text)


def clean_reports(reports: list[Report], min_chars: int, data: PrepareReport) -> list[Report]:
    """Drop empty, too short, malformed, conflicting and duplicate reports (first copy kept)."""
    kept: list[Report] = []
    for report in reports:
        text = report.text.strip()
        if not text:
            data.drop("empty", report)
        elif len(text) < min_chars:
            data.drop("too_short", report)
        elif malformed(text):
            data.drop("malformed", report)
        else:
            kept.append(report)
    labels_of: dict[str, set[str]] = {}
    for report in kept:
        labels_of.setdefault(normalize_text(report.text), set()).add(report.corrected_label)
    seen: set[str] = set()
    unique: list[Report] = []
    for report in kept:
        key = normalize_text(report.text)
        if len(labels_of[key]) > 1:
            data.drop("conflicting_labels", report)
        elif key in seen:
            data.drop("duplicate", report)
        else:
            seen.add(key)
            unique.append(report)
    return unique


def merge_with_existing(reports: list[Report], splits: dict[str, pd.DataFrame], label: str,
                        data: PrepareReport) -> list[Report]:
    """Relabel train rows that a correction names; drop texts of held-out splits and no-ops."""
    where = {normalize_text(t): (name, i) for name, frame in splits.items() for i, t in enumerate(frame.text)}
    new: list[Report] = []
    for report in reports:
        hit = where.get(normalize_text(report.text))
        if hit is None:
            new.append(report)
            continue
        split, row = hit
        if split != "train":
            data.drop("text_in_heldout_split", report)
        elif splits["train"].iloc[row][label] == report.corrected_label:
            data.drop("already_in_train", report)
        else:
            splits["train"].iloc[row, splits["train"].columns.get_loc(label)] = report.corrected_label
            data.relabelled_train_rows += 1
    return new


# --------------------------------------------------------------------------------------
# Splitting by group


def assign_splits(reports: list[Report], splits: dict[str, pd.DataFrame], threshold: float,
                  heldout_share: float, seed: int) -> list[str]:
    """Split name for each new report: its group's existing split, else a stratified draw."""
    known = [(name, t) for name in SPLITS for t in splits[name].text]
    group_ids, touched = group_new_texts([t for _, t in known], [r.text for r in reports], threshold)
    split_of_group: dict[int, str] = {}
    for group, hits in enumerate(touched):
        existing = {known[i][0] for i in hits}
        for name in ("test", "validation", "train"):  # a leak that already exists stays out of train
            if name in existing:
                split_of_group[group] = name
                break

    free_groups_by_label: dict[str, list[int]] = {}
    for group, report in zip(group_ids, reports):
        if group not in split_of_group and group not in free_groups_by_label.get(report.corrected_label, []):
            free_groups_by_label.setdefault(report.corrected_label, []).append(group)
    rng = random.Random(seed)
    for label in sorted(free_groups_by_label):
        groups = free_groups_by_label[label]
        rng.shuffle(groups)
        held = int(heldout_share * len(groups))  # rounded down: few groups all go to train
        for position, group in enumerate(groups):
            split_of_group[group] = "test" if position < held else "validation" if position < 2 * held else "train"
    return [split_of_group[g] for g in group_ids]


def new_rows(reports: list[Report], label: str, columns: list[str]) -> pd.DataFrame:
    """Rows for the new reports; other columns (the other label) are empty: feedback names one label."""
    rows = [{column: "" for column in columns} | {"text": r.text.strip(), label: r.corrected_label} for r in reports]
    return pd.DataFrame(rows, columns=columns)


# --------------------------------------------------------------------------------------
# The job


def validate(splits: dict[str, pd.DataFrame], cfg: JobConfig, settings: FeedbackSettings) -> None:
    if len(splits["train"]) < settings.min_train_rows:
        raise DatasetTooSmall(
            f"train would have {len(splits['train'])} rows, under FEEDBACK_MIN_TRAIN_ROWS="
            f"{settings.min_train_rows}; collect more reviewed reports or lower the minimum")
    for name in SPLITS:
        if splits[name].empty:
            raise DatasetTooSmall(f"the {name} split would be empty; the dataset needs all of {SPLITS}")
    try:
        validate_splits(splits, cfg, source=f"{cfg.dataset_repo} (next version)")
    except DatasetError as error:
        raise PrepareError(f"the new version fails the training job's checks: {error}") from None


def recover_unstamped(store: FeedbackStore, base_version: str | None, snapshot: Path,
                      reports: list[Report]) -> list[Report]:
    """Stamp reports that the newest version already holds (a run that died after tagging)."""
    report_file = snapshot / REPORT_FILE
    if base_version is None or not report_file.exists():
        return reports
    published = set(json.loads(report_file.read_text()).get("consumed_report_ids", []))
    done = [r.id for r in reports if r.id in published]
    store.mark_consumed(done, base_version)
    return [r for r in reports if r.id not in published]


def load_base_version(hub, repo: str, version: str | None, snapshot: Path, label: str):
    """(split files, split frames) of the base version; empty splits when there is none yet."""
    files: dict[str, Path] = {}
    if version is not None:
        hub.download_snapshot(repo, version, repo_type="dataset", local_dir=snapshot)
        files = split_files(snapshot)
        if set(files) != set(SPLITS):
            raise PrepareError(f"{repo}@{version} lacks split files {sorted(set(SPLITS) - set(files))}")
    splits = {name: read_split(files[name], label) if name in files else pd.DataFrame(columns=COLUMNS, dtype=str)
              for name in SPLITS}
    return files, splits


def add_reports(reports: list[Report], splits: dict[str, pd.DataFrame], cfg: JobConfig,
                settings: FeedbackSettings, data: PrepareReport) -> dict[str, pd.DataFrame]:
    """The next version's splits: choose, clean, merge, group and split the reports' rows."""
    chosen = clean_reports(choose_reports(reports, settings.confirmed_share, settings.split_seed, data),
                           settings.min_text_chars, data)
    fresh = merge_with_existing(chosen, splits, cfg.label, data)
    targets = assign_splits(fresh, splits, cfg.near_duplicate_threshold, settings.heldout_share, settings.split_seed)
    result = {}
    for name in SPLITS:
        picked = [r for r, target in zip(fresh, targets) if target == name]
        data.added[name] = len(picked)
        result[name] = pd.concat([splits[name], new_rows(picked, cfg.label, list(splits[name].columns))],
                                 ignore_index=True)
    data.split_sizes = {name: len(frame) for name, frame in result.items()}
    return result


def publish(hub, repo: str, splits: dict[str, pd.DataFrame], files: dict[str, Path], snapshot: Path,
            upload: Path, data: PrepareReport) -> None:
    """Changed split files + feedback_report.json as ONE commit, tagged with data.version."""
    for name in SPLITS:
        relative = files[name].relative_to(snapshot) if name in files else Path(f"{name}.csv")
        write_split(splits[name], upload / relative)
    (upload / REPORT_FILE).write_text(json.dumps(_public(data), indent=2, ensure_ascii=False))
    message = (f"feedback: {data.version} from {data.reports_considered} reviewed reports "
               f"on {data.base_version or 'nothing'}")
    data.commit = hub.upload_folder(repo, upload, message, repo_type="dataset")
    hub.create_tag(repo, data.version, data.commit, repo_type="dataset", message=message)


def import_upstream_reports(store: FeedbackStore, label: str, settings: FeedbackSettings) -> dict[str, int]:
    """With FEEDBACK_SAMBODHAN_DB_URL: upstream's reviewed reports join ours (each once); their
    database is only read."""
    if settings.sambodhan_db_url is None:
        return {}
    source = SambodhanSource(settings.sambodhan_db_url.get_secret_value())
    return store.import_upstream(source.reviewed_reports(label), label)


def prepare_dataset(cfg: JobConfig, store: FeedbackStore, hub, settings: FeedbackSettings | None = None,
                    report_dir: Path | None = None) -> PrepareReport:
    """Publish the next dataset version of cfg.dataset_repo from the reviewed reports."""
    settings = settings or FeedbackSettings()
    repo = cfg.dataset_repo
    upstream = import_upstream_reports(store, cfg.label, settings)
    data = PrepareReport(label=cfg.label, base_version=hub.newest_version_tag(repo, repo_type="dataset"),
                         upstream_import=upstream)
    with tempfile.TemporaryDirectory(prefix="feedback-prepare-") as workdir:
        snapshot = Path(workdir) / "base"
        files, splits = load_base_version(hub, repo, data.base_version, snapshot, cfg.label)
        reports = recover_unstamped(store, data.base_version, snapshot, store.list_reviewed_unconsumed(cfg.label))
        data.reports_considered = len(reports)
        if not reports:
            data.note = "no new reviewed reports; no new version"
            return _finish(data, report_dir)

        splits = add_reports(reports, splits, cfg, settings, data)
        validate(splits, cfg, settings)
        data.version = next_version(data.base_version)
        data.consumed_report_ids = [r.id for r in reports]
        publish(hub, repo, splits, files, snapshot, Path(workdir) / "upload", data)
    store.mark_consumed(data.consumed_report_ids, data.version)
    data.published = True
    return _finish(data, report_dir)


def _public(data: PrepareReport) -> dict:
    report = asdict(data)
    report.pop("commit")  # unknown until the upload; the tag names it
    return report


def _finish(data: PrepareReport, report_dir: Path | None) -> PrepareReport:
    if report_dir is not None:
        report_dir.mkdir(parents=True, exist_ok=True)
        name = f"feedback-{data.label}-{data.version or 'unchanged'}.json"
        (report_dir / name).write_text(json.dumps(asdict(data), indent=2, ensure_ascii=False))
    return data


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Publish the next dataset version from reviewed feedback reports.")
    parser.add_argument("--label", required=True, choices=sorted(LABEL_SETS))
    parser.add_argument("--report-dir", type=Path, default=Path("outputs"), help="where the data report is written")
    args = parser.parse_args(argv)
    from hub import HubClient, HubError

    try:
        cfg = load_config({"label": args.label})
        store, settings = FeedbackStore.from_env(), FeedbackSettings()
        with store.job(job_name(cfg.label), settings.job_lock_ttl_s) as job:
            result = prepare_dataset(cfg, store, HubClient.from_config(cfg), settings, args.report_dir)
            job.outcome = "published" if result.published else "nothing_to_publish"
            job.dataset_version = result.version
    except (ConfigError, FeedbackError, HubError) as error:
        print(f"prepare_dataset failed: {error}", file=sys.stderr)
        return 1
    print(json.dumps({k: v for k, v in asdict(result).items() if k != "dropped_rows"}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
