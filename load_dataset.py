"""Step 2 of the job: pull one exact version of the dataset repo and refuse bad data.

`load_versioned_dataset(cfg, hub)` resolves the version (pinned DATASET_REVISION, else the newest
`v*` tag; never an untagged main), downloads the split files of exactly that commit through the
hub adapter, validates them with `validate_splits` and returns a `DatasetDict` (`text`, integer
`label` in cfg.label2id order) plus a `DataReport` for metadata.json and the run summary.

Every check has a policy setting: fail (a `DatasetValidationError` naming the file, the column,
the counts and the setting to change) or drop the rows and report them.
"""
from __future__ import annotations

import math
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any, Iterable

import pandas as pd

from configs import normalize_text
from hub import RepoNotFound, RevisionNotFound
from text_cleaning import clean

if TYPE_CHECKING:
    from datasets import DatasetDict

SPLITS = ("train", "validation", "test")
DATA_FORMATS = {".csv": "csv", ".parquet": "parquet"}
TEXT_COLUMN = "text"
NGRAM = 5
EXAMPLES = 3


class DatasetError(ValueError):
    """The dataset cannot be used; the message names the repo/file and the fix."""


class DatasetRevisionError(DatasetError):
    """The dataset version cannot be resolved (missing pin, no version tag, unknown repo)."""


class DatasetValidationError(DatasetError):
    """A split file breaks a rule; the message lists every problem found, with its setting."""


# --------------------------------------------------------------------------------------
# The report


@dataclass
class DroppedRows:
    split: str
    reason: str  # unknown_label | empty_text | duplicate | leakage
    count: int
    examples: list[str]


@dataclass
class Leakage:
    """Rows of `split` that also occur in an earlier split (exactly after normalisation, or nearly)."""

    split: str
    against: list[str]
    rows: int
    exact: int
    near: int
    examples: list[dict[str, Any]]

    @property
    def leaked(self) -> int:
        return self.exact + self.near

    @property
    def ratio(self) -> float:
        return self.leaked / self.rows if self.rows else 0.0


@dataclass
class DataReport:
    source: str
    label: str
    counts: dict[str, dict[str, int]]  # split -> class -> rows kept
    rows_in: dict[str, int]  # split -> rows before validation
    files: dict[str, str] = field(default_factory=dict)
    dropped: list[DroppedRows] = field(default_factory=list)
    leakage: list[Leakage] = field(default_factory=list)
    near_duplicate_threshold: float = 0.0
    ngram: int = NGRAM
    repo: str | None = None
    revision: str | None = None
    commit: str | None = None
    mapping: dict[str, Any] | None = None  # how the version's files became our splits (dataset_mapping)

    def rows(self, split: str) -> int:
        return sum(self.counts.get(split, {}).values())

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["rows"] = {split: self.rows(split) for split in self.counts}
        for item, figures in zip(data["leakage"], self.leakage):
            item.update(leaked=figures.leaked, ratio=round(figures.ratio, 6))
        return data

    def summary(self) -> str:
        where = f"{self.repo}@{self.revision} ({(self.commit or '')[:12]})" if self.repo else self.source
        sizes = ", ".join(f"{split} {self.rows(split)}" for split in self.counts)
        lines = [f"dataset {where}, label {self.label}: {sizes}"]
        if self.mapping and self.mapping.get("summary"):
            lines.append(f"mapping: {self.mapping['summary']}")
        if self.dropped:
            lines.append("dropped: " + ", ".join(f"{d.split} {d.count} {d.reason}" for d in self.dropped))
        if self.leakage:
            lines.append(
                f"leakage (exact or {self.ngram}-gram Jaccard >= {self.near_duplicate_threshold}): "
                + ", ".join(f"{l.split} {l.leaked}/{l.rows} ({l.ratio:.1%})" for l in self.leakage)
            )
        return "\n".join(lines)


# --------------------------------------------------------------------------------------
# Text keys and near-duplicate search


def char_ngrams(text: str, n: int = NGRAM) -> frozenset[str]:
    key = normalize_text(text)
    if len(key) <= n:
        return frozenset([key])
    return frozenset(key[i : i + n] for i in range(len(key) - n + 1))


def jaccard(a: frozenset[str], b: frozenset[str]) -> float:
    return len(a & b) / len(a | b) if a or b else 1.0


def _prefix_length(size: int, threshold: float) -> int:
    # AllPairs prefix filter: J(x, y) >= t implies |x & y| >= t|x|, so two sets that similar
    # share at least one of their first |x| - ceil(t|x|) + 1 grams under any global order.
    # The epsilon keeps float error from shortening the prefix (a longer one is always safe).
    return size - math.ceil(threshold * size - 1e-9) + 1


