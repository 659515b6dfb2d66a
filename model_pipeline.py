"""Step 3 of the job: fine-tune the base model for the LABEL with focal loss.

tokenize (no padding) -> model from the local base folder -> FocalLossTrainer with dynamic
padding, length-grouped batches, eval + save every EVAL_STEPS, early stopping, best by
macro-F1 -> evaluate validation and test -> save the best model with its label names.

The same `train()` runs on one CPU, one GPU, or several processes under `torchrun` /
`accelerate launch` (DDP); only rank 0 writes files and talks to the tracker.
"""
from __future__ import annotations

import json
import logging
import math
import os
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from transformers import (
    AutoModelForSequenceClassification,
    AutoTokenizer,
    DataCollatorWithPadding,
    EarlyStoppingCallback,
    EvalPrediction,
    PreTrainedModel,
    PrinterCallback,
    Trainer,
    TrainerCallback,
    TrainingArguments,
    set_seed,
)

import calibration
import head_init
from configs import JobConfig
from metrics import classification_metrics, confusion_matrix_png, flat_metrics
from recipe import Recipe, resolve_recipe, with_search_result

logger = logging.getLogger(__name__)

BEST_MODEL_METRIC = "macro_f1"
SAVE_TOTAL_LIMIT = 2  # the best checkpoint and the newest one: enough to resume, spares the disk


class TrainingInputError(ValueError):
    """The model folder, the data or a setting cannot be trained on; the message says the fix."""


@dataclass
class TrainResult:
    model: PreTrainedModel
    tokenizer: Any
    model_dir: Path
    eval_metrics: dict[str, Any]
    test_metrics: dict[str, Any]
    train_seconds: float
    history: list[dict[str, Any]] = field(default_factory=list)
    confusion_matrices: dict[str, Path] = field(default_factory=dict)  # split -> PNG (rank 0)
    best_checkpoint: str | None = None
    precision: str = "fp32"
    world_size: int = 1
    recipe: dict[str, Any] = field(default_factory=dict)   # what RECIPE=auto chose, and why
    calibration: dict[str, Any] | None = None              # temperature, ECE/Brier before and after


# --------------------------------------------------------------------------------------
# Processes and devices


def is_main_process() -> bool:
    """Rank 0 under torchrun / accelerate launch; True when not distributed."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank() == 0
    return int(os.environ.get("RANK", "0")) == 0


def world_size() -> int:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_world_size()
    return int(os.environ.get("WORLD_SIZE", "1"))


def resolve_precision(requested: str) -> str:
    """fp32, fp16 or bf16 for this device; an explicit request the device can't honour fails here."""
    cuda = torch.cuda.is_available()
    bf16_ok = cuda and torch.cuda.is_bf16_supported()
    if requested == "auto":
        return ("bf16" if bf16_ok else "fp16") if cuda else "fp32"
    if requested == "fp16" and not cuda:
        raise TrainingInputError(
            "PRECISION=fp16 needs a CUDA GPU and none is available; set PRECISION=auto or fp32"
        )
    if requested == "bf16" and not bf16_ok:
        device = torch.cuda.get_device_name() if cuda else "this CPU-only machine"
        raise TrainingInputError(
            f"PRECISION=bf16 is not supported on {device}; set PRECISION=auto (fp16 on older GPUs) or fp32"
        )
    return requested


# --------------------------------------------------------------------------------------
# Metrics


def make_compute_metrics(labels: list[str]):
    def compute_metrics(prediction: EvalPrediction) -> dict[str, float]:
        logits = prediction.predictions[0] if isinstance(prediction.predictions, tuple) else prediction.predictions
        return flat_metrics(classification_metrics(prediction.label_ids, logits.argmax(-1), labels))

    return compute_metrics


# --------------------------------------------------------------------------------------
# Focal loss


