"""The gold measure of answer projection (``build-data --projection-gold``).

Parallel sentences annotated by hand on both sides (``europarl_ner_gold/``: 799 English–Spanish
Europarl sentences, CoNLL PER/ORG/LOC/MISC) are built like any corpus; then every answer whose
English span is exactly a gold English entity is checked: does its projected span land exactly
on a gold entity of the other side? Two figures per language:

- **exact**: of the answers on gold English entities, the share whose target span is exactly a
  gold target entity (of the same type, in the stricter column);
- **coverage**: the share of gold English entities that got an answer at all (spaCy finds
  them, the span filters keep them, the projection succeeds).

Sentences are written back as text with one space between the gold tokens, so character
offsets of gold entities and of answers refer to the same strings.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from clism.errors import InputError


@dataclass
class GoldSentence:
    text: str
    entities: list[tuple[int, int, str]]  # character [start, end) and type


def read_gold(path: str | Path) -> list[GoldSentence]:
    """A CoNLL file (word ... tag per line) as texts with character spans of its entities."""
    from seqeval.metrics.sequence_labeling import get_entities

    from clism.benchmarks.ner import read_ner, to_iob2

    sentences = []
    for sentence in read_ner(path):
        starts, position = [], 0
        for word in sentence.words:
            starts.append(position)
            position += len(word) + 1
        text = " ".join(sentence.words)
        entities = [(starts[first], starts[last] + len(sentence.words[last]), kind)
                    for kind, first, last in get_entities(to_iob2(sentence.tags))]
        sentences.append(GoldSentence(text, entities))
    return sentences


def parse_gold(entries: Iterable[str], langs: Iterable[str]) -> list[tuple[str, Path, Path]]:
    """``LANG=en.conll+x.conll`` entries as (language, English file, target file)."""
    parsed = []
    for item in entries:
        lang, sep, paths = item.partition("=")
        files = [Path(p) for p in paths.split("+")] if sep else []
        if not lang or len(files) != 2:
            raise InputError(f"--projection-gold {item!r}: write LANG=en.conll+x.conll (two sentence-aligned "
                             "CoNLL files, e.g. europarl_ner_gold/)")
        if lang not in langs:
            raise InputError(f"--projection-gold {item!r}: {lang} is not among --langs; add it")
        missing = [str(p) for p in files if not p.is_file()]
        if missing:
            raise InputError(f"--projection-gold {item!r}: no such file {missing[0]}")
        parsed.append((lang, files[0], files[1]))
    return parsed


def gold_pairs(en_path: Path, x_path: Path) -> list[tuple[GoldSentence, GoldSentence]]:
    english, target = read_gold(en_path), read_gold(x_path)
    if len(english) != len(target):
        raise InputError(f"--projection-gold: {en_path} holds {len(english)} sentences and {x_path} {len(target)}; "
                         "the two files must be sentence-aligned")
    return list(zip(english, target))


def write_gold_text(pairs: list[tuple[GoldSentence, GoldSentence]], folder: Path, lang: str) -> tuple[Path, Path]:
    """The pairs as two line-aligned text files, the corpus the build reads."""
    from clism.files import write_atomic

    folder.mkdir(parents=True, exist_ok=True)
    en_file, x_file = folder / f"gold.{lang}.en.txt", folder / f"gold.{lang}.{lang}.txt"
    write_atomic(en_file, "".join(en.text + "\n" for en, _ in pairs))
    write_atomic(x_file, "".join(x.text + "\n" for _, x in pairs))
    return en_file, x_file


def measure(instances: Iterable, pairs: list[tuple[GoldSentence, GoldSentence]],
            english_spans: Iterable[list] | None = None) -> dict:
    """Counts behind the two figures, over the instances built from these pairs.

    ``english_spans``, the spans the build kept on each pair's English side (in pair order),
    splits coverage: a gold English entity is lost either before projection (spaCy does not
    find it with these boundaries, or a filter drops it) or by the projection. A missed
    target is counted by where it landed: on no gold entity, inside one, around one, across."""
    gold = {(en.text, x.text): (en, x) for en, x in pairs}
    counts: Counter = Counter(gold_english_entities=sum(len(en.entities) for en, _ in gold.values()))
    if english_spans is not None:
        seen, kept = set(), set()
        for (en, _), spans in zip(pairs, english_spans):
            if en.text not in seen:  # a repeated pair is one pair in `gold`
                seen.add(en.text)
                kept |= {(en.text, s, e) for s, e, _ in en.entities} & {(en.text, s.start, s.end) for s in spans}
        counts["gold_english_entities_kept_as_spans"] = len(kept)
    answered: set = set()
    for inst in instances:
        found = gold.get((inst.en, inst.target))
        if found is None:
            continue
        en, x = found
        en_types = {(s, e): kind for s, e, kind in en.entities}
        x_types = {(s, e): kind for s, e, kind in x.entities}
        for answer in inst.answers:
            counts["answers"] += 1
            kind = en_types.get((answer.en_start, answer.en_end))
            if kind is None:
                continue  # spaCy found something the annotators did not mark (dates, say)
            counts["answers_on_gold_english"] += 1
            answered.add((inst.en, answer.en_start, answer.en_end))
            landed = x_types.get((answer.start, answer.end))
            counts["exact"] += landed is not None
            counts["exact_same_type"] += landed == kind
            if landed is None:
                counts[f"missed_{_where(answer.start, answer.end, x_types)}"] += 1
    counts["gold_english_entities_answered"] = len(answered)
    return dict(counts)


def _where(start: int, end: int, entities: dict) -> str:
    overlapping = [(s, e) for s, e in entities if s < end and e > start]
    if not overlapping:
        return "on_no_entity"
    s, e = overlapping[0]
    return "inside_one" if start >= s and end <= e else "around_one" if start <= s and end >= e else "across"


def gold_report(measures: dict[str, dict]) -> str:
    lines = ["| lang | gold English entities | kept as English spans | answered (coverage) | exact on a gold entity "
             "| exact, same type | missed: on no entity / inside one / around one / across |",
             "|---|---|---|---|---|---|---|"]

    def share(a: int | None, b: int) -> str:
        return "n/a" if a is None or not b else f"{a} = {100 * a / b:.1f}%"

    for lang, m in measures.items():
        on, total = m.get("answers_on_gold_english", 0), m["gold_english_entities"]
        missed = " / ".join(str(m.get(f"missed_{w}", 0)) for w in ("on_no_entity", "inside_one", "around_one", "across"))
        lines.append(f"| {lang} | {total} | {share(m.get('gold_english_entities_kept_as_spans'), total)} | "
                     f"{share(m.get('gold_english_entities_answered', 0), total)} | "
                     f"{share(m.get('exact', 0), on)} | {share(m.get('exact_same_type', 0), on)} | {missed} |")
    return "\n".join(lines) + "\n"
