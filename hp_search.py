"""Optional time-boxed hyperparameter search (SEARCH_BUDGET_S > 0; optuna is then required).

`Trainer.hyperparameter_search` with optuna's TPE sampler (seeded by SEED) tries learning rate,
epochs and focal gamma around what the recipe chose. Each trial is the job's own training (same
data, early stopping, sparse embeddings) from a fresh copy of the base model, scored by its best
validation macro-F1; the test split is never looked at. No trial starts after SEARCH_BUDGET_S and a
running one is stopped at it (it keeps the best validation macro-F1 it reached). The job then trains
its model once more with the best trial's values, so the search costs about the budget on top.
"""
from __future__ import annotations

import logging
import math
import time
from typing import Any, Callable

from transformers import Trainer, TrainerCallback

from recipe import Recipe

logger = logging.getLogger(__name__)

OBJECTIVE = "eval_macro_f1"
LEARNING_RATE_SPAN = 4.0  # the learning rate is searched in [lr / 4, lr * 4], log-uniform
GAMMA_RANGE = (0.0, 3.0)


def search_space(recipe: Recipe) -> Callable[[Any], dict[str, float]]:
    """The trial's TrainingArguments values; focal gamma is suggested too (read back from trial.params)."""
    low_epochs, high_epochs = max(1, math.ceil(recipe.epochs / 2)), max(2, math.ceil(recipe.epochs * 2))

    def space(trial) -> dict[str, float]:
        trial.suggest_float("focal_gamma", *GAMMA_RANGE)
        return {"learning_rate": trial.suggest_float("learning_rate", recipe.learning_rate / LEARNING_RATE_SPAN,
                                                     recipe.learning_rate * LEARNING_RATE_SPAN, log=True),
                "num_train_epochs": trial.suggest_int("num_train_epochs", low_epochs, high_epochs)}
    return space


class BudgetCallback(TrainerCallback):
    """Stops the running trial once the search budget is spent."""

    def __init__(self, deadline: float):
        self.deadline = deadline
        self.stopped = False

    def on_step_end(self, args, state, control, **kwargs):
        if time.monotonic() >= self.deadline:
            control.should_training_stop = self.stopped = True


class TrialLog:
    """Each trial's values and the best validation macro-F1 it reached (trials run one at a time)."""

    def __init__(self, trainer: Trainer, budget: BudgetCallback):
        self.trainer, self.budget, self.trials = trainer, budget, []

    def started(self, trial) -> None:
        self.budget.stopped = False
        self.trials.append({"number": trial.number, "params": dict(trial.params), "validation_macro_f1": None,
                            "steps": 0})

    def objective(self, metrics: dict[str, float]) -> float:
        best = max(metrics[OBJECTIVE], self.trainer.state.best_metric or -math.inf)
        current = self.trials[-1]
        current.update(validation_macro_f1=best, steps=self.trainer.state.global_step,
                       stopped_by_budget=self.budget.stopped)
        logger.info("search trial %d at step %d: validation macro-F1 %.4f (best of the trial %.4f)",
                    current["number"], current["steps"], metrics[OBJECTIVE], best)
        return best


def run_search(trainer: Trainer, recipe: Recipe, budget_s: float, max_trials: int, seed: int) -> dict[str, Any]:
    """Search on `trainer` (built with model_init); returns the record for metadata.json and W&B."""
    import optuna

    started = time.monotonic()
    budget = BudgetCallback(started + budget_s)
    trainer.add_callback(budget)
    log = TrialLog(trainer, budget)
    space = search_space(recipe)

    def hp_space(trial) -> dict[str, float]:
        values = space(trial)
        log.started(trial)
        return values

    best = trainer.hyperparameter_search(
        hp_space=hp_space, compute_objective=log.objective, n_trials=max_trials, direction="maximize",
        backend="optuna", sampler=optuna.samplers.TPESampler(seed=seed), timeout=budget_s)
    return {"objective": "best validation macro-F1 of the trial", "budget_s": budget_s, "max_trials": max_trials,
            "seconds": round(time.monotonic() - started, 1), "trials": log.trials,
            "best": {"number": int(best.run_id), "params": best.hyperparameters, "validation_macro_f1": best.objective},
            "space": {"learning_rate": [recipe.learning_rate / LEARNING_RATE_SPAN,
                                        recipe.learning_rate * LEARNING_RATE_SPAN],
                      "num_train_epochs": [max(1, math.ceil(recipe.epochs / 2)), max(2, math.ceil(recipe.epochs * 2))],
                      "focal_gamma": list(GAMMA_RANGE)}}


def track(tracker, search: dict[str, Any]) -> None:
    """One W&B row per trial, and the chosen values in the run summary."""
    import pandas as pd

    rows = [{"trial": t["number"], **t["params"], "validation_macro_f1": t["validation_macro_f1"], "steps": t["steps"]}
            for t in search["trials"]]
    tracker.log_table("search/trials", pd.DataFrame(rows))
    tracker.summary({"search/best_trial": search["best"]["number"], "search/seconds": search["seconds"],
                     "search/best_validation_macro_f1": search["best"]["validation_macro_f1"],
                     **{f"search/best_{k}": v for k, v in search["best"]["params"].items()}})
