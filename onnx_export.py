"""At promotion: export the candidate to ONNX for the torch-free inference Space, checked against
the eager model on the comparison samples.

Variants are tried smallest first; the first whose macro-F1 on those samples is within
F1_TOLERANCE of the eager model's ships as `model.onnx` in the release commit:

  int8-matmul  dynamic int8, per-channel, on the encoder's MatMul weights only; the embeddings
               (Gather) and the pooler/classifier head (Gemm) stay fp32
  fp32         the exported graph as is

None within tolerance, or the export failing: the release ships without model.onnx (the torch
backend serves it; INFERENCE_BACKEND=auto picks torch) and metadata.json's `onnx` says why.
"""
from __future__ import annotations

import json
import logging
import tempfile
import traceback
from pathlib import Path

import numpy as np

from metrics import macro_f1

log = logging.getLogger("retrainspace.onnx_export")

F1_TOLERANCE = 0.01
SAMPLES_FILE = "comparison_samples.json"
VARIANTS = ("int8-matmul", "fp32")


def save_samples(run_dir: Path, texts: list[str], y_true) -> Path:
    """The texts and true label ids the candidate was compared on (the ONNX check reuses them)."""
    path = Path(run_dir) / SAMPLES_FILE
    path.write_text(json.dumps({"texts": list(texts), "labels": [int(y) for y in y_true]}, ensure_ascii=False))
    return path


def quantize_matmul_int8(fp32: Path, out: Path) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(str(fp32), str(out), weight_type=QuantType.QInt8, per_channel=True,
                     op_types_to_quantize=["MatMul"], nodes_to_exclude=head_nodes(fp32))


def head_nodes(path: Path) -> list[str]:
    """Nodes of the pooler and classifier head: a 4-class head loses more to int8 than it saves."""
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    return [n.name for n in graph.node if "classifier" in n.name or "pooler" in n.name]


def predict_labels(classifier, texts: list[str], batch: int = 32) -> np.ndarray:
    return np.concatenate([classifier.predict_proba(texts[i:i + batch]).argmax(-1)
                           for i in range(0, len(texts), batch)])


def export_variants(folder: Path, tmp: Path) -> dict[str, Path]:
    """ONNX files of every variant, written under tmp."""
    from inference_space.onnx_backend import export_folder_fp32

    fp32 = export_folder_fp32(folder, tmp / "fp32.onnx")
    int8 = tmp / "int8-matmul.onnx"
    quantize_matmul_int8(fp32, int8)
    return {"int8-matmul": int8, "fp32": fp32}


def check_variants(folder: Path, files: dict[str, Path], texts: list[str], y_true: np.ndarray,
                   labels: list[str], max_length: int) -> tuple[str | None, dict]:
    """(chosen variant or None, a record per variant) against the eager model, in the order of `files`."""
    from inference_space.classifier import load_classifier
    from inference_space.onnx_model import load_onnx_release

    eager_model = load_classifier(folder, labels, "torch", max_length)
    # Scores are in the model's id2label order; the comparison's label ids are in `labels` order.
    order = np.array([labels.index(name) for name in eager_model.labels])
    eager = order[predict_labels(eager_model, texts)]
    eager_f1 = macro_f1(y_true, eager, len(labels))
    records, chosen = {}, None
    for name, path in files.items():
        onnx_model = load_onnx_release(folder, labels, max_length, model_file=str(path))
        predicted = order[predict_labels(onnx_model, texts)]
        f1 = macro_f1(y_true, predicted, len(labels))
        records[name] = {"macro_f1": round(f1, 4), "agreement": round(float((predicted == eager).mean()), 4),
                         "bytes": path.stat().st_size,
                         "within_tolerance": f1 >= eager_f1 - F1_TOLERANCE}
        log.info("onnx %s: macro-F1 %.4f (eager %.4f), agreement %.3f, %.1f MB", name, f1, eager_f1,
                 records[name]["agreement"], records[name]["bytes"] / 1e6)
        if chosen is None and records[name]["within_tolerance"]:
            chosen = name
    return chosen, {"eager_macro_f1": round(eager_f1, 4), "variants": records}


def add_onnx_to_release(folder: Path, run_dir: Path, labels: list[str], max_length: int) -> dict:
    """Write model.onnx into the release folder when a variant keeps F1, record the outcome in
    the folder's metadata.json under `onnx`, and return that record. Never raises: a release
    without model.onnx is still a whole release (the torch backend serves it)."""
    from inference_space.onnx_model import ONNX_MODEL, TOKENIZER_FILE

    folder = Path(folder)
    record: dict = {"tolerance": F1_TOLERANCE, "max_length": max_length}
    try:
        samples = json.loads((Path(run_dir) / SAMPLES_FILE).read_text())
        if not (folder / TOKENIZER_FILE).is_file():
            raise FileNotFoundError(f"the release has no {TOKENIZER_FILE} (not a fast tokenizer)")
        record["n_samples"] = len(samples["texts"])
        print(f"[onnx] exporting and checking {len(VARIANTS)} variants on {record['n_samples']} samples", flush=True)
        with tempfile.TemporaryDirectory(dir=folder.parent) as tmp:
            files = export_variants(folder, Path(tmp))
            chosen, checks = check_variants(folder, files, samples["texts"], np.asarray(samples["labels"]),
                                            labels, max_length)
            record.update(checks, variant=chosen)
            if chosen is not None:
                files[chosen].replace(folder / ONNX_MODEL)
            else:
                record["error"] = f"no ONNX variant kept macro-F1 within {F1_TOLERANCE} of the eager model"
    except Exception as error:  # the release must not fail because of the optional ONNX file
        log.debug(traceback.format_exc())
        record.update(variant=None, error=f"{type(error).__name__}: {error}")
    if record.get("variant") is None:
        (folder / ONNX_MODEL).unlink(missing_ok=True)
    print(f"[onnx] shipping {record['variant']}" if record.get("variant") else
          f"[onnx] shipping no model.onnx: {record['error']}", flush=True)
    metadata_path = folder / "metadata.json"
    metadata = json.loads(metadata_path.read_text())
    metadata["onnx"] = record
    metadata_path.write_text(json.dumps(metadata, indent=2, ensure_ascii=False))
    return record
