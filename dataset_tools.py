"""Dataset version tools. `resplit`: turn a leaky version into a new, group-disjoint one.

    python -m dataset_tools resplit --label urgency --repo ns/data --revision v20251017_045551 [--dry-run]

Sambodhan's prepare_dataset splits at random, so template families (one sentence with the place
name swapped) straddle train and eval/test, and our leakage check refuses the version. `resplit`
pools the rows of the version's splits, groups them into near-duplicate families (the families
the leakage check would see), and assigns whole families to the splits in a seeded order, keeping
each split's share of the rows and of each label close to the original. The result is ONE commit
branched from the old version's commit (the old tag and main are untouched), in the same layout,
split names and columns, with `resplit_report.json` saying what moved, and a new version tag.
It is verified with the job's own checks before anything is pushed.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from configs import ConfigError, load_config
from dataset_mapping import (
    AUTO_LABEL_COLUMN,
    AUTO_TEXT_COLUMNS,
    RawVersion,
    assign_groups,
    map_split_names,
    map_version,
    near_duplicate_families,
    pick_column,
    read_raw_version,
)
from load_dataset import DatasetError, resolve_dataset_revision, validate_splits

REPORT_FILE = "resplit_report.json"
ORIGIN = "_resplit_from"


@dataclass
class ResplitPlan:
    source: RawVersion
    frames: dict[str, pd.DataFrame]        # raw split name -> new rows (same columns)
    report: dict[str, Any] = field(default_factory=dict)

    def files(self) -> dict[str, str]:
        """New path per raw split: the old layout and format, one shard."""
        paths = {}
        for name in self.frames:
            suffix = Path(self.source.files[name][0]).suffix
            paths[name] = f"data/{name}-00000-of-00001{suffix}" if self.source.layout == "data" else f"{name}{suffix}"
        return paths


def plan_resplit(raw: RawVersion, cfg) -> ResplitPlan:
    chosen, _ = map_split_names(raw, cfg)
    names = list(dict.fromkeys(chosen.values()))
    kept = replace(raw, frames={n: raw.frames[n] for n in names})
    text_column = pick_column(kept, "TEXT_COLUMN", cfg.text_column, AUTO_TEXT_COLUMNS)
    label_column = pick_column(kept, "LABEL_COLUMN", cfg.label_column, (cfg.label, AUTO_LABEL_COLUMN))
    rows = pd.concat([raw.frames[n].assign(**{ORIGIN: n}) for n in names], ignore_index=True)
    families = near_duplicate_families(rows[text_column].astype(str).tolist(), cfg.near_duplicate_threshold)
    labels = rows[label_column].astype(str).tolist()
    targets = {n: len(raw.frames[n]) / len(rows) for n in names}
    placed = assign_groups(families, labels, targets, cfg.seed)
    train = chosen["train"]
    train_families = {f for f, origin in zip(families, rows[ORIGIN]) if origin == train}
    sizes = Counter(families)
    report = {
        "source": raw.where, "source_commit": raw.commit, "layout": raw.layout, "text_column": text_column,
        "label_column": label_column, "seed": cfg.seed, "near_duplicate_threshold": cfg.near_duplicate_threshold,
        "families": len(sizes), "families_of_2_or_more": sum(1 for n in sizes.values() if n > 1),
        "largest_family": max(sizes.values()),
        "rows_before": {n: len(raw.frames[n]) for n in names},
        "rows_after": {n: placed.count(n) for n in names},
        "rows_in_train_families_before": {n: int(sum(1 for f, o in zip(families, rows[ORIGIN]) if o == n and f in train_families))
                                          for n in names if n != train},
        "moved": {f"{a} -> {b}": n for (a, b), n in sorted(Counter(zip(rows[ORIGIN], placed)).items()) if a != b},
        "labels_after": {n: dict(Counter(l for l, p in zip(labels, placed) if p == n)) for n in names},
    }
    new_rows = rows.assign(**{ORIGIN: placed})
    frames = {n: new_rows[new_rows[ORIGIN] == n].drop(columns=ORIGIN).reset_index(drop=True) for n in names}
    return ResplitPlan(raw, frames, report)


def verify(plan: ResplitPlan, cfg) -> None:
    """The job's own mapping and checks on the new splits: what it would refuse is never pushed."""
    new = replace(plan.source, frames=plan.frames)
    frames, files, _ = map_version(new, cfg)
    _, data_report = validate_splits(frames, cfg, f"resplit of {plan.source.where}", files)
    plan.report["leakage_after"] = {l.split: l.leaked for l in data_report.leakage}


def write_files(plan: ResplitPlan, folder: Path) -> list[str]:
    written = []
    for name, path in plan.files().items():
        target = folder / path
        target.parent.mkdir(parents=True, exist_ok=True)
        frame = plan.frames[name]
        if target.suffix == ".csv":
            frame.to_csv(target, index=False, encoding="utf-8")
        else:
            table = pa.Table.from_pandas(frame, preserve_index=False)
            # Keep the features `datasets` wrote (ClassLabel names), drop the stale pandas index info.
            features = (plan.source.schemas.get(name).metadata or {}).get(b"huggingface") if name in plan.source.schemas else None
            pq.write_table(table.replace_schema_metadata({b"huggingface": features} if features else None), target)
        written.append(path)
    (folder / REPORT_FILE).write_text(json.dumps(plan.report, indent=2, ensure_ascii=False), encoding="utf-8")
    return written


