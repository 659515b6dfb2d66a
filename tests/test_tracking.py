import logging

import pandas as pd
import pytest

import tracking
from configs import load_config
from metrics import confusion_matrix_png

FAKE_KEY = "fakekey" + "0123456789abcdef" * 2 + "deadbeef"


@pytest.fixture
def fake_key(monkeypatch):
    monkeypatch.setenv("WANDB_API_KEY", FAKE_KEY)
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.delenv("RANK", raising=False)
    return FAKE_KEY


def files_containing(root, needle: str) -> list[str]:
    return [str(p) for p in root.rglob("*") if p.is_file() and needle.encode() in p.read_bytes()]


def test_offline_run_logs_everything_and_never_writes_the_key(fake_key, tmp_path):
    cfg = load_config({"label": "urgency"})
    tracker = tracking.RunTracker(cfg, tmp_path)
    assert tracker.active and tracker.mode == "offline"
    assert tracker._run.config["wandb_api_key"] == "***"
    assert tracker.url.startswith(str(tmp_path / "wandb" / "offline-run-"))

    tracker.log({"eval_macro_f1": 0.5, "train/global_step": 10})
    png = confusion_matrix_png([0, 1, 2], [0, 1, 1], cfg.labels, tmp_path / "cm.png", "test")
    tracker.log_confusion_matrix("confusion_matrix/test", png)
    tracker.log_table("data_report", pd.DataFrame({"split": ["train"], "rows": [350]}))
    tracker.summary({"decision": "promote"})
    tracker.finish()
    tracker.finish()  # twice is fine
    tracker.log({"after": 1.0})  # after finish: ignored

    run_folder = tmp_path / "wandb"
    media = {p.parent.name for p in run_folder.rglob("media/*/*")}
    assert {"images", "table"} <= media
    assert list(run_folder.rglob("*.wandb"))
    assert files_containing(tmp_path, fake_key) == []


def test_disabled_mode_opens_no_run(monkeypatch, tmp_path):
    monkeypatch.setenv("WANDB_MODE", "disabled")
    tracker = tracking.RunTracker(load_config({"label": "department"}), tmp_path / "run")
    assert not tracker.active and tracker.url is None
    tracker.log({"x": 1})
    tracker.summary({"x": 1})
    tracker.finish(exit_code=1)
    assert not (tmp_path / "run").exists()


def test_non_main_rank_opens_no_run(monkeypatch, tmp_path):
    monkeypatch.setenv("RANK", "1")
    tracker = tracking.RunTracker(load_config({"label": "department"}), tmp_path / "run")
    assert not tracker.active
    tracker.finish()
    assert not (tmp_path / "run").exists()


def test_failed_init_is_a_warning_without_the_key(fake_key, monkeypatch, tmp_path, caplog):
    import wandb

    def broken_init(**kwargs):
        raise RuntimeError(f"auth failed for key {fake_key}")

    monkeypatch.setattr(wandb, "init", broken_init)
    with caplog.at_level(logging.WARNING, logger="tracking"):
        tracker = tracking.RunTracker(load_config({"label": "urgency"}), tmp_path)
    assert not tracker.active
    assert "auth failed" in caplog.text and fake_key not in caplog.text
    tracker.log({"x": 1})
    tracker.finish()
    tracker.finish()


def test_exit_code_reaches_finish_on_error(monkeypatch, tmp_path):
    finished = []

    class FakeRun:
        def finish(self, exit_code):
            finished.append(exit_code)

    monkeypatch.setattr(tracking.RunTracker, "_init", lambda self, cfg, name: FakeRun())
    monkeypatch.delenv("RANK", raising=False)
    with pytest.raises(ValueError):
        with tracking.RunTracker(load_config({"label": "urgency"}), tmp_path):
            raise ValueError("training crashed")
    assert finished == [1]