def focal_loss(logits: torch.Tensor, labels: torch.Tensor, gamma: float,
               alpha: torch.Tensor | None = None, reduction: str = "mean") -> torch.Tensor:
    """-alpha_y * (1 - p_y)^gamma * log p_y; gamma=0 and alpha=None is cross-entropy."""
    log_p = F.log_softmax(logits.float(), dim=-1)  # fp32 so (1 - p)^gamma stays finite under fp16
    log_p_true = log_p.gather(1, labels.unsqueeze(1)).squeeze(1)
    loss = -((1 - log_p_true.exp()) ** gamma) * log_p_true
    if alpha is not None:
        loss = loss * alpha.to(loss.device)[labels]
    if reduction == "sum":
        return loss.sum()
    if reduction == "mean":
        return loss.mean()
    return loss


def class_alpha(cfg: JobConfig, train_labels: Sequence[int]) -> torch.Tensor | None:
    """Per-class focal alpha from FOCAL_ALPHA: balanced, none, one number, or one per class."""
    spec = cfg.alpha_weights()
    if spec is None:
        return None
    if spec == "balanced":
        counts = np.bincount(np.asarray(train_labels), minlength=len(cfg.labels)).astype(np.float64)
        inverse = 1.0 / counts
        # Mean weight 1 keeps the loss on the cross-entropy scale, so LEARNING_RATE means the same.
        return torch.tensor(inverse * len(counts) / inverse.sum(), dtype=torch.float32)
    if isinstance(spec, float):
        return torch.full((len(cfg.labels),), spec, dtype=torch.float32)
    return torch.tensor(spec, dtype=torch.float32)


