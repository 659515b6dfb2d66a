"""Text -> label probabilities, with eager PyTorch or an int8-quantized ONNX Runtime session."""
from __future__ import annotations

from pathlib import Path
from typing import Protocol

import numpy as np


class ModelLabelsMismatch(ValueError):
    """The model's id2label does not name the classes of the LABEL this Space serves."""


class Classifier(Protocol):
    labels: list[str]

    def predict_proba(self, texts: list[str]) -> np.ndarray: ...


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return shifted / shifted.sum(axis=-1, keepdims=True)


def model_labels(config, expected: list[str], where: str) -> list[str]:
    """The model's labels in output order; they must be exactly the expected label set."""
    labels = [config.id2label[i] for i in range(config.num_labels)]
    if sorted(labels) != sorted(expected):
        raise ModelLabelsMismatch(
            f"{where}: model labels {labels} are not the label set {expected}; "
            "set LABEL to the classifier's label type or MODEL_ID to a model trained for it"
        )
    return labels


class TorchClassifier:
    def __init__(self, model, tokenizer, labels: list[str], max_length: int, temperature: float = 1.0):
        self.model, self.tokenizer, self.labels, self.max_length = model.eval(), tokenizer, labels, max_length
        self.temperature = temperature  # fitted by the job (calibration.json): calibrated confidences

    def predict_proba(self, texts: list[str]) -> np.ndarray:
        import torch

        batch = self.tokenizer(texts, padding=True, truncation=True, max_length=self.max_length, return_tensors="pt")
        with torch.inference_mode():
            logits = self.model(**batch).logits
        return softmax(logits.float().numpy() / self.temperature)


class OnnxClassifier:
    def __init__(self, session, tokenizer, labels: list[str], max_length: int, temperature: float = 1.0):
        self.session, self.tokenizer, self.labels, self.max_length = session, tokenizer, labels, max_length
        self.temperature = temperature
        self.input_names = [i.name for i in session.get_inputs()]

    def predict_proba(self, texts: list[str]) -> np.ndarray:
        batch = self.tokenizer(texts, padding=True, truncation=True, max_length=self.max_length, return_tensors="np")
        feed = {name: batch[name].astype(np.int64) for name in self.input_names}
        return softmax(self.session.run(None, feed)[0] / self.temperature)


def load_classifier(folder: Path, expected_labels: list[str], backend: str = "torch",
                    max_length: int = 128, threads: int | None = None) -> Classifier:
    """Load a saved sequence-classification model. Backend 'onnx' (or 'auto') serves the release's
    model.onnx with ONNX Runtime and `tokenizers`, without torch; 'onnx' on a release without one
    exports and int8-quantizes it once with torch (cached in the folder); 'auto' without one is
    'torch'. `threads`: ONNX Runtime's intra-op threads."""
    from inference_space.onnx_model import has_onnx, load_onnx_release

    if backend in ("onnx", "auto") and has_onnx(folder):
        return load_onnx_release(folder, expected_labels, max_length, threads)
    if backend == "auto":
        backend = "torch"
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from calibration import load_temperature

    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForSequenceClassification.from_pretrained(folder)
    labels = model_labels(model.config, expected_labels, str(folder))
    temperature = load_temperature(folder)
    if backend == "torch":
        return TorchClassifier(model, tokenizer, labels, max_length, temperature)
    if backend == "onnx":
        from inference_space.onnx_backend import int8_session

        return OnnxClassifier(int8_session(model, tokenizer, folder, threads), tokenizer, labels, max_length,
                              temperature)
    raise ValueError(f"INFERENCE_BACKEND={backend!r}: use 'torch', 'onnx' or 'auto'")


def to_prediction(probs: np.ndarray, labels: list[str]) -> dict:
    best = int(probs.argmax())
    return {"label": labels[best], "confidence": float(probs[best]),
            "scores": {label: float(p) for label, p in zip(labels, probs)}}


def predict_in_chunks(classifier: Classifier, texts: list[str], chunk: int) -> list[dict]:
    """One forward per chunk of `chunk` texts; predictions in the order of `texts`."""
    # Chunks of similar length pad less: one long text no longer makes 31 short ones cost 128 tokens.
    by_length = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    predictions: list[dict | None] = [None] * len(texts)
    for start in range(0, len(texts), chunk):
        indices = by_length[start:start + chunk]
        probs = classifier.predict_proba([texts[i] for i in indices])
        for i, row in zip(indices, probs):
            predictions[i] = to_prediction(row, classifier.labels)
    return predictions
