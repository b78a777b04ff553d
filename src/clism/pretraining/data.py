"""CLISM instances into pre-training inputs.

Per instance, two inputs:

- joint:   ``[CLS] English with [QUE]s [SEP] target [SEP]`` (the tokenizer's own pair
  template), at most ``max_side_tokens`` per side. Each ``[QUE]`` points at its answer's
  first and last target tokens. A ``[QUE]`` cut by truncation is dropped with its
  answer; an answer whose tokens were cut is dropped and its ``[QUE]`` ignored in the
  loss; both are counted, never mislabelled.
- english: ``[CLS] original English [SEP]`` for the CACR term.

With CLISM switched off, the joint input carries the original English (a translation-
LM pair), so the MLM-only and no-CLISM arms see the same sentences without ``[QUE]``.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import torch

from clism.clism_data.instance import Instance
from clism.constants import IGNORE_INDEX
from clism.errors import InputError, NotFoundError


@dataclass
class PairTemplate:
    """Where a tokenizer puts its special tokens around one or two sequences."""

    pair_prefix: list[int]
    pair_middle: list[int]
    pair_suffix: list[int]
    single_prefix: list[int]
    single_suffix: list[int]

    @classmethod
    def of(cls, tokenizer) -> "PairTemplate":
        """Post-process two one-token sequences and read off what surrounds them."""
        backend = tokenizer.backend_tokenizer
        enc_a = backend.encode("a", add_special_tokens=False)
        enc_b = backend.encode("b", add_special_tokens=False)
        pair = backend.post_process(enc_a, enc_b, add_special_tokens=True).ids
        single = backend.post_process(enc_a, None, add_special_tokens=True).ids
        ia, ib = pair.index(enc_a.ids[0]), pair.index(enc_b.ids[0])
        ja = single.index(enc_a.ids[0])
        return cls(pair[:ia], pair[ia + 1: ib], pair[ib + 1:], single[:ja], single[ja + 1:])


@dataclass
class PretrainFeature:
    joint_ids: list[int]
    english_start: int  # [start, end) of the English segment in joint_ids
    english_end: int
    target_start: int
    target_end: int
    que_positions: list[int]
    answer_starts: list[int]  # IGNORE_INDEX where the answer was cut
    answer_ends: list[int]
    english_ids: list[int]  # the separate, unmasked English input
    answer_tokens: list[int] = field(default_factory=list)  # joint positions inside answers (kept from MLM)


def load_instances(directory: str | Path) -> list[Instance]:
    from clism.clism_data.instance import iter_instances

    instances = list(iter_instances(directory))
    if not instances:
        raise NotFoundError(f"{directory}: no CLISM instances (instances/*.jsonl); run `clism build-data`")
    return instances


def build_pretrain_features(instances: Iterable[Instance], tokenizer, que_token_id: int, max_side_tokens: int = 128,
                            use_clism: bool = True) -> tuple[list[PretrainFeature], Counter]:
    template = PairTemplate.of(tokenizer)
    backend = tokenizer.backend_tokenizer
    stats: Counter = Counter()
    features = []
    for inst in instances:
        english_text = inst.en_masked if use_clism else inst.en
        en = backend.encode(english_text, add_special_tokens=False)
        tgt = backend.encode(inst.target, add_special_tokens=False)
        en_ids, tgt_ids = en.ids[:max_side_tokens], tgt.ids[:max_side_tokens]
        tgt_offsets = tgt.offsets[:max_side_tokens]
        stats["instances"] += 1
        stats["english_truncated"] += len(en.ids) > max_side_tokens
        stats["target_truncated"] += len(tgt.ids) > max_side_tokens
        joint = template.pair_prefix + en_ids + template.pair_middle + tgt_ids + template.pair_suffix
        e_start = len(template.pair_prefix)
        e_end = e_start + len(en_ids)
        t_start = e_end + len(template.pair_middle)
        t_end = t_start + len(tgt_ids)
        que_positions, starts, ends, inside = [], [], [], []
        if use_clism:
            all_que = [i for i, tok in enumerate(en.ids) if tok == que_token_id]
            if len(all_que) != len(inst.answers):
                raise InputError(f"instance {inst.id}: {len(all_que)} [QUE] tokens but {len(inst.answers)} "
                                 f"answers; was the tokenizer given [QUE] as a special token?")
            for q, answer in zip(all_que, inst.answers):
                stats["answers"] += 1
                if q >= max_side_tokens:
                    stats["answers_dropped_que_truncated"] += 1
                    continue
                span = _token_span(tgt_offsets, answer.start, answer.end)
                que_positions.append(e_start + q)
                if span is None:
                    stats["answers_dropped_target_truncated"] += 1
                    starts.append(IGNORE_INDEX)
                    ends.append(IGNORE_INDEX)
                    continue
                stats["answers_used"] += 1
                starts.append(t_start + span[0])
                ends.append(t_start + span[1])
                inside.extend(range(t_start + span[0], t_start + span[1] + 1))
        english = template.single_prefix + backend.encode(inst.en, add_special_tokens=False).ids[
            :max_side_tokens] + template.single_suffix
        features.append(PretrainFeature(joint, e_start, e_end, t_start, t_end, que_positions, starts, ends,
                                        english, inside))
    return features, stats


def _token_span(offsets: list[tuple[int, int]], start: int, end: int) -> tuple[int, int] | None:
    """First and last kept tokens covering characters [start, end); None if any part was cut."""
    covering = [i for i, (a, b) in enumerate(offsets) if b > a and a < end and b > start]
    if not covering or offsets[covering[-1]][1] < end:
        return None
    return covering[0], covering[-1]


def mask_tokens(input_ids: torch.Tensor, candidates: torch.Tensor, mask_id: int, vocab_size: int,
                generator: torch.Generator, probability: float = 0.15) -> tuple[torch.Tensor, torch.Tensor]:
    """BERT-style masking over the ``candidates`` positions: 80% [MASK], 10% random, 10% kept."""
    labels = torch.full_like(input_ids, IGNORE_INDEX)
    chosen = (torch.rand(input_ids.shape, generator=generator) < probability) & candidates
    labels[chosen] = input_ids[chosen]
    masked = input_ids.clone()
    roll = torch.rand(input_ids.shape, generator=generator)
    masked[chosen & (roll < 0.8)] = mask_id
    random_positions = chosen & (roll >= 0.8) & (roll < 0.9)
    masked[random_positions] = torch.randint(vocab_size, input_ids.shape, generator=generator)[random_positions]
    return masked, labels


def collate_pretrain(features: list[PretrainFeature], pad_id: int, special_ids: set[int]) -> dict:
    def pad(rows: list[list[int]]):
        length = max(len(r) for r in rows)
        ids = torch.full((len(rows), length), pad_id, dtype=torch.long)
        mask = torch.zeros((len(rows), length), dtype=torch.long)
        for i, r in enumerate(rows):
            ids[i, : len(r)] = torch.tensor(r)
            mask[i, : len(r)] = 1
        return ids, mask

    joint, joint_mask = pad([f.joint_ids for f in features])
    english, english_mask = pad([f.english_ids for f in features])
    n_que = max([len(f.que_positions) for f in features] + [1])
    que = torch.zeros((len(features), n_que), dtype=torch.long)
    starts = torch.full((len(features), n_que), IGNORE_INDEX, dtype=torch.long)
    ends = torch.full((len(features), n_que), IGNORE_INDEX, dtype=torch.long)
    english_alone = english_mask.bool().clone()  # the separate English input, for CACR's r_s
    for sid in special_ids:
        english_alone &= english != sid
    english_seg = torch.zeros_like(joint_mask, dtype=torch.bool)
    target_seg = torch.zeros_like(joint_mask, dtype=torch.bool)
    mlm_candidates = joint_mask.bool().clone()
    for i, f in enumerate(features):
        k = len(f.que_positions)
        que[i, :k] = torch.tensor(f.que_positions, dtype=torch.long)
        starts[i, :k] = torch.tensor(f.answer_starts, dtype=torch.long)
        ends[i, :k] = torch.tensor(f.answer_ends, dtype=torch.long)
        english_seg[i, f.english_start: f.english_end] = True
        english_seg[i, f.que_positions] = False  # CACR pools a segment's own tokens (PAPER.md), not [QUE]
        target_seg[i, f.target_start: f.target_end] = True
        mlm_candidates[i, f.que_positions] = False
        mlm_candidates[i, f.answer_tokens] = False  # the answers stay readable for CLISM
    for sid in special_ids:
        mlm_candidates &= joint != sid
    return {
        "joint_ids": joint, "joint_mask": joint_mask, "english_ids": english, "english_mask": english_mask,
        "que_positions": que, "answer_starts": starts, "answer_ends": ends, "english_segment": english_seg,
        "english_alone": english_alone,
        "target_segment": target_seg, "mlm_candidates": mlm_candidates,
    }

