"""How the classifier starts (head_init.py): the mean-pooling layer and the linear-probe head."""
import datasets
import numpy as np
import pandas as pd
import pytest
import torch
from safetensors.torch import load_file, save_file
from sklearn.metrics import f1_score
from transformers import AutoModelForSequenceClassification

import head_init
import model_pipeline as mp
from configs import JobConfig

TEXTS = ["water supply cut", "a much longer complaint about the road " * 5]  # the first one gets padded


@pytest.fixture(scope="module")
def poolerless_model_dir(tiny_model_dir, tmp_path_factory):
    """The tiny encoder saved without its pooler, as multilingual-e5-small ships."""
    folder = tmp_path_factory.mktemp("poolerless")
    for item in tiny_model_dir.iterdir():
        if item.name != "model.safetensors":
            (folder / item.name).write_bytes(item.read_bytes())
    weights = load_file(tiny_model_dir / "model.safetensors")
    save_file({k: v for k, v in weights.items() if "pooler" not in k}, folder / "model.safetensors",
              metadata={"format": "pt"})
    return folder


@pytest.fixture(scope="module")
def urgency_splits(sample_splits):
    cfg = JobConfig(label="urgency")
    return datasets.DatasetDict({
        name: datasets.Dataset.from_pandas(
            pd.DataFrame({"text": df.text, "label": df.urgency.map(cfg.label2id)}), preserve_index=False)
        for name, df in sample_splits.items()})


def pooled(model, tokenizer, texts):
    batch = tokenizer(texts, padding=True, return_tensors="pt")
    with torch.inference_mode():
        out = model.bert(**batch, output_hidden_states=True)
    return out, batch["attention_mask"]


def test_a_checkpoint_without_pooler_gets_a_mean_pooling_layer(poolerless_model_dir):
    model, tokenizer = mp.load_base_model(poolerless_model_dir, JobConfig(label="urgency"))
    model.eval()
    assert model.config.num_hidden_layers == 3 and len(model.bert.encoder.layer) == 3
    out, mask = pooled(model, tokenizer, TEXTS)
    below = out.hidden_states[-2]  # the last pretrained layer's output
    mean = (below * mask.unsqueeze(-1)).sum(1) / mask.sum(1, keepdim=True)
    normalised = torch.nn.functional.layer_norm(mean, mean.shape[-1:], eps=model.config.layer_norm_eps)
    expected = torch.tanh(head_init.POOLER_SCALE * normalised)
    # The token's own state weighs 1/MEAN_POOL_GAIN: close to the mean, not equal to it.
    assert torch.allclose(out.pooler_output, expected, atol=0.05)
    assert not torch.allclose(out.pooler_output[0], out.pooler_output[1], atol=0.05)


def test_mean_pooling_ignores_padding(poolerless_model_dir):
    model, tokenizer = mp.load_base_model(poolerless_model_dir, JobConfig(label="urgency"))
    model.eval()
    alone, _ = pooled(model, tokenizer, ["water supply cut"])
    padded, mask = pooled(model, tokenizer, TEXTS)
    assert mask[0].sum() < mask.shape[1]
    assert torch.allclose(alone.pooler_output[0], padded.pooler_output[0], atol=1e-5)


def test_the_saved_model_reloads_as_a_plain_classifier(poolerless_model_dir, tmp_path):
    model, tokenizer = mp.load_base_model(poolerless_model_dir, JobConfig(label="urgency"))
    model.eval()
    model.save_pretrained(tmp_path)
    reloaded = AutoModelForSequenceClassification.from_pretrained(tmp_path).eval()
    batch = tokenizer(["water supply cut", "a school roof collapsed"], padding=True, return_tensors="pt")
    with torch.inference_mode():
        assert torch.allclose(model(**batch).logits, reloaded(**batch).logits, atol=1e-6)
    assert reloaded.config.mean_pooling_layer is True


@pytest.mark.parametrize("settings", [dict(pooling="cls"), dict(recipe="card")])
def test_cls_pooling_or_the_card_recipe_keep_the_architecture(poolerless_model_dir, settings):
    model, _ = mp.load_base_model(poolerless_model_dir, JobConfig(label="urgency", **settings))
    assert len(model.bert.encoder.layer) == 2


def test_a_checkpoint_with_its_pooler_keeps_it_unless_mean_is_asked(tiny_model_dir):
    kept, _ = mp.load_base_model(tiny_model_dir, JobConfig(label="urgency"))
    assert len(kept.bert.encoder.layer) == 2
    forced, _ = mp.load_base_model(tiny_model_dir, JobConfig(label="urgency", pooling="mean"))
    assert len(forced.bert.encoder.layer) == 3


def test_mean_pooling_asked_of_a_model_without_bert_pooler_names_the_setting():
    class Headless(torch.nn.Module):
        config = None

    with pytest.raises(ValueError, match="POOLING=mean.*POOLING=auto or cls"):
        head_init.uses_mean_pooling(JobConfig(label="urgency", pooling="mean"), Headless(), [])


def test_the_head_starts_as_the_probe_chosen_on_validation(poolerless_model_dir, urgency_splits):
    cfg = JobConfig(label="urgency")
    model, tokenizer = mp.load_base_model(poolerless_model_dir, cfg)
    tokenized = mp.tokenize_splits(urgency_splits, tokenizer, cfg.max_length)
    probe = head_init.fit_probe(model, tokenizer, tokenized)
    assert probe.c in head_init.PROBE_C_GRID
    probe.copy_into(model)
    logits, labels = mp.split_logits(mp.build_trainer(cfg, model, tokenizer, tokenized, mp.training_arguments(
        cfg, poolerless_model_dir / "unused", "fp32", 1), None), tokenized["validation"])
    assert f1_score(labels, logits.argmax(-1), average="macro") == pytest.approx(probe.validation_macro_f1, abs=1e-6)
    # Better than the constant guess the untouched random head gives on this encoder.
    assert probe.validation_macro_f1 > 1 / len(cfg.labels)


