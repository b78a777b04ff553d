"""NER files in the layouts of the mirror into sentences of (word, tag).

Layouts, told apart per line:
- ``index<TAB>token<TAB>tag`` (WikiAnn / CoNLL-2003 as Babelscape ships them);
- ``token POS tag`` or ``token ... tag``, space separated (CoNLL-2002, CoNLL-2003
  originals): the first column is the word, the last the tag;
- ``token<TAB>tag`` (XTREME PAN-X), with an optional ``lang:`` prefix on the word.
``-DOCSTART-`` lines are skipped. IOBES tags are read as IOB2 (``S-X`` as ``B-X``, ``E-X`` as
``I-X``); IOB1-style ``I-`` starts are kept as written, ``to_iob2`` rewrites them for
training, and seqeval reads both.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from clism.benchmarks.textio import DataFormatError, iter_lines

_TAG = re.compile(r"^(O|[BIES]-[A-Za-z][\w.-]*)$")


@dataclass
class NERSentence:
    words: list[str]
    tags: list[str]
    line: int = 0  # line of the first word, for messages
    lang: str = ""

    def __len__(self) -> int:
        return len(self.words)


def _split(line: str) -> list[str]:
    if "\t" in line:
        return [c for c in line.split("\t")]
    return line.split()


def iter_ner(path: str | Path, lang: str = "", label_set: set[str] | None = None) -> Iterator[NERSentence]:
    """Stream sentences; malformed lines raise ``DataFormatError`` naming file and line."""
    path = Path(path)
    words: list[str] = []
    tags: list[str] = []
    first_line = 0
    prefix = f"{lang}:" if lang else None
    for line_no, line in iter_lines(path):
        if not line.strip():
            if words:
                yield NERSentence(words, tags, first_line, lang)
                words, tags = [], []
            continue
        cols = _split(line)
        # WikiAnn's index column counts the words of the sentence from 0; a first column that
        # does not is a word (a number such as "1990" in a word<TAB>POS<TAB>tag line)
        if len(cols) == 3 and "\t" in line and cols[0].isdigit() and int(cols[0]) == len(words):
            word, tag = cols[1], cols[2]
        elif len(cols) >= 2:
            word, tag = cols[0], cols[-1]
        else:
            raise DataFormatError(
                f"{path}: line {line_no}: expected a word and a tag (e.g. 'index<TAB>word<TAB>tag' or "
                f"'word POS tag'), found {len(cols)} column(s): {line!r}"
            )
        if word == "-DOCSTART-":
            continue
        tag = tag.strip()
        if not _TAG.match(tag):
            raise DataFormatError(
                f"{path}: line {line_no}: {tag!r} is not a tag (expected O, B-TYPE or I-TYPE); "
                f"is a column missing? line: {line!r}"
            )
        if label_set is not None and tag != "O" and tag[2:] not in label_set:
            raise DataFormatError(
                f"{path}: line {line_no}: entity type {tag[2:]!r} is not in the label set "
                f"{sorted(label_set)}; pass the right label set or map the tag"
            )
        if tag[:2] in ("S-", "E-"):
            tag = ("B-" if tag[0] == "S" else "I-") + tag[2:]
        if prefix and word.startswith(prefix) and len(word) > len(prefix):
            word = word[len(prefix):]
        if not words:
            first_line = line_no
        words.append(word)
        tags.append(tag)
    if words:
        yield NERSentence(words, tags, first_line, lang)


def read_ner(path: str | Path, lang: str = "", label_set: set[str] | None = None) -> list[NERSentence]:
    sentences = list(iter_ner(path, lang=lang, label_set=label_set))
    if not sentences:
        raise DataFormatError(f"{path}: no sentences found; the file is empty or holds only -DOCSTART- lines")
    return sentences


def to_iob2(tags: list[str]) -> list[str]:
    """Rewrite IOB1-style starts (``I-X`` after ``O`` or another type) as ``B-X``."""
    out = []
    previous = "O"
    for tag in tags:
        if tag.startswith("I-") and (previous == "O" or previous[2:] != tag[2:]):
            tag = "B-" + tag[2:]
        out.append(tag)
        previous = tag
    return out


def entity_types(sentences: list[NERSentence]) -> list[str]:
    return sorted({t[2:] for s in sentences for t in s.tags if t != "O"})
