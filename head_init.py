"""How the classifier starts: mean pooling for encoders trained with it, and a head fitted by a linear probe.

Two changes to what `AutoModelForSequenceClassification` gives, both measured on the group-disjoint
test split (bench/quality.py; README, "How the classifier starts"):

- **Mean pooling.** BERT's classifier reads the first token through a pooler. multilingual-e5-small
  was trained with mean pooling and ships no pooler, so that pooler starts random and the first
  token carries little: a logistic regression on it scores test macro-F1 0.52 (urgency, pool.csv)
  against 0.71 on the mean of the tokens. `add_mean_pooling_layer` appends one BertLayer whose
  attention is uniform over the real tokens, so every position, the first included, leaves it as
  the layer-normalised mean. It is an ordinary 13-layer BertForSequenceClassification: the
  inference Space, the ONNX export and upstream clients load it unchanged, and fine-tuning may
  move its weights like any other layer's.
- **A head fitted before fine-tuning (LP-FT).** A random head sends large, meaningless gradients
  into the pretrained encoder during the first steps and distorts the features that carry over to
  unseen template families (Kumar et al. 2022, "Fine-Tuning can Distort Pretrained Features and
  Underperform Out-of-Distribution"). `fit_probe` runs the encoder once over train, fits a
  class-balanced logistic regression on what the head's last linear layer reads, chooses its
  regularisation on validation macro-F1, and the head starts from it.
"""
from __future__ import annotations

import copy
import logging
from dataclasses import dataclass, replace
from typing import Sequence

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import f1_score

logger = logging.getLogger(__name__)

PROBE_C_GRID = (0.01, 0.03, 0.1, 0.3, 1.0, 3.0)  # inverse L2 strength; the layer-normalised features are wide
PROBE_BATCH = 64
# The pooling layer's output is LayerNorm(GAIN * mean + own state): the token's own state weighs 1/GAIN.
MEAN_POOL_GAIN = 100.0
# The pooler then computes tanh(SCALE * x): layer-normalised values are about unit size, and tanh
# of a fifth of them stays close to linear, so the head reads the pooled features nearly unchanged.
POOLER_SCALE = 0.2


def uses_mean_pooling(cfg, model, new_weights: Sequence[str]) -> bool:
    """POOLING=mean, or auto with RECIPE=auto and a BERT-type checkpoint that ships no trained pooler."""
    if cfg.pooling == "cls" or (cfg.pooling == "auto" and cfg.recipe != "auto"):
        return False
    is_bert = getattr(getattr(model, "bert", None), "pooler", None) is not None
    if cfg.pooling == "mean" and not is_bert:
        raise ValueError(f"POOLING=mean needs a BERT-type encoder with a pooler; {type(model).__name__} has "
                         "none. Set POOLING=auto or cls")
    return is_bert and (cfg.pooling == "mean" or any(key.startswith("bert.pooler.") for key in new_weights))


def uses_probe(cfg, model) -> bool:
    """HEAD_INIT=probe, or auto with RECIPE=auto and a head the checkpoint did not bring trained."""
    if cfg.head_init == "auto":
        return cfg.recipe == "auto" and getattr(model, "fresh_head", True)
    return cfg.head_init == "probe"


def start_head(cfg, model, tokenizer, tokenized) -> "Probe | None":
    """Fit the linear probe when uses_probe() and start the head from it. Under HEAD_INIT=auto only a
    probe that beats chance on validation (macro-F1 above 1/classes) is used. Why: on the scenario
    tests' random toy encoder the probe scored 0.149, and training from it ended at 0.12 test macro-F1
    where the same run from a random head reached 0.30."""
    if not uses_probe(cfg, model):
        return None
    probe = fit_probe(model, tokenizer, tokenized)
    if cfg.head_init == "auto" and probe.validation_macro_f1 <= probe.chance:
        logger.info("linear probe no better than chance (%.4f <= %.4f): the head starts random",
                    probe.validation_macro_f1, probe.chance)
        return replace(probe, used=False)
    probe.copy_into(model)
    return probe


def describe(model, probe: "Probe | None") -> dict:
    """How the head started, for the summary, metadata.json and W&B."""
    started = "random" if getattr(model, "fresh_head", True) else "checkpoint"
    return {"pooling": "mean" if getattr(model.config, "mean_pooling_layer", False) else "cls",
            "init": "probe" if probe and probe.used else started,
            "probe": probe.to_dict() if probe else None}


