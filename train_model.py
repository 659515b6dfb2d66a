"""Retrain job: runs once per restart of the retrain Space.

    config -> run lock -> dataset -> train -> compare with deployed -> decide -> deploy
    -> restart + verify -> summary; finally: finish W&B, write the summary, pause this Space.

Under `torchrun --nproc_per_node N` every process trains; only rank 0 takes the lock, compares,
decides, deploys, writes and pauses.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np

from canary import ACTIONS, CANARY_REVISION, abort_for_rollback, complete_canary, record_path, start_canary
from compare import ComparisonError, build_comparison, decide, deployed_predictions, stratified_sample
from configs import ConfigError, HubSettings, JobConfig, add_setting_flags, load_config
from deploy import (
    REVISION_VARIABLE,
    build_metadata,
    previously_served,
    promote,
    release_folder,
    serve_revision,
    served_release,
    unserved_tags,
    version_tag,
    version_tags,
)
from deployed_api import DeployedAPIError, DeployedModelClient
from deployed_check import check_deployed_before_training, deployed_space_awake
from hub import HubClient, HubError, SpaceController, disable_hub_progress_bars, pause_space
from interrupts import JobInterrupted, cleaning_up, deferred_signals, handle_signals
from load_dataset import load_versioned_dataset, resolve_dataset_revision
from metrics import confusion_matrix_png
from onnx_export import add_onnx_to_release, save_samples
from run_lock import LockBusy, RunLock
from status_page import start_status_page
from summary import RunResult, write_summary
from tracking import RunTracker

logger = logging.getLogger("retrainspace")


def training():
    """model_pipeline, imported on first use: torch and transformers take seconds to import,
    and `--help` or a bad setting must answer at once."""
    import transformers

    import model_pipeline

    transformers.utils.logging.set_verbosity(library_log_level())
    if not sys.stderr.isatty():
        transformers.utils.logging.disable_progress_bar()
    return model_pipeline


def is_rank_zero() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


def library_log_level() -> int:
    """transformers and datasets: their warnings on rank 0, errors only on the other ranks."""
    return logging.WARNING if is_rank_zero() else logging.ERROR


def setup_logging() -> None:
    """Once per process, as transformers' examples do: rank 0 logs INFO, the other ranks WARNING.
    Piped output (a Space's log, a file) gets no progress bars: they would be one line per update."""
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%Y-%m-%d %H:%M:%S",
                        level=logging.INFO if is_rank_zero() else logging.WARNING)
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one INFO line per HTTP request otherwise
    logging.getLogger("httpx2").setLevel(logging.WARNING)
    import datasets  # here: it takes a second to import, and --help must answer at once

    datasets.utils.logging.set_verbosity(library_log_level())
    if not sys.stderr.isatty():
        datasets.disable_progress_bars()
        disable_hub_progress_bars()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Retrain the complaint classifier for one LABEL, compare it with the deployed model on the "
        "same stratified test samples, promote it only if macro-F1 improves, restart the inference Space, and "
        "always pause this Space at the end. Every setting is read from its environment variable (the Space's "
        "variables and secrets); a flag overrides it. HF_TOKEN set: the real Hub; unset: the embedded local hub.",
        epilog="Exit code: 0 when a model was promoted, the deployed one kept, or a canary started or still waits for "
        "feedback; 1 on failure; 2 on bad settings.",
    )
    parser.add_argument("command", nargs="?", choices=["train", "rollback", "canary"], default="train",
                        help="train (default): the whole job. rollback: serve an earlier promoted version again "
                        "(during a canary: abort the canary, the stable version serves alone). "
                        "canary: complete the canary or shadow version the inference Space runs (PROMOTION_MODE)")
    parser.add_argument("action", nargs="?", choices=ACTIONS, default=None,
                        help="canary: decide (default) from its figures as the next run would: promote when there "
                        "are CANARY_MIN_FEEDBACK labelled feedback reports and its accuracy is at most "
                        "CANARY_MAX_ACCURACY_DROP below the served version's, else abort, or wait for more. "
                        "promote / abort: do that now, whatever the figures")
    parser.add_argument("--to", metavar="TAG",
                        help="rollback: the version tag to serve (default: the one before the served one; "
                        "during a canary the stable one)")
    parser.add_argument("--status-port", type=int, metavar="PORT", default=os.environ.get("PORT") or None,
                        help="serve a status page (current step, result) on this port while the job runs "
                        "(default: PORT, which the Docker image sets to 7860)")
    parser.add_argument("--dry-run", action="store_true",
                        help="print the resolved settings (secrets masked) and the dataset version, then exit")
    add_setting_flags(parser)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    overrides = {k: v for k, v in vars(args).items()
                 if k not in ("command", "action", "to", "dry_run", "status_port")}
    if args.action and args.command != "canary":
        print(f"{args.action!r}: only the canary command takes an action", file=sys.stderr)
        return 2
    try:
        cfg = load_config(overrides)
    except ConfigError as error:
        print(error, file=sys.stderr)
        pause_self_without_config()
        return 2
    setup_logging()
    with handle_signals():  # SIGTERM/SIGINT: clean up, exit 143/130 (interrupts.py)
        try:
            if args.command == "rollback":
                return rollback(cfg, args.to)
            if args.command == "canary":
                return canary(cfg, args.action or "decide")
            if args.dry_run:
                return dry_run(cfg)
            return run(cfg, status_port=args.status_port).exit_code
        except JobInterrupted as interrupted:
            print(f"[retrainspace] {interrupted}: stopped", file=sys.stderr, flush=True)
            return interrupted.exit_code