class FocalLossTrainer(Trainer):
    """Trainer whose loss is the focal loss of the classification logits.

    Under gradient accumulation (and DDP) the Trainer passes `num_items_in_batch`, the number of
    labels in the whole accumulated (and gathered) batch: the loss is then summed and divided by
    it, so accumulating k batches of b gives the same gradient as one batch of k*b.
    """

    def __init__(self, *args, gamma: float = 2.0, alpha: torch.Tensor | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.gamma = gamma
        self.alpha = alpha
        # Our compute_loss consumes num_items_in_batch whatever the model's forward accepts; this
        # makes the Trainer count it and treat our loss as already scaled for accumulation.
        self.model_accepts_loss_kwargs = True

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        labels = inputs.pop("labels")
        outputs = model(**inputs)
        if num_items_in_batch is None:
            loss = focal_loss(outputs.logits, labels, self.gamma, self.alpha)
        else:
            loss = focal_loss(outputs.logits, labels, self.gamma, self.alpha, reduction="sum")
            loss = loss / num_items_in_batch
            if self.args.average_tokens_across_devices and self.args.world_size > 1:
                # num_items_in_batch counts every rank, and DDP averages gradients over ranks.
                loss = loss * self.args.world_size
        return (loss, outputs) if return_outputs else loss

    def _hp_search_setup(self, trial):
        """A search trial (hp_search.py) also sets focal gamma, which is no TrainingArguments field, and
        SparseRowAdamW's kwargs, which were fixed with the learning rate before the trial."""
        super()._hp_search_setup(trial)
        params = getattr(trial, "params", None) or {}
        if "focal_gamma" in params:
            self.gamma = float(params["focal_gamma"])
        if self.optimizer_cls_and_kwargs is not None:
            optimizer_cls, kwargs = self.optimizer_cls_and_kwargs
            self.optimizer_cls_and_kwargs = optimizer_cls, {**kwargs, "lr": self.args.learning_rate}

    # Sparse word-embedding gradients (WORD_EMBEDDINGS=sparse): torch's clip_grad_norm_ cannot take
    # their norm, so clipping and the logged grad norm go through clip_grad_norm_with_sparse.
    def _clip_grad_norm(self, model):
        if not has_sparse_grads(model):
            return super()._clip_grad_norm(model)
        return clip_grad_norm_with_sparse(model.parameters(), self.args.max_grad_norm)

    def _get_grad_norm(self, model, grad_norm=None):
        if grad_norm is None and has_sparse_grads(model):
            grad_norm = clip_grad_norm_with_sparse(model.parameters(), float("inf"))
        return super()._get_grad_norm(model, grad_norm=grad_norm)


def has_sparse_grads(model) -> bool:
    embeddings = getattr(model, "module", model).get_input_embeddings()  # the Trainer passes DDP's wrapper
    return embeddings.sparse and embeddings.weight.grad is not None


# --------------------------------------------------------------------------------------
# Model, data, trainer


def load_base_model(base_model_dir: Path, cfg: JobConfig):
    """Tokenizer and a sequence classifier with the LABEL's names; a foreign head is re-initialised."""
    base_model_dir = Path(base_model_dir)
    if not (base_model_dir / "config.json").is_file():
        raise TrainingInputError(
            f"base model folder {str(base_model_dir)!r} (MODEL_CHECKPOINT={cfg.base_model}) has no "
            "config.json; download the checkpoint through the hub adapter first or fix MODEL_CHECKPOINT"
        )
    warn_if_head_differs(base_model_dir, cfg)
    tokenizer = AutoTokenizer.from_pretrained(base_model_dir, local_files_only=True)
    # transformers' own load report is a table that reads like a failure; the expected case (a new
    # classification head) is said once below, plainly, and anything else as a warning.
    report_logger = logging.getLogger("transformers.modeling_utils")
    report_level = report_logger.level
    report_logger.setLevel(logging.ERROR)
    try:
        model, info = AutoModelForSequenceClassification.from_pretrained(
            base_model_dir, local_files_only=True, num_labels=len(cfg.labels), output_loading_info=True,
            id2label=cfg.id2label, label2id=cfg.label2id, ignore_mismatched_sizes=True,
        )
    finally:
        report_logger.setLevel(report_level)
    new_weights = sorted(set(info.get("missing_keys") or []) | {key for key, *_ in info.get("mismatched_keys") or []})
    if head_init.uses_mean_pooling(cfg, model, new_weights):
        head_init.add_mean_pooling_layer(model)
        logger.info("mean pooling: the checkpoint has no trained pooler, so a mean-pooling layer is appended "
                    "(POOLING=%s)", cfg.pooling)
        new_weights = [key for key in new_weights if not key.startswith("bert.pooler.")]
    # Read by head_init: a head that came trained with the checkpoint is kept, not replaced by a probe.
    model.fresh_head = bool(report_new_weights(new_weights, cfg))
    if cfg.freeze_word_embeddings:
        model.get_input_embeddings().requires_grad_(False)
    return model, tokenizer


def report_new_weights(new: list[str], cfg: JobConfig) -> list[str]:
    """Log what the checkpoint lacked; returns the classification head's new weights."""
    head = [key for key in new if key.split(".")[0] in ("classifier", "score", "pre_classifier")]
    if head:
        logger.info("new classification head for LABEL=%s (%d classes): %s, trained from scratch",
                    cfg.label, len(cfg.labels), ", ".join(head))
    if other := [key for key in new if key not in head]:
        logger.warning("weights missing from the base model, newly initialised: %s", ", ".join(other))
    return head


def warn_if_head_differs(base_model_dir: Path, cfg: JobConfig) -> None:
    config = json.loads((base_model_dir / "config.json").read_text())
    is_classifier = any(a.endswith("ForSequenceClassification") for a in config.get("architectures") or [])
    head_size = len(config.get("id2label") or {})
    if is_classifier and head_size != len(cfg.labels):
        logger.warning(
            "checkpoint %s has a %d-class head but LABEL=%s has %d classes: re-initialising the head",
            base_model_dir, head_size, cfg.label, len(cfg.labels),
        )


def check_every_class_in_train(train_labels: Sequence[int], cfg: JobConfig) -> None:
    counts = np.bincount(np.asarray(train_labels, dtype=np.int64), minlength=len(cfg.labels))
    if len(counts) > len(cfg.labels):
        raise TrainingInputError(
            f"train labels go up to id {len(counts) - 1} but LABEL={cfg.label} has {len(cfg.labels)} classes"
        )
    missing = [cfg.labels[i] for i, n in enumerate(counts) if n == 0]
    if missing:
        raise TrainingInputError(
            f"class {', '.join(repr(m) for m in missing)} has no train samples (LABEL={cfg.label}); "
            "add labelled examples of it to the dataset's train split"
        )


def tokenize_splits(dataset, tokenizer, max_length: int, pad_to_max: bool = False):
    """input_ids, attention mask, labels and a length column; padding is left to the collator."""
    def encode(batch):
        encoded = tokenizer(batch["text"], truncation=True, max_length=max_length,
                            padding="max_length" if pad_to_max else False)
        encoded["length"] = [len(ids) for ids in encoded["input_ids"]]
        return encoded

    columns = dataset["train"].column_names
    return dataset.map(encode, batched=True, remove_columns=[c for c in columns if c != "label"])


def steps_per_epoch(num_samples: int, cfg: JobConfig, processes: int) -> int:
    return max(1, math.ceil(num_samples / (cfg.train_batch_size * processes * cfg.gradient_accumulation_steps)))


def training_arguments(cfg: JobConfig, output_dir: Path, precision: str, epoch_steps: int,
                       group_by_length: bool = True) -> TrainingArguments:
    # A tiny dataset has fewer steps per epoch than EVAL_STEPS: still evaluate once an epoch.
    eval_steps = min(cfg.eval_steps, epoch_steps)
    return TrainingArguments(
        output_dir=str(output_dir),
        num_train_epochs=cfg.num_train_epochs,
        per_device_train_batch_size=cfg.train_batch_size,
        per_device_eval_batch_size=cfg.eval_batch_size,
        gradient_accumulation_steps=cfg.gradient_accumulation_steps,
        learning_rate=cfg.learning_rate,
        weight_decay=cfg.weight_decay,
        warmup_steps=cfg.warmup_ratio,
        eval_strategy="steps",
        eval_steps=eval_steps,
        save_strategy="steps",
        save_steps=eval_steps,
        save_total_limit=SAVE_TOTAL_LIMIT,
        save_only_model=True,
        load_best_model_at_end=True,
        metric_for_best_model=BEST_MODEL_METRIC,
        greater_is_better=True,
        logging_steps=max(1, min(10, eval_steps)),
        train_sampling_strategy="group_by_length" if group_by_length else "random",
        fp16=precision == "fp16",
        bf16=precision == "bf16",
        seed=cfg.seed,
        data_seed=cfg.seed,
        report_to="none",
        disable_tqdm=not sys.stderr.isatty(),
        dataloader_num_workers=0,
        # Accelerate only sets up CPU DDP (gloo) under torchrun when told it runs on the CPU.
        use_cpu=not torch.cuda.is_available(),
        dataloader_pin_memory=torch.cuda.is_available(),
    )


class LogNumbersCallback(TrainerCallback):
    """The Trainer's printed logs, as numbers in one log line (its PrinterCallback prints strings)."""

    def on_log(self, args, state, control, logs=None, **kwargs):
        if state.is_world_process_zero and logs:
            numbers = {k: round(v, 6) if isinstance(v, float) else v for k, v in logs.items() if k != "total_flos"}
            logger.info("step %d: %s", state.global_step, json.dumps(numbers))


class TrackerCallback(TrainerCallback):
    """Sends the Trainer's train logs and per-eval metrics to the run tracker (rank 0 only)."""

    def __init__(self, tracker):
        self.tracker = tracker

    def on_log(self, args, state, control, logs=None, **kwargs):
        if state.is_world_process_zero and logs:
            scalars = {k: v for k, v in logs.items() if isinstance(v, (int, float))}
            self.tracker.log({**scalars, "train/global_step": state.global_step})


def build_trainer(cfg: JobConfig, model, tokenizer, tokenized, args: TrainingArguments,
                  alpha: torch.Tensor | None, trainer_cls: type[Trainer] = FocalLossTrainer,
                  callbacks: list[TrainerCallback] | None = None, optimizer_cls_and_kwargs=None,
                  model_init=None) -> Trainer:
    """A trainer for `model`, or for a fresh model from `model_init` at each train() (the search's trials)."""
    extra = {"gamma": cfg.focal_gamma, "alpha": alpha} if issubclass(trainer_cls, FocalLossTrainer) else {}
    trainer = trainer_cls(
        model=model, model_init=model_init, args=args,
        train_dataset=tokenized["train"], eval_dataset=tokenized["validation"],
        processing_class=tokenizer,
        data_collator=DataCollatorWithPadding(tokenizer),
        compute_metrics=make_compute_metrics(cfg.labels),
        callbacks=callbacks or [],
        optimizer_cls_and_kwargs=optimizer_cls_and_kwargs,
        **extra,
    )
    if trainer.pop_callback(PrinterCallback) is not None:  # no progress bar (piped output): log numbers
        trainer.add_callback(LogNumbersCallback)
    return trainer


def run_training(trainer: Trainer, cfg: JobConfig):
    try:
        return trainer.train()
    except torch.cuda.OutOfMemoryError as error:
        raise TrainingInputError(
            f"CUDA out of memory with TRAIN_BATCH_SIZE={cfg.train_batch_size} and "
            f"GRADIENT_ACCUMULATION_STEPS={cfg.gradient_accumulation_steps} (max_length {cfg.max_length}); "
            "lower TRAIN_BATCH_SIZE and raise GRADIENT_ACCUMULATION_STEPS to keep the effective batch"
        ) from error


def evaluate_split(trainer: Trainer, split, labels: list[str]) -> tuple[dict[str, Any], np.ndarray, np.ndarray]:
    """Metrics, true ids and predicted ids of one split (gathered over all processes)."""
    output = trainer.predict(split)
    logits = output.predictions[0] if isinstance(output.predictions, tuple) else output.predictions
    predicted = logits.argmax(-1)
    return classification_metrics(output.label_ids, predicted, labels), output.label_ids, predicted


def report_best_model(cfg: JobConfig, trainer: Trainer, tokenized, output_dir: Path, tracker) -> dict[str, Any]:
    """Validation and test metrics of the best model; confusion matrices on rank 0."""
    metrics, plots = {}, {}
    for split in ("validation", "test"):
        metrics[split], y_true, y_pred = evaluate_split(trainer, tokenized[split], cfg.labels)
        if is_main_process():
            plots[split] = confusion_matrix_png(y_true, y_pred, cfg.labels, output_dir / f"confusion_{split}.png",
                                                f"{cfg.label}: {split} (macro-F1 {metrics[split]['macro_f1']:.3f})")
    if tracker is not None:
        tracker.log({**{f"best_eval/{k}": v for k, v in flat_metrics(metrics["validation"]).items()},
                     **{f"test/{k}": v for k, v in flat_metrics(metrics["test"]).items()}})
        for split, png in plots.items():
            tracker.log_confusion_matrix(f"confusion_matrix/{split}", png)
    return {"metrics": metrics, "plots": plots}


def train(cfg: JobConfig, dataset, base_model_dir: Path, output_dir: Path, tracker=None) -> TrainResult:
    """Fine-tune base_model_dir on dataset (train/validation/test with text and label ids)."""
    output_dir = Path(output_dir)
    precision = resolve_precision(cfg.precision)
    check_every_class_in_train(dataset["train"]["label"], cfg)
    set_seed(cfg.seed)
    model, tokenizer = load_base_model(base_model_dir, cfg)
    tokenized = tokenize_splits(dataset, tokenizer, cfg.max_length)
    processes = world_size()
    recipe = apply_recipe(cfg, model, len(tokenized["train"]), processes)
    alpha = class_alpha(cfg, dataset["train"]["label"])
    # DDP copies rank 0's weights to the other ranks when it wraps the model: one probe fit is enough.
    probe = head_init.start_head(cfg, model, tokenizer, tokenized) if is_main_process() else None
    if probe is not None and tracker is not None:
        tracker.log({"head/probe_c": probe.c, "head/probe_validation_macro_f1": probe.validation_macro_f1,
                     "head/probe_used": int(probe.used)})
    search = None
    if cfg.search_budget_s > 0:
        search = search_hyperparameters(cfg, recipe, base_model_dir, tokenizer, tokenized, alpha, precision,
                                        output_dir / "search", tracker, probe)
        recipe = with_search_result(recipe, search["best"])
    cfg = cfg.model_copy(update={"num_train_epochs": recipe.epochs, "learning_rate": recipe.learning_rate,
                                 "focal_gamma": recipe.focal_gamma})
    args = training_arguments(cfg, output_dir / "checkpoints", precision,
                              steps_per_epoch(len(tokenized["train"]), cfg, processes))
    callbacks = training_callbacks(cfg, recipe) + ([TrackerCallback(tracker)] if tracker is not None else [])
    trainer = build_trainer(cfg, model, tokenizer, tokenized, args, alpha,
                            callbacks=callbacks, optimizer_cls_and_kwargs=recipe_optimizer(args, recipe))

    logger.info("training %s on %d samples, %s, %d process(es)", cfg.label, len(tokenized["train"]),
                precision, processes)
    started = time.perf_counter()
    run_training(trainer, cfg)
    train_seconds = time.perf_counter() - started

    model_dir = output_dir / "best_model"
    trainer.save_model(str(model_dir))  # rank 0 only; also saves the tokenizer (processing_class)
    report = report_best_model(cfg, trainer, tokenized, output_dir, tracker)
    calibrated = calibrate(cfg, trainer, tokenized, model_dir, tracker)
    if is_main_process():  # the best model is in model_dir: the checkpoints only cost disk now
        shutil.rmtree(args.output_dir, ignore_errors=True)
    return TrainResult(
        model=trainer.model, tokenizer=tokenizer, model_dir=model_dir,
        eval_metrics=report["metrics"]["validation"], test_metrics=report["metrics"]["test"],
        train_seconds=train_seconds, confusion_matrices=report["plots"],
        history=trainer.state.log_history, best_checkpoint=trainer.state.best_model_checkpoint,
        precision=precision, world_size=processes,
        recipe={**recipe.to_dict(), "search": search, "head": head_init.describe(model, probe)},
        calibration=calibrated,
    )


def training_callbacks(cfg: JobConfig, recipe: Recipe) -> list[TrainerCallback]:
    if cfg.early_stopping_patience <= 0:
        return []
    return [EarlyStoppingAfter(recipe.min_steps, early_stopping_patience=cfg.early_stopping_patience)]


class EarlyStoppingAfter(EarlyStoppingCallback):
    """Early stopping that counts only evaluations at or after `min_steps` (the recipe's step floor).
    Why: with patience 1 and an evaluation an epoch, one noisy dip of the 80-row validation split's
    macro-F1 ended the fixture run at 66 of 154 planned steps, still at a high learning rate."""

    def __init__(self, min_steps: int, **kwargs):
        super().__init__(**kwargs)
        self.min_steps = min_steps

    def on_evaluate(self, args, state, control, metrics, **kwargs):
        if state.global_step >= self.min_steps:
            super().on_evaluate(args, state, control, metrics, **kwargs)


def search_hyperparameters(cfg: JobConfig, recipe: Recipe, base_model_dir: Path, tokenizer, tokenized, alpha,
                           precision: str, search_dir: Path, tracker,
                           probe: head_init.Probe | None = None) -> dict[str, Any]:
    """SEARCH_BUDGET_S: trials of this same training from fresh base models (hp_search.py), chosen on
    validation macro-F1; returns the record that metadata.json and W&B keep."""
    import hp_search

    if world_size() > 1:
        raise TrainingInputError("SEARCH_BUDGET_S runs in one process only; search without torchrun, then set "
                                 "LEARNING_RATE, NUM_TRAIN_EPOCHS and FOCAL_GAMMA for the distributed run")

    def fresh_model():
        model, _ = load_base_model(base_model_dir, cfg)
        if probe is not None and probe.used:
            probe.copy_into(model)
        set_word_embedding_mode(model, recipe.word_embeddings)
        return model

    args = training_arguments(cfg, search_dir, precision, steps_per_epoch(len(tokenized["train"]), cfg, 1))
    trainer = build_trainer(cfg, None, tokenizer, tokenized, args, alpha, callbacks=training_callbacks(cfg, recipe),
                            optimizer_cls_and_kwargs=recipe_optimizer(args, recipe), model_init=fresh_model)
    logger.info("hyperparameter search: %gs budget, at most %d trials", cfg.search_budget_s, cfg.search_max_trials)
    try:
        search = hp_search.run_search(trainer, recipe, cfg.search_budget_s, cfg.search_max_trials, cfg.seed)
    finally:
        shutil.rmtree(search_dir, ignore_errors=True)
    logger.info("search: %d trials in %.0fs; best trial %d, validation macro-F1 %.4f, %s", len(search["trials"]),
                search["seconds"], search["best"]["number"], search["best"]["validation_macro_f1"],
                search["best"]["params"])
    if tracker is not None:
        hp_search.track(tracker, search)
    return search


# --------------------------------------------------------------------------------------
# Recipe (recipe.py decides) and calibration (calibration.py computes)


def apply_recipe(cfg: JobConfig, model, train_rows: int, processes: int) -> Recipe:
    """Resolve the recipe for this data, model and device; set the word embeddings' mode."""
    recipe = resolve_recipe(cfg, train_rows, processes, model.config.hidden_size, torch.cuda.is_available())
    if recipe.word_embeddings == "sparse" and processes > 1:
        raise TrainingInputError("WORD_EMBEDDINGS=sparse runs in one process only; set WORD_EMBEDDINGS=full "
                                 "or frozen under torchrun")
    set_word_embedding_mode(model, recipe.word_embeddings)
    logger.info("recipe %s: %g epochs (%d steps planned), lr %g, word embeddings %s%s", cfg.recipe, recipe.epochs,
                recipe.optimizer_steps, recipe.learning_rate, recipe.word_embeddings,
                "".join(f"; {r}" for r in recipe.reasons))
    return recipe


def set_word_embedding_mode(model, mode: str) -> None:
    embeddings = model.get_input_embeddings()
    embeddings.requires_grad_(mode != "frozen")
    embeddings.sparse = mode == "sparse"


def recipe_optimizer(args: TrainingArguments, recipe: Recipe):
    """None (the Trainer's AdamW) unless the word embeddings take sparse gradients."""
    if recipe.word_embeddings != "sparse":
        return None
    _, kwargs = Trainer.get_optimizer_cls_and_kwargs(args)
    return SparseRowAdamW, {k: v for k, v in kwargs.items() if k not in ("fused", "foreach")}


def clip_grad_norm_with_sparse(parameters, max_norm: float) -> torch.Tensor:
    """torch's clip_grad_norm_ for gradients that may be sparse (torch cannot take their norm)."""
    grads = [p.grad for p in parameters if p.grad is not None]
    values = [g.coalesce().values() if g.is_sparse else g for g in grads]
    total = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(v) for v in values]))
    scale = (max_norm / (total + 1e-6)).clamp(max=1.0)
    for grad in grads:
        grad.mul_(scale)
    return total


