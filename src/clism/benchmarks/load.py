"""From a registry name to records: ``load_qa``, ``load_ner``, ``iter_parallel``.

Also the derived English QA training set for machines without SQuAD train:
SQuAD v1.1 dev with every XQuAD paragraph removed, plus TyDiQA-GoldP English train.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from clism.benchmarks.ner import NERSentence, read_ner
from clism.benchmarks.parallel import ParallelPair, ParallelReport, iter_line_aligned
from clism.benchmarks.qa import QAExample, ReadReport, read_squad_files
from clism.benchmarks.registry import get_dataset, locate
from clism.errors import InputError

log = logging.getLogger(__name__)


def load_qa(dataset: str, lang: str, split: str, data_dir: str | Path | None = None,
            download: bool = True, require_valid_answers: bool = True) -> tuple[list[QAExample], ReadReport]:
    spec = get_dataset(dataset)
    if spec.task != "qa":
        raise InputError(f"{dataset} is a {spec.task} dataset, not QA")
    located = locate(spec.get(lang, split), data_dir=data_dir, download=download)
    return read_squad_files(located.paths, lang=lang, id_prefix=located.id_prefix,
                            require_valid_answers=require_valid_answers)


def load_ner(dataset: str, lang: str, split: str, data_dir: str | Path | None = None,
             download: bool = True) -> list[NERSentence]:
    spec = get_dataset(dataset)
    if spec.task != "ner":
        raise InputError(f"{dataset} is a {spec.task} dataset, not NER")
    located = locate(spec.get(lang, split), data_dir=data_dir, download=download)
    (path,) = located.paths
    return read_ner(path, lang=lang)


def iter_parallel(dataset: str, lang: str, split: str | None = None, data_dir: str | Path | None = None,
                  download: bool = True, report: ParallelReport | None = None) -> Iterator[ParallelPair]:
    """English (src) paired with ``lang`` (tgt), streamed line by line."""
    spec = get_dataset(dataset)
    if spec.task != "parallel":
        raise InputError(f"{dataset} is a {spec.task} dataset, not parallel text")
    split = split or spec.splits[0]
    located = locate(spec.get(lang, split), data_dir=data_dir, download=download)
    english, other = located.paths
    yield from iter_line_aligned(english, other, report)


@dataclass
class EnglishQAReport:
    squad_dev_questions: int
    xquad_paragraphs_removed: int
    xquad_questions_removed: int
    tydiqa_en_questions: int
    total: int

    def summary(self) -> str:
        return (
            f"English QA training set: {self.total} questions = SQuAD v1.1 dev {self.squad_dev_questions} "
            f"- {self.xquad_questions_removed} XQuAD questions ({self.xquad_paragraphs_removed} paragraphs) "
            f"+ TyDiQA-GoldP en train {self.tydiqa_en_questions}"
        )


def _context_key(text: str) -> str:
    return " ".join(text.split())


def remove_overlap(examples: list[QAExample], held_out: list[QAExample]) -> tuple[list[QAExample], int, int]:
    """Drop every example whose context or question id belongs to the held-out set."""
    contexts = {_context_key(ex.context) for ex in held_out}
    ids = {ex.id for ex in held_out}
    kept = [ex for ex in examples if _context_key(ex.context) not in contexts and ex.id not in ids]
    removed = [ex for ex in examples if _context_key(ex.context) in contexts or ex.id in ids]
    return kept, len({_context_key(ex.context) for ex in removed}), len(removed)


def english_qa_training_set(data_dir: str | Path | None = None, download: bool = True,
                            include_tydiqa: bool = True) -> tuple[list[QAExample], EnglishQAReport]:
    squad, _ = load_qa("squad_v1.1", "en", "dev", data_dir, download)
    xquad_en, _ = load_qa("xquad", "en", "test", data_dir, download)
    kept, n_paragraphs, n_questions = remove_overlap(squad, xquad_en)
    tydiqa: list[QAExample] = []
    if include_tydiqa:
        tydiqa, _ = load_qa("tydiqa_goldp", "en", "train", data_dir, download)
    report = EnglishQAReport(len(squad), n_paragraphs, n_questions, len(tydiqa), len(kept) + len(tydiqa))
    log.info(report.summary())
    return kept + tydiqa, report
