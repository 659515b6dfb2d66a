import logging
import math

import datasets
import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from transformers import AutoModelForSequenceClassification, Trainer

import model_pipeline as mp
from configs import JobConfig

FAST = dict(num_train_epochs=2, train_batch_size=16, eval_steps=5, learning_rate=5e-3, head_init="random",
            early_stopping_patience=0, warmup_ratio=0.0)


def to_dataset(splits: dict[str, pd.DataFrame], cfg: JobConfig) -> datasets.DatasetDict:
    return datasets.DatasetDict({
        name: datasets.Dataset.from_pandas(
            pd.DataFrame({"text": df.text, "label": df[cfg.label].map(cfg.label2id)}), preserve_index=False)
        for name, df in splits.items()
    })


@pytest.fixture(scope="module")
def urgency_cfg():
    return JobConfig(label="urgency", **FAST)


@pytest.fixture(scope="module")
def urgency_data(sample_splits, urgency_cfg):
    return to_dataset(sample_splits, urgency_cfg)


class RecordingTracker:
    def __init__(self):
        self.logged: list[dict] = []

        self.images: dict[str, str] = {}

    def log(self, metrics):
        self.logged.append(metrics)

    def log_confusion_matrix(self, name, png_path):
        self.images[name] = png_path


@pytest.fixture(scope="module")
def tracker():
    return RecordingTracker()


@pytest.fixture(scope="module")
def trained(urgency_cfg, urgency_data, tiny_model_dir, tmp_path_factory, tracker):
    return mp.train(urgency_cfg, urgency_data, tiny_model_dir, tmp_path_factory.mktemp("run"), tracker)


def mean_cross_entropy(model, tokenizer, split) -> float:
    _, probs = mp.predict(model, tokenizer, split["text"])
    return float(-np.log(probs[np.arange(len(probs)), split["label"]]).mean())


# --- training --------------------------------------------------------------------------


def test_training_lowers_the_logged_loss_and_fits_a_small_set_far_below_chance(urgency_data, tiny_model_dir,
                                                                               tmp_path):
    # The shared two-epoch run barely moves a tiny model (CI once logged a last loss 0.001 above the
    # first), so a loss margin there depends on the machine's float reductions; fitting 48 rows for
    # many epochs shows learning with a wide margin.
    small = urgency_data["train"].shuffle(seed=0).select(range(48))
    cfg = JobConfig(label="urgency", **{**FAST, "num_train_epochs": 25, "eval_steps": 25})
    fitted = mp.train(cfg, datasets.DatasetDict(train=small, validation=small, test=small),
                      tiny_model_dir, tmp_path)
    chance = math.log(len(cfg.labels))
    assert mean_cross_entropy(fitted.model, fitted.tokenizer, small) < 0.6 * chance
    assert fitted.test_metrics["accuracy"] > 0.9
    logged = [h["loss"] for h in fitted.history if "loss" in h]
    assert np.mean(logged[-2:]) < 0.5 * np.mean(logged[:2])


def test_best_checkpoint_has_the_highest_eval_macro_f1(trained):
    evals = [h for h in trained.history if "eval_macro_f1" in h]
    assert len(evals) >= 3
    best = max(evals, key=lambda h: h["eval_macro_f1"])
    assert trained.best_checkpoint.endswith(f"checkpoint-{best['step']}")
    assert trained.eval_metrics["macro_f1"] == pytest.approx(best["eval_macro_f1"])


def test_every_eval_and_the_final_metrics_reach_the_tracker(trained, tracker):
    evals = [m for m in tracker.logged if "eval_macro_f1" in m]
    assert len(evals) == len([h for h in trained.history if "eval_macro_f1" in h])
    assert all("train/global_step" in m for m in evals)
    final = next(m for m in reversed(tracker.logged) if "test/macro_f1" in m)
    assert set(tracker.images) == {"confusion_matrix/validation", "confusion_matrix/test"}
    assert tracker.images["confusion_matrix/test"] == trained.confusion_matrices["test"]
    assert trained.confusion_matrices["test"].read_bytes()[:4] == b"\x89PNG"
    assert final["test/macro_f1"] == trained.test_metrics["macro_f1"]
    assert final["best_eval/f1/URGENT"] == trained.eval_metrics["per_class_f1"]["URGENT"]