class JaccardIndex:
    """Exact Jaccard similarity join over character n-grams, fast through prefix filtering.

    Grams are ordered rarest first, so the indexed prefixes hold rare grams (place names,
    unusual words) and shared stock sentences rarely produce candidates. Every candidate is
    verified with the exact Jaccard similarity: no false positives, no false negatives.
    """

    def __init__(self, texts: Iterable[str], threshold: float, n: int = NGRAM, all_texts: Iterable[str] = ()):
        self.threshold = threshold
        self.n = n
        self.texts = list(texts)
        self.sets = [char_ngrams(t, n) for t in self.texts]
        frequency = Counter(g for s in self.sets for g in s)
        frequency.update(g for t in all_texts for g in char_ngrams(t, n))
        # Integer ranks, rarest first; ties broken by the gram itself so the order is total.
        self.rank = {g: i for i, g in enumerate(sorted(frequency, key=lambda g: (frequency[g], g)))}
        self.postings: dict[int, list[int]] = defaultdict(list)
        self.verified = 0  # exact similarity computations, to show the filter works
        for i, grams in enumerate(self.sets):
            for gram in self._prefix(grams):
                self.postings[gram].append(i)

    def _prefix(self, grams: frozenset[str]) -> list[int]:
        # A gram not ranked at build time is in no indexed set: ranking it first (-1) costs a
        # prefix slot, never a match.
        ranks = sorted(self.rank.get(g, -1) for g in grams)
        return ranks[: _prefix_length(len(grams), self.threshold)]

    def pairs(self) -> list[tuple[int, int]]:
        """(i, j) with j < i for every pair of indexed texts at or above the threshold."""
        found = []
        for i, grams in enumerate(self.sets):
            for j in sorted({j for gram in self._prefix(grams) for j in self.postings.get(gram, ()) if j < i}):
                if jaccard(grams, self.sets[j]) >= self.threshold - 1e-9:
                    found.append((i, j))
        return found

    def best_match(self, text: str) -> tuple[int, float] | None:
        """(index, similarity) of the most similar indexed text at or above the threshold."""
        grams = char_ngrams(text, self.n)
        size, best = len(grams), None
        candidates = {i for gram in self._prefix(grams) for i in self.postings.get(gram, ())}
        for i in sorted(candidates):
            other = len(self.sets[i])
            if not (self.threshold * other <= size + 1e-9 and self.threshold * size <= other + 1e-9):
                continue
            self.verified += 1
            similarity = jaccard(grams, self.sets[i])
            if similarity >= self.threshold and (best is None or similarity > best[1]):
                best = (i, similarity)
        return best


@dataclass(frozen=True)
class Leak:
    row: int
    match: int
    similarity: float
    exact: bool


def find_leaks(texts: list[str], earlier: list[str], threshold: float) -> list[Leak]:
    """Each text that occurs in `earlier`: exactly after normalisation, else as a near-duplicate."""
    first_row: dict[str, int] = {}
    for i, text in enumerate(earlier):
        first_row.setdefault(normalize_text(text), i)
    index = JaccardIndex(earlier, threshold, all_texts=texts)
    leaks = []
    for row, text in enumerate(texts):
        if (match := first_row.get(normalize_text(text))) is not None:
            leaks.append(Leak(row, match, 1.0, exact=True))
        elif (found := index.best_match(text)) is not None:
            leaks.append(Leak(row, *found, exact=False))
    return leaks


# --------------------------------------------------------------------------------------
# Validation (pure: frames in, frames + report out)


