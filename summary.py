"""What a run produced, as a dataclass (for tests) and as a text summary (for people)."""
from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

OUTCOME_EXIT_CODES = {"promoted": 0, "kept": 0, "canary": 0, "skipped": 0, "failed": 1, "interrupted": 143}


@dataclass
class RunResult:
    label: str
    run_dir: Path
    outcome: str = "failed"            # promoted | kept | canary | skipped | failed | interrupted (SIGTERM/SIGINT)
    step: str = "config"               # the step running now, or the one that failed
    version: str | None = None         # the tag pushed when promoted
    dataset: dict = field(default_factory=dict)
    training: dict = field(default_factory=dict)
    comparison: dict = field(default_factory=dict)
    decision: dict = field(default_factory=dict)
    deployment: dict = field(default_factory=dict)
    canary: dict = field(default_factory=dict)  # a canary started, or an earlier one's decision record
    unserved_tags: list[str] = field(default_factory=list)  # newer than the served version, never served
    error: str | None = None
    wandb_dir: str | None = None
    paused: str | None = None
    cleanup_errors: list[str] = field(default_factory=list)  # W&B finish, summary or pause that failed
    started_at: float = field(default_factory=time.time)
    seconds: float = 0.0

    @property
    def exit_code(self) -> int:
        return OUTCOME_EXIT_CODES[self.outcome]

    def enter(self, step: str) -> None:
        self.step = step
        print(f"[retrainspace] step: {step}", flush=True)

    def tagged(self, release) -> None:
        """The release is pushed and tagged; the inference Space restarts next."""
        self.version = release.tag
        self.deployment = {"tag": release.tag, "commit": release.commit, "previous": release.previous}
        self.enter("restart + verify")

    def canary_decided(self, record: dict) -> None:
        """An earlier canary's decision record, before it is acted on: an interrupted run still shows it."""
        self.canary = record

    def status(self) -> dict:
        """What the status page shows while the job runs."""
        return {"label": self.label, "step": self.step, "outcome": self.outcome if self.seconds else "running",
                "elapsed_s": round(time.time() - self.started_at), "version": self.version,
                "decision": self.decision.get("outcome"), "error": self.error}

    def to_dict(self) -> dict:
        data = asdict(self)
        data["run_dir"] = str(self.run_dir)
        return data


def _metrics_line(name: str, metrics: dict | None) -> str:
    if not metrics:
        return f"  {name:<10} -"
    per_class = ", ".join(f"{k}: {v:.3f}" for k, v in metrics["per_class_f1"].items())
    return f"  {name:<10} macro-F1 {metrics['macro_f1']:.4f}  accuracy {metrics['accuracy']:.4f}  ({per_class})"


def folder_mb(folder: Path) -> float:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) / 1e6 if folder.is_dir() else 0.0


def training_lines(training: dict) -> list[str]:
    """The recipe the run used and how far its confidences can be trusted (test split)."""
    lines = []
    recipe, cal = training.get("recipe"), training.get("calibration")
    if recipe:
        lines.append(f"training: {recipe['epochs']:g} epochs ({recipe['optimizer_steps']} steps planned), "
                     f"lr {recipe['learning_rate']:g}, word embeddings {recipe['word_embeddings']}, "
                     f"{training.get('seconds', 0):.0f}s" + "".join(f"; {r}" for r in recipe["reasons"]))
        if head := recipe.get("head"):
            lines.append(head_line(head))
    if cal:
        before, after = cal["uncalibrated"], cal["calibrated"]
        lines.append(f"calibration: temperature {cal['temperature']:.3f} (fitted on validation); test ECE "
                     f"{before['ece']:.4f} -> {after['ece']:.4f}, Brier {before['brier']:.4f} -> {after['brier']:.4f}"
                     + ece_floor_note(cal))
    return lines


