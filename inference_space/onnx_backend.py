"""A release without model.onnx served with INFERENCE_BACKEND=onnx: export it once with torch,
quantize its MatMul weights to int8, open an ORT session."""
from __future__ import annotations

import os
import tempfile
import warnings
from pathlib import Path

ONNX_FILE = "onnx/model.int8.onnx"


def export_fp32(model, tokenizer, path: Path) -> None:
    import torch

    sample = tokenizer(["a short text", "a somewhat longer sample text"], padding=True, return_tensors="pt")
    names = [name for name in ("input_ids", "attention_mask", "token_type_ids") if name in sample]
    dynamic = {name: {0: "batch", 1: "sequence"} for name in names}
    # The TorchScript exporter handles dynamic batch/sequence axes of HF encoders without onnxscript.
    # Its tracer warns about shape checks that are constant for an encoder (no cache, no causal mask).
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model.eval(), tuple(sample[name] for name in names), str(path), input_names=names,
            output_names=["logits"], dynamic_axes={**dynamic, "logits": {0: "batch"}},
            opset_version=17, dynamo=False,
        )


def export_folder_fp32(folder: Path, path: Path) -> Path:
    """Export the model saved in `folder` (a release or a training output) to an fp32 ONNX file."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    export_fp32(AutoModelForSequenceClassification.from_pretrained(folder), AutoTokenizer.from_pretrained(folder), path)
    return path


def export_int8(model, tokenizer, out_path: Path) -> Path:
    """Write the int8 model to out_path atomically (a crashed export leaves no half file). Only the
    MatMul weights are quantized, as at promotion: int8 on every op lost e5 macro-F1 (issue 13)."""
    from onnx_export import quantize_matmul_int8

    out_path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out_path.parent) as tmp:
        fp32, int8 = Path(tmp) / "model.onnx", Path(tmp) / "model.int8.onnx"
        export_fp32(model, tokenizer, fp32)
        quantize_matmul_int8(fp32, int8)
        os.replace(int8, out_path)
    return out_path


def int8_session(model, tokenizer, folder: Path, threads: int | None = None):
    """ORT session of the cached int8 export in `folder` (exported on first use)."""
    import onnxruntime as ort

    path = Path(folder) / ONNX_FILE
    if not path.exists():
        export_int8(model, tokenizer, path)
    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