class _Checks:
    """Runs the checks in order; collects every fail-policy problem before raising once."""

    def __init__(self, frames: dict[str, pd.DataFrame], cfg, source: str, files: dict[str, str]):
        self.cfg = cfg
        self.source = source
        self.files = files
        self.frames = frames
        self.problems: list[str] = []
        self.failed_splits: set[str] = set()
        self.report = DataReport(
            source=source, label=cfg.label, counts={}, files=dict(files),
            rows_in={split: len(frames[split]) for split in SPLITS},
            near_duplicate_threshold=cfg.near_duplicate_threshold,
        )

    def where(self, split: str, column: str | None = TEXT_COLUMN) -> str:
        place = f"{self.files[split]} ({split} split of {self.source})"
        return f"{place}, column '{column}'" if column else place

    def apply(self, split: str, bad: pd.Series, reason: str, policy: str, setting: str, problem: str) -> None:
        """Drop the rows marked `bad` and report them; under the fail policy also record the problem."""
        frame = self.frames[split]
        count = int(bad.sum())
        if not count:
            return
        examples = [str(v) for v in frame.loc[bad, TEXT_COLUMN].head(EXAMPLES)]
        if policy == "fail":
            self.failed_splits.add(split)
            self.problems.append(f"{self.where(split, problem_column(reason, self.cfg))}: {problem} "
                                 f"Fix the file or set {setting}=drop to drop these rows.")
        else:
            self.report.dropped.append(DroppedRows(split, reason, count, examples))
        # Later checks see only the rows that survive, so each problem is counted once.
        self.frames[split] = frame.loc[~bad].reset_index(drop=True)

    def unknown_labels(self, split: str) -> None:
        labels = self.frames[split][self.cfg.label]
        bad = ~labels.isin(self.cfg.labels)
        listed = ", ".join(f"{value!r} x{n}" for value, n in Counter(labels[bad]).most_common())
        self.apply(
            split, bad, "unknown_label", self.cfg.unknown_label_policy, "UNKNOWN_LABEL_POLICY",
            f"{int(bad.sum())} of {len(labels)} rows have labels outside LABEL={self.cfg.label} "
            f"{self.cfg.labels}: {listed}.",
        )

    def empty_texts(self, split: str) -> None:
        texts = self.frames[split][TEXT_COLUMN]
        bad = texts.str.strip() == ""
        self.apply(
            split, bad, "empty_text", self.cfg.empty_text_policy, "EMPTY_TEXT_POLICY",
            f"{int(bad.sum())} of {len(texts)} rows have an empty or whitespace-only text.",
        )

    def duplicates(self, split: str) -> None:
        frame = self.frames[split]
        keys = frame[TEXT_COLUMN].map(normalize_text)
        bad = keys.duplicated(keep="first")
        conflicting = int((frame.groupby(keys)[self.cfg.label].nunique() > 1).sum())
        note = f" ({conflicting} of these texts carry different labels)" if conflicting else ""
        self.apply(
            split, bad, "duplicate", self.cfg.duplicate_policy, "DUPLICATE_POLICY",
            f"{int(bad.sum())} of {len(frame)} rows repeat an earlier text of the same split "
            f"(after NFKC, casefold, whitespace collapse){note}.",
        )

    def leakage(self, split: str, against: list[str]) -> None:
        earlier = [(name, text) for name in against for text in self.frames[name][TEXT_COLUMN]]
        texts = self.frames[split][TEXT_COLUMN]
        leaks = find_leaks(texts.tolist(), [text for _, text in earlier], self.cfg.near_duplicate_threshold)
        exact = sum(leak.exact for leak in leaks)
        near = len(leaks) - exact
        # Near-duplicates first: they show what the threshold catches; exact copies speak for themselves.
        shown_leaks = sorted(leaks, key=lambda leak: leak.exact)[:EXAMPLES]
        examples = [{"text": texts[leak.row], "matches": earlier[leak.match][1], "in": earlier[leak.match][0],
                     "similarity": round(leak.similarity, 3)} for leak in shown_leaks]
        figures = Leakage(split, against, len(texts), exact, near, examples)
        self.report.leakage.append(figures)
        if figures.ratio <= self.cfg.max_leakage_ratio:
            return  # tolerated share: reported, kept
        bad = pd.Series(texts.index.isin([leak.row for leak in leaks]), index=texts.index)
        against_files = " or ".join(self.files[name] for name in against)
        shown = "; ".join(describe_leak(e) for e in examples)
        self.apply(
            split, bad, "leakage", self.cfg.leakage_policy, "LEAKAGE_POLICY",
            f"{figures.leaked} of {figures.rows} rows ({figures.ratio:.1%}) also occur in {against_files}: "
            f"{exact} exact after normalisation, {near} near-duplicates ({NGRAM}-gram Jaccard >= "
            f"{self.cfg.near_duplicate_threshold}); above MAX_LEAKAGE_RATIO={self.cfg.max_leakage_ratio}. "
            f"e.g. {shown}. Scores on leaked rows measure memory, not generalisation; raise "
            f"MAX_LEAKAGE_RATIO only if you accept that.",
        )

    def nothing_left(self, split: str) -> None:
        if self.frames[split].empty and split not in self.failed_splits:
            dropped = ", ".join(f"{d.count} {d.reason}" for d in self.report.dropped if d.split == split)
            self.problems.append(f"{self.where(split, None)}: no usable rows left out of "
                                 f"{self.report.rows_in[split]} (dropped: {dropped or 'none'}).")

    def raise_if_problems(self) -> None:
        if self.problems:
            raise DatasetValidationError(
                f"dataset {self.source} failed validation ({len(self.problems)} problem(s)):\n- "
                + "\n- ".join(self.problems)
            )


