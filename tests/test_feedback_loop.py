"""The loop on the local hub: reports -> reviewed -> trigger -> new tagged dataset version ->
the retrain Space restarts and its run resolves that version."""
import sys
from pathlib import Path

import pandas as pd

import localhub
from feedback.groups import NearDuplicateIndex
from feedback.settings import FeedbackSettings
from feedback.trigger import run_trigger
from hub import SpaceController
from load_dataset import download_splits, validate_splits

ROOT = Path(__file__).resolve().parents[1]

# The retrain Space bound to a trivial command: resolve the dataset version as the job does, write it down.
RETRAIN_STUB = (
    "import os; from configs import load_config; from hub import HubClient; "
    "from load_dataset import resolve_dataset_revision; cfg = load_config(); "
    "version, _ = resolve_dataset_revision(HubClient(cfg.endpoint), cfg); "
    "open(os.environ['VERSION_FILE'], 'w').write(version)"
)

CORRECTIONS = {
    "The suspension bridge in our village swings dangerously and one cable has snapped.": "HIGHLY URGENT",
    "Please add a second counter at the land revenue office; the queue takes all day.": "NORMAL",
    "Sewage from the new hotel drains straight into the river where children bathe.": "URGENT",
}


def test_reviewed_reports_become_a_version_the_restarted_retrain_space_uses(
        local_hub, push_dataset, unique_repo, make_cfg, small_splits, sqlite_feedback_store, tmp_path):
    dataset, space = unique_repo("feedback-loop"), unique_repo("feedback-retrain").replace("tests-data/", "tests-space/")
    push_dataset(dataset, small_splits, tag="v1")
    hub = local_hub.client
    hub.ensure_repo(space, "space")
    localhub.bind_space(local_hub.url, space, [sys.executable, "-c", RETRAIN_STUB], cwd=ROOT, serves_http=False)
    controller = SpaceController(hub, space)
    for key, value in {"LABEL": "urgency", "DATASET_REPO_ID": dataset,
                       "VERSION_FILE": str(tmp_path / "version.txt")}.items():
        controller.set_variable(key, value)

    for text, label in CORRECTIONS.items():
        predicted = "NORMAL" if label != "NORMAL" else "URGENT"
        report_id = sqlite_feedback_store.record_report(text=text, label_type="urgency",
                                                        predicted_label=predicted, reporter="citizen")
        sqlite_feedback_store.mark_reviewed(report_id, label, reviewer="admin")

    cfg = make_cfg("urgency", dataset_repo_id=dataset, retrain_space_id=space, hf_endpoint=local_hub.url)
    settings = FeedbackSettings(threshold=3, min_train_rows=5)
    result = run_trigger(cfg, sqlite_feedback_store, hub, settings)

    assert (result.outcome, result.dataset_version) == ("restarted", "v2")
    frames, _ = download_splits(hub, dataset, hub.resolve_revision(dataset, "v2", "dataset"))
    train = frames["train"].set_index("text")
    assert all(train.loc[text, "urgency"] == label for text, label in CORRECTIONS.items())
    validate_splits(frames, cfg, source=f"{dataset}@v2")  # the job's own leakage check passes
    held_out = NearDuplicateIndex(pd.concat([frames["validation"], frames["test"]]).text.tolist(), 0.5)
    assert not any(held_out.matches(text) for text in CORRECTIONS)

    controller.wait_until("STOPPED", timeout=60, poll=0.2)
    assert (tmp_path / "version.txt").read_text() == "v2"
    assert run_trigger(cfg, sqlite_feedback_store, hub, settings).outcome == "not_due"
