"""The review queue on the local hub's page: pending reports and queued predictions of the
feedback store, oldest first, each with one button per label; a click POSTs the label.

    POST /api/localhub/review/{id}   {"label": "URGENT"}   -> the item, reviewed

The store is the one the review CLI and `feedback.prepare` use from the hub's environment:
FEEDBACK_DB_URL, else the default SQLite file (never created by the page: no file, no section).
The write passes the hub's Origin, content-type and token checks like every other write.
"""
from __future__ import annotations

import os
import threading
from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool

from configs import LABEL_SETS

from .security import field, json_body
from .storage import HubHTTPError

SHOWN = 50  # items on the page; the count says how many wait in all
REVIEWER = "localhub-page"


class ReviewSource:
    """The feedback store, opened on first use (per URL: the environment may change in tests)."""

    def __init__(self):
        self._stores: dict[str, object] = {}
        self._lock = threading.Lock()

    def store(self):
        """The FeedbackStore, or None when there is none yet (an SQLite file not made)."""
        from feedback.store import DB_URL_ENV, FeedbackStore, default_db_url

        url = os.environ.get(DB_URL_ENV) or default_db_url()
        if url.startswith("sqlite") and not Path(url.split("///", 1)[-1]).is_file():
            return None
        with self._lock:
            if url not in self._stores:
                self._stores[url] = FeedbackStore(url, create=False)
            return self._stores[url]


def review_view(source: ReviewSource) -> dict | None:
    """Pending items (oldest first) and their count; {"error": ...} when the store fails."""
    from feedback.store import FeedbackError

    store = source.store()
    if store is None:
        return None
    try:
        items = store.list_pending(limit=SHOWN)
        count = store.pending_count()
    except FeedbackError as error:  # the page shows why; the rest of it still renders
        return {"store": store.safe_url, "error": str(error)}
    return {"store": store.safe_url, "pending": count, "items": [
        {"id": r.id, "label_type": r.label_type, "source": r.source, "confidence": r.confidence,
         "predicted": r.predicted_label, "suggested": r.corrected_label, "text": r.text,
         "created_at": r.created_at.isoformat(timespec="seconds"), "labels": LABEL_SETS[r.label_type]}
        for r in items]}


def render_review(view: dict | None, e) -> str:
    """The section's HTML; `e` is the page's escaping function (every value goes through it)."""
    if view is None:
        return '<p class="muted">no feedback store yet (set FEEDBACK_DB_URL, or record a report first)</p>'
    if "error" in view:
        return f'<p class="error" data-role="review-error">{e(view["error"])}</p>'
    rows = "".join(render_item(item, e) for item in view["items"])
    head = (f'<p class="muted">{view["pending"]} waiting in {e(view["store"])}, oldest first'
            f'{f"; the first {SHOWN} shown" if view["pending"] > SHOWN else ""}</p>')
    table = ("<table><thead><tr><th>id</th><th>why</th><th>predicted</th><th>text</th><th>label it</th></tr></thead>"
             f"<tbody>{rows}</tbody></table>") if rows else ""
    return head + table


def render_item(item: dict, e) -> str:
    confidence = "" if item["confidence"] is None else f' <small>{item["confidence"]:.2f}</small>'
    suggested = f'<br><small class="muted">suggested: {e(item["suggested"])}</small>' if item["suggested"] else ""
    buttons = "".join(
        f'<button type="button" data-review="{item["id"]}" data-label="{e(label)}">'
        f'{e(label)}{" ✓" if label == item["predicted"] else ""}</button>' for label in item["labels"])
    return (f'<tr data-review-item="{item["id"]}"><td>{item["id"]}<br><small>{e(item["label_type"])}</small></td>'
            f'<td>{e(item["source"])}{confidence}</td><td>{e(item["predicted"])}{suggested}</td>'
            f'<td class="review-text">{e(item["text"])}</td><td class="actions">{buttons}</td></tr>')


def review_router(source: ReviewSource) -> APIRouter:
    router = APIRouter(include_in_schema=False)

    @router.post("/api/localhub/review/{item_id}")
    async def review(item_id: int, request: Request) -> dict:
        label = field(await json_body(request), "label")
        return await run_in_threadpool(mark, source, item_id, label)

    return router


def mark(source: ReviewSource, item_id: int, label: str) -> dict:
    from feedback.store import DatabaseUnavailable, FeedbackError, InvalidReport, ReportAlreadyConsumed, ReportNotFound

    store = source.store()
    if store is None:
        raise HubHTTPError(404, "no feedback store yet: set FEEDBACK_DB_URL for the hub")
    try:
        item = store.mark_reviewed(item_id, label, reviewer=REVIEWER)
    except ReportNotFound as error:
        raise HubHTTPError(404, str(error)) from None
    except ReportAlreadyConsumed as error:
        raise HubHTTPError(409, str(error)) from None
    except InvalidReport as error:
        raise HubHTTPError(422, str(error)) from None
    except DatabaseUnavailable as error:
        raise HubHTTPError(503, str(error)) from None
    except FeedbackError as error:
        raise HubHTTPError(500, str(error)) from None
    return {"id": item.id, "label_type": item.label_type, "corrected_label": item.corrected_label,
            "reviewed": item.reviewed, "confirmed": item.confirmed_correct}
