"""Extractive QA metrics, rule for rule as the official scripts compute them.

- ``squad``: SQuAD v1.1 ``evaluate-v1.1.py`` (lowercase, ASCII punctuation, English
  articles, whitespace tokens). The field reports XQuAD and TyDiQA-GoldP with it.
- ``mlqa``: MLQA ``mlqa_evaluation_v1.py`` (punctuation by Unicode category plus ASCII
  punctuation, articles per language, Chinese mixed segmentation). Its languages are
  en, es, de, ar, hi, vi, zh; any other language is an error unless
  ``whitespace_fallback`` is set (no articles, whitespace tokens).

EM and F1 take the maximum over the gold answers; a question with no prediction
scores 0 and is counted in ``missing``, as the official scripts do.
"""
from __future__ import annotations

import functools
import re
import string
import sys
import unicodedata
from collections import Counter
from dataclasses import dataclass
from typing import Iterable, Mapping

from clism.errors import ClismError, InputError

_ASCII_PUNCT = set(string.punctuation)


@functools.cache
def _unicode_punct() -> frozenset[str]:
    """Unicode punctuation (categories P*) plus ASCII punctuation, as MLQA defines PUNCT."""
    cats = (chr(i) for i in range(sys.maxunicode))
    return frozenset(c for c in cats if unicodedata.category(c).startswith("P")) | _ASCII_PUNCT


MLQA_WHITESPACE_LANGS = ("en", "es", "hi", "vi", "de", "ar")
MLQA_MIXED_SEGMENTATION_LANGS = ("zh",)
MLQA_LANGS = MLQA_WHITESPACE_LANGS + MLQA_MIXED_SEGMENTATION_LANGS

_EN_ARTICLES = re.compile(r"\b(a|an|the)\b")
_MLQA_ARTICLES = {
    "en": _EN_ARTICLES,
    "es": re.compile(r"\b(un|una|unos|unas|el|la|los|las)\b"),
    "vi": re.compile(r"\b(của|là|cái|chiếc|những)\b"),
    "de": re.compile(r"\b(ein|eine|einen|einem|eines|einer|der|die|das|den|dem|des)\b"),
    # The official pattern is '\sال^|ال': its first branch can never match, so in effect
    # every occurrence of 'ال' is replaced by a space, inside words too. Kept as is.
    "ar": re.compile("\\sال^|ال"),
}
_CJK = re.compile(r"[\u4e00-\u9fa5]")


class UnknownMetricLanguage(ClismError, ValueError):
    pass


def normalize_squad(text: str) -> str:
    text = text.lower()
    text = "".join(ch for ch in text if ch not in _ASCII_PUNCT)
    text = _EN_ARTICLES.sub(" ", text)
    return " ".join(text.split())


def _mixed_segmentation(text: str) -> list[str]:
    """Each CJK character (and punctuation mark) is a token; the rest split on whitespace."""
    punct = _unicode_punct()
    tokens: list[str] = []
    pending = ""
    for ch in text:
        if _CJK.search(ch) or ch in punct:
            if pending:
                tokens.extend(pending.split())
                pending = ""
            tokens.append(ch)
        else:
            pending += ch
    if pending:
        tokens.extend(pending.split())
    return tokens


def normalize_mlqa(text: str, lang: str, whitespace_fallback: bool = False) -> str:
    if lang not in MLQA_LANGS and not whitespace_fallback:
        raise UnknownMetricLanguage(
            f"the MLQA metric has rules for {', '.join(MLQA_LANGS)} only, not {lang!r}; use the squad metric, "
            f"or ask for the whitespace fallback (no articles, whitespace tokens)"
        )
    text = text.lower()
    punct = _unicode_punct()
    text = "".join(ch for ch in text if ch not in punct)
    articles = _MLQA_ARTICLES.get(lang)
    if articles is not None:
        text = articles.sub(" ", text)
    tokens = _mixed_segmentation(text) if lang in MLQA_MIXED_SEGMENTATION_LANGS else text.split()
    return " ".join(t for t in tokens if t.strip())


def _f1(prediction: str, gold: str) -> float:
    pred_tokens, gold_tokens = prediction.split(), gold.split()
    common = Counter(pred_tokens) & Counter(gold_tokens)
    same = sum(common.values())
    if same == 0:
        return 0.0
    precision, recall = same / len(pred_tokens), same / len(gold_tokens)
    return 2 * precision * recall / (precision + recall)


@dataclass(frozen=True)
class QAMetric:
    name: str  # "squad" or "mlqa"
    lang: str = "en"
    whitespace_fallback: bool = False

    def __post_init__(self):
        if self.name not in ("squad", "mlqa"):
            raise InputError(f"unknown QA metric {self.name!r}; use 'squad' or 'mlqa'")
        if self.name == "mlqa":
            normalize_mlqa("", self.lang, self.whitespace_fallback)  # reject unknown languages early

    def normalize(self, text: str) -> str:
        if self.name == "squad":
            return normalize_squad(text)
        return normalize_mlqa(text, self.lang, self.whitespace_fallback)

    def exact_match(self, prediction: str, golds: Iterable[str]) -> float:
        pred = self.normalize(prediction)
        return max(float(pred == self.normalize(g)) for g in golds)

    def f1(self, prediction: str, golds: Iterable[str]) -> float:
        pred = self.normalize(prediction)
        return max(_f1(pred, self.normalize(g)) for g in golds)


def score_predictions(metric: QAMetric, gold: Mapping[str, list[str]], predictions: Mapping[str, str]) -> dict:
    """``gold``: question id -> answer texts. Returns EM and F1 in 0-100, total and missing."""
    em = f1 = 0.0
    missing = 0
    for qid, answers in gold.items():
        if qid not in predictions:
            missing += 1
            continue
        em += metric.exact_match(predictions[qid], answers)
        f1 += metric.f1(predictions[qid], answers)
    total = len(gold)
    return {
        "exact_match": 100.0 * em / total if total else 0.0,
        "f1": 100.0 * f1 / total if total else 0.0,
        "total": total,
        "missing": missing,
    }


def gold_answers_from_squad_json(data: dict) -> dict[str, list[str]]:
    """Gold texts straight from a SQuAD-format file, as the official scripts read them
    (offsets are not needed for scoring, so this does not depend on them)."""
    gold = {}
    for article in data["data"]:
        for paragraph in article["paragraphs"]:
            for qa in paragraph["qas"]:
                gold[str(qa["id"])] = [a["text"] for a in qa["answers"]]
    return gold