def push(plan: ResplitPlan, hub, tag: str) -> str:
    """One commit on a throw-away branch from the source commit, tagged; returns the commit id."""
    repo = plan.source.repo
    with tempfile.TemporaryDirectory() as tmp:
        written = write_files(plan, Path(tmp))
        stale = sorted({p for n in plan.frames for p in plan.source.files[n]} - set(written))
        plan.report.update(files_written=written, files_deleted=stale)
        (Path(tmp) / REPORT_FILE).write_text(json.dumps(plan.report, indent=2, ensure_ascii=False), encoding="utf-8")
        branch = f"resplit-{tag}"
        hub.create_branch(repo, branch, "dataset", revision=plan.source.commit, exist_ok=False)
        try:
            commit = hub.upload_folder(repo, Path(tmp), f"Resplit {plan.source.where} by near-duplicate family",
                                       "dataset", revision=branch, delete_patterns=stale or None)
            hub.create_tag(repo, tag, commit, "dataset", message=f"resplit of {plan.source.where}")
        finally:
            hub.delete_branch(repo, branch, "dataset")
    return commit


def describe(plan: ResplitPlan) -> str:
    r = plan.report
    lines = [f"resplit {r['source']} ({r['layout']} layout, columns {r['text_column']!r}/{r['label_column']!r}, "
             f"seed {r['seed']}): {r['families']} families, {r['families_of_2_or_more']} with 2+ rows, largest {r['largest_family']}"]
    for name, before in r["rows_before"].items():
        leaked = r["rows_in_train_families_before"].get(name)
        extra = f", {leaked} of them in train's families before" if leaked is not None else ""
        lines.append(f"  {name}: {before} -> {r['rows_after'][name]} rows{extra}")
    lines.append("  moved: " + (", ".join(f"{k} {v}" for k, v in r["moved"].items()) or "nothing"))
    if "leakage_after" in r:
        lines.append(f"  leakage after (the job's check): {r['leakage_after']}")
    return "\n".join(lines)


def resplit(cfg, hub, revision: str | None, to_tag: str | None, dry_run: bool, log=print) -> str | None:
    """Plan, verify, and (unless dry_run) push the new version; returns the new tag."""
    from deploy import version_tag

    pinned = cfg.model_copy(update={"dataset_revision": revision}) if revision else cfg
    name, commit = resolve_dataset_revision(hub, pinned)
    plan = plan_resplit(read_raw_version(hub, cfg.dataset_repo, name, commit, cfg.dataset_layout), cfg)
    verify(plan, cfg)
    log(describe(plan))
    tag = to_tag or version_tag()
    if tag in hub.list_tags(cfg.dataset_repo, "dataset"):
        raise DatasetError(f"tag {tag} exists on {cfg.dataset_repo}; version tags never move: pass another --to-tag")
    if dry_run:
        log(f"dry run: would push one commit from {plan.source.where} and tag it {tag}; nothing pushed")
        return None
    plan.report["new_tag"] = tag
    new_commit = push(plan, hub, tag)
    log(f"pushed {cfg.dataset_repo}@{tag} ({new_commit[:12]}); {plan.source.where} is untouched. "
        f"Train on it with DATASET_REVISION={tag} (or leave it unset: it is the newest tag).")
    return tag


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m dataset_tools", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    cmd = commands.add_parser(
        "resplit", help="write a leaky dataset version as a new group-disjoint version (new tag, old one untouched)",
        description="Pool the splits of one dataset version, group near-duplicate families, and split by family "
        "with seeded proportions close to the original. Pushes one commit with resplit_report.json and tags it. "
        "Other settings (TEXT_COLUMN, LABEL_COLUMN, SPLIT_ALIASES, DATASET_LAYOUT, HF_TOKEN, HF_ENDPOINT) are read "
        "from the environment, as in the job.")
    cmd.add_argument("--label", help="LABEL: department or urgency (default: the LABEL variable)")
    cmd.add_argument("--repo", help="dataset repo (default: DATASET_REPO_ID or <namespace>/grievance-<label>-data)")
    cmd.add_argument("--revision", help="the version to resplit (default: the newest v* tag)")
    cmd.add_argument("--to-tag", help="the new version's tag (default: vYYYYMMDD_HHMMSS now)")
    cmd.add_argument("--seed", type=int, help="seed of the family order (default: SEED, 42)")
    cmd.add_argument("--near-duplicate-threshold", type=float,
                     help="similarity that makes two texts one family (default: NEAR_DUPLICATE_THRESHOLD, 0.8)")
    cmd.add_argument("--dry-run", action="store_true", help="print the plan; push nothing")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    from hub import HubClient, HubError

    args = parse_args(argv)
    overrides = {"label": args.label, "dataset_repo_id": args.repo, "seed": args.seed,
                 "near_duplicate_threshold": args.near_duplicate_threshold}
    try:
        cfg = load_config(overrides)
    except ConfigError as error:
        print(error, file=sys.stderr)
        return 2
    try:
        resplit(cfg, HubClient(cfg.endpoint, cfg.token), args.revision, args.to_tag, args.dry_run)
    except (DatasetError, HubError) as error:
        print(f"resplit failed: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
