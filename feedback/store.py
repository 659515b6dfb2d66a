"""The feedback store: the only module that touches the feedback database.

`retrainspace_feedback` holds one row per misclassification report (earlier versions named it
`misclassified_complaints`, as upstream Sambodhan's backend names a table of other columns: an
old table of ours is renamed on first open, theirs is never touched, see `SambodhanSource`). A report is pending
until a reviewer sets its corrected label (`mark_reviewed`); a reviewed report whose corrected
label equals the predicted one is a *confirmed-correct* prediction. `prepare_dataset` consumes
reviewed reports into a dataset version and stamps them with it.

Every public method is one transaction: it commits whole or not at all. The URL comes from
FEEDBACK_DB_URL (PostgreSQL via psycopg for real deployments); without it an SQLite file
feedback.db in $DATA_DIR (else $LOCALHUB_DATA_DIR, else ~/.cache/retrainspace): never next to the
code, which a Space cannot write.

Duplicates: a report with the same (whitespace/case-normalised) text, label type and predicted
label as a report not yet consumed is refused with `DuplicateReport` (the caller answers 409);
once the first one is consumed into a dataset version the same text may be reported again.

Review queue (active learning): `queue_for_review` adds an uncertain prediction (or a canary/stable
disagreement) as a pending row whose `source` names why (`QUEUE_REASONS`; reports have `source` =
"report"). It is reviewed and consumed exactly like a report. Deduplicated: a text with an open
row of its label type (queued or reported, any prediction) is not queued again. Bounded: with
`max_pending` queued rows of the label type waiting, new ones are refused ("full"); the waiting
ones keep their place, oldest first, and nothing a reviewer may have open is deleted. A report of
a text that waits in the queue takes that row over (it becomes the report).
"""
from __future__ import annotations

import hashlib
import os
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Iterator

from sqlalchemy import (
    Boolean, CheckConstraint, Column, DateTime, Float, Index, Integer, MetaData, String, Table, Text, TypeDecorator,
    create_engine, func, inspect, select, text as sql_text, update,
)
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, IntegrityError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker

from configs import LABEL_SETS, mask_url, normalize_text
from text_cleaning import unicode_problem

DB_URL_ENV = "FEEDBACK_DB_URL"


class FeedbackError(RuntimeError):
    """A feedback-store operation failed; the message says what and how to fix it."""


class InvalidReport(FeedbackError, ValueError):
    """The report itself is bad (empty text, unknown label): the caller's fault, a 4xx."""


class InvalidLabel(InvalidReport):
    """A label type or label value is not one of configs.LABEL_SETS."""


class DuplicateReport(FeedbackError):
    """The same text was already reported with the same prediction and not yet consumed."""

    def __init__(self, message: str, existing_id: int):
        super().__init__(message)
        self.existing_id = existing_id


class ReportNotFound(FeedbackError, KeyError):
    def __str__(self) -> str:  # KeyError would repr() the message
        return self.args[0]


class ReportAlreadyConsumed(FeedbackError):
    """The report is part of a published dataset version; it can no longer change."""


class DatabaseUnavailable(FeedbackError):
    """The database cannot be reached or refused the operation (nothing was written)."""


class JobAlreadyRunning(FeedbackError):
    """Another trigger holds the job lock."""


class SchemaConflict(FeedbackError):
    """A table of ours exists with other columns: permanent until a person fixes the database."""


# --------------------------------------------------------------------------------------
# Schema


class UTCDateTime(TypeDecorator):
    """Stores naive UTC (SQLite has no time zones) and always returns aware UTC datetimes."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is not None and value.tzinfo is not None:
            value = value.astimezone(timezone.utc).replace(tzinfo=None)
        return value

    def process_result_value(self, value, dialect):
        if value is None:
            return None
        return value.astimezone(timezone.utc) if value.tzinfo else value.replace(tzinfo=timezone.utc)


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def _sql_list(values: list[str]) -> str:
    return ", ".join("'" + v.replace("'", "''") + "'" for v in values)


def _labels_check(column: str, nullable: bool) -> str:
    """SQL: the column holds a label of the row's label_type (the DB enforces LABEL_SETS too)."""
    per_type = " OR ".join(
        f"(label_type = '{label_type}' AND {column} IN ({_sql_list(labels)}))"
        for label_type, labels in LABEL_SETS.items()
    )
    return f"{column} IS NULL OR {per_type}" if nullable else per_type


