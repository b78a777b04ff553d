"""NER sentences into model windows with word-level labels.

The first sub-word of each word carries the word's label; the other sub-words and the
special tokens are ignored in the loss (-100). A sentence longer than one window is cut
between words into several windows, so every word gets exactly one prediction; a single
word longer than a window keeps its first sub-words (and so its prediction).
"""
from __future__ import annotations

from dataclasses import dataclass

from clism.benchmarks.ner import NERSentence

from clism.constants import IGNORE_INDEX


@dataclass
class NERFeature:
    sentence_index: int
    first_word: int  # index in the sentence of this window's first word
    input_ids: list[int]
    word_starts: list[int]  # token position of each word's first sub-word, in order
    labels: list[int] | None = None


def word_windows(subword_counts: list[int], budget: int) -> list[tuple[int, int]]:
    """Cut a sentence into [start, end) word ranges of at most ``budget`` sub-words."""
    windows, start, used = [], 0, 0
    for i, n in enumerate(subword_counts):
        n = min(max(n, 1), budget)
        if used + n > budget and i > start:
            windows.append((start, i))
            start, used = i, 0
        used += n
    windows.append((start, len(subword_counts)))
    return windows


def build_ner_features(sentences: list[NERSentence], tokenizer, max_length: int = 128,
                       label_to_id: dict[str, int] | None = None, batch_size: int = 1024) -> list[NERFeature]:
    budget = max_length - tokenizer.num_special_tokens_to_add(pair=False)
    features: list[NERFeature] = []
    for start in range(0, len(sentences), batch_size):
        chunk = sentences[start: start + batch_size]
        counts_enc = tokenizer([s.words for s in chunk], is_split_into_words=True, add_special_tokens=False)
        spans = []  # (sentence index, first word, end word)
        for row, sentence in enumerate(chunk):
            counts = [0] * len(sentence.words)
            for word_id in counts_enc.word_ids(row):
                if word_id is not None:
                    counts[word_id] += 1
            for a, b in word_windows(counts, budget):
                spans.append((start + row, a, b))
        enc = tokenizer([sentences[i].words[a:b] for i, a, b in spans], is_split_into_words=True,
                        truncation=True, max_length=max_length)
        for row, (s_i, a, b) in enumerate(spans):
            word_ids = enc.word_ids(row)
            starts, seen = [], set()
            for pos, w in enumerate(word_ids):
                if w is not None and w not in seen:
                    seen.add(w)
                    starts.append(pos)
            if len(starts) != b - a:  # a word that produced no sub-word at all (e.g. only control chars)
                starts = _fill_missing(word_ids, b - a)
            labels = None
            if label_to_id is not None:
                labels = [IGNORE_INDEX] * len(enc["input_ids"][row])
                for w, pos in enumerate(starts):
                    if pos is not None:
                        labels[pos] = label_to_id[sentences[s_i].tags[a + w]]
            features.append(NERFeature(s_i, a, list(enc["input_ids"][row]), starts, labels))
    return features


def _fill_missing(word_ids: list[int | None], n_words: int) -> list[int | None]:
    """Word positions where some words have no token: those get None (predicted 'O')."""
    first: dict[int, int] = {}
    for pos, w in enumerate(word_ids):
        if w is not None and w not in first:
            first[w] = pos
    return [first.get(w) for w in range(n_words)]


def collate_ner(features: list[NERFeature], pad_id: int, with_labels: bool):
    import torch

    length = max(len(f.input_ids) for f in features)
    batch = {
        "input_ids": torch.full((len(features), length), pad_id, dtype=torch.long),
        "attention_mask": torch.zeros((len(features), length), dtype=torch.long),
    }
    if with_labels:
        batch["labels"] = torch.full((len(features), length), IGNORE_INDEX, dtype=torch.long)
    for row, f in enumerate(features):
        n = len(f.input_ids)
        batch["input_ids"][row, :n] = torch.tensor(f.input_ids)
        batch["attention_mask"][row, :n] = 1
        if with_labels:
            batch["labels"][row, :n] = torch.tensor(f.labels)
    return batch
