import pytest

from configs import JobConfig
from recipe import (
    BAND_MEASURED_STEPS,
    SMALL_ENCODER_LEARNING_RATE,
    TOY_ENCODER_LEARNING_RATE,
    resolve_recipe,
    with_search_result,
)

E5_HIDDEN, XLMR_HIDDEN = 384, 768


def cfg(**settings) -> JobConfig:
    return JobConfig(label="urgency", hf_endpoint="http://127.0.0.1:1", **settings)


def test_auto_raises_epochs_until_min_train_steps():
    recipe = resolve_recipe(cfg(min_train_steps=300), 350, processes=1, hidden_size=XLMR_HIDDEN, on_gpu=True)
    assert recipe.steps_per_epoch == 22  # ceil(350 / 16)
    assert recipe.epochs == 14 and recipe.optimizer_steps >= 300
    assert any("MIN_TRAIN_STEPS=300" in reason for reason in recipe.reasons)


def test_large_data_keeps_the_card_epochs():
    recipe = resolve_recipe(cfg(), 4000, processes=1, hidden_size=XLMR_HIDDEN, on_gpu=True)
    assert recipe.epochs == 3 and recipe.learning_rate == 2e-5 and recipe.word_embeddings == "full"
    assert recipe.reasons == []


def test_explicit_epochs_and_learning_rate_win_over_auto():
    recipe = resolve_recipe(cfg(num_train_epochs=1, learning_rate=3e-5), 60, 1, E5_HIDDEN, on_gpu=False)
    assert recipe.epochs == 1 and recipe.learning_rate == 3e-5


def test_small_encoder_on_cpu_gets_a_larger_lr_and_sparse_embeddings():
    recipe = resolve_recipe(cfg(), 350, processes=1, hidden_size=E5_HIDDEN, on_gpu=False)
    assert recipe.learning_rate == SMALL_ENCODER_LEARNING_RATE
    assert recipe.word_embeddings == "sparse"


@pytest.mark.parametrize("hidden,lr,band", [(32, TOY_ENCODER_LEARNING_RATE, "toy encoder"),
                                             (128, SMALL_ENCODER_LEARNING_RATE, "small encoder"),
                                             (512, SMALL_ENCODER_LEARNING_RATE, "small encoder"), (768, 2e-5, None)])
def test_learning_rate_follows_the_encoders_width(hidden, lr, band):
    # The 2-layer 32-wide test model is no small pretrained encoder: it learns nothing at 1e-4.
    recipe = resolve_recipe(cfg(), 350, processes=1, hidden_size=hidden, on_gpu=False)
    assert recipe.learning_rate == lr
    assert any(f"{band} (hidden size {hidden})" in r for r in recipe.reasons) == (band is not None)


def test_search_result_replaces_lr_epochs_and_gamma():
    recipe = resolve_recipe(cfg(), 350, processes=1, hidden_size=E5_HIDDEN, on_gpu=False)
    best = {"number": 3, "validation_macro_f1": 0.71,
            "params": {"learning_rate": 3e-4, "num_train_epochs": 9, "focal_gamma": 0.5}}
    searched = with_search_result(recipe, best)
    assert (searched.learning_rate, searched.epochs, searched.focal_gamma) == (3e-4, 9, 0.5)
    assert searched.optimizer_steps == 9 * 22 and searched.word_embeddings == recipe.word_embeddings
    assert searched.reasons[-1] == "search: lr 0.0003, 9 epochs, focal gamma 0.50 (trial 3, validation macro-F1 0.7100)"


def test_auto_early_stopping_waits_for_the_step_floor_and_card_does_not():
    assert resolve_recipe(cfg(), 350, 1, E5_HIDDEN, on_gpu=False).min_steps == 150
    assert resolve_recipe(cfg(recipe="card"), 350, 1, E5_HIDDEN, on_gpu=False).min_steps == 0


@pytest.mark.parametrize("processes,on_gpu", [(2, False), (1, True)])
def test_sparse_embeddings_only_in_one_cpu_process(processes, on_gpu):
    assert resolve_recipe(cfg(), 350, processes, E5_HIDDEN, on_gpu).word_embeddings == "full"


def test_card_recipe_uses_the_settings_as_given():
    recipe = resolve_recipe(cfg(recipe="card"), 350, processes=1, hidden_size=E5_HIDDEN, on_gpu=False)
    assert (recipe.epochs, recipe.learning_rate, recipe.word_embeddings) == (3, 2e-5, "full")
    assert recipe.optimizer_steps == 66


def test_freeze_word_embeddings_wins_over_word_embeddings():
    settings = cfg(freeze_word_embeddings=True, word_embeddings="sparse")
    assert resolve_recipe(settings, 350, 1, E5_HIDDEN, on_gpu=False).word_embeddings == "frozen"


def test_min_train_steps_counts_processes_and_accumulation():
    recipe = resolve_recipe(cfg(gradient_accumulation_steps=2, min_train_steps=100), 640, processes=2,
                            hidden_size=XLMR_HIDDEN, on_gpu=True)
    assert recipe.steps_per_epoch == 10 and recipe.epochs == 10


def test_summary_shows_the_recipe_and_the_calibration(tmp_path):
    from summary import RunResult, render_summary

    recipe = resolve_recipe(cfg(min_train_steps=300), 350, processes=1, hidden_size=E5_HIDDEN, on_gpu=False)
    calibration = {"temperature": 1.8, "uncalibrated": {"ece": 0.21, "brier": 0.61},
                   "calibrated": {"ece": 0.04, "brier": 0.55}, "test_samples": 120,
                   "ece_floor": {"mean": 0.081, "p90": 0.102}}
    result = RunResult(label="urgency", run_dir=tmp_path,
                       training={"recipe": recipe.to_dict(), "calibration": calibration, "seconds": 95.0})
    text = render_summary(result)
    assert "14 epochs (308 steps planned), lr 5e-05, word embeddings sparse, 95s" in text
    assert "temperature 1.800 (fitted on validation); test ECE 0.2100 -> 0.0400, Brier 0.6100 -> 0.5500" in text
    assert "a perfectly calibrated model would show ECE 0.0810 (90% under 0.1020) on these 120 test samples" in text


def test_a_longer_run_scales_the_band_rate_down_but_not_below_the_setting():
    # pool.csv: 2471 rows, 3 epochs of 155 steps. At the fixture's 1e-4 e5-small collapsed to one class.
    recipe = resolve_recipe(cfg(), 2471, processes=1, hidden_size=E5_HIDDEN, on_gpu=False)
    assert recipe.optimizer_steps == 465
    assert recipe.learning_rate == pytest.approx(SMALL_ENCODER_LEARNING_RATE * BAND_MEASURED_STEPS / 465)
    assert any("scaled by 154/465 planned steps" in reason for reason in recipe.reasons), recipe.reasons
    assert resolve_recipe(cfg(), 40000, 1, E5_HIDDEN, on_gpu=False).learning_rate == 2e-5  # LEARNING_RATE floor