class Base(DeclarativeBase):
    pass


OLD_REPORTS_TABLE = "misclassified_complaints"  # our table's name before; upstream's table too
REPORT = "report"  # the source of a misclassification report
QUEUE_REASONS = ("low_confidence", "small_margin", "shadow_disagreement")  # sources of queued predictions


class MisclassifiedComplaint(Base):
    __tablename__ = "retrainspace_feedback"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    complaint_id: Mapped[str | None] = mapped_column(String(128))
    text: Mapped[str] = mapped_column(Text)
    text_hash: Mapped[str] = mapped_column(String(64))  # of normalize_text(text), for duplicate checks
    label_type: Mapped[str] = mapped_column(String(32))
    predicted_label: Mapped[str] = mapped_column(String(128))
    corrected_label: Mapped[str | None] = mapped_column(String(128))
    reporter: Mapped[str | None] = mapped_column(String(128))
    reviewer: Mapped[str | None] = mapped_column(String(128))
    reviewed: Mapped[bool] = mapped_column(Boolean, default=False)
    reviewed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    consumed_in_dataset_version: Mapped[str | None] = mapped_column(String(64))
    # Added after the first release: add_new_columns() gives an older table these two.
    source: Mapped[str] = mapped_column(String(32), default=REPORT, server_default=REPORT)
    confidence: Mapped[float | None] = mapped_column(Float)  # the calibrated confidence of a queued prediction

    __table_args__ = (
        CheckConstraint(f"label_type IN ({_sql_list(list(LABEL_SETS))})", name="ck_label_type"),
        CheckConstraint(_labels_check("predicted_label", nullable=False), name="ck_predicted_label"),
        CheckConstraint(_labels_check("corrected_label", nullable=True), name="ck_corrected_label"),
        CheckConstraint("NOT reviewed OR corrected_label IS NOT NULL", name="ck_reviewed_has_label"),
        CheckConstraint("length(trim(text)) > 0", name="ck_text_not_empty"),
        # One open report per (text, label type, prediction): the DB refuses racing duplicates.
        Index(
            "uq_retrainspace_feedback_open", "text_hash", "label_type", "predicted_label", unique=True,
            sqlite_where=sql_text("consumed_in_dataset_version IS NULL"),
            postgresql_where=sql_text("consumed_in_dataset_version IS NULL"),
        ),
        Index("ix_retrainspace_feedback_review", "label_type", "reviewed", "consumed_in_dataset_version"),
    )


class FeedbackJob(Base):
    """One trigger/prepare run. `lock` is set while it runs; the unique index lets one win."""

    __tablename__ = "feedback_jobs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(64))
    lock: Mapped[str | None] = mapped_column(String(64), unique=True)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    outcome: Mapped[str | None] = mapped_column(String(32))
    dataset_version: Mapped[str | None] = mapped_column(String(64))
    detail: Mapped[str | None] = mapped_column(Text)


# --------------------------------------------------------------------------------------
# Plain values handed to callers (no session attached)


@dataclass(frozen=True)
class Report:
    id: int
    complaint_id: str | None
    text: str
    label_type: str
    predicted_label: str
    corrected_label: str | None
    reporter: str | None
    reviewer: str | None
    reviewed: bool
    reviewed_at: datetime | None
    created_at: datetime
    consumed_in_dataset_version: str | None
    source: str = REPORT
    confidence: float | None = None

    @property
    def queued(self) -> bool:
        """A prediction the Space queued for review, not a report someone sent."""
        return self.source != REPORT

    @property
    def confirmed_correct(self) -> bool:
        return self.reviewed and self.corrected_label == self.predicted_label

    @classmethod
    def of(cls, row: MisclassifiedComplaint) -> "Report":
        return cls(**{name: getattr(row, name) for name in cls.__dataclass_fields__})


@dataclass
class JobOutcome:
    outcome: str = "done"
    dataset_version: str | None = None
    detail: str | None = None


