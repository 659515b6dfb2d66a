"""Read a dataset version in whatever shape it was pushed, and map it onto ours.

Two producers write our dataset repos: this project (`train.csv`, `validation.csv`,
`test.csv` at the root; columns `text` and the LABEL name) and Sambodhan's `prepare_dataset`
(`DatasetDict.push_to_hub`: `data/<split>-XXXXX-of-YYYYY.parquet` shards, splits
train/eval/test, columns `grievance` and an integer `label`, plus `dataset_metadata.json`).

`read_raw_version` downloads the split files of one commit as they are (split names, columns
and ClassLabel names untouched); `map_version` turns them into our train/validation/test frames
(`text`, label names) and a `MappingReport` saying what it assumed. A version without a
validation split gets one carved from train by near-duplicate family, seeded.

Every error names `repo@revision` and the setting that fixes it.
"""
from __future__ import annotations

import json
import random
import re
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow.parquet as pq

from configs import LABEL_SETS, normalize_text, parse_split_aliases
from load_dataset import SPLITS, DatasetValidationError, JaccardIndex, read_split_file

# `train.csv`, `data/train.csv`, `data/eval-00000-of-00002.parquet`: (folder, split, format).
SPLIT_FILE = re.compile(r"^(?:(?P<folder>data)/)?(?P<split>[A-Za-z][A-Za-z0-9_]*?)(?:-\d+-of-\d+)?\.(?P<ext>csv|parquet)$")
LAYOUTS = {"root": "split files at the repo root (train.csv, ...)",
           "data": "split files under data/ (push_to_hub's data/train-00000-of-00001.parquet, ...)"}
AUTO_SPLIT_ALIASES = {"eval": "validation", "dev": "validation", "valid": "validation", "val": "validation"}
AUTO_TEXT_COLUMNS = ("text", "grievance")
AUTO_LABEL_COLUMN = "label"
METADATA_FILE = "dataset_metadata.json"
INTEGER = re.compile(r"^-?\d+(?:\.0*)?$")


# --------------------------------------------------------------------------------------
# The raw version: files as they are


@dataclass
class RawVersion:
    repo: str
    revision: str
    commit: str
    layout: str
    files: dict[str, list[str]]           # raw split name -> paths
    frames: dict[str, pd.DataFrame]       # raw split name -> rows, columns untouched
    class_names: dict[str, list[str]]     # column -> ClassLabel names from the parquet schema
    metadata: dict[str, Any]              # dataset_metadata.json, {} when absent
    schemas: dict[str, Any] = field(default_factory=dict)  # raw split -> pyarrow schema (parquet only)
    other_layouts: list[str] = field(default_factory=list)

    @property
    def where(self) -> str:
        return f"{self.repo}@{self.revision}"


def split_files_by_layout(paths: list[str]) -> dict[str, dict[str, list[str]]]:
    """layout -> raw split name -> data files."""
    found: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    for path in sorted(paths):
        if match := SPLIT_FILE.match(path):
            found["data" if match["folder"] else "root"][match["split"]].append(path)
    return {layout: dict(splits) for layout, splits in found.items()}


def choose_layout(layouts: dict[str, dict[str, list[str]]], setting: str, where: str) -> str:
    if setting != "auto":
        if setting not in layouts:
            raise DatasetValidationError(
                f"dataset {where}: DATASET_LAYOUT={setting} but it has no {LAYOUTS[setting]}; its layouts: "
                f"{sorted(layouts) or 'none'}. Set DATASET_LAYOUT=auto or to one of them.")
        return setting
    if len(layouts) > 1:
        shown = "; ".join(f"{name}: {sorted(p for ps in splits.values() for p in ps)}" for name, splits in layouts.items())
        raise DatasetValidationError(
            f"dataset {where} holds two versions in two layouts ({shown}), e.g. a Sambodhan push_to_hub on top "
            f"of our CSVs. Set DATASET_LAYOUT=data (the push_to_hub shards) or DATASET_LAYOUT=root (the CSVs) "
            f"to say which one is this version.")
    if not layouts:
        raise DatasetValidationError(
            f"dataset {where} has no split files; expected train.csv/validation.csv/test.csv at the root or "
            f"push_to_hub's data/<split>-00000-of-00001.parquet.")
    return next(iter(layouts))


