"""Run by tests/test_ddp.py under `torchrun --nproc_per_node 2`: train the tiny model with DDP.

usage: torchrun --nproc_per_node 2 tests/ddp_train.py MODEL_DIR OUTPUT_DIR
Every rank writes rank-<N>.json (what it saw, the head as training began included); only the result
of rank 0 has a model_dir.
"""
import json
import os
import sys
from pathlib import Path

import datasets
import pandas as pd
from transformers import TrainerCallback

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import model_pipeline as mp  # noqa: E402
from configs import JobConfig  # noqa: E402

DATA_DIR = Path(__file__).resolve().parents[1] / "data" / "complaints"


class HeadAtFirstStep(TrainerCallback):
    """The head's weights as this rank's first step begins, after DDP wrapped the model."""
    weights: list[float] = []

    def on_step_begin(self, args, state, control, model=None, **kwargs):
        if state.global_step == 0:
            HeadAtFirstStep.weights = model.classifier.weight.detach().flatten().tolist()


def main(model_dir: str, output_dir: str) -> None:
    training_callbacks = mp.training_callbacks
    mp.training_callbacks = lambda cfg, recipe: training_callbacks(cfg, recipe) + [HeadAtFirstStep()]
    cfg = JobConfig(label="urgency", num_train_epochs=1, train_batch_size=16, eval_steps=4,
                    learning_rate=5e-3, early_stopping_patience=0, wandb_mode="disabled", head_init="probe")
    dataset = datasets.DatasetDict({
        name: datasets.Dataset.from_pandas(pd.DataFrame({
            "text": df.text, "label": df.urgency.map(cfg.label2id)}), preserve_index=False)
        for name in ("train", "validation", "test")
        for df in [pd.read_csv(DATA_DIR / f"{name}.csv")]
    })
    out = Path(output_dir)
    result = mp.train(cfg, dataset, Path(model_dir), out)
    report = {
        "rank": int(os.environ["RANK"]),
        "main": mp.is_main_process(),
        "world_size": result.world_size,
        "steps": max(h["step"] for h in result.history),
        "eval_macro_f1": result.eval_metrics["macro_f1"],
        "test_macro_f1": result.test_metrics["macro_f1"],
        "head_init": result.recipe["head"]["init"],
        "head_at_first_step": HeadAtFirstStep.weights,
    }
    (out / f"rank-{report['rank']}.json").write_text(json.dumps(report))


if __name__ == "__main__":
    main(*sys.argv[1:3])