@dataclass(frozen=True)
class JobRecord:
    id: int
    name: str
    started_at: datetime
    finished_at: datetime | None
    outcome: str | None
    dataset_version: str | None
    detail: str | None

    @classmethod
    def of(cls, row: FeedbackJob) -> "JobRecord":
        return cls(**{name: getattr(row, name) for name in cls.__dataclass_fields__})


# --------------------------------------------------------------------------------------
# Validation


def text_hash(text: str) -> str:
    return hashlib.sha256(normalize_text(text).encode("utf-8")).hexdigest()


def check_label_type(label_type: str) -> str:
    if label_type not in LABEL_SETS:
        raise InvalidLabel(f"label_type {label_type!r} is unknown; use one of {sorted(LABEL_SETS)}")
    return label_type


def check_label(field: str, label_type: str, value: str) -> str:
    allowed = LABEL_SETS[check_label_type(label_type)]
    if value not in allowed:
        raise InvalidLabel(f"{field} {value!r} is not a {label_type} label; use one of {allowed}")
    return value


def check_item(text: str, label_type: str, predicted_label: str, suggested_label: str | None, **fields) -> None:
    """A report or queued prediction: non-empty text, clean unicode, labels of the label type."""
    if not isinstance(text, str) or not text.strip():
        raise InvalidReport("text is empty; send the complaint text that was misclassified")
    for field, value in (("text", text), *fields.items()):
        problem = value and unicode_problem(value)
        if problem:  # checked here, not by the database: its error would name the server
            raise InvalidReport(f"{field} {problem}")
    check_label("predicted_label", label_type, predicted_label)
    if suggested_label is not None:
        check_label("corrected_label", label_type, suggested_label)


DATA_DIR_ENV = "DATA_DIR"
LEGACY_DB_FILE = Path(".localhub") / "feedback.db"  # the default before DATA_DIR: next to the code


def job_name(label: str) -> str:
    """The job lock shared by `feedback.prepare` and `feedback.trigger`: one publisher per label."""
    return f"feedback-dataset:{label}"


def default_data_dir() -> Path:
    """Where writable state lives: $DATA_DIR, else $LOCALHUB_DATA_DIR (the embedded local hub's
    folder), else ~/.cache/retrainspace. Never the code folder: a Space's code is read-only."""
    folder = os.environ.get(DATA_DIR_ENV) or os.environ.get("LOCALHUB_DATA_DIR")
    return Path(folder) if folder else Path.home() / ".cache" / "retrainspace"


def default_db_url() -> str:
    """The SQLite feedback file in default_data_dir(). A .localhub/feedback.db made by an earlier
    version in the working folder is kept in use (its reports stay) unless a folder is set."""
    folder_set = os.environ.get(DATA_DIR_ENV) or os.environ.get("LOCALHUB_DATA_DIR")
    if not folder_set and LEGACY_DB_FILE.is_file():
        return f"sqlite:///{LEGACY_DB_FILE.resolve()}"
    return f"sqlite:///{default_data_dir().resolve() / 'feedback.db'}"


# --------------------------------------------------------------------------------------
# The store