class CleanupError(RuntimeError):
    """The run ended well but a cleanup (W&B, summary, pause) failed; the message says which."""


def run(cfg: JobConfig, status_port: int | None = None):
    """The job. Returns the RunResult; re-raises the original error after the cleanup."""
    result = RunResult(label=cfg.label, run_dir=new_run_dir(cfg))
    if not training().is_main_process():
        return run_worker(cfg, result)
    if status_port:
        start_status_page(status_port, result.status)
    hub = tracker = None
    try:
        hub = HubClient.from_config(cfg)
        tracker = RunTracker(cfg, result.run_dir)
        result.wandb_dir = tracker.url  # the run page online, the offline run folder otherwise
        result.enter("run lock")
        with RunLock(hub, cfg.model_repo, cfg.lock_ttl_s, result.run_dir), deployed_space_awake(cfg, hub):
            retrain(cfg, hub, tracker, result)
    except LockBusy as busy:
        result.outcome, result.error = "skipped", str(busy)
    except JobInterrupted as interrupted:  # the platform stops or restarts this Space
        result.outcome, result.error = "interrupted", str(interrupted)
        raise
    except BaseException as error:
        result.outcome, result.error = "failed", f"{type(error).__name__}: {error}"
        raise
    finally:
        with cleaning_up():
            finish_run(cfg, hub, tracker, result)
    if result.cleanup_errors:  # the run itself went well: say what the cleanup could not do
        raise CleanupError("; ".join(result.cleanup_errors))
    return result


def run_worker(cfg: JobConfig, result):
    """A rank > 0 under torchrun: load the same data, train with rank 0, nothing else."""
    hub = HubClient.from_config(cfg)
    dataset, _ = load_versioned_dataset(cfg, hub)
    training().train(cfg, limit_train_rows(cfg, dataset), fetch_base_model(cfg, hub), result.run_dir / "train")
    result.outcome = "skipped"  # rank 0 compares, decides and deploys
    return result


def limit_train_rows(cfg: JobConfig, dataset):
    if cfg.max_train_samples and cfg.max_train_samples < len(dataset["train"]):
        dataset["train"] = dataset["train"].shuffle(seed=cfg.seed).select(range(cfg.max_train_samples))
    return dataset