class SparseRowAdamW(torch.optim.AdamW):
    """AdamW whose sparse-gradient parameters (the word embeddings) update only the rows that have
    a gradient (lazy Adam, as torch's SparseAdam, with decoupled weight decay on those rows);
    every other parameter takes torch's AdamW step."""

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        sparse = [(group, p, p.grad.coalesce()) for group in self.param_groups for p in group["params"]
                  if p.grad is not None and p.grad.is_sparse]
        for _, p, _ in sparse:
            p.grad = None  # AdamW skips parameters without a gradient
        super().step()
        for group, p, grad in sparse:
            self.row_step(group, p, grad)
        return loss

    def row_step(self, group, p: torch.Tensor, grad: torch.Tensor) -> None:
        state = self.state[p]
        if not state:
            state.update(row_step=0, exp_avg=torch.zeros_like(p), exp_avg_sq=torch.zeros_like(p))
        state["row_step"] += 1
        rows, values = grad.indices()[0], grad.values()
        (beta1, beta2), lr, step = group["betas"], group["lr"], state["row_step"]
        exp_avg = state["exp_avg"][rows].mul_(beta1).add_(values, alpha=1 - beta1)
        exp_avg_sq = state["exp_avg_sq"][rows].mul_(beta2).addcmul_(values, values, value=1 - beta2)
        state["exp_avg"][rows], state["exp_avg_sq"][rows] = exp_avg, exp_avg_sq
        update = (exp_avg / (1 - beta1 ** step)) / ((exp_avg_sq / (1 - beta2 ** step)).sqrt() + group["eps"])
        p[rows] = p[rows] * (1 - lr * group["weight_decay"]) - lr * update