def test_best_model_is_saved_with_label_names(trained, urgency_cfg):
    reloaded = AutoModelForSequenceClassification.from_pretrained(trained.model_dir)
    assert reloaded.config.id2label == urgency_cfg.id2label
    assert reloaded.config.label2id == urgency_cfg.label2id
    assert (trained.model_dir / "tokenizer.json").is_file()
    assert set(trained.test_metrics["per_class_f1"]) == set(urgency_cfg.labels)


def test_cpu_run_has_no_mixed_precision(trained):
    if torch.cuda.is_available():
        pytest.skip("CPU-only behaviour")
    assert trained.precision == "fp32"
    assert mp.resolve_precision("auto") == "fp32"
    assert all(p.dtype == torch.float32 for p in trained.model.parameters())


def test_early_stopping_stops_when_macro_f1_stalls(urgency_data, tiny_model_dir, tmp_path):
    # A learning rate this small changes no prediction, so macro-F1 never improves.
    cfg = JobConfig(label="urgency", **{**FAST, "learning_rate": 1e-12, "eval_steps": 2,
                                         "early_stopping_patience": 1, "min_train_steps": 0})
    result = mp.train(cfg, urgency_data, tiny_model_dir, tmp_path)
    evals = [h for h in result.history if "eval_macro_f1" in h]
    assert len(evals) == 2
    assert evals[-1]["step"] == 4


def test_early_stopping_waits_for_the_step_floor(urgency_data, tiny_model_dir, tmp_path):
    cfg = JobConfig(label="urgency", **{**FAST, "learning_rate": 1e-12, "eval_steps": 2,
                                         "early_stopping_patience": 1, "min_train_steps": 8})
    result = mp.train(cfg, urgency_data, tiny_model_dir, tmp_path)
    assert [h["step"] for h in result.history if "eval_macro_f1" in h] == [2, 4, 6, 8]


# --- focal loss ------------------------------------------------------------------------


def test_focal_loss_with_gamma_0_and_no_alpha_is_cross_entropy():
    torch.manual_seed(0)
    logits, labels = torch.randn(8, 3), torch.randint(0, 3, (8,))
    assert mp.focal_loss(logits, labels, gamma=0.0).item() == pytest.approx(F.cross_entropy(logits, labels).item())


def test_trainer_loss_with_gamma_0_matches_the_model_cross_entropy(tiny_model_dir, urgency_data, tmp_path):
    cfg = JobConfig(label="urgency", focal_gamma=0, focal_alpha="none")
    model, tokenizer = mp.load_base_model(tiny_model_dir, cfg)
    tokenized = mp.tokenize_splits(urgency_data, tokenizer, 64)
    args = mp.training_arguments(cfg, tmp_path, "fp32", epoch_steps=10)
    trainer = mp.build_trainer(cfg, model, tokenizer, tokenized, args, alpha=mp.class_alpha(cfg, []))
    batch = trainer.data_collator([{k: tokenized["train"][i][k] for k in ("input_ids", "attention_mask", "label")}
                                   for i in range(6)])
    model.eval()
    expected = model(**batch).loss.item()
    assert trainer.compute_loss(model, dict(batch)).item() == pytest.approx(expected, rel=1e-5)


def test_per_class_alpha_is_applied():
    logits, labels = torch.tensor([[2.0, 0.0, 0.0], [0.0, 1.0, 0.0]]), torch.tensor([0, 2])
    alpha = torch.tensor([0.5, 1.0, 2.0])
    p0 = math.exp(2) / (math.exp(2) + 2)
    p1 = 1 / (2 + math.e)
    expected = [-0.5 * (1 - p0) ** 2 * math.log(p0), -2.0 * (1 - p1) ** 2 * math.log(p1)]
    got = mp.focal_loss(logits, labels, gamma=2.0, alpha=alpha, reduction="none")
    assert got.tolist() == pytest.approx(expected, rel=1e-5)