class FeedbackStore:
    """Reports, reviews and job runs in one database (SQLite embedded, PostgreSQL for real)."""

    def __init__(self, url: str, create: bool = True):
        self.url = url
        self.safe_url = mask_url(url)
        self._password = _password_of(url)
        self.engine = create_engine(url, pool_pre_ping=True, **_engine_options(url))
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        if create:
            self.create_schema()

    @classmethod
    def from_env(cls) -> "FeedbackStore":
        return cls(os.environ.get(DB_URL_ENV) or default_db_url())

    def __repr__(self) -> str:
        return f"FeedbackStore({self.safe_url!r})"

    def close(self) -> None:
        self.engine.dispose()

    def create_schema(self) -> None:
        """Create missing tables (renaming our old-named reports table first, so its reports
        stay); SchemaConflict when a table of ours exists with other columns."""
        _make_sqlite_folder(self.url)
        with self._database_errors("create the schema"), self.engine.begin() as connection:
            rename_old_reports_table(connection)
            add_new_columns(connection)
            Base.metadata.create_all(connection)
            check_columns(connection)

    # --- reports ---------------------------------------------------------------------
    def record_report(
        self, *, text: str, label_type: str, predicted_label: str,
        complaint_id: str | None = None, corrected_label: str | None = None,
        reporter: str | None = None,
    ) -> int:
        """Store one misclassification report; returns its id. `corrected_label` is the
        reporter's suggestion; the report stays pending until `mark_reviewed`. A queued prediction
        of the same text waiting for review becomes this report (same id)."""
        check_item(text, label_type, predicted_label, corrected_label, complaint_id=complaint_id, reporter=reporter)
        values = dict(complaint_id=complaint_id, predicted_label=predicted_label, corrected_label=corrected_label,
                      reporter=reporter, source=REPORT)
        hash_ = text_hash(text)
        for _ in range(2):
            try:
                return self._store_report(text.strip(), hash_, label_type, values)
            except IntegrityError:
                pass  # the first time, a queue write of this text may have just landed: the retry takes it over
        existing = self._open_duplicate(hash_, label_type, predicted_label)
        if existing is None:
            raise FeedbackError("the database refused the report (constraint violated)")
        raise DuplicateReport(
            f"this text was already reported for {label_type} with prediction "
            f"{predicted_label!r} (report {existing}, not yet consumed); review that one instead",
            existing,
        )

    def _store_report(self, text: str, hash_: str, label_type: str, values: dict) -> int:
        """Insert the report, or turn the queued prediction of this text waiting for review into it."""
        with self._transaction("record a report") as session:
            row = session.scalar(self._open_rows(hash_, label_type).where(
                MisclassifiedComplaint.source != REPORT, MisclassifiedComplaint.reviewed.is_(False)
            ).with_for_update().limit(1))
            if row is None:
                row = MisclassifiedComplaint(text=text, text_hash=hash_, label_type=label_type, reviewed=False,
                                             created_at=utcnow())
                session.add(row)
            for name, value in values.items():
                setattr(row, name, value)
            session.flush()
            return row.id

    def queue_for_review(
        self, *, text: str, label_type: str, predicted_label: str, reason: str, max_pending: int,
        confidence: float | None = None, suggested_label: str | None = None,
    ) -> str:
        """Queue a prediction for review: "queued"; "duplicate" when the text has an open row of
        this label type; "full" when `max_pending` queued rows of it wait (new ones are refused).
        `suggested_label` (e.g. the canary's label) shows to the reviewer like a reporter's."""
        if reason not in QUEUE_REASONS:
            raise InvalidReport(f"reason {reason!r} is unknown; use one of {list(QUEUE_REASONS)}")
        check_item(text, label_type, predicted_label, suggested_label)
        hash_ = text_hash(text)
        waiting = select(func.count()).select_from(MisclassifiedComplaint).where(
            MisclassifiedComplaint.label_type == label_type, MisclassifiedComplaint.source != REPORT,
            MisclassifiedComplaint.reviewed.is_(False))
        try:
            with self._transaction("queue a prediction for review") as session:
                if session.scalar(self._open_rows(hash_, label_type).limit(1)) is not None:
                    return "duplicate"
                if session.scalar(waiting) >= max_pending:
                    return "full"
                session.add(MisclassifiedComplaint(
                    text=text.strip(), text_hash=hash_, label_type=label_type, predicted_label=predicted_label,
                    corrected_label=suggested_label, reviewed=False, created_at=utcnow(), source=reason,
                    confidence=confidence))
            return "queued"
        except IntegrityError:  # a racing writer queued or reported the same prediction first
            return "duplicate"

    def import_upstream(self, reports: list["UpstreamReport"], label_type: str) -> dict[str, int]:
        """Store upstream Sambodhan's reviewed reports as reviewed reports of ours, each once (its
        upstream id is the reporter). Returns counts: imported, and skipped with the reason."""
        counts = {"imported": 0, "already_imported": 0, "no_prediction": 0, "invalid": 0, "duplicate_open_report": 0}
        with self._transaction("import upstream reports") as session:
            done = set(session.scalars(select(MisclassifiedComplaint.reporter).where(
                MisclassifiedComplaint.reporter.like(f"sambodhan:{OLD_REPORTS_TABLE}:%"))))
            open_keys = set(session.execute(select(
                MisclassifiedComplaint.text_hash, MisclassifiedComplaint.predicted_label).where(
                MisclassifiedComplaint.label_type == label_type,
                MisclassifiedComplaint.consumed_in_dataset_version.is_(None))).tuples())
            for report in reports:
                key = (text_hash(report.text or ""), report.predicted_label)
                reason = ("already_imported" if report.reporter in done else
                          "no_prediction" if report.predicted_label is None else
                          "invalid" if _upstream_problem(report, label_type) else
                          "duplicate_open_report" if key in open_keys else "imported")
                counts[reason] += 1
                if reason != "imported":
                    continue
                open_keys.add(key)
                session.add(MisclassifiedComplaint(
                    complaint_id=f"sambodhan:{report.complaint_id}", text=report.text.strip(), text_hash=key[0],
                    label_type=label_type, predicted_label=report.predicted_label,
                    corrected_label=report.corrected_label, reporter=report.reporter, reviewer="sambodhan",
                    reviewed=True, reviewed_at=report.reviewed_at or utcnow(), created_at=utcnow()))
        return counts

    def get(self, report_id: int) -> Report:
        with self._transaction("read a report") as session:
            return Report.of(self._row(session, report_id))

    def list_pending(self, label_type: str | None = None, limit: int | None = None,
                     queued_only: bool = False) -> list[Report]:
        """Reports and queued predictions waiting for review (only the queued ones), oldest first."""
        query = select(MisclassifiedComplaint).where(MisclassifiedComplaint.reviewed.is_(False))
        if queued_only:
            query = query.where(MisclassifiedComplaint.source != REPORT)
        return self._reports(query, label_type, limit)

    def list_reviewed_unconsumed(self, label_type: str) -> list[Report]:
        """Reviewed reports not yet part of a dataset version, oldest review first."""
        query = select(MisclassifiedComplaint).where(
            MisclassifiedComplaint.reviewed.is_(True),
            MisclassifiedComplaint.consumed_in_dataset_version.is_(None),
        )
        return self._reports(query, label_type, None, order=MisclassifiedComplaint.reviewed_at)

    def pending_count(self, label_type: str | None = None) -> int:
        query = select(func.count()).select_from(MisclassifiedComplaint).where(
            MisclassifiedComplaint.reviewed.is_(False))
        if label_type is not None:
            query = query.where(MisclassifiedComplaint.label_type == check_label_type(label_type))
        with self._transaction("count pending reports") as session:
            return session.scalar(query)

    def mark_reviewed(self, report_id: int, corrected_label: str, reviewer: str | None = None) -> Report:
        """Set the reviewed label (equal to the prediction: the prediction was right)."""
        with self._transaction("mark a report reviewed") as session:
            row = self._row(session, report_id, for_update=True)
            if row.consumed_in_dataset_version is not None:
                raise ReportAlreadyConsumed(
                    f"report {report_id} is already in dataset version "
                    f"{row.consumed_in_dataset_version}; record a new report to change its label")
            row.corrected_label = check_label("corrected_label", row.label_type, corrected_label)
            row.reviewer, row.reviewed, row.reviewed_at = reviewer, True, utcnow()
            session.flush()
            return Report.of(row)

    def mark_consumed(self, report_ids: list[int], dataset_version: str) -> int:
        """Stamp reviewed, unconsumed reports with the dataset version; returns how many."""
        if not report_ids:
            return 0
        with self._transaction("mark reports consumed") as session:
            result = session.execute(
                update(MisclassifiedComplaint)
                .where(MisclassifiedComplaint.id.in_(report_ids),
                       MisclassifiedComplaint.reviewed.is_(True),
                       MisclassifiedComplaint.consumed_in_dataset_version.is_(None))
                .values(consumed_in_dataset_version=dataset_version)
            )
            return result.rowcount

    def newest_consumed_version(self, label_type: str) -> str | None:
        """The dataset version that most recently consumed reports of this label type."""
        query = (select(MisclassifiedComplaint.consumed_in_dataset_version)
                 .where(MisclassifiedComplaint.label_type == check_label_type(label_type),
                        MisclassifiedComplaint.consumed_in_dataset_version.is_not(None))
                 .order_by(MisclassifiedComplaint.reviewed_at.desc()).limit(1))
        with self._transaction("read the last consumed version") as session:
            return session.scalar(query)

    # --- job runs (one at a time per name) ------------------------------------------
    def start_job(self, name: str, stale_after_s: float = 6 * 3600) -> int:
        """Open a job run holding the lock `name`; JobAlreadyRunning if another holds it.
        A lock older than `stale_after_s` belongs to a dead run and is taken over."""
        cutoff = utcnow() - timedelta(seconds=stale_after_s)
        with self._transaction("release a stale job lock") as session:
            session.execute(
                update(FeedbackJob)
                .where(FeedbackJob.lock == name, FeedbackJob.started_at < cutoff)
                .values(lock=None, finished_at=utcnow(), outcome="abandoned")
            )
        try:
            with self._transaction("start a job") as session:
                job = FeedbackJob(name=name, lock=name, started_at=utcnow())
                session.add(job)
                session.flush()
                return job.id
        except IntegrityError:
            running = self.running_job(name)
            since = f" since {running.started_at:%Y-%m-%d %H:%M:%S} UTC (job {running.id})" if running else ""
            raise JobAlreadyRunning(f"job {name!r} is already running{since}; wait for it to finish") from None

    @contextmanager
    def job(self, name: str, stale_after_s: float = 6 * 3600) -> Iterator["JobOutcome"]:
        """Run a block holding the lock `name`; the outcome set on the handle is recorded,
        or "failed" with the error when the block raises."""
        job_id = self.start_job(name, stale_after_s)
        outcome = JobOutcome()
        try:
            yield outcome
        except BaseException as error:
            self.finish_job(job_id, "failed", detail=f"{type(error).__name__}: {error}"[:1000])
            raise
        self.finish_job(job_id, outcome.outcome, outcome.dataset_version, outcome.detail)

    def finish_job(self, job_id: int, outcome: str, dataset_version: str | None = None,
                   detail: str | None = None) -> None:
        with self._transaction("finish a job") as session:
            session.execute(
                update(FeedbackJob).where(FeedbackJob.id == job_id)
                .values(lock=None, finished_at=utcnow(), outcome=outcome,
                        dataset_version=dataset_version, detail=detail)
            )

    def running_job(self, name: str) -> JobRecord | None:
        with self._transaction("read the running job") as session:
            row = session.scalar(select(FeedbackJob).where(FeedbackJob.lock == name))
            return JobRecord.of(row) if row else None

    def last_finished_job(self, name: str) -> JobRecord | None:
        query = (select(FeedbackJob).where(FeedbackJob.name == name, FeedbackJob.finished_at.is_not(None))
                 .order_by(FeedbackJob.id.desc()).limit(1))
        with self._transaction("read the last job") as session:
            row = session.scalar(query)
            return JobRecord.of(row) if row else None

    # --- internals -------------------------------------------------------------------
    def _reports(self, query, label_type, limit, order=None) -> list[Report]:
        if label_type is not None:
            query = query.where(MisclassifiedComplaint.label_type == check_label_type(label_type))
        query = query.order_by(order if order is not None else MisclassifiedComplaint.created_at,
                               MisclassifiedComplaint.id)
        if limit is not None:
            query = query.limit(limit)
        with self._transaction("list reports") as session:
            return [Report.of(row) for row in session.scalars(query)]

    def _row(self, session: Session, report_id: int, for_update: bool = False) -> MisclassifiedComplaint:
        query = select(MisclassifiedComplaint).where(MisclassifiedComplaint.id == report_id)
        row = session.scalar(query.with_for_update() if for_update else query)
        if row is None:
            raise ReportNotFound(f"no feedback report with id {report_id}")
        return row

    @staticmethod
    def _open_rows(hash_: str, label_type: str):
        """Rows of this text and label type not yet in a dataset version (reports and queued)."""
        return select(MisclassifiedComplaint).where(
            MisclassifiedComplaint.text_hash == hash_, MisclassifiedComplaint.label_type == label_type,
            MisclassifiedComplaint.consumed_in_dataset_version.is_(None))

    def _open_duplicate(self, hash_: str, label_type: str, predicted_label: str) -> int | None:
        query = select(MisclassifiedComplaint.id).where(
            MisclassifiedComplaint.text_hash == hash_,
            MisclassifiedComplaint.label_type == label_type,
            MisclassifiedComplaint.predicted_label == predicted_label,
            MisclassifiedComplaint.consumed_in_dataset_version.is_(None),
        )
        with self._transaction("look up a duplicate") as session:
            return session.scalar(query)

    @contextmanager
    def _transaction(self, action: str) -> Iterator[Session]:
        with self._database_errors(action), self._sessions.begin() as session:
            yield session

    @contextmanager
    def _database_errors(self, action: str) -> Iterator[None]:
        try:
            yield
        except IntegrityError:
            raise
        except DBAPIError as error:
            reason = _first_line(error, self._password)
            raise DatabaseUnavailable(
                f"could not {action}: feedback database {self.safe_url} failed ({reason}). "
                f"Nothing was written. Check that the server is running and {DB_URL_ENV} is right."
            ) from None


