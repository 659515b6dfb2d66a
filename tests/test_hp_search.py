"""SEARCH_BUDGET_S: Trainer.hyperparameter_search with optuna, on the tiny model (real Trainer)."""
import json
import sys

import datasets
import pytest
from pydantic import ValidationError
from transformers import TrainerCallback

import hp_search
import model_pipeline as mp
from configs import JobConfig
from tests.test_model_pipeline import to_dataset

optuna = pytest.importorskip("optuna")

# Trials of 2 epochs of 3 steps, one evaluation an epoch: the search's plumbing, not its quality.
SEARCH = dict(num_train_epochs=1, train_batch_size=16, eval_steps=50, learning_rate=5e-3, warmup_ratio=0.0,
              early_stopping_patience=0, min_train_steps=0, calibrate=False, wandb_mode="disabled")
ROWS = {"train": 48, "validation": 32, "test": 32}


def cfg(**settings) -> JobConfig:
    return JobConfig(label="urgency", **{**SEARCH, **settings})


@pytest.fixture(scope="module")
def data(sample_splits):
    full = to_dataset(sample_splits, cfg())
    return datasets.DatasetDict({split: full[split].shuffle(seed=0).select(range(rows))
                                 for split, rows in ROWS.items()})


class TrialSettings(TrainerCallback):
    """What each trial really trained with: the optimizer's peak lr and the trainer's focal gamma."""

    def __init__(self):
        self.trainer, self.seen = None, []

    def on_train_begin(self, args, state, control, optimizer=None, **kwargs):
        self.seen.append((optimizer.param_groups[0]["initial_lr"], self.trainer.gamma, args.num_train_epochs))


def test_each_trial_trains_with_its_own_lr_gamma_and_epochs(data, tiny_model_dir, tmp_path):
    # Sparse word embeddings: SparseRowAdamW's kwargs were fixed before the trial chose its lr.
    settings = cfg(word_embeddings="sparse", search_budget_s=600, search_max_trials=2)
    model, tokenizer = mp.load_base_model(tiny_model_dir, settings)
    tokenized = mp.tokenize_splits(data, tokenizer, settings.max_length)
    recipe = mp.apply_recipe(settings, model, len(tokenized["train"]), 1)

    def fresh_model():
        fresh, _ = mp.load_base_model(tiny_model_dir, settings)
        mp.set_word_embedding_mode(fresh, recipe.word_embeddings)
        return fresh

    args = mp.training_arguments(settings, tmp_path, "fp32", mp.steps_per_epoch(len(tokenized["train"]), settings, 1))
    trainer = mp.build_trainer(settings, None, tokenizer, tokenized, args, None, model_init=fresh_model,
                               optimizer_cls_and_kwargs=mp.recipe_optimizer(args, recipe))
    seen = TrialSettings()
    seen.trainer = trainer
    trainer.add_callback(seen)
    search = hp_search.run_search(trainer, recipe, 600, 2, seed=0)

    assert len(search["trials"]) == len(seen.seen) == 2
    for trial, (lr, gamma, epochs) in zip(search["trials"], seen.seen):
        assert lr == pytest.approx(trial["params"]["learning_rate"])
        assert gamma == trial["params"]["focal_gamma"] and epochs == trial["params"]["num_train_epochs"]
    assert len({t["params"]["learning_rate"] for t in search["trials"]}) == 2
    best = max(search["trials"], key=lambda t: t["validation_macro_f1"])
    assert search["best"]["number"] == best["number"] and search["best"]["params"] == best["params"]


def test_the_budget_stops_the_running_trial_and_the_job_trains_the_best_values(data, tiny_model_dir, tmp_path):
    result = mp.train(cfg(search_budget_s=0.01, search_max_trials=5), data, tiny_model_dir, tmp_path)
    search = result.recipe["search"]
    (trial,) = search["trials"]  # no trial starts after the budget
    assert trial["stopped_by_budget"] and trial["steps"] == 1 and trial["validation_macro_f1"] is not None
    assert search["objective"] == "best validation macro-F1 of the trial"
    best = search["best"]["params"]
    assert best == trial["params"]
    assert result.recipe["learning_rate"] == pytest.approx(best["learning_rate"])
    assert result.recipe["focal_gamma"] == pytest.approx(best["focal_gamma"])
    assert result.recipe["epochs"] == best["num_train_epochs"]
    assert any(reason.startswith("search: ") for reason in result.recipe["reasons"])
    assert not (tmp_path / "search").exists()
    assert json.loads(json.dumps(result.recipe))["search"] == search  # as metadata.json keeps it


def test_no_search_by_default():
    assert JobConfig(label="urgency").search_budget_s == 0


def test_search_without_optuna_is_a_clear_settings_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "optuna", None)  # what `import optuna` meets where it is not installed
    with pytest.raises(ValidationError, match=r"SEARCH_BUDGET_S > 0 needs optuna.*pip install optuna==5.0.0"):
        JobConfig(label="urgency", search_budget_s=600)
    assert JobConfig(label="urgency", search_budget_s=0).search_budget_s == 0