def test_loss_is_normalised_by_num_items_of_the_accumulated_batch(tiny_model_dir, urgency_data, tmp_path):
    cfg = JobConfig(label="urgency", focal_alpha="1,2,3")
    model, tokenizer = mp.load_base_model(tiny_model_dir, cfg)
    tokenized = mp.tokenize_splits(urgency_data, tokenizer, 64)
    args = mp.training_arguments(cfg, tmp_path, "fp32", epoch_steps=10)
    trainer = mp.build_trainer(cfg, model, tokenizer, tokenized, args, alpha=mp.class_alpha(cfg, []))
    rows = [{k: tokenized["train"][i][k] for k in ("input_ids", "attention_mask", "label")} for i in range(8)]
    model.eval()
    whole = trainer.compute_loss(model, dict(trainer.data_collator(rows))).item()
    # Two accumulated halves of 3 and 5 rows, each divided by the 8 items of the whole batch.
    halves = sum(trainer.compute_loss(model, dict(trainer.data_collator(part)), num_items_in_batch=8).item()
                 for part in (rows[:3], rows[3:]))
    assert halves == pytest.approx(whole, rel=1e-5)


def test_balanced_alpha_is_inverse_class_frequency_with_mean_1():
    cfg = JobConfig(label="urgency", focal_alpha="balanced")
    alpha = mp.class_alpha(cfg, [0, 1, 1, 2, 2, 2, 2, 2])
    inverse = np.array([1, 1 / 2, 1 / 5])
    assert alpha.tolist() == pytest.approx((inverse * 3 / inverse.sum()).tolist())
    assert mp.class_alpha(JobConfig(label="urgency", focal_alpha="0.25"), [0]).tolist() == [0.25] * 3
    assert mp.class_alpha(JobConfig(label="urgency", focal_alpha="none"), [0]) is None


# --- metrics and prediction -----------------------------------------------------------


def test_predict_batches_give_the_same_answer_as_one_by_one(trained, urgency_data):
    texts = urgency_data["test"]["text"][:10]
    ids, probs = mp.predict(trained.model, trained.tokenizer, texts, batch_size=4)
    assert probs.shape == (10, 3)
    assert np.allclose(probs.sum(1), 1, atol=1e-5)
    single = np.vstack([mp.predict(trained.model, trained.tokenizer, [t])[1] for t in texts])
    assert np.allclose(probs, single, atol=1e-5)
    assert (ids == single.argmax(1)).all()


def test_is_main_process_follows_rank(monkeypatch):
    monkeypatch.setenv("RANK", "1")
    assert not mp.is_main_process()
    monkeypatch.setenv("RANK", "0")
    assert mp.is_main_process()


# --- bad input -------------------------------------------------------------------------


def test_missing_base_model_dir_is_a_clear_error(urgency_data, tmp_path):
    cfg = JobConfig(label="urgency", model_checkpoint="org/not-there")
    with pytest.raises(mp.TrainingInputError, match="org/not-there.*config.json"):
        mp.train(cfg, urgency_data, tmp_path / "nothing", tmp_path / "out")


def test_class_without_train_samples_is_named(sample_splits, tiny_model_dir, tmp_path):
    cfg = JobConfig(label="urgency", **FAST)
    splits = {**sample_splits, "train": sample_splits["train"].query("urgency != 'HIGHLY URGENT'")}
    with pytest.raises(mp.TrainingInputError, match="'HIGHLY URGENT' has no train samples"):
        mp.train(cfg, to_dataset(splits, cfg), tiny_model_dir, tmp_path)