def retrain(cfg: JobConfig, hub, tracker, result) -> None:
    """Steps 2-6 of the design card, each one call."""
    result.enter("canary")
    if complete_pending_canary(cfg, hub, result):
        return
    result.enter("check deployed")
    check_deployed_before_training(cfg, hub)
    result.enter("dataset")
    dataset, data_report = load_versioned_dataset(cfg, hub)
    result.dataset = data_report.to_dict()
    dataset = limit_train_rows(cfg, dataset)
    tracker.summary({"data_report": result.dataset})

    result.enter("train")
    base_model_dir = fetch_base_model(cfg, hub)
    trained = training().train(cfg, dataset, base_model_dir, result.run_dir / "train", tracker=tracker)
    result.training = {"validation": trained.eval_metrics, "test": trained.test_metrics,
                       "seconds": trained.train_seconds, "recipe": trained.recipe, "calibration": trained.calibration}

    result.enter("compare with deployed")
    comparison = compare_with_deployed(cfg, hub, trained, dataset, result.run_dir, tracker)
    result.comparison = comparison.to_dict()

    result.enter("decide")
    decision = decide(cfg, comparison)
    result.decision = decision.to_dict()
    served = served_release(SpaceController(hub, cfg.inference_space), comparison.deployed_revision)
    result.unserved_tags = unserved_tags(hub, cfg.model_repo, served)
    metadata = write_metadata(cfg, result)
    if not decision.promote:
        result.outcome = "kept"
        return

    result.enter("deploy")
    folder = release_folder(trained.model_dir, result.run_dir / "release", metadata,
                            sorted(result.run_dir.glob("confusion_*.png")))
    metadata["onnx"] = add_onnx_to_release(folder, result.run_dir, cfg.labels, cfg.max_length)
    as_canary = cfg.promotion_mode != "direct" and served is not None  # a first deploy has nothing to compare
    release = promote(hub, cfg, folder, metadata["version"], served, on_tagged=result.tagged,
                      serve=start_canary if as_canary else None)
    shutil.rmtree(folder)  # a copy of train/best_model, now on the Hub as release.tag
    result.deployment["serving"] = release.serving
    result.outcome = "canary" if as_canary else "promoted"
    if as_canary:
        result.canary = {"version": release.tag, "stable": served, "mode": cfg.promotion_mode,
                         "share": cfg.canary_share if cfg.promotion_mode == "canary" else None, "outcome": "started"}


def complete_pending_canary(cfg: JobConfig, hub, result) -> bool:
    """A canary or shadow left by an earlier run is decided first. While one waits for feedback no
    candidate is trained: the comparison's requests would be answered partly by the canary."""
    record = complete_canary(cfg, hub, on_decided=result.canary_decided)
    if record is None:
        return False
    result.outcome = {"promote": "promoted", "abort": "kept", "wait": "canary"}[record["outcome"]]
    if record["outcome"] == "promote":
        result.version = record["version"]
        result.deployment = {"tag": record["version"], "previous": record["stable"], "serving": record["serving"]}
    return True


def fetch_base_model(cfg: JobConfig, hub) -> Path:
    """A local folder stays local; a repo id is downloaded through the hub adapter."""
    local = Path(cfg.base_model)
    if local.is_dir():
        return local
    return hub.download_snapshot(cfg.base_model, "main")


def compare_with_deployed(cfg: JobConfig, hub, trained, dataset, run_dir: Path, tracker):
    """Score the candidate locally and the deployed Space over HTTP on the same samples."""


    samples = stratified_sample(dataset["test"].to_pandas(), "label", cfg.deployed_sample_size, cfg.seed)
    texts, y_true = samples["text"].tolist(), samples["label"].to_numpy()
    candidate, _ = training().predict(trained.model, trained.tokenizer, texts, cfg.eval_batch_size, cfg.max_length)
    save_samples(run_dir, texts, y_true)  # the ONNX export is checked on the same texts
    scores, deployed_revision = score_deployed(cfg, hub, texts)
    failures = dict(scores.failures) if scores else {}
    deployed = deployed_predictions(scores.labels, cfg.label2id, failures) if scores else None

    comparison = build_comparison(cfg, y_true, candidate, deployed, failures)
    comparison.deployed_revision = deployed_revision
    comparison.deployed_mode, comparison.deployed_seconds = (scores.mode, scores.seconds) if scores else (None, None)
    keep = np.array([i not in failures for i in range(len(y_true))])
    for name, predictions in (("candidate", candidate), ("deployed", deployed)):
        if predictions is not None:
            png = confusion_matrix_png(y_true[keep], predictions[keep], cfg.labels,
                                       run_dir / f"confusion_{name}.png", f"{name} ({cfg.label})")
            tracker.log_confusion_matrix(f"confusion_{name}", png)
    tracker.log({"compare/candidate_macro_f1": comparison.candidate["macro_f1"],
                 **({"compare/deployed_macro_f1": comparison.deployed["macro_f1"],
                     "compare/delta_f1": comparison.delta_f1} if comparison.deployed else {})})
    return comparison


