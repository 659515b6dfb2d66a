"""Retrain job: runs once per restart of the retrain Space.

    config -> run lock -> dataset -> train -> compare with deployed -> decide -> deploy
    -> restart + verify -> summary; finally: finish W&B, write the summary, pause this Space.

Under `torchrun --nproc_per_node N` every process trains; only rank 0 takes the lock, compares,
decides, deploys, writes and pauses. The steps import torch and friends inside, so `--help`
and a bad setting answer at once.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from configs import ConfigError, JobConfig, add_setting_flags, load_config


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Retrain the complaint classifier for one LABEL, compare it with the deployed model on the "
        "same stratified test samples, promote it only if macro-F1 improves, restart the inference Space, and "
        "always pause this Space at the end. Every setting is read from its environment variable (the Space's "
        "variables and secrets); a flag overrides it. HF_TOKEN set: the real Hub; unset: the embedded local hub.",
        epilog="Exit code: 0 when a model was promoted or the deployed one kept, 1 on failure, 2 on bad settings.",
    )
    parser.add_argument("command", nargs="?", choices=["train", "rollback"], default="train",
                        help="train (default): the whole job. rollback: serve an earlier promoted version again")
    parser.add_argument("--to", metavar="TAG", help="rollback: the version tag to serve (default: the one before the served one)")
    parser.add_argument("--status-port", type=int, metavar="PORT",
                        help="serve a status page (current step, result) on this port while the job runs (Spaces: 7860)")
    parser.add_argument("--dry-run", action="store_true",
                        help="print the resolved settings (secrets masked) and the dataset version, then exit")
    add_setting_flags(parser)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    overrides = {k: v for k, v in vars(args).items() if k not in ("command", "to", "dry_run", "status_port")}
    try:
        cfg = load_config(overrides)
    except ConfigError as error:
        print(error, file=sys.stderr)
        pause_self_without_config()
        return 2
    if args.command == "rollback":
        return rollback(cfg, args.to)
    if args.dry_run:
        return dry_run(cfg)
    return run(cfg, status_port=args.status_port).exit_code


def run(cfg: JobConfig, status_port: int | None = None):
    """The job. Returns the RunResult; re-raises the original error after the cleanup."""
    from deploy import LockBusy, RunLock
    from hub import HubClient
    from model_pipeline import is_main_process
    from summary import RunResult
    from tracking import RunTracker

    result = RunResult(label=cfg.label, run_dir=new_run_dir(cfg))
    if not is_main_process():
        return run_worker(cfg, result)
    if status_port:
        from status_page import start_status_page
        start_status_page(status_port, result.status)
    hub = tracker = None
    try:
        hub = HubClient.from_config(cfg)
        tracker = RunTracker(cfg, result.run_dir)
        result.wandb_dir = tracker.url  # the run page online, the offline run folder otherwise
        result.enter("run lock")
        with RunLock(hub, cfg.model_repo, cfg.lock_ttl_s, result.run_dir):
            retrain(cfg, hub, tracker, result)
    except LockBusy as busy:
        result.outcome, result.error = "skipped", str(busy)
    except BaseException as error:
        result.outcome, result.error = "failed", f"{type(error).__name__}: {error}"
        raise
    finally:
        finish_run(cfg, hub, tracker, result)
    return result


def run_worker(cfg: JobConfig, result):
    """A rank > 0 under torchrun: load the same data, train with rank 0, nothing else."""
    from hub import HubClient
    from load_dataset import load_versioned_dataset
    from model_pipeline import train

    hub = HubClient.from_config(cfg)
    dataset, _ = load_versioned_dataset(cfg, hub)
    train(cfg, limit_train_rows(cfg, dataset), fetch_base_model(cfg, hub), result.run_dir / "train")
    result.outcome = "skipped"  # rank 0 compares, decides and deploys
    return result


def limit_train_rows(cfg: JobConfig, dataset):
    if cfg.max_train_samples and cfg.max_train_samples < len(dataset["train"]):
        dataset["train"] = dataset["train"].shuffle(seed=cfg.seed).select(range(cfg.max_train_samples))
    return dataset


def retrain(cfg: JobConfig, hub, tracker, result) -> None:
    """Steps 2-6 of the design card, each one call."""
    from compare import decide
    from load_dataset import load_versioned_dataset
    from model_pipeline import train

    result.enter("dataset")
    dataset, data_report = load_versioned_dataset(cfg, hub)
    result.dataset = data_report.to_dict()
    dataset = limit_train_rows(cfg, dataset)
    tracker.summary({"data_report": result.dataset})

    result.enter("train")
    base_model_dir = fetch_base_model(cfg, hub)
    trained = train(cfg, dataset, base_model_dir, result.run_dir / "train", tracker=tracker)
    result.training = {"validation": trained.eval_metrics, "test": trained.test_metrics,
                       "seconds": trained.train_seconds, "recipe": trained.recipe, "calibration": trained.calibration}

    result.enter("compare with deployed")
    comparison = compare_with_deployed(cfg, hub, trained, dataset, result.run_dir, tracker)
    result.comparison = comparison.to_dict()

    result.enter("decide")
    decision = decide(cfg, comparison)
    result.decision = decision.to_dict()
    metadata = write_metadata(cfg, result)
    if not decision.promote:
        result.outcome = "kept"
        return

    result.enter("deploy")
    deploy_candidate(cfg, hub, trained, metadata, result)
    result.outcome = "promoted"


def fetch_base_model(cfg: JobConfig, hub) -> Path:
    """A local folder stays local; a repo id is downloaded through the hub adapter."""
    local = Path(cfg.base_model)
    if local.is_dir():
        return local
    return hub.download_snapshot(cfg.base_model, "main")


def compare_with_deployed(cfg: JobConfig, hub, trained, dataset, run_dir: Path, tracker):
    """Score the candidate locally and the deployed Space over HTTP on the same samples."""
    import numpy as np

    from compare import build_comparison, deployed_predictions, stratified_sample
    from model_pipeline import confusion_matrix_png, predict

    samples = stratified_sample(dataset["test"].to_pandas(), "label", cfg.deployed_sample_size, cfg.seed)
    texts, y_true = samples["text"].tolist(), samples["label"].to_numpy()
    candidate, _ = predict(trained.model, trained.tokenizer, texts, cfg.eval_batch_size, cfg.max_length)
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
    from compare import ComparisonError
    from deployed_api import DeployedAPIError, DeployedModelClient
    from hub import HubError, SpaceController

    deployed_tag = hub.newest_version_tag(cfg.model_repo)
    if deployed_tag is None:
        return None, None
    try:
        url = cfg.api_endpoint or SpaceController(hub, cfg.inference_space).state().url
        if not url:
            raise ComparisonError(f"Space {cfg.inference_space} reports no URL; set API_ENDPOINT")
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
    from deploy import build_metadata, version_tag

    metadata = build_metadata(cfg, version_tag(), result.dataset, result.comparison, result.decision,
                              result.training)
    (result.run_dir / "metadata.json").write_text(json.dumps(metadata, indent=2, ensure_ascii=False, default=str))
    return metadata


def deploy_candidate(cfg: JobConfig, hub, trained, metadata: dict, result) -> None:
    """One commit, a tag on it, then restart the inference Space and verify (or roll back)."""
    from deploy import push_and_tag, release_folder, restart_with_rollback, version_tags
    from hub import SpaceController

    previous = (version_tags(hub, cfg.model_repo) or [None])[-1]
    plots = sorted(result.run_dir.glob("confusion_*.png"))
    folder = release_folder(trained.model_dir, result.run_dir / "release", metadata, plots)
    tag, commit = push_and_tag(hub, cfg.model_repo, folder, metadata["version"])
    result.version = tag
    result.deployment = {"tag": tag, "commit": commit, "previous": previous}
    result.enter("restart + verify")
    health = restart_with_rollback(SpaceController(hub, cfg.inference_space), cfg, tag, previous)
    result.deployment["serving"] = health.get("revision")


def finish_run(cfg: JobConfig, hub, tracker, result) -> None:
    """Always: W&B finished, summary written, this Space paused. Never hides the original error.
    Pausing comes last: pausing its own Space stops this process, on the Hub as locally."""
    from summary import write_summary

    result.seconds = time.time() - result.started_at
    if tracker is not None:
        tracker.summary({"outcome": result.outcome, "step": result.step, "error": result.error,
                         "version": result.version})
        tracker.finish(exit_code=result.exit_code)
    result.paused = f"{cfg.retrain_space} pausing now" if cfg.retrain_space else None
    write_summary(result)
    outcome = pause_self(cfg, hub)
    if outcome and "NOT paused" in outcome:
        result.paused = outcome
        write_summary(result)


def pause_self(cfg: JobConfig, hub) -> str | None:
    from hub import HubClient, HubError, SpaceController

    if not cfg.retrain_space:
        return None
    try:
        SpaceController(hub or HubClient.from_config(cfg), cfg.retrain_space).pause()
        return f"{cfg.retrain_space} paused"
    except (HubError, OSError) as error:
        print(f"[retrainspace] could not pause {cfg.retrain_space}: {error}", file=sys.stderr)
        return f"{cfg.retrain_space} NOT paused: {error}"


def pause_self_without_config() -> None:
    """Bad settings must not leave the Space restart-looping: pause it with what the env has."""
    space_id = os.environ.get("RETRAIN_SPACE_ID") or os.environ.get("SPACE_ID")
    if space_id:
        from pydantic import SecretStr

        token = os.environ.get("HF_TOKEN")
        cfg = JobConfig.model_construct(label="urgency", retrain_space_id=space_id,
                                        hf_token=SecretStr(token) if token else None,
                                        hf_endpoint=os.environ.get("HF_ENDPOINT") or None)
        pause_self(cfg, None)


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
    from hub import HubClient
    from load_dataset import resolve_dataset_revision

    print(json.dumps(cfg.dump(), indent=2))
    revision, commit = resolve_dataset_revision(HubClient.from_config(cfg), cfg)
    print(f"dataset: {cfg.dataset_repo}@{revision} (commit {commit})")
    return 0


def rollback(cfg: JobConfig, to: str | None) -> int:
    from deploy import REVISION_VARIABLE, serve_revision, version_tags
    from hub import HubClient, SpaceController, version_key

    hub = HubClient.from_config(cfg)
    space = SpaceController(hub, cfg.inference_space)
    tags = version_tags(hub, cfg.model_repo)
    current = space.state().variables.get(REVISION_VARIABLE) or (tags[-1] if tags else None)
    if to is None:
        served = version_key(current) if current else None
        older = [t for t in tags if served and version_key(t) < served]
        if not older:
            print(f"no version older than {current} on {cfg.model_repo}; tags: {tags}", file=sys.stderr)
            return 1
        to = older[-1]
    if to not in tags:
        print(f"{to} is not a version tag of {cfg.model_repo}; choose one of {tags[-cfg.keep_versions:]}",
              file=sys.stderr)
        return 1
    health = serve_revision(space, cfg, to)
    print(f"{cfg.inference_space} serves {health.get('revision')} (was {current})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