# --------------------------------------------------------------------------------------
# Upstream Sambodhan's backend database, read-only


@dataclass(frozen=True)
class UpstreamReport:
    """One reviewed row of upstream's misclassified_complaints, with its complaint's message."""

    id: int
    complaint_id: int
    text: str
    predicted_label: str | None
    corrected_label: str
    reviewed_at: datetime | None

    @property
    def reporter(self) -> str:  # marks the import: a row is imported once
        return f"sambodhan:{OLD_REPORTS_TABLE}:{self.id}"


def sambodhan_tables() -> tuple[Table, Table]:
    """The columns we read of upstream's complaints and misclassified_complaints
    (src/backend/app/models/complaint.py)."""
    metadata = MetaData()
    complaints = Table("complaints", metadata, Column("id", Integer), Column("message", Text))
    reports = Table(OLD_REPORTS_TABLE, metadata, Column("id", Integer), Column("complaint_id", Integer),
                    *(Column(f"{kind}_{label_type}", String) for kind in ("model_predicted", "correct")
                      for label_type in LABEL_SETS),
                    Column("reviewed", Boolean), Column("reviewed_at", UTCDateTime))
    return complaints, reports


class SambodhanSource:
    """Upstream Sambodhan's backend database as a read-only source of reviewed reports."""

    def __init__(self, url: str):
        self.safe_url, self._password = mask_url(url), _password_of(url)
        self.engine = create_engine(_read_only_url(url), **_read_only_options(url))

    def reviewed_reports(self, label_type: str) -> list[UpstreamReport]:
        """Reviewed rows that carry a corrected label of this type, oldest first."""
        complaints, reports = sambodhan_tables()
        predicted = reports.c[f"model_predicted_{check_label_type(label_type)}"]
        corrected = reports.c[f"correct_{label_type}"]
        query = (select(reports.c.id, reports.c.complaint_id, complaints.c.message, predicted, corrected,
                        reports.c.reviewed_at)
                 .join_from(reports, complaints, complaints.c.id == reports.c.complaint_id)
                 .where(reports.c.reviewed.is_(True), corrected.is_not(None))
                 .order_by(reports.c.id))
        try:
            with self.engine.connect() as connection:
                return [UpstreamReport(*row) for row in connection.execute(query)]
        except DBAPIError as error:
            reason = _first_line(error, self._password)
            raise DatabaseUnavailable(
                f"could not read upstream Sambodhan's {OLD_REPORTS_TABLE} at {self.safe_url} ({reason}); "
                "check FEEDBACK_SAMBODHAN_DB_URL") from None
        finally:
            self.engine.dispose()


