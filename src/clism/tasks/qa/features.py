"""QA examples into model windows, keeping character offsets into the original context.

Layout: ``[CLS] question [SEP] passage [SEP]`` (or the tokenizer's own pair template);
with the ``qass`` head, ``[QUE]`` goes right after the question:
``[CLS] question [QUE] [SEP] passage [SEP]``. A passage longer than one window is
split into overlapping windows (``doc_stride`` tokens shared by neighbours). For
training, a window whose passage holds the whole answer is labelled with its token
span; other windows point at ``[CLS]`` (position 0), as in the Hugging Face example.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from clism.benchmarks.qa import QAExample
from clism.errors import InputError


@dataclass
class QAFeature:
    example_index: int
    input_ids: list[int]
    offsets: list[tuple[int, int] | None]  # character span in the context, None outside it
    que_position: int = 0
    start_position: int = 0
    end_position: int = 0

    @property
    def allowed(self) -> list[bool]:
        return [i == 0 or o is not None for i, o in enumerate(self.offsets)]


@dataclass
class FeatureReport:
    examples: int = 0
    windows: int = 0
    skipped_empty: list[str] = field(default_factory=list)  # ids with an empty question or context
    answers_outside_windows: int = 0  # training: questions whose answer no window holds whole
    long_contexts: int = 0  # contexts that needed more than one window

    def summary(self) -> str:
        text = f"{self.examples} questions -> {self.windows} windows ({self.long_contexts} split over several)"
        if self.skipped_empty:
            text += f"; {len(self.skipped_empty)} skipped with an empty question or context"
        if self.answers_outside_windows:
            text += f"; {self.answers_outside_windows} answers held whole by no window (trained on [CLS])"
        return text


def _truncate_questions(tokenizer, questions: list[str], max_query_tokens: int) -> tuple[list[str], int]:
    """Questions cut to ``max_query_tokens`` (by character offset), and the longest kept length."""
    enc = tokenizer(questions, add_special_tokens=False, return_offsets_mapping=True)
    kept, longest = [], 0
    for question, ids, offsets in zip(questions, enc["input_ids"], enc["offset_mapping"]):
        if len(ids) > max_query_tokens:
            question = question[: offsets[max_query_tokens - 1][1]]
        kept.append(question)
        longest = max(longest, min(len(ids), max_query_tokens))
    return kept, longest


def build_features(
    examples: list[QAExample],
    tokenizer,
    max_length: int = 384,
    doc_stride: int = 128,
    max_query_tokens: int = 64,
    que_token_id: int | None = None,
    training: bool = False,
    batch_size: int = 256,
) -> tuple[list[QAFeature], FeatureReport]:
    report = FeatureReport(examples=len(examples))
    features: list[QAFeature] = []
    extra = 1 if que_token_id is not None else 0
    usable = []
    labelled: set[int] = set()
    for index, ex in enumerate(examples):
        if not ex.question.strip() or not ex.context.strip():
            report.skipped_empty.append(ex.id)
        else:
            usable.append(index)
    for start in range(0, len(usable), batch_size):
        chunk = usable[start: start + batch_size]
        questions, longest = _truncate_questions(tokenizer, [examples[i].question for i in chunk], max_query_tokens)
        contexts = [examples[i].context for i in chunk]
        stride = _effective_stride(tokenizer, longest, max_length - extra, doc_stride)
        enc = tokenizer(
            questions, contexts, truncation="only_second", max_length=max_length - extra, stride=stride,
            return_overflowing_tokens=True, return_offsets_mapping=True, padding=False,
        )
        windows_per_example: dict[int, int] = {}
        for f_i, input_ids in enumerate(enc["input_ids"]):
            example_index = chunk[enc["overflow_to_sample_mapping"][f_i]]
            windows_per_example[example_index] = windows_per_example.get(example_index, 0) + 1
            sequence_ids = enc.sequence_ids(f_i)
            offsets = [tuple(o) if s == 1 else None for o, s in zip(enc["offset_mapping"][f_i], sequence_ids)]
            input_ids = list(input_ids)
            que_position = 0
            if que_token_id is not None:
                # right after the last question token, before the separator(s)
                que_position = max(i for i, s in enumerate(sequence_ids) if s == 0) + 1
                input_ids.insert(que_position, que_token_id)
                offsets.insert(que_position, None)
            feature = QAFeature(example_index, input_ids, offsets, que_position)
            if training and _label(feature, examples[example_index]):
                labelled.add(example_index)
            features.append(feature)
        report.long_contexts += sum(1 for n in windows_per_example.values() if n > 1)
    report.windows = len(features)
    if training:
        report.answers_outside_windows = len(usable) - len(labelled)
    return features, report


def _effective_stride(tokenizer, longest: int, max_length: int, doc_stride: int) -> int:
    """The overlap must leave room for new passage tokens in every window: at most half
    of the passage room left by the longest question of the batch."""
    specials = tokenizer.num_special_tokens_to_add(pair=True)
    room = max_length - specials - longest
    if room < 8:
        raise InputError(f"max_length {max_length} leaves {room} passage tokens after a {longest}-token "
                         f"question; raise max_length or lower max_query_tokens")
    return min(doc_stride, room // 2)


def _label(feature: QAFeature, example: QAExample) -> bool:
    """Point the feature at its answer's tokens if it holds the whole answer."""
    answer = example.answers[0]
    char_start, char_end = answer.start, answer.end
    start_token = end_token = None
    for i, span in enumerate(feature.offsets):
        if span is None:
            continue
        s, e = span
        if start_token is None and s <= char_start < e:
            start_token = i
        if s < char_end <= e:
            end_token = i
    if start_token is None or end_token is None or end_token < start_token:
        return False  # stays on [CLS]
    feature.start_position, feature.end_position = start_token, end_token
    return True


def collate(features: list[QAFeature], pad_id: int, with_labels: bool):
    import torch

    length = max(len(f.input_ids) for f in features)
    batch = {
        "input_ids": torch.full((len(features), length), pad_id, dtype=torch.long),
        "attention_mask": torch.zeros((len(features), length), dtype=torch.long),
        "allowed_mask": torch.zeros((len(features), length), dtype=torch.bool),
        "que_position": torch.tensor([f.que_position for f in features], dtype=torch.long),
    }
    for row, f in enumerate(features):
        n = len(f.input_ids)
        batch["input_ids"][row, :n] = torch.tensor(f.input_ids)
        batch["attention_mask"][row, :n] = 1
        batch["allowed_mask"][row, :n] = torch.tensor(f.allowed)
    if with_labels:
        batch["start_positions"] = torch.tensor([f.start_position for f in features], dtype=torch.long)
        batch["end_positions"] = torch.tensor([f.end_position for f in features], dtype=torch.long)
    return batch
