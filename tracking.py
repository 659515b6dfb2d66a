"""The only place that talks to Weights & Biases.

Online when WANDB_API_KEY is set, offline by default (no network, no key: the run is written
under run_dir and can be uploaded later with `wandb sync`), off with WANDB_MODE=disabled.
Tracking never breaks a training run: a W&B failure is logged as a warning and the tracker
goes quiet. Only the main process (rank 0) opens a run.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from configs import JobConfig

logger = logging.getLogger(__name__)


def _is_main_process() -> bool:
    # Imported lazily: model_pipeline pulls in torch and transformers.
    from model_pipeline import is_main_process

    return is_main_process()


class RunTracker:
    """One W&B run for one job run; every method is a no-op when there is no run."""

    def __init__(self, cfg: JobConfig, run_dir: str | Path, name: str | None = None):
        self.run_dir = Path(run_dir)
        self.mode = cfg.wandb_effective_mode
        self._secret = cfg.wandb_api_key.get_secret_value() if cfg.wandb_api_key else None
        self._run = None
        if self.mode == "disabled" or not _is_main_process():
            return
        try:
            self._run = self._init(cfg, name)
        except Exception as error:  # noqa: BLE001 - W&B down must not stop the retraining
            logger.warning("W&B could not start (%s); continuing without tracking", self._scrub(error))

    def _init(self, cfg: JobConfig, name: str | None):
        import wandb

        self.run_dir.mkdir(parents=True, exist_ok=True)
        settings = wandb.Settings(
            api_key=self._secret if self.mode == "online" else None,
            silent=True,
            x_disable_stats=True,  # no system-metrics sampler thread on a shared CPU
        )
        return wandb.init(
            project=cfg.wandb_project_name, dir=str(self.run_dir), mode=self.mode,
            config=cfg.dump(), name=name, job_type=f"retrain-{cfg.label}",
            settings=settings, reinit="create_new",
        )

    @property
    def active(self) -> bool:
        return self._run is not None

    @property
    def url(self) -> str | None:
        """The run page online; the offline run folder (for `wandb sync`) offline."""
        if self._run is None:
            return None
        if self.mode == "online":
            return self._run.url
        return str(Path(self._run.dir).parent)

    def log(self, metrics: dict[str, Any]) -> None:
        self._safely("log", lambda run: run.log(dict(metrics)))

    def log_confusion_matrix(self, name: str, png_path: str | Path) -> None:
        import wandb

        self._safely("log_confusion_matrix", lambda run: run.log({name: wandb.Image(str(png_path))}))

    def log_table(self, name: str, df) -> None:
        import wandb

        self._safely("log_table", lambda run: run.log({name: wandb.Table(dataframe=df)}))

    def summary(self, values: dict[str, Any]) -> None:
        self._safely("summary", lambda run: run.summary.update(dict(values)))

    def finish(self, exit_code: int = 0) -> None:
        run, self._run = self._run, None
        if run is not None:
            try:
                run.finish(exit_code=exit_code)
            except Exception as error:  # noqa: BLE001
                logger.warning("W&B finish failed (%s)", self._scrub(error))

    def _safely(self, what: str, action) -> None:
        if self._run is None:
            return
        try:
            action(self._run)
        except Exception as error:  # noqa: BLE001 - a lost metric must not stop the retraining
            logger.warning("W&B %s failed (%s)", what, self._scrub(error))

    def _scrub(self, error: Exception) -> str:
        text = f"{type(error).__name__}: {error}"
        for secret in (self._secret, os.environ.get("WANDB_API_KEY")):
            if secret:
                text = text.replace(secret, "***")
        return text

    def __enter__(self) -> "RunTracker":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.finish(exit_code=0 if exc_type is None else 1)
