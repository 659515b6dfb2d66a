"""Macro-F1 of the eager model vs each ONNX variant the promotion can ship, on the fixture test split.

    python bench/onnx_variants.py                                   # tiny BERT trained here
    python bench/onnx_variants.py --base ~/.cache/retrainspace/multilingual-e5-small --epochs 1

Variants: int8-all (dynamic int8 on every op, what INFERENCE_BACKEND=onnx exported at load before),
int8-matmul and fp32 (onnx_export.py, shipped in that order when macro-F1 stays within 0.01 of
eager). Prints macro-F1, label agreement with eager and file size of each, side by side.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.inference import DATA_DIR, fine_tune, train_tiny_classifier  # noqa: E402
from configs import LABEL_SETS  # noqa: E402
from onnx_export import F1_TOLERANCE, check_variants, export_variants  # noqa: E402


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base", type=Path, help="base encoder to fine-tune (default: the tiny BERT)")
    parser.add_argument("--label", choices=sorted(LABEL_SETS), default="urgency")
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--lr", type=float, help="default 3e-3 for the tiny model, 5e-5 for --base")
    parser.add_argument("--max-length", type=int, default=128)
    return parser.parse_args(argv)


def main(argv=None) -> dict:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    args = parse_args(argv)
    test = pd.read_csv(DATA_DIR / "test.csv")
    labels = LABEL_SETS[args.label]
    y_true = np.array([labels.index(g) for g in test[args.label]])
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        print("fine-tuning ...", flush=True)
        folder = (fine_tune(args.base, tmp / "model", args.label, args.epochs, args.lr or 5e-5, args.max_length)
                  if args.base else train_tiny_classifier(tmp, args.label, args.epochs, 32, 2, args.lr or 3e-3,
                                                          args.max_length))
        print("exporting ...", flush=True)
        files = export_variants(folder, tmp)
        quantize_dynamic(str(files["fp32"]), str(tmp / "int8-all.onnx"), weight_type=QuantType.QInt8)
        files = {"int8-all": tmp / "int8-all.onnx", **files}
        _, checks = check_variants(folder, files, test.text.tolist(), y_true, labels, args.max_length)
    print(f"\n{len(test)} test texts, label {args.label}, model {args.base or 'tiny BERT'}; "
          f"eager macro-F1 {checks['eager_macro_f1']:.4f}")
    for name, record in checks["variants"].items():
        print(f"  {name:11s} macro-F1 {record['macro_f1']:.4f} ({record['macro_f1'] - checks['eager_macro_f1']:+.4f}), "
              f"agreement {record['agreement']:.3f}, {record['bytes'] / 1e6:.1f} MB, "
              f"{'within' if record['within_tolerance'] else 'OUTSIDE'} {F1_TOLERANCE}")
    return checks


if __name__ == "__main__":
    main()