def head_line(head: dict) -> str:
    probe = head.get("probe")
    starts = {"probe": "a linear probe", "checkpoint": "the checkpoint's trained head", "random": "random"}
    line = f"head: {head['pooling']} pooling, started from {starts[head['init']]}"
    if not probe:
        return line
    scored = f"C={probe['c']:g}, validation macro-F1 {probe['validation_macro_f1']:.4f}"
    if probe.get("used", True):
        return f"{line} ({scored})"
    return f"{line}: the linear probe ({scored}) was no better than chance ({probe['chance']:.4f})"


def canary_line(canary: dict) -> str:
    if canary["outcome"] == "started":
        share = f", {canary['share']:g} of the requests" if canary.get("share") is not None else ""
        return (f"{canary['mode']} {canary['version']} started next to {canary['stable']}{share}; the next run "
                "or `train_model.py canary` completes it")
    return f"canary {canary['version']}: {canary['outcome']} — {'; '.join(canary['reasons'])}"


def ece_floor_note(cal: dict) -> str:
    floor = cal.get("ece_floor")
    if not floor:
        return ""
    return (f"; a perfectly calibrated model would show ECE {floor['mean']:.4f} (90% under {floor['p90']:.4f}) "
            f"on these {cal.get('test_samples', '?')} test samples")


def render_summary(result: RunResult) -> str:
    lines = [f"retrainspace run for LABEL={result.label}: {result.outcome.upper()}"
             + (f" at step '{result.step}'" if result.outcome in ("failed", "interrupted") else ""),
             f"  duration {result.seconds:.0f}s, run folder {result.run_dir}"]
    if result.error:
        lines.append(f"  error: {result.error}")
    if result.dataset:
        lines.append(f"dataset {result.dataset.get('repo')}@{result.dataset.get('revision')} "
                     f"(commit {str(result.dataset.get('commit'))[:12]})")
    lines.extend(training_lines(result.training))
    comparison = result.comparison
    if comparison:
        lines.append(f"comparison on {comparison['n_samples']} stratified test samples"
                     + (f" (deployed {comparison.get('deployed_revision')})" if comparison.get("deployed") else
                        " (no deployed model: first deploy)"))
        lines.append(_metrics_line("candidate", comparison["candidate"]))
        lines.append(_metrics_line("deployed", comparison.get("deployed")))
        if comparison.get("delta_f1") is not None:
            low, high = comparison["delta_f1_ci"]
            lines.append(f"  ΔF1 {comparison['delta_f1']:+.4f}  95% CI [{low:+.4f}, {high:+.4f}]")
        if comparison.get("failed_samples"):
            lines.append(f"  deployed API failed on {len(comparison['failed_samples'])} samples (excluded for both)")
    if result.decision:
        lines.append(f"decision: {result.decision['outcome']} — {'; '.join(result.decision['reasons'])}")
        lines.append(f"  rule: {result.decision['rule']}")
    if result.unserved_tags:
        lines.append(f"tags never served (left by crashed, interrupted or rolled-back runs): "
                     f"{', '.join(result.unserved_tags)}")
    if result.canary:
        lines.append(canary_line(result.canary))
    if result.version and result.outcome != "canary":
        lines.append(f"promoted version {result.version}; serving: {result.deployment.get('serving')}")
    if result.wandb_dir:
        lines.append(f"W&B run: {result.wandb_dir}")
    lines.append(f"left on disk: {result.run_dir} ({folder_mb(result.run_dir):.1f} MB: the best model in "
                 "train/best_model, plots, metadata.json, this summary; training checkpoints are deleted)")
    lines.append(f"retrain Space: {result.paused or 'not running in a Space: nothing to pause'}")
    lines.extend(f"cleanup: {problem}" for problem in result.cleanup_errors)
    return "\n".join(lines)


def write_summary(result: RunResult) -> Path:
    result.run_dir.mkdir(parents=True, exist_ok=True)
    text = render_summary(result)
    (result.run_dir / "summary.txt").write_text(text + "\n", encoding="utf-8")
    (result.run_dir / "summary.json").write_text(json.dumps(result.to_dict(), indent=2, default=str))
    print("\n" + text, flush=True)
    return result.run_dir / "summary.txt"