def score_deployed(cfg: JobConfig, hub, texts: list[str]):
    """(scores, served revision) from the deployed Space; (None, None) when nothing is deployed yet.
    A deployed model that cannot be scored fails the run: never promote blindly."""
    deployed_tag = hub.newest_version_tag(cfg.model_repo)
    if deployed_tag is None:
        return None, None
    try:
        state = None if cfg.api_endpoint else SpaceController(hub, cfg.inference_space).state()
        url = cfg.api_endpoint or state.url
        if not url:
            raise ComparisonError(f"inference Space {cfg.inference_space} is {state.stage} and reports no URL: "
                                  "restart it, set WAKE_DEPLOYED=true, or set API_ENDPOINT")
        client = DeployedModelClient.from_config(cfg, url)
        try:
            revision = client.wait_until_ready(cfg.space_wake_timeout_s).get("revision")
            return client.predict_labels(texts), revision
        finally:
            client.close()
    except (DeployedAPIError, HubError) as error:
        raise ComparisonError(f"a deployed model exists ({cfg.model_repo}@{deployed_tag}) but the deployed "
                              f"API could not be scored: {error}. Not promoting.") from error


def write_metadata(cfg: JobConfig, result) -> dict:
    metadata = build_metadata(cfg, version_tag(), result.dataset, result.comparison, result.decision,
                              result.training)
    (result.run_dir / "metadata.json").write_text(json.dumps(metadata, indent=2, ensure_ascii=False, default=str))
    return metadata


def finish_run(cfg: JobConfig, hub, tracker, result) -> None:
    """Always, each guarantee in its own finally: W&B finished, summary written, this Space paused.
    A failing cleanup is logged and recorded; it never stops the next one nor replaces the run's
    own error. Pausing comes last: pausing its own Space stops this process, on the Hub as locally."""
    result.seconds = time.time() - result.started_at
    result.paused = f"{cfg.retrain_space} pausing now" if cfg.retrain_space else None
    if result.outcome == "interrupted":
        result.paused = f"{cfg.retrain_space or 'this job'} not paused: {result.error}, the platform stops it"
    try:
        cleanup(result, "finish the W&B run", finish_tracking, tracker, result)
    finally:
        try:
            cleanup(result, "write the summary", write_summary, result)
        finally:
            cleanup(result, f"pause {cfg.retrain_space}", pause_self, cfg, hub, result)


def cleanup(result, what: str, step, *args) -> None:
    try:
        step(*args)
    except Exception as error:
        message = f"could not {what}: {type(error).__name__}: {error}"
        logger.error(message)
        result.cleanup_errors.append(message)


def finish_tracking(tracker, result) -> None:
    if tracker is not None:
        tracker.summary({"outcome": result.outcome, "step": result.step, "error": result.error,
                         "version": result.version})
        tracker.finish(exit_code=result.exit_code)


def pause_self(cfg: JobConfig, hub, result) -> None:
    """Pause this job's Space; when that fails, the summary says so (it said 'pausing now')."""
    if not cfg.retrain_space or result.outcome == "interrupted":
        return
    try:
        SpaceController(hub or HubClient.from_config(cfg), cfg.retrain_space).pause()
        result.paused = f"{cfg.retrain_space} paused"
    except Exception as error:
        result.paused = f"{cfg.retrain_space} NOT paused: {type(error).__name__}: {error}"
        cleanup(result, "write the summary", write_summary, result)
        raise