def parquet_class_names(path: Path) -> dict[str, list[str]]:
    """ClassLabel names that `datasets` writes into the parquet schema metadata."""
    metadata = pq.read_schema(path).metadata or {}
    try:
        features = json.loads(metadata[b"huggingface"])["info"]["features"]
    except (KeyError, ValueError, TypeError):
        return {}
    return {column: spec["names"] for column, spec in features.items()
            if isinstance(spec, dict) and spec.get("_type") == "ClassLabel" and spec.get("names")}


def read_raw_version(hub, repo: str, revision: str, commit: str, layout: str = "auto") -> RawVersion:
    """The split files of exactly `commit`, as they are, in one layout."""
    where = f"{repo}@{revision}"
    paths = hub.list_files(repo, commit, "dataset")
    layouts = split_files_by_layout(paths)
    chosen = choose_layout(layouts, layout, where)
    files = layouts[chosen]
    frames, class_names, schemas = {}, {}, {}
    for split, names in files.items():
        formats = {Path(name).suffix for name in names}
        if len(formats) > 1:
            raise DatasetValidationError(f"dataset {where}: split {split} mixes CSV and Parquet files {names}; "
                                         f"keep one format per split.")
        local = [hub.download_file(repo, name, commit, "dataset") for name in names]
        frames[split] = pd.concat([read_split_file(p) for p in local], ignore_index=True)
        if local[0].suffix == ".parquet":
            class_names.update(parquet_class_names(local[0]))
            schemas[split] = pq.read_schema(local[0])
    metadata = {}
    if METADATA_FILE in paths:
        try:
            metadata = json.loads(hub.download_file(repo, METADATA_FILE, commit, "dataset").read_text(encoding="utf-8"))
        except ValueError as error:
            raise DatasetValidationError(f"dataset {where}: {METADATA_FILE} is not valid JSON ({error}).") from None
    return RawVersion(repo, revision, commit, chosen, files, frames, class_names, metadata, schemas,
                      other_layouts=sorted(set(layouts) - {chosen}))


# --------------------------------------------------------------------------------------
# Mapping settings onto the raw version


@dataclass
class MappingReport:
    layout: str
    splits: dict[str, str]                 # our split -> raw split name (or "carved from train")
    text_column: str
    label_column: str
    label_ids: str | None = None           # where integer ids got their names, None for names
    ignored_splits: list[str] = field(default_factory=list)
    carved_validation: dict[str, Any] | None = None
    notes: list[str] = field(default_factory=list)

    def summary(self) -> str:
        """One line of what differs from our own format (empty when nothing does)."""
        parts = [f"{ours} = {raw!r}" for ours, raw in self.splits.items() if ours != raw]
        if self.text_column != "text":
            parts.append(f"text = column {self.text_column!r}")
        if self.label_ids:
            parts.append(f"label ids in {self.label_column!r} named by {self.label_ids}")
        if self.carved_validation:
            carved = self.carved_validation
            parts.append(f"{carved['rows']} validation rows in {carved['groups']} families carved from train "
                         f"(VALIDATION_FRACTION={carved['fraction']}, SEED={carved['seed']})")
        if self.ignored_splits:
            parts.append(f"ignored splits {self.ignored_splits}")
        return "; ".join(parts + self.notes)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self) | {"summary": self.summary()}


def read_mapped_splits(hub, cfg, revision: str, commit: str):
    """Our (frames, files, MappingReport) of one commit of cfg.dataset_repo."""
    raw = read_raw_version(hub, cfg.dataset_repo, revision, commit, cfg.dataset_layout)
    return map_version(raw, cfg)