def _upstream_problem(report: UpstreamReport, label_type: str) -> bool:
    labels = LABEL_SETS[label_type]
    return (not (report.text or "").strip() or unicode_problem(report.text) is not None
            or report.predicted_label not in labels or report.corrected_label not in labels)


def _read_only_url(url: str) -> str:
    if url.startswith("sqlite") and "///" in url:  # SQLite opens the file read-only through a URI
        return f"sqlite:///file:{url.split('///', 1)[1]}?mode=ro&uri=true"
    return url


def _read_only_options(url: str) -> dict:
    if url.startswith("postgresql"):
        return {"connect_args": {"connect_timeout": 5, "options": "-c default_transaction_read_only=on"}}
    return {}


def _first_line(error: DBAPIError, password: str | None) -> str:
    reason = str(error.orig).strip().splitlines()[0] if error.orig is not None else type(error).__name__
    return reason.replace(password, "***") if password else reason


def rename_old_reports_table(connection) -> None:
    """An earlier version's `misclassified_complaints` (ours: it has our columns) becomes
    `retrainspace_feedback`, with its rows and ids. Upstream Sambodhan's table of that name has
    other columns and is left alone."""
    tables = inspect(connection).get_table_names()
    if MisclassifiedComplaint.__tablename__ in tables or OLD_REPORTS_TABLE not in tables:
        return
    columns = {c["name"] for c in inspect(connection).get_columns(OLD_REPORTS_TABLE)}
    if first_release_columns() <= columns:
        connection.execute(sql_text(
            f"ALTER TABLE {OLD_REPORTS_TABLE} RENAME TO {MisclassifiedComplaint.__tablename__}"))


