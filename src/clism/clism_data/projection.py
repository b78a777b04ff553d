"""Project an English span onto the target sentence through word alignment links.

The answer is the smallest target token range covering every token aligned to the
span, without punctuation tokens at its ends (aligners attach a neighbouring "." or ";" to
names; ``trim_punctuation``). It is rejected, with a reason, when nothing is aligned (``unaligned``), when the
range holds more than ``max_gap`` tokens aligned to none of the span's words
(``discontinuous``), when it is far longer than the span (``too_long``), when it is the
whole target sentence although the span is not the whole English sentence
(``whole_sentence``), or when it overlaps an answer already taken (``overlap``).
"""
from __future__ import annotations

import unicodedata
from dataclasses import dataclass


@dataclass(frozen=True)
class ProjectionSettings:
    max_gap: int = 1  # unaligned tokens allowed inside the projected range
    max_ratio: float = 3.0  # projected tokens per source token (word-tokenised targets)
    char_max_ratio: float = 6.0  # the same for targets tokenised by character (zh, ja, th)
    slack: int = 2  # extra tokens always allowed
    trim_punctuation: bool = True  # drop punctuation tokens at the ends of the projected range


@dataclass(frozen=True)
class ProjectedSpan:
    start: int  # character offsets in the target sentence
    end: int
    score: float  # share of the span's words that are aligned x share of the range aligned to the span


def source_tokens(span_start: int, span_end: int, src_tokens: list[tuple[int, int]]) -> list[int]:
    return [i for i, (a, b) in enumerate(src_tokens) if a < span_end and b > span_start]


def _is_punctuation(token: str) -> bool:
    return all(unicodedata.category(c).startswith("P") for c in token)


def occurrences(text: str, needle: str) -> list[tuple[int, int]]:
    """Every (start, end) where ``needle`` occurs in ``text``, overlapping ones too."""
    found, start = [], text.find(needle)
    while start >= 0:
        found.append((start, start + len(needle)))
        start = text.find(needle, start + 1)
    return found


def verbatim_occurrence(text: str, tgt_text: str, tgt_tokens: list[tuple[int, int]],
                        taken: list[tuple[int, int]]) -> tuple[int, int] | None:
    """The one place where ``text`` occurs in the target as whole tokens, free of answers
    already taken; None when it occurs there zero or several times."""
    starts, ends = {a for a, _ in tgt_tokens}, {b for _, b in tgt_tokens}
    found = [(a, b) for a, b in occurrences(tgt_text, text)
             if a in starts and b in ends and not any(a < y and b > x for x, y in taken)]
    return found[0] if len(found) == 1 else None


def project(span_start: int, span_end: int, src_tokens: list[tuple[int, int]], tgt_text: str,
            tgt_tokens: list[tuple[int, int]], links: set[tuple[int, int]], char_target: bool, settings: ProjectionSettings,
            taken: list[tuple[int, int]]) -> ProjectedSpan | str:
    """A ``ProjectedSpan``, or the reason the projection is rejected."""
    src = source_tokens(span_start, span_end, src_tokens)
    if not src:
        return "no_source_tokens"
    src_set = set(src)
    aligned_tgt = sorted({j for i, j in links if i in src_set and j < len(tgt_tokens)})
    if not aligned_tgt:
        return "unaligned"
    if settings.trim_punctuation:
        words = [j for j in aligned_tgt if not _is_punctuation(tgt_text[slice(*tgt_tokens[j])])] or aligned_tgt
        aligned_tgt = [j for j in aligned_tgt if words[0] <= j <= words[-1]]
    lo, hi = aligned_tgt[0], aligned_tgt[-1]
    width = hi - lo + 1
    gap = width - len(aligned_tgt)
    gap_allowed = settings.max_gap * (2 if char_target else 1)
    if gap > gap_allowed:
        return "discontinuous"
    ratio = settings.char_max_ratio if char_target else settings.max_ratio
    if width > ratio * len(src) + settings.slack:
        return "too_long"
    if lo == 0 and hi == len(tgt_tokens) - 1 and len(src) < len(src_tokens) and len(tgt_tokens) > 1:
        return "whole_sentence"
    start, end = tgt_tokens[lo][0], tgt_tokens[hi][1]
    if any(start < b and end > a for a, b in taken):
        return "overlap"
    aligned_src = {i for i, j in links if i in src_set}
    score = (len(aligned_src) / len(src)) * (len(aligned_tgt) / width)
    return ProjectedSpan(start, end, round(score, 4))