def map_split_names(raw: RawVersion, cfg) -> tuple[dict[str, str], list[str]]:
    """(our split -> raw split, ignored raw splits)."""
    explicit = parse_split_aliases(cfg.split_aliases)
    if wrong := {name: split for name, split in explicit.items() if split not in SPLITS}:
        raise DatasetValidationError(f"SPLIT_ALIASES maps {wrong} to unknown splits; the targets must be one of "
                                     f"{list(SPLITS)}, e.g. SPLIT_ALIASES=eval:validation.")
    chosen = {split: split for split in SPLITS if split in raw.frames}
    for name, split in explicit.items():
        if name not in raw.frames:
            continue
        if split in chosen and chosen[split] != name:
            raise DatasetValidationError(
                f"dataset {raw.where}: SPLIT_ALIASES maps {name!r} to {split}, but split {chosen[split]!r} is "
                f"{split} already; drop one from SPLIT_ALIASES.")
        chosen[split] = name
    if not explicit:
        for split in set(AUTO_SPLIT_ALIASES.values()) - set(chosen):
            candidates = [name for name, to in AUTO_SPLIT_ALIASES.items() if to == split and name in raw.frames]
            if len(candidates) > 1:
                raise DatasetValidationError(
                    f"dataset {raw.where} has no {split} split but several candidates {candidates}; set "
                    f"SPLIT_ALIASES={candidates[0]}:{split} to pick one.")
            if candidates:
                chosen[split] = candidates[0]
    missing = [split for split in ("train", "test") if split not in chosen]
    if missing:
        files = sorted(path for paths in raw.files.values() for path in paths)
        raise DatasetValidationError(
            f"dataset {raw.where} ({raw.layout} layout) has no file for split(s) {missing}; its files: {files}. "
            f"Add {', '.join(s + '.csv' for s in missing)} (or .parquet), or map another split name with "
            f"SPLIT_ALIASES=name:split (e.g. SPLIT_ALIASES=eval:validation).")
    ignored = sorted(set(raw.frames) - set(chosen.values()))
    return chosen, ignored


def pick_column(raw: RawVersion, setting_name: str, setting: str | None, auto: tuple[str, ...]) -> str:
    columns = list(next(iter(raw.frames.values())).columns)
    if setting:
        candidates = (setting,)
    else:
        candidates = tuple(c for c in auto if c in columns)[:1]
    lacking = {split: list(frame.columns) for split, frame in raw.frames.items()
               if not candidates or candidates[0] not in frame.columns}
    if lacking:
        wanted = setting or " or ".join(repr(c) for c in auto)
        raise DatasetValidationError(
            f"dataset {raw.where}: no column {wanted} in split(s) {sorted(lacking)} (columns: "
            f"{next(iter(lacking.values()))}). Set {setting_name} to the column that holds it.")
    return candidates[0]


def looks_like_ids(values: pd.Series, labels: list[str]) -> bool:
    if pd.api.types.is_integer_dtype(values) or pd.api.types.is_float_dtype(values):
        return True
    text = values.dropna().astype(str).str.strip()
    text = text[text != ""]
    return len(text) > 0 and bool(text.str.match(INTEGER).all()) and not text.isin(labels).any()


def id_names(raw: RawVersion, column: str, cfg) -> tuple[list[str], str]:
    """Names of integer label ids, and where they came from."""
    if names := raw.class_names.get(column):
        return list(names), f"ClassLabel names in the parquet schema of {raw.where}"
    declared = raw.metadata.get("label_column")
    if declared and declared != cfg.label:
        raise DatasetValidationError(
            f"dataset {raw.where}: {METADATA_FILE} says its labels are {declared!r} but LABEL={cfg.label}; "
            f"set DATASET_REPO_ID to the {cfg.label} dataset, or LABEL={declared}.")
    for key in ("id2label", "label_names", "labels"):
        value = raw.metadata.get(key)
        if isinstance(value, dict):
            return [value[k] for k in sorted(value, key=int)], f"{METADATA_FILE} {key}"
        if isinstance(value, list) and value:
            return [str(v) for v in value], f"{METADATA_FILE} {key}"
    return list(LABEL_SETS[cfg.label]), f"the LABEL={cfg.label} id order {LABEL_SETS[cfg.label]}"


def name_ids(values: pd.Series, names: list[str]) -> pd.Series:
    """0 -> names[0]; what is not a known id stays as written, so the unknown-label check sees it."""
    def name(value: Any) -> Any:
        text = "" if value is None or (isinstance(value, float) and pd.isna(value)) else str(value).strip()
        if INTEGER.match(text) and 0 <= int(float(text)) < len(names):
            return names[int(float(text))]
        return text
    return values.map(name)