def pause_self_without_config() -> None:
    """Bad settings must not leave the Space restart-looping: pause it with what the env has."""
    space_id = os.environ.get("RETRAIN_SPACE_ID") or os.environ.get("SPACE_ID")
    if not space_id:
        return
    try:
        where = HubSettings()
        pause_space(where.endpoint, where.token, space_id)
    except Exception as error:  # the settings error already printed is the one that matters
        logger.error("could not pause %s: %s: %s", space_id, type(error).__name__, error)


def new_run_dir(cfg: JobConfig) -> Path:
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        # Every rank must use the same folder (each loads the best checkpoint from it); the
        # ranks share one torchrun agent, their parent process.
        name = f"{cfg.label}-ddp-{os.getppid()}"
    else:
        name = f"{cfg.label}-{time.strftime('%Y%m%d_%H%M%S')}"
    run_dir = cfg.output_dir / name
    run_dir.mkdir(parents=True, exist_ok=True)
    return run_dir.resolve()


def dry_run(cfg: JobConfig) -> int:
    print(json.dumps(cfg.dump(), indent=2))
    revision, commit = resolve_dataset_revision(HubClient.from_config(cfg), cfg)
    print(f"dataset: {cfg.dataset_repo}@{revision} (commit {commit})")
    return 0


def canary(cfg: JobConfig, action: str) -> int:
    """`train_model.py canary [decide|promote|abort]`: complete the inference Space's canary."""
    record = complete_canary(cfg, HubClient.from_config(cfg), action)
    if record is None:
        print(f"{cfg.inference_space} runs no canary (no CANARY_REVISION variable): nothing to {action}",
              file=sys.stderr)
        return 1
    print(f"canary {record['version']}: {record['outcome']} — {'; '.join(record['reasons'])}")
    if record["outcome"] != "wait":
        print(f"{cfg.inference_space} serves {record['serving']}; decision record: "
              f"{cfg.model_repo}/{record_path(record['version'])}")
    return 0


def rollback(cfg: JobConfig, to: str | None) -> int:
    """`train_model.py rollback [--to TAG]`: undo the newest change. During a canary that is the
    canary: it is aborted (decision record written) and the stable version, or TAG, serves alone."""
    hub = HubClient.from_config(cfg)
    space = SpaceController(hub, cfg.inference_space)
    state, tags = space.state(), version_tags(hub, cfg.model_repo)
    current = state.variables.get(REVISION_VARIABLE) or (tags[-1] if tags else None)
    canary_tag = state.variables.get(CANARY_REVISION)
    to = to or (current if canary_tag else previously_served(hub, cfg.model_repo, current, tags))
    if problem := rollback_problem(cfg, tags, current, canary_tag, to):
        print(problem, file=sys.stderr)
        return 1
    was = current
    with deferred_signals():
        if canary_tag:
            serving = abort_for_rollback(cfg, hub, space, state, to)["serving"]
            was = f"{current} with the canary {canary_tag}, now aborted: {cfg.model_repo}/{record_path(canary_tag)}"
        else:
            serving = serve_revision(space, cfg, to).get("revision")
    print(f"{cfg.inference_space} serves {serving} (was {was})")
    return 0


def rollback_problem(cfg: JobConfig, tags: list[str], current: str | None, canary_tag: str | None,
                     to: str | None) -> str | None:
    """Why the rollback cannot go to `to`, or None."""
    if to is None:
        return f"no version served before {current} on {cfg.model_repo}; tags: {tags}"
    if to == canary_tag:
        return (f"{to} is the canary {cfg.inference_space} runs next to {current}: promote it with "
                "`python train_model.py canary promote`")
    if to not in tags:
        return f"{to} is not a version tag of {cfg.model_repo}; choose one of {tags[-cfg.keep_versions:]}"
    return None


if __name__ == "__main__":
    sys.exit(main())
