"""SQuAD-format extractive QA (SQuAD v1.1, XQuAD, MLQA, TyDiQA-GoldP) into typed records."""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

from clism.benchmarks.textio import DataFormatError, read_json

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Answer:
    text: str
    start: int  # character offset into the context

    @property
    def end(self) -> int:
        return self.start + len(self.text)


@dataclass
class QAExample:
    id: str
    question: str
    context: str
    answers: list[Answer]
    title: str = ""
    lang: str = ""


@dataclass
class ReadReport:
    """What a reader kept, and every record or answer it did not use, with reasons."""

    path: str
    kept: int = 0
    bad_offsets: int = 0  # answers whose answer_start does not point at their text
    examples_skipped: int = 0
    problems: list[str] = field(default_factory=list)

    def note(self, message: str) -> None:
        self.problems.append(message)

    def summary(self) -> str:
        text = f"{self.path}: kept {self.kept} questions"
        if self.bad_offsets or self.examples_skipped:
            text += (
                f"; {self.bad_offsets} answer(s) whose answer_start does not point at the answer text "
                f"(not used for training), {self.examples_skipped} question(s) skipped with no usable answer"
            )
        return text


def _require(record: dict, key: str, kind: type, where: str, path: Path):
    if not isinstance(record, dict) or key not in record:
        raise DataFormatError(f"{path}: {where}: missing field {key!r}; every record needs it in SQuAD format")
    value = record[key]
    if not isinstance(value, kind):
        raise DataFormatError(
            f"{path}: {where}: field {key!r} should be {kind.__name__}, found {type(value).__name__}"
        )
    return value


def read_squad(
    path: str | Path,
    lang: str = "",
    id_prefix: str | None = None,
    report: ReadReport | None = None,
    require_valid_answers: bool = True,
) -> tuple[list[QAExample], ReadReport]:
    """Read one SQuAD-format JSON file (gzip or plain).

    Every answer's ``answer_start`` is checked against the context. An answer whose
    offset does not point at its text is dropped and reported by question id; a
    question left with no answer is skipped and counted. ``id_prefix`` keeps only
    questions whose id starts with it (TyDiQA's combined file, e.g. ``"arabic-"``).
    With ``require_valid_answers=False`` (evaluation, where only answer texts are
    scored, as in the official scripts) such answers are still reported and counted but
    kept, and no question is skipped.
    """
    path = Path(path)
    report = report or ReadReport(str(path))
    data = read_json(path)
    articles = _require(data, "data", list, "top level", path)
    examples: list[QAExample] = []
    for a_i, article in enumerate(articles):
        where_a = f"data[{a_i}]"
        title = article.get("title", "") if isinstance(article, dict) else ""
        paragraphs = _require(article, "paragraphs", list, where_a, path)
        for p_i, paragraph in enumerate(paragraphs):
            where_p = f"{where_a}.paragraphs[{p_i}]"
            context = _require(paragraph, "context", str, where_p, path)
            for q_i, qa in enumerate(_require(paragraph, "qas", list, where_p, path)):
                where_q = f"{where_p}.qas[{q_i}]"
                qid = str(_require(qa, "id", (str, int), where_q, path))  # type: ignore[arg-type]
                if id_prefix and not qid.startswith(id_prefix):
                    continue
                question = _require(qa, "question", str, f"{where_q} (id {qid})", path)
                answers = []
                for ans_i, ans in enumerate(_require(qa, "answers", list, f"{where_q} (id {qid})", path)):
                    where_ans = f"{where_q}.answers[{ans_i}] (id {qid})"
                    text = _require(ans, "text", str, where_ans, path)
                    start = _require(ans, "answer_start", int, where_ans, path)
                    if start < 0 or context[start: start + len(text)] != text:
                        found = context[max(start, 0): max(start, 0) + len(text)]
                        report.bad_offsets += 1
                        report.note(
                            f"id {qid}: answer {text!r} not at answer_start {start} (context there reads {found!r})"
                        )
                        if require_valid_answers:
                            continue
                    answers.append(Answer(text, start))
                if not answers and require_valid_answers:
                    report.examples_skipped += 1
                    report.note(f"id {qid}: skipped, no answer with a valid answer_start")
                    continue
                examples.append(QAExample(qid, question, context, answers, title, lang))
    report.kept += len(examples)
    if report.problems:
        log.warning(report.summary())
    return examples, report


def read_squad_files(paths: Iterable[str | Path], lang: str = "", id_prefix: str | None = None,
                     require_valid_answers: bool = True):
    """Read several files that together form one split (e.g. the two SQuAD dev halves)."""
    paths = list(paths)
    report = ReadReport(" + ".join(str(p) for p in paths))
    examples: list[QAExample] = []
    for path in paths:
        more, _ = read_squad(path, lang=lang, id_prefix=id_prefix, report=report,
                             require_valid_answers=require_valid_answers)
        examples.extend(more)
    seen: set[str] = set()
    for ex in examples:
        if ex.id in seen:
            raise DataFormatError(f"{report.path}: question id {ex.id} appears twice; ids must be unique")
        seen.add(ex.id)
    return examples, report


def to_squad_json(examples: Iterable[QAExample], version: str = "1.1") -> dict:
    """SQuAD v1.1 JSON: one article per title, one paragraph per distinct context."""
    articles: dict[str, dict[str, list]] = {}
    for ex in examples:
        paragraphs = articles.setdefault(ex.title, {})
        paragraphs.setdefault(ex.context, []).append(
            {
                "id": ex.id,
                "question": ex.question,
                "answers": [{"text": a.text, "answer_start": a.start} for a in ex.answers],
            }
        )
    return {
        "version": version,
        "data": [
            {"title": title, "paragraphs": [{"context": c, "qas": qas} for c, qas in paragraphs.items()]}
            for title, paragraphs in articles.items()
        ],
    }


def write_squad_json(examples: Iterable[QAExample], path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(to_squad_json(examples), ensure_ascii=False) + "\n", encoding="utf-8")
    return path
