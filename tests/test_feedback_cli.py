"""The command lines: review, and the admin trigger with --force against the local hub."""
import json
import sys

import localhub
from feedback import review, trigger
from feedback.store import FeedbackStore
from hub import SpaceController


def test_review_cli_lists_and_marks(monkeypatch, tmp_path, capsys):
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    monkeypatch.setenv("FEEDBACK_DB_URL", url)
    report_id = FeedbackStore(url).record_report(text="The health post has no doctor on weekends.",
                                                 label_type="urgency", predicted_label="NORMAL")
    assert review.main(["list", "--label", "urgency"]) == 0
    assert f"{report_id}\turgency\tpredicted=NORMAL" in capsys.readouterr().out
    assert review.main(["mark", str(report_id), "SOMETIMES"]) == 1
    assert "is not a urgency label" in capsys.readouterr().err
    assert review.main(["mark", str(report_id), "URGENT", "--reviewer", "alice"]) == 0
    assert "corrected NORMAL -> URGENT" in capsys.readouterr().out


def test_trigger_cli_force_restarts_the_retrain_space(
        monkeypatch, tmp_path, capsys, local_hub, push_dataset, unique_repo, small_splits):
    dataset, space = unique_repo("cli-data"), unique_repo("cli-retrain")
    push_dataset(dataset, small_splits, tag="v1")
    local_hub.client.ensure_repo(space, "space")
    localhub.bind_space(local_hub.url, space, [sys.executable, "-c", "pass"], serves_http=False)
    for name, value in {"FEEDBACK_DB_URL": f"sqlite:///{tmp_path / 'cli.db'}", "HF_ENDPOINT": local_hub.url,
                        "LABEL": "urgency", "DATASET_REPO_ID": dataset, "RETRAIN_SPACE_ID": space}.items():
        monkeypatch.setenv(name, value)

    controller = SpaceController(local_hub.client, space)
    assert trigger.main(["--report-dir", str(tmp_path)]) == 0
    assert controller.state().stage == "NO_APP_FILE"  # not started by a check that was not due
    assert json.loads(capsys.readouterr().out)["outcome"] == "not_due"
    assert trigger.main(["--force", "--report-dir", str(tmp_path)]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert (printed["outcome"], printed["dataset_version"], printed["retrain_space"]) == ("restarted", "v1", space)
    controller.wait_until({"RUNNING", "STOPPED"}, timeout=30)