def split_logits(trainer: Trainer, split) -> tuple[np.ndarray, np.ndarray]:
    output = trainer.predict(split)
    logits = output.predictions[0] if isinstance(output.predictions, tuple) else output.predictions
    return np.asarray(logits, dtype=np.float64), np.asarray(output.label_ids)


def calibrate(cfg: JobConfig, trainer: Trainer, tokenized, model_dir: Path, tracker) -> dict[str, Any] | None:
    """Fit the temperature on validation, measure ECE/Brier on test before and after, and save it
    with the model (calibration.json travels in the release commit) so the Space serves it."""
    if not cfg.calibrate:
        return None
    report = calibration.calibration_report(*split_logits(trainer, tokenized["validation"]),
                                            *split_logits(trainer, tokenized["test"]))
    if is_main_process():
        calibration.save_temperature(model_dir, report)
    logger.info("temperature %.3f: test ECE %.4f -> %.4f, Brier %.4f -> %.4f", report["temperature"],
                report["uncalibrated"]["ece"], report["calibrated"]["ece"],
                report["uncalibrated"]["brier"], report["calibrated"]["brier"])
    if tracker is not None:
        tracker.log({"calibration/temperature": report["temperature"],
                     **{f"test/{k}_{when}": report[when][k] for when in ("uncalibrated", "calibrated")
                        for k in ("ece", "brier", "nll")}})
    return report


# --------------------------------------------------------------------------------------
# Inference


@torch.no_grad()
def predict(model, tokenizer, texts: list[str], batch_size: int = 32,
            max_length: int = 128) -> tuple[np.ndarray, np.ndarray]:
    """Predicted label ids and class probabilities, batched with dynamic padding."""
    model.eval()
    num_classes = model.config.num_labels
    probs = np.zeros((len(texts), num_classes), dtype=np.float32)
    # Similar lengths in a batch waste little padding; results go back to the input order.
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    for start in range(0, len(order), batch_size):
        index = order[start:start + batch_size]
        batch = tokenizer([texts[i] for i in index], truncation=True, max_length=max_length,
                          padding=True, return_tensors="pt").to(model.device)
        logits = model(**batch).logits
        probs[index] = torch.softmax(logits.float(), dim=-1).cpu().numpy()
    return probs.argmax(-1), probs