def describe_leak(example: dict[str, Any]) -> str:
    if example["similarity"] == 1.0 and normalize_text(example["text"]) == normalize_text(example["matches"]):
        return f"{example['text'][:60]!r} (copy of a {example['in']} row)"
    return f"{example['text'][:60]!r} ~ {example['in']} {example['matches'][:60]!r} (Jaccard {example['similarity']})"


def problem_column(reason: str, cfg) -> str:
    return cfg.label if reason == "unknown_label" else TEXT_COLUMN


def check_schema(frames: dict[str, pd.DataFrame], cfg, source: str, files: dict[str, str]) -> None:
    missing_splits = [split for split in SPLITS if split not in frames]
    if missing_splits:
        raise DatasetValidationError(
            f"dataset {source} lacks the split(s) {missing_splits} (found {sorted(frames)}); add a "
            f"file per split named like {', '.join(s + '.csv' for s in missing_splits)}."
        )
    problems = []
    for split in SPLITS:
        columns = list(frames[split].columns)
        for column in (TEXT_COLUMN, cfg.label):
            if column not in columns:
                problems.append(f"{files[split]} ({split} split of {source}) has no column '{column}' "
                                f"(columns: {columns}); LABEL={cfg.label} needs '{TEXT_COLUMN}' and '{cfg.label}'.")
    if problems:
        raise DatasetValidationError("\n".join(problems))


def _as_text(value: Any) -> str:
    return "" if value is None or (isinstance(value, float) and math.isnan(value)) else str(value)


def _clean_columns(frame: pd.DataFrame, label: str) -> pd.DataFrame:
    # Missing values become "" so they meet the empty-text and unknown-label rules; labels are
    # stripped because " NORMAL" is a formatting slip, while "normal" stays an unknown label.
    return pd.DataFrame({
        TEXT_COLUMN: frame[TEXT_COLUMN].map(_as_text).astype(str),
        label: frame[label].map(_as_text).astype(str).str.strip(),
    }).reset_index(drop=True)


def validate_splits(
    frames: dict[str, pd.DataFrame], cfg, source: str, files: dict[str, str] | None = None
) -> tuple[dict[str, pd.DataFrame], DataReport]:
    """Check and clean train/validation/test for cfg.label; no I/O.

    Returns frames with columns `text` and cfg.label (label names) and the report. Raises one
    `DatasetValidationError` listing every problem whose policy is `fail`.
    """
    files = {split: f"{split} file" for split in SPLITS} | (files or {})
    check_schema(frames, cfg, source, files)
    checks = _Checks({s: _clean_columns(frames[s], cfg.label) for s in SPLITS}, cfg, source, files)
    for split in SPLITS:
        checks.unknown_labels(split)
        checks.empty_texts(split)
        checks.duplicates(split)
    checks.leakage("validation", ["train"])
    checks.leakage("test", ["train", "validation"])
    for split in SPLITS:
        checks.nothing_left(split)
    checks.raise_if_problems()
    clean = checks.frames
    checks.report.counts = {
        split: {name: int((clean[split][cfg.label] == name).sum()) for name in cfg.labels} for split in SPLITS
    }
    return clean, checks.report


# --------------------------------------------------------------------------------------
# Versions and download (through the hub adapter)


def resolve_dataset_revision(hub, cfg) -> tuple[str, str]:
    """(revision name, commit id) of the dataset version to train on."""
    repo = cfg.dataset_repo
    try:
        if cfg.dataset_revision:
            try:
                return cfg.dataset_revision, hub.resolve_revision(repo, cfg.dataset_revision, "dataset")
            except RevisionNotFound:
                tags = sorted(hub.list_tags(repo, "dataset"))
                raise DatasetRevisionError(
                    f"DATASET_REVISION={cfg.dataset_revision!r} is not a tag, branch or commit of dataset "
                    f"{repo}; its tags: {tags or 'none'}. Set DATASET_REVISION to one of them, or unset it "
                    f"to use the newest v* tag."
                ) from None
        tag = hub.newest_version_tag(repo, "dataset")
        if tag is None:
            raise DatasetRevisionError(
                f"no v* tag on dataset {repo}; tag a version (vN or vYYYYMMDD_HHMMSS) or set DATASET_REVISION. "
                f"An untagged main is never used: the trained model must name its data version."
            )
        return tag, hub.resolve_revision(repo, tag, "dataset")
    except RepoNotFound:
        raise DatasetRevisionError(
            f"dataset repo {repo} does not exist at {cfg.endpoint}; set DATASET_REPO_ID, or seed the "
            f"embedded hub (python -m localhub seed)."
        ) from None