def test_a_probe_no_better_than_chance_leaves_the_head_random_unless_asked_for(poolerless_model_dir):
    # Every text the same: no feature separates the classes, so the probe predicts one class.
    signalless = datasets.Dataset.from_dict({"text": ["the same complaint"] * 30, "label": [0, 1, 2] * 10})
    splits = datasets.DatasetDict({"train": signalless, "validation": signalless})
    for head_init_setting, used in (("auto", False), ("probe", True)):
        cfg = JobConfig(label="urgency", head_init=head_init_setting)
        model, tokenizer = mp.load_base_model(poolerless_model_dir, cfg)
        random_head = model.classifier.weight.detach().clone()
        probe = head_init.start_head(cfg, model, tokenizer, mp.tokenize_splits(splits, tokenizer, cfg.max_length))
        assert probe.validation_macro_f1 <= probe.chance == pytest.approx(1 / 3)
        assert probe.used is used
        assert torch.equal(model.classifier.weight, random_head) is not used
        assert head_init.describe(model, probe)["init"] == ("probe" if used else "random")


class Recorder:
    def __init__(self):
        self.logged = {}

    def log(self, metrics):
        self.logged.update(metrics)

    def log_confusion_matrix(self, name, png_path):
        pass


def test_training_records_how_the_head_started(poolerless_model_dir, urgency_splits, tmp_path):
    cfg = JobConfig(label="urgency", num_train_epochs=1, min_train_steps=0, eval_steps=5)
    tracker = Recorder()
    result = mp.train(cfg, urgency_splits, poolerless_model_dir, tmp_path, tracker)
    head = result.recipe["head"]
    assert head["pooling"] == "mean" and head["init"] == "probe"
    assert head["probe"]["c"] in head_init.PROBE_C_GRID
    assert tracker.logged["head/probe_c"] == head["probe"]["c"]
    reloaded = AutoModelForSequenceClassification.from_pretrained(result.model_dir)
    assert reloaded.config.num_hidden_layers == 3


def test_the_card_recipe_starts_from_a_random_head(poolerless_model_dir, urgency_splits, tmp_path):
    cfg = JobConfig(label="urgency", recipe="card", num_train_epochs=1, eval_steps=5)
    head = mp.train(cfg, urgency_splits, poolerless_model_dir, tmp_path).recipe["head"]
    assert head == {"pooling": "cls", "init": "random", "probe": None}


def test_the_summary_says_how_the_head_started():
    from summary import head_line

    line = head_line({"pooling": "mean", "init": "probe", "probe": {"c": 0.03, "validation_macro_f1": 0.8463}})
    assert line == "head: mean pooling, started from a linear probe (C=0.03, validation macro-F1 0.8463)"
    kept = head_line({"pooling": "mean", "init": "checkpoint", "probe": None})
    assert kept == "head: mean pooling, started from the checkpoint's trained head"
    unused = head_line({"pooling": "cls", "init": "random", "probe": {"c": 0.01, "validation_macro_f1": 0.1489,
                                                                      "used": False, "chance": 0.3333}})
    assert unused == ("head: cls pooling, started from random: the linear probe (C=0.01, validation macro-F1 "
                      "0.1489) was no better than chance (0.3333)")


def test_the_mean_pooled_model_exports_to_onnx_with_the_same_logits(poolerless_model_dir, tmp_path):
    import onnxruntime as ort

    from inference_space.onnx_backend import export_folder_fp32

    model, tokenizer = mp.load_base_model(poolerless_model_dir, JobConfig(label="urgency"))
    model.save_pretrained(tmp_path / "model")
    tokenizer.save_pretrained(tmp_path / "model")
    session = ort.InferenceSession(str(export_folder_fp32(tmp_path / "model", tmp_path / "model.onnx")))
    batch = tokenizer(TEXTS, padding=True,
                      return_tensors="np")
    names = {i.name for i in session.get_inputs()}
    onnx_logits = session.run(["logits"], {k: v for k, v in batch.items() if k in names})[0]
    with torch.inference_mode():
        torch_logits = model.eval()(**tokenizer(TEXTS, padding=True, return_tensors="pt")).logits.numpy()
    assert abs(onnx_logits - torch_logits).max() < 1e-4


def test_head_features_come_back_in_the_splits_order(tiny_model_dir, urgency_splits):
    cfg = JobConfig(label="urgency")
    model, tokenizer = mp.load_base_model(tiny_model_dir, cfg)
    tokenized = mp.tokenize_splits(urgency_splits, tokenizer, cfg.max_length)["validation"]
    together = head_init.head_features(model, tokenizer, tokenized)
    one_by_one = np.concatenate([head_init.head_features(model, tokenizer, tokenized.select([i]))
                                 for i in range(len(tokenized))])
    assert np.allclose(together, one_by_one, atol=1e-5)


def test_a_head_that_came_trained_with_the_checkpoint_is_kept(poolerless_model_dir, tmp_path):
    cfg = JobConfig(label="urgency")
    first, tokenizer = mp.load_base_model(poolerless_model_dir, cfg)
    assert head_init.uses_probe(cfg, first)
    first.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    again, _ = mp.load_base_model(tmp_path, cfg)
    assert len(again.bert.encoder.layer) == 3  # its pooler is trained now: no second pooling layer
    assert not head_init.uses_probe(cfg, again)
    assert head_init.uses_probe(cfg.model_copy(update={"head_init": "probe"}), again)
    assert head_init.describe(again, None) == {"pooling": "mean", "init": "checkpoint", "probe": None}
