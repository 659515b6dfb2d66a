"""Review CLI: list pending reports and queued predictions, set their corrected label.

    python -m feedback.review list --label urgency
    python -m feedback.review list --queue            # only predictions the Space queued for review
    python -m feedback.review mark 17 "HIGHLY URGENT" --reviewer alice
    python -m feedback.review mark 18 NORMAL          # same as predicted: a confirmed prediction
"""
from __future__ import annotations

import argparse
import sys

from configs import LABEL_SETS
from feedback.store import FeedbackError, FeedbackStore


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Review misclassification reports (database: FEEDBACK_DB_URL).")
    commands = parser.add_subparsers(dest="command", required=True)
    listing = commands.add_parser("list", help="pending reports and queued predictions, oldest first")
    listing.add_argument("--label", choices=sorted(LABEL_SETS), help="only this label type")
    listing.add_argument("--queue", action="store_true",
                         help="only predictions queued for review (low confidence, small margin, shadow disagreement)")
    listing.add_argument("--limit", type=int, default=50)
    mark = commands.add_parser("mark", help="set the corrected label of a report or queued prediction")
    mark.add_argument("id", type=int)
    mark.add_argument("label", help="the right label (equal to the prediction: the model was right)")
    mark.add_argument("--reviewer", default=None)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        store = FeedbackStore.from_env()
        if args.command == "list":
            for report in store.list_pending(args.label, args.limit, queued_only=args.queue):
                confidence = "-" if report.confidence is None else f"{report.confidence:.2f}"
                print(f"{report.id}\t{report.label_type}\tpredicted={report.predicted_label}\t"
                      f"suggested={report.corrected_label or '-'}\twhy={report.source}\tconfidence={confidence}\t"
                      f"{report.text[:100]}")
            print(f"{store.pending_count(args.label)} pending", file=sys.stderr)
        else:
            report = store.mark_reviewed(args.id, args.label, args.reviewer)
            verdict = "confirmed" if report.confirmed_correct else f"corrected {report.predicted_label} ->"
            print(f"report {report.id}: {verdict} {report.corrected_label}")
    except FeedbackError as error:
        print(f"feedback.review: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
