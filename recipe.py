"""The training recipe actually used: the job's settings adapted to the data size and the device.

RECIPE=card trains with the settings as given (the seed card: 3 epochs, lr 2e-5, batch 16, made
for xlm-roberta-base on a GPU). RECIPE=auto (default) fills in what was not set explicitly:

- epochs: raised until the run makes at least MIN_TRAIN_STEPS optimizer steps. 350 rows at batch
  16 are 22 steps an epoch; 3 epochs (66 steps at 2e-5) barely move the base model.
- learning rate by the encoder's width (LEARNING_RATE_BY_WIDTH), each band set by what was measured
  on this data: 1e-4 for small encoders (hidden size 128 to 512, e.g. multilingual-e5-small); a
  small model with few steps needs larger updates, and focal loss (gamma 2) shrinks the gradient
  of the examples it already gets right. Longer runs get that rate scaled down by the planned steps
  (BAND_MEASURED_STEPS), never below LEARNING_RATE: more data at the same rate collapsed. Toy
  encoders (hidden size under 128, such as the 2-layer 32-wide test model, randomly initialised)
  learn nothing at 1e-4 and get 5e-3. Base-size models keep the card's 2e-5.
- word embeddings: on a CPU in one process only the rows a batch touches are updated (sparse
  gradients, row-wise AdamW): the optimizer step over a 250k-token multilingual vocabulary
  otherwise costs more than forward and backward. Full AdamW elsewhere.

An explicitly set NUM_TRAIN_EPOCHS, LEARNING_RATE or FREEZE_WORD_EMBEDDINGS always wins.
No torch here: the job decides the recipe before it loads the model, and tests check it cheaply.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace

from configs import JobConfig

SMALL_ENCODER_LEARNING_RATE = 1e-4
TOY_ENCODER_LEARNING_RATE = 5e-3
# (hidden sizes below this, learning rate, what the band is): the first band that fits applies;
# wider models keep LEARNING_RATE. No pretrained encoder in use is narrower than 128 (bert-tiny is 128).
LEARNING_RATE_BY_WIDTH = (
    (128, TOY_ENCODER_LEARNING_RATE, "toy encoder"),
    (513, SMALL_ENCODER_LEARNING_RATE, "small encoder"),
)
# The bands were measured on runs of this many optimizer steps (the fixture: 350 rows, 7 epochs). A longer
# run takes the band's rate scaled down in proportion, never below LEARNING_RATE: e5-small at 1e-4 for the
# 465 steps of pool.csv (2471 rows) collapsed to one class (test macro-F1 0.202), while 2e-5 had given 0.724.
BAND_MEASURED_STEPS = 154


@dataclass(frozen=True)
class Recipe:
    epochs: float
    learning_rate: float
    warmup_ratio: float
    word_embeddings: str           # full | sparse | frozen
    steps_per_epoch: int
    optimizer_steps: int           # planned; early stopping may end sooner
    focal_gamma: float = 2.0
    min_steps: int = 0             # early stopping counts no evaluation before this step
    reasons: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


def resolve_recipe(cfg: JobConfig, train_rows: int, processes: int, hidden_size: int, on_gpu: bool) -> Recipe:
    epoch_steps = max(1, math.ceil(train_rows / (cfg.train_batch_size * processes * cfg.gradient_accumulation_steps)))
    explicit = cfg.model_fields_set
    epochs, lr, reasons = cfg.num_train_epochs, cfg.learning_rate, []
    embeddings = word_embedding_mode(cfg, processes, on_gpu)
    if cfg.recipe == "auto":
        floor_epochs = math.ceil(cfg.min_train_steps / epoch_steps)
        if "num_train_epochs" not in explicit and floor_epochs > epochs:
            epochs = float(floor_epochs)
            reasons.append(f"epochs {cfg.num_train_epochs:g} -> {floor_epochs}: {train_rows} rows are "
                           f"{epoch_steps} steps an epoch, MIN_TRAIN_STEPS={cfg.min_train_steps}")
        band = next(((rate, name) for below, rate, name in LEARNING_RATE_BY_WIDTH if hidden_size < below), None)
        if "learning_rate" not in explicit and band is not None:
            lr, why = band_learning_rate(band[0], math.ceil(epochs * epoch_steps), cfg.learning_rate)
            reasons.append(f"learning rate {cfg.learning_rate:g} -> {lr:.3g}: {band[1]} "
                           f"(hidden size {hidden_size}){why}")
        if embeddings == "sparse":
            reasons.append("word embeddings: sparse row updates (CPU, one process)")
    return Recipe(epochs=epochs, learning_rate=lr, warmup_ratio=cfg.warmup_ratio, word_embeddings=embeddings,
                  steps_per_epoch=epoch_steps, optimizer_steps=math.ceil(epochs * epoch_steps),
                  focal_gamma=cfg.focal_gamma, min_steps=cfg.min_train_steps if cfg.recipe == "auto" else 0,
                  reasons=reasons)


def band_learning_rate(rate: float, planned_steps: int, floor: float) -> tuple[float, str]:
    """The band's rate for a run of planned_steps, and what scaled it (empty when nothing did)."""
    if planned_steps <= BAND_MEASURED_STEPS:
        return rate, ""
    scaled = max(floor, rate * BAND_MEASURED_STEPS / planned_steps)
    return scaled, (f", scaled by {BAND_MEASURED_STEPS}/{planned_steps} planned steps "
                    f"(the band was measured on {BAND_MEASURED_STEPS})")


def with_search_result(recipe: Recipe, best: dict) -> Recipe:
    """The recipe with the search's best trial values (hp_search.py) in place of its own."""
    params = best["params"]
    epochs = float(params["num_train_epochs"])
    return replace(recipe, epochs=epochs, learning_rate=float(params["learning_rate"]),
                   focal_gamma=float(params["focal_gamma"]), optimizer_steps=math.ceil(epochs * recipe.steps_per_epoch),
                   reasons=[*recipe.reasons, f"search: lr {params['learning_rate']:.3g}, {epochs:g} epochs, "
                            f"focal gamma {params['focal_gamma']:.2f} (trial {best['number']}, validation macro-F1 "
                            f"{best['validation_macro_f1']:.4f})"])


def word_embedding_mode(cfg: JobConfig, processes: int, on_gpu: bool) -> str:
    if cfg.freeze_word_embeddings:
        return "frozen"
    if cfg.word_embeddings != "auto":
        return cfg.word_embeddings
    if cfg.recipe == "auto" and not on_gpu and processes == 1:
        return "sparse"
    return "full"