def add_mean_pooling_layer(model) -> None:
    """Append a BertLayer that outputs the layer-normalised mean of the real tokens at every position."""
    encoder, width = model.bert.encoder, model.config.hidden_size
    layer = copy.deepcopy(encoder.layer[-1])
    eye = torch.eye(width)
    with torch.no_grad():
        attention = layer.attention
        # Zero queries and keys: equal scores, so the softmax is uniform over the unmasked tokens.
        for linear in (attention.self.query, attention.self.key, layer.output.dense):
            linear.weight.zero_()
            linear.bias.zero_()
        attention.self.value.weight.copy_(eye)
        attention.self.value.bias.zero_()
        attention.output.dense.weight.copy_(eye * MEAN_POOL_GAIN)
        attention.output.dense.bias.zero_()
        for norm in (attention.output.LayerNorm, layer.output.LayerNorm):
            norm.weight.fill_(1.0)
            norm.bias.zero_()
        model.bert.pooler.dense.weight.copy_(eye * POOLER_SCALE)
        model.bert.pooler.dense.bias.zero_()
    if hasattr(attention.self, "layer_idx"):
        attention.self.layer_idx = len(encoder.layer)
    encoder.layer.append(layer)
    model.config.num_hidden_layers += 1
    model.config.mean_pooling_layer = True  # saved in config.json: says what the last layer is


def final_linear(model) -> torch.nn.Linear:
    """The head's last linear layer: the last nn.Linear with num_labels outputs."""
    layers = [m for m in model.modules()
              if isinstance(m, torch.nn.Linear) and m.out_features == model.config.num_labels]
    if not layers:
        raise ValueError(f"{type(model).__name__} has no linear layer with {model.config.num_labels} outputs")
    return layers[-1]


def head_features(model, tokenizer, split) -> np.ndarray:
    """What the head's last linear layer reads for each row of a tokenized split (eval mode, no grad).
    Rows go through in order of length, so a batch pads little; the result is in the split's order."""
    order = np.argsort([len(ids) for ids in split["input_ids"]], kind="stable")
    split = split.select(order)
    captured = []
    hook = final_linear(model).register_forward_hook(lambda _m, inputs, _o: captured.append(inputs[0].float().cpu()))
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            for start in range(0, len(split), PROBE_BATCH):
                rows = split[start:start + PROBE_BATCH]
                batch = tokenizer.pad({"input_ids": rows["input_ids"], "attention_mask": rows["attention_mask"]},
                                      return_tensors="pt")
                model(**{key: value.to(model.device) for key, value in batch.items()})
    finally:
        hook.remove()
        model.train(was_training)
    features = np.empty((len(order), captured[0].shape[-1]), dtype=np.float32)
    features[order] = torch.cat(captured).numpy()
    return features


@dataclass(frozen=True)
class Probe:
    weight: np.ndarray      # (num_labels, features)
    bias: np.ndarray
    c: float
    validation_macro_f1: float
    used: bool = True       # False: no better than chance, the head started random (start_head)

    @property
    def chance(self) -> float:
        """Macro-F1 of guessing each class at its share: 1/classes."""
        return 1 / self.weight.shape[0]

    def copy_into(self, model) -> None:
        head = final_linear(model)
        with torch.no_grad():
            head.weight.copy_(torch.as_tensor(self.weight, dtype=head.weight.dtype))
            head.bias.copy_(torch.as_tensor(self.bias, dtype=head.bias.dtype))

    def to_dict(self) -> dict:
        return {"c": self.c, "validation_macro_f1": round(self.validation_macro_f1, 4), "used": self.used,
                "chance": round(self.chance, 4)}


def fit_probe(model, tokenizer, tokenized) -> Probe:
    """The class-balanced logistic regression on the head's input whose C scores best on validation."""
    logger.info("linear probe: encoding %d train and %d validation rows", len(tokenized["train"]),
                len(tokenized["validation"]))
    train_x, val_x = (head_features(model, tokenizer, tokenized[split]) for split in ("train", "validation"))
    train_y, val_y = (np.asarray(tokenized[split]["label"]) for split in ("train", "validation"))
    best = None
    for c in PROBE_C_GRID:
        fitted = LogisticRegression(C=c, max_iter=2000, class_weight="balanced").fit(train_x, train_y)
        score = float(f1_score(val_y, fitted.predict(val_x), average="macro"))
        if best is None or score > best[0]:
            best = (score, c, fitted)
    score, c, fitted = best
    weight, bias = fitted.coef_, fitted.intercept_
    if weight.shape[0] == 1:  # two classes: sklearn keeps the positive class's row only
        weight, bias = np.vstack([-weight / 2, weight / 2]), np.array([-bias[0] / 2, bias[0] / 2])
    logger.info("head starts from a linear probe: C=%g, validation macro-F1 %.4f", c, score)
    return Probe(weight=weight, bias=bias, c=c, validation_macro_f1=score)
