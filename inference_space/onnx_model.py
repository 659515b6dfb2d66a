"""Serve a release's `model.onnx` with ONNX Runtime and the `tokenizers` library: no torch, no
transformers. The release ships model.onnx (exported and checked at promotion, onnx_export.py),
the fast tokenizer's tokenizer.json and config.json (its id2label, read as plain JSON)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from calibration import load_temperature
from inference_space.classifier import model_labels, softmax

ONNX_MODEL = "model.onnx"
TOKENIZER_FILE = "tokenizer.json"
# All this backend reads of a release: not the torch weights, most of its bytes (e5: 470 MB).
RELEASE_FILES = (ONNX_MODEL, TOKENIZER_FILE, "tokenizer_config.json", "config.json", "calibration.json",
                 "metadata.json")


class ReleaseFileMissing(FileNotFoundError):
    """The release lacks a file the torch-free ONNX path needs."""


def has_onnx(folder: Path) -> bool:
    return (Path(folder) / ONNX_MODEL).is_file() and (Path(folder) / TOKENIZER_FILE).is_file()


def onnx_release_files(files: list[str]) -> list[str] | None:
    """The files of a release this backend needs, or None when it has no model.onnx to serve."""
    if not {ONNX_MODEL, TOKENIZER_FILE} <= set(files):
        return None
    return [name for name in files if name in RELEASE_FILES]


class _Config:
    """config.json's id2label/num_labels, the two fields model_labels reads."""

    def __init__(self, folder: Path):
        config = json.loads((folder / "config.json").read_text())
        self.id2label = {int(i): name for i, name in config["id2label"].items()}
        self.num_labels = len(self.id2label)
        self.pad_token_id = config.get("pad_token_id")


def pad_token(folder: Path, config: _Config, tokenizer) -> tuple[int, str]:
    """(id, token) the model pads with: tokenizer_config.json's pad_token, else config's pad_token_id."""
    path = folder / "tokenizer_config.json"
    token = json.loads(path.read_text()).get("pad_token") if path.is_file() else None
    if isinstance(token, dict):  # an AddedToken written as a dict
        token = token.get("content")
    if token is not None and tokenizer.token_to_id(token) is not None:
        return tokenizer.token_to_id(token), token
    pad_id = config.pad_token_id if config.pad_token_id is not None else 0
    return pad_id, tokenizer.id_to_token(pad_id) or "[PAD]"


def load_tokenizer(folder: Path, config: _Config, max_length: int):
    """tokenizer.json with truncation to max_length and padding to the longest text of a batch,
    as transformers' `tokenizer(texts, padding=True, truncation=True, max_length=...)` does."""
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(folder / TOKENIZER_FILE))
    tokenizer.enable_truncation(max_length=max_length)
    pad_id, token = pad_token(folder, config, tokenizer)
    tokenizer.enable_padding(pad_id=pad_id, pad_token=token)
    return tokenizer


def ort_session(path: Path, threads: int | None = None):
    import onnxruntime as ort

    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


class OrtClassifier:
    """Text -> probabilities with an ONNX model and a `tokenizers` Tokenizer."""

    def __init__(self, session, tokenizer, labels: list[str], temperature: float = 1.0):
        self.session, self.tokenizer, self.labels = session, tokenizer, labels
        self.temperature = temperature  # fitted by the job (calibration.json): calibrated confidences
        self.input_names = [i.name for i in session.get_inputs()]

    def logits(self, texts: list[str]) -> np.ndarray:
        encodings = self.tokenizer.encode_batch(texts)
        columns = {"input_ids": [e.ids for e in encodings], "attention_mask": [e.attention_mask for e in encodings],
                   "token_type_ids": [e.type_ids for e in encodings]}
        feed = {name: np.asarray(columns[name], dtype=np.int64) for name in self.input_names}
        return self.session.run(None, feed)[0]

    def predict_proba(self, texts: list[str]) -> np.ndarray:
        return softmax(self.logits(texts) / self.temperature)


def load_onnx_release(folder: Path, expected_labels: list[str], max_length: int = 128,
                      threads: int | None = None, model_file: str = ONNX_MODEL) -> OrtClassifier:
    folder = Path(folder)
    for name in (model_file, TOKENIZER_FILE, "config.json"):
        if not (folder / name).is_file():
            raise ReleaseFileMissing(
                f"{folder} has no {name}: the torch-free ONNX backend serves releases exported at promotion "
                "(model.onnx + tokenizer.json); set INFERENCE_BACKEND=torch (an image with torch) to serve this one")
    config = _Config(folder)
    labels = model_labels(config, expected_labels, str(folder))
    return OrtClassifier(ort_session(folder / model_file, threads), load_tokenizer(folder, config, max_length), labels,
                         load_temperature(folder))