@pytest.mark.parametrize("precision", ["fp16", "bf16"])
def test_mixed_precision_without_cuda_names_precision(precision, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(mp.TrainingInputError, match=f"PRECISION={precision}"):
        mp.resolve_precision(precision)


def test_out_of_memory_names_batch_size_and_accumulation(urgency_cfg, urgency_data, tiny_model_dir,
                                                         tmp_path, monkeypatch):
    def out_of_memory(self, *args, **kwargs):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(Trainer, "train", out_of_memory)
    with pytest.raises(mp.TrainingInputError, match="TRAIN_BATCH_SIZE=16.*GRADIENT_ACCUMULATION_STEPS=1"):
        mp.train(urgency_cfg, urgency_data, tiny_model_dir, tmp_path)


def test_checkpoint_with_another_head_size_is_reinitialised(tiny_model_dir, tmp_path, caplog):
    department = JobConfig(label="department")
    model, tokenizer = mp.load_base_model(tiny_model_dir, department)
    model.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    with caplog.at_level(logging.WARNING, logger="model_pipeline"):
        model, _ = mp.load_base_model(tmp_path, JobConfig(label="urgency"))
    assert model.config.num_labels == 3
    assert model.classifier.out_features == 3
    assert "4-class head" in caplog.text and "re-initialising" in caplog.text


def test_freeze_word_embeddings_leaves_only_them_untrainable(tiny_model_dir):
    from configs import JobConfig
    from model_pipeline import load_base_model

    cfg = JobConfig(label="urgency", freeze_word_embeddings=True, hf_endpoint="http://127.0.0.1:1")
    model, _ = load_base_model(tiny_model_dir, cfg)
    assert not model.get_input_embeddings().weight.requires_grad
    assert model.classifier.weight.requires_grad


# --- recipe: sparse word-embedding updates, calibration ---------------------------------


def test_default_cpu_run_updates_only_the_word_embeddings_of_train_tokens(trained, urgency_data, tiny_model_dir):
    assert trained.recipe["word_embeddings"] == "sparse"
    base = AutoModelForSequenceClassification.from_pretrained(tiny_model_dir).get_input_embeddings().weight
    tuned = trained.model.get_input_embeddings().weight.detach()
    seen = torch.zeros(len(base), dtype=torch.bool)
    seen[torch.tensor(sorted({i for ids in trained.tokenizer(list(urgency_data["train"]["text"]), truncation=True,
                                                                 max_length=128)["input_ids"] for i in ids}))] = True
    changed = (tuned != base).any(dim=1)
    assert changed[seen].float().mean() > 0.9
    assert not changed[~seen].any()


def sparse_and_dense_copies(seed: int = 0):
    torch.manual_seed(seed)
    dense = torch.nn.Sequential(torch.nn.Embedding(50, 4), torch.nn.Linear(4, 2))
    sparse = torch.nn.Sequential(torch.nn.Embedding(50, 4, sparse=True), torch.nn.Linear(4, 2))
    sparse.load_state_dict(dense.state_dict())
    return dense, sparse


def test_sparse_row_adamw_matches_adamw_on_touched_rows_and_keeps_the_others():
    dense, sparse = sparse_and_dense_copies()
    initial = dense[0].weight.detach().clone()
    options = dict(lr=0.05, weight_decay=0.01)
    optimizers = [torch.optim.AdamW(dense.parameters(), **options), mp.SparseRowAdamW(sparse.parameters(), **options)]
    ids = torch.tensor([[3, 7, 7, 11]])  # the same rows every step: lazy Adam is then exact Adam
    for _ in range(5):
        for model, optimizer in zip((dense, sparse), optimizers):
            optimizer.zero_grad()
            model(ids).pow(2).sum().backward()
            optimizer.step()
    rows = [3, 7, 11]
    assert torch.allclose(sparse[0].weight[rows], dense[0].weight[rows], atol=1e-6)
    assert torch.allclose(sparse[1].weight, dense[1].weight, atol=1e-6)
    untouched = [i for i in range(50) if i not in rows]
    assert torch.equal(sparse[0].weight[untouched], initial[untouched])


def test_gradient_clipping_with_sparse_grads_matches_torch():
    dense, sparse = sparse_and_dense_copies()
    ids = torch.tensor([[1, 2, 2, 9]])
    for model in (dense, sparse):
        (model(ids).pow(2).sum() * 100).backward()
    expected = torch.nn.utils.clip_grad_norm_(dense.parameters(), 1.0)
    got = mp.clip_grad_norm_with_sparse(sparse.parameters(), 1.0)
    assert got.item() == pytest.approx(expected.item(), rel=1e-5)
    assert torch.allclose(sparse[0].weight.grad.to_dense(), dense[0].weight.grad, atol=1e-6)


def test_sparse_word_embeddings_refuse_several_processes(urgency_cfg, tiny_model_dir):
    model, _ = mp.load_base_model(tiny_model_dir, urgency_cfg)
    cfg = JobConfig(label="urgency", word_embeddings="sparse")
    with pytest.raises(mp.TrainingInputError, match="WORD_EMBEDDINGS=sparse runs in one process"):
        mp.apply_recipe(cfg, model, 350, processes=2)


def test_temperature_is_fitted_saved_with_the_model_and_tracked(trained, tracker):
    from calibration import load_temperature

    report = trained.calibration
    assert load_temperature(trained.model_dir) == pytest.approx(report["temperature"])
    assert 0.05 <= report["temperature"] <= 20
    assert set(report["calibrated"]) == {"ece", "brier", "nll", "mean_confidence"}
    logged = next(m for m in tracker.logged if "calibration/temperature" in m)
    assert logged["test/ece_calibrated"] == report["calibrated"]["ece"]