def split_of(path: str) -> str | None:
    """Which split a data file holds: train.csv, data/train-00000-of-00001.parquet, test/part.csv ..."""
    pure = PurePosixPath(path)
    if pure.suffix not in DATA_FORMATS:
        return None
    for split in SPLITS:
        if pure.stem == split or pure.stem.startswith(f"{split}-") or split in pure.parts[:-1]:
            return split
    return None


def find_split_files(paths: list[str]) -> dict[str, list[str]]:
    """split -> data files: `train.csv`, `data/train.csv` or `data/train-00000-of-00001.parquet`."""
    found: dict[str, list[str]] = defaultdict(list)
    for path in sorted(paths):
        if split := split_of(path):
            found[split].append(path)
    for split, names in found.items():
        layouts = {(str(Path(n).parent), Path(n).suffix) for n in names}
        if len(layouts) > 1:
            # Two copies of a split (say train.csv and data/train-*.parquet) would be concatenated.
            raise DatasetValidationError(
                f"split {split} has files in {len(layouts)} layouts: {names}; keep one folder and one format."
            )
    return dict(found)


def read_split_file(path: Path) -> pd.DataFrame:
    # CSV is read as strings, "" kept as "" (not NaN) and "NA"/"null" kept as text: validation,
    # not the parser, decides what an empty text or an unknown label is.
    if path.suffix == ".csv":
        return pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8")
    return pd.read_parquet(path)


def download_splits(hub, repo: str, commit: str) -> tuple[dict[str, pd.DataFrame], dict[str, str]]:
    """The split frames of one commit and the file name(s) each came from."""
    paths = hub.list_files(repo, commit, "dataset")
    split_files = find_split_files(paths)
    missing = [split for split in SPLITS if split not in split_files]
    if missing:
        raise DatasetValidationError(
            f"dataset {repo}@{commit[:12]} has no file for split(s) {missing}; its files: {sorted(paths)}. "
            f"Add {', '.join(s + '.csv' for s in missing)} (or .parquet) at the repo root or under data/."
        )
    frames = {
        split: pd.concat([read_split_file(hub.download_file(repo, p, commit, "dataset")) for p in names],
                         ignore_index=True)
        for split, names in split_files.items() if split in SPLITS
    }
    return frames, {split: ", ".join(split_files[split]) for split in SPLITS}


def to_dataset_dict(frames: dict[str, pd.DataFrame], cfg) -> DatasetDict:
    """DatasetDict with `text` and an integer `label` (a ClassLabel in cfg.label2id order)."""
    # Imported here: the inference Space's admin route reads and validates splits without `datasets`.
    from datasets import ClassLabel, Dataset, DatasetDict, Features, Value

    features = Features({"text": Value("string"), "label": ClassLabel(names=cfg.labels)})
    return DatasetDict({
        split: Dataset.from_dict(
            {"text": frame[TEXT_COLUMN].tolist(), "label": frame[cfg.label].map(cfg.label2id).tolist()},
            features=features, split=split,
        )
        for split, frame in frames.items()
    })


def cleaned_texts(frame: pd.DataFrame, mode: str) -> pd.DataFrame:
    """The text column as the model sees it, through the same cleaning the inference Space applies."""
    cleaned = frame[TEXT_COLUMN].map(lambda text: clean(text, mode) if isinstance(text, str) else text)
    return frame.assign(**{TEXT_COLUMN: cleaned})


def load_versioned_dataset(cfg, hub) -> tuple[DatasetDict, DataReport]:
    """Resolve, download and validate one dataset version: (DatasetDict, DataReport)."""
    from dataset_mapping import read_mapped_splits  # it builds on this module

    revision, commit = resolve_dataset_revision(hub, cfg)
    # Download by commit id, not by name: a branch or tag moved meanwhile cannot mix versions.
    frames, files, mapping = read_mapped_splits(hub, cfg, revision, commit)
    frames = {split: cleaned_texts(frame, cfg.text_cleaning) for split, frame in frames.items()}
    clean, report = validate_splits(frames, cfg, f"{cfg.dataset_repo}@{revision}", files)
    report.mapping = mapping.to_dict()
    report.repo, report.revision, report.commit = cfg.dataset_repo, revision, commit
    return to_dataset_dict(clean, cfg), report