# Columns added to the reports table since its first release, with their DDL (old rows: reports).
ADDED_COLUMNS = {"source": f"VARCHAR(32) NOT NULL DEFAULT '{REPORT}'", "confidence": "FLOAT"}


def first_release_columns() -> set[str]:
    return set(MisclassifiedComplaint.__table__.columns.keys()) - set(ADDED_COLUMNS)


def add_new_columns(connection) -> None:
    """A reports table of an earlier version (all its first-release columns) gains the columns
    added since; its rows stay reports. A table with other columns is left to check_columns."""
    table = MisclassifiedComplaint.__tablename__
    if table not in inspect(connection).get_table_names():
        return
    present = {c["name"] for c in inspect(connection).get_columns(table)}
    if not first_release_columns() <= present:
        return
    # PostgreSQL: two Spaces opening an old database at once must not fail on each other's column
    guard = "IF NOT EXISTS " if connection.dialect.name == "postgresql" else ""
    for name, ddl in ADDED_COLUMNS.items():
        if name not in present:
            connection.execute(sql_text(f"ALTER TABLE {table} ADD COLUMN {guard}{name} {ddl}"))


def check_columns(connection) -> None:
    for table in Base.metadata.sorted_tables:
        present = {c["name"] for c in inspect(connection).get_columns(table.name)}
        missing = [name for name in table.columns.keys() if name not in present]
        if missing:
            raise SchemaConflict(
                f"table {table.name} exists with other columns: it lacks {missing} (it has {sorted(present)}). "
                f"It is not the feedback store's table: rename or drop it, or point {DB_URL_ENV} at another "
                "database or schema")


def _password_of(url: str) -> str | None:
    try:
        return make_url(url).password
    except ArgumentError:
        raise FeedbackError(f"{DB_URL_ENV} is not a database URL: {mask_url(url)!r}; "
                            "use e.g. postgresql+psycopg://user:password@host/db or sqlite:///path.db") from None


def _make_sqlite_folder(url: str) -> None:
    """Create the folder of an SQLite file; an unwritable one is a clear error naming the fix."""
    path = url.split("///", 1)[-1] if url.startswith("sqlite") else ""
    if not path or path == ":memory:":
        return
    try:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise DatabaseUnavailable(
            f"cannot create the folder of the SQLite feedback database {path} ({error.strerror}); "
            f"set {DATA_DIR_ENV} to a writable folder or {DB_URL_ENV} to a database URL") from None


def _engine_options(url: str) -> dict:
    if url.startswith("sqlite"):
        # wait for a concurrent writer instead of failing at once
        return {"connect_args": {"timeout": 30}}
    if url.startswith("postgresql"):
        return {"connect_args": {"connect_timeout": 5}}
    return {}
