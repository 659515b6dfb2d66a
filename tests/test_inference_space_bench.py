"""bench/inference.py runs end to end and reports both backends on the same texts."""
import importlib.util
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "bench" / "inference.py"


def test_bench_reports_eager_and_onnx_on_the_test_split(capsys):
    spec = importlib.util.spec_from_file_location("bench_inference", BENCH)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    results = bench.main(["--epochs", "1", "--repeats", "1"])
    assert set(results) == {"eager", "onnx_int8"}
    for figures in results.values():
        assert figures["p95_ms"] >= figures["p50_ms"] > 0 and 0 <= figures["macro_f1"] <= 1
    assert "ratio onnx/eager: req/s" in capsys.readouterr().out