def map_version(raw: RawVersion, cfg) -> tuple[dict[str, pd.DataFrame], dict[str, str], MappingReport]:
    """Our splits (columns `text` and cfg.label, label names), their file names, and the report."""
    chosen, ignored = map_split_names(raw, cfg)
    kept = replace(raw, frames={n: raw.frames[n] for n in chosen.values()})
    text_column = pick_column(kept, "TEXT_COLUMN", cfg.text_column, AUTO_TEXT_COLUMNS)
    label_column = pick_column(kept, "LABEL_COLUMN", cfg.label_column, (cfg.label, AUTO_LABEL_COLUMN))
    report = MappingReport(raw.layout, dict(chosen), text_column, label_column, ignored_splits=ignored)
    if raw.other_layouts:
        report.notes.append(f"DATASET_LAYOUT={cfg.dataset_layout} picked the {raw.layout} layout; ignored: "
                            f"{raw.other_layouts}")
    all_labels = pd.concat([kept.frames[n][label_column] for n in chosen.values()], ignore_index=True)
    names = None
    if looks_like_ids(all_labels, cfg.labels):
        names, report.label_ids = id_names(raw, label_column, cfg)
    frames = {}
    for split, name in chosen.items():
        frame = kept.frames[name]
        labels = name_ids(frame[label_column], names) if names else frame[label_column]
        frames[split] = pd.DataFrame({"text": frame[text_column], cfg.label: labels}).reset_index(drop=True)
    files = {split: ", ".join(raw.files[name]) for split, name in chosen.items()}
    if "validation" not in frames:
        frames["train"], frames["validation"], report.carved_validation = carve_validation(frames["train"], cfg)
        report.splits["validation"] = "carved from train"
        files["validation"] = f"{files['train']} (carved by near-duplicate family)"
    return frames, files, report


def carve_validation(train: pd.DataFrame, cfg) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, Any]]:
    """A validation split taken from train by near-duplicate family, seeded."""
    groups = near_duplicate_families(train["text"].tolist(), cfg.near_duplicate_threshold)
    targets = {"train": 1 - cfg.validation_fraction, "validation": cfg.validation_fraction}
    placed = assign_groups(groups, train[cfg.label].tolist(), targets, cfg.seed)
    is_validation = pd.Series([p == "validation" for p in placed])
    figures = {"rows": int(is_validation.sum()), "groups": len({g for g, p in zip(groups, placed) if p == "validation"}),
               "fraction": cfg.validation_fraction, "seed": cfg.seed,
               "setting": "VALIDATION_FRACTION (share of train), SEED"}
    return (train[~is_validation].reset_index(drop=True), train[is_validation].reset_index(drop=True), figures)


# --------------------------------------------------------------------------------------
# Near-duplicate families and a split by family


def near_duplicate_families(texts: list[str], threshold: float) -> list[int]:
    """Family id per text: connected components of 'same after normalisation', 'near-duplicate by
    the leakage check's n-gram Jaccard', and 'same template' (feedback.groups: place names and
    numbers masked). Splitting by family leaves the leakage check nothing to find."""
    from feedback.groups import NearDuplicateIndex as TemplateIndex
    from feedback.groups import UnionFind

    families = UnionFind(len(texts))
    first: dict[str, int] = {}
    for i, text in enumerate(texts):
        families.union(i, first.setdefault(normalize_text(text), i))
    for i, j in JaccardIndex(texts, threshold).pairs():
        families.union(i, j)
    templates = TemplateIndex([], threshold)
    for i, text in enumerate(texts):
        for j in templates.matches(text):
            families.union(i, j)
        templates.add(text)
    return families.component_ids()


def assign_groups(groups: list[int], labels: list[str], targets: dict[str, float], seed: int) -> list[str]:
    """Split name per row: whole groups in a seeded order, each to the split furthest below its
    target share of the group's majority label among the splits it fits into (so shares and the
    label mix stay close to the targets; a group too big for every split goes where most room is)."""
    members: dict[int, list[int]] = defaultdict(list)
    for row, group in enumerate(groups):
        members[group].append(row)
    order = list(members)
    random.Random(seed).shuffle(order)
    per_label = Counter(labels)
    have = {split: Counter() for split in targets}
    placed = [""] * len(groups)
    for group in order:
        rows = members[group]
        label, size = Counter(labels[r] for r in rows).most_common(1)[0]
        room = {split: targets[split] * per_label[label] - have[split][label] for split in targets}
        fits = [split for split in targets if room[split] >= size] or [max(targets, key=room.get)]
        split = max(fits, key=lambda s: (room[s] / (targets[s] * per_label[label]), targets[s]))
        for r in rows:
            placed[r] = split
            have[split][labels[r]] += 1
    return placed
