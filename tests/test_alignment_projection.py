"""Tokenisation for alignment, symmetrisation heuristics, and span projection by reason."""
from clism.clism_data.alignment import is_char_tokenized, symmetrize, token_strings, tokenize
from collections import Counter

from clism.clism_data.projection import ProjectionSettings, project, verbatim_occurrence

S = ProjectionSettings()


def test_tokens_keep_offsets_and_suit_each_script():
    text = "नई दिल्ली भारत की राजधानी है।"
    spans = tokenize(text)
    assert token_strings(text, spans) == ["नई", "दिल्ली", "भारत", "की", "राजधानी", "है", "।"]  # matras stay inside
    zh = "北京是中国的首都，iPhone 15。"
    assert token_strings(zh, tokenize(zh))[:3] == ["北", "京", "是"] and "iphone" in token_strings(zh, tokenize(zh))
    th = "กรุงเทพมหานคร"
    assert "".join(token_strings(th, tokenize(th))) == th and len(tokenize(th)) > 5
    assert is_char_tokenized(zh) and is_char_tokenized(th) and not is_char_tokenized(text)


def test_joiners_and_soft_hyphens_stay_inside_their_word():
    """ZWNJ (Persian), ZWJ (Devanagari conjuncts, emoji sequences) and soft hyphens used to split
    a word in two with a token of their own between (`clism predict ner --text` showed it)."""
    for word in ("می‌خواهم", "क्‍ष", "co­operate"):
        assert token_strings(f"x {word} y", tokenize(f"x {word} y")) == ["x", word.lower(), "y"]
    family = "👨‍👩‍👧"
    assert token_strings(f"a {family}!", tokenize(f"a {family}!")) == ["a", family, "!"]


def test_symmetrisation_heuristics():
    fwd = {(0, 0), (1, 1), (2, 1), (3, 3)}
    rev = {(0, 0), (1, 1), (2, 2), (3, 4)}
    assert symmetrize(fwd, rev, "intersection") == {(0, 0), (1, 1)}
    assert symmetrize(fwd, rev, "union") == fwd | rev
    # grow-diag walks from the intersection through union neighbours that cover an unaligned word:
    # (2,1) and (2,2) next to (1,1), then (3,3) next to (2,2), then (3,4) next to (3,3)
    assert symmetrize(fwd, rev, "grow-diag") == fwd | rev
    # isolated union points are only added by the final steps
    fwd, rev = {(0, 0), (1, 1), (3, 3)}, {(0, 0), (1, 1), (4, 3)}
    assert symmetrize(fwd, rev, "grow-diag") == {(0, 0), (1, 1)}
    assert symmetrize(fwd, rev, "grow-diag-final-and") == {(0, 0), (1, 1), (3, 3)}
    assert symmetrize(fwd, rev, "grow-diag-final") == {(0, 0), (1, 1), (3, 3), (4, 3)}


def _proj(en, tgt, span_text, links, taken=None, settings=S):
    start = en.index(span_text)
    src, tg = tokenize(en), tokenize(tgt)
    return project(start, start + len(span_text), src, tgt, tg, links, is_char_tokenized(tgt), settings, taken or [])


def test_projection_takes_the_covering_range_and_rejects_by_reason():
    en, de = "Barack Obama visited Berlin today .", "Heute besuchte Barack Obama Berlin ."
    links = {(0, 2), (1, 3), (2, 1), (3, 4), (4, 0), (5, 5)}
    p = _proj(en, de, "Barack Obama", links)
    assert de[p.start:p.end] == "Barack Obama" and p.score == 1.0
    assert _proj(en, de, "Berlin", {(0, 2)}) == "unaligned"
    assert _proj(en, de, "Barack Obama", {(0, 0), (1, 4)}) == "discontinuous"
    assert _proj(en, de, "Barack Obama", links, taken=[(15, 21)]) == "overlap"
    whole = _proj("Paris is big", "Paris ist groß", "Paris", {(0, 0), (0, 2)})
    assert whole == "whole_sentence"


def test_projection_onto_chinese_characters():
    en, zh = "Beijing is the capital of China .", "北京是中国的首都。"
    links = {(0, 0), (0, 1), (1, 2), (3, 6), (3, 7), (5, 3), (5, 4), (6, 8)}
    p = _proj(en, zh, "Beijing", links)
    assert zh[p.start:p.end] == "北京"
    p = _proj(en, zh, "China", links)
    assert zh[p.start:p.end] == "中国"


def test_projected_answers_lose_punctuation_at_their_ends():
    """Aligners attach a neighbouring "." or ";" to a name (Europarl gold: ". de Palacio",
    "Bernié ;"); the answer is the name."""
    en, es = "I thank Mrs de Palacio .", "Gracias , Sra . de Palacio ."
    slipped = {(2, 2), (3, 3), (3, 4), (4, 5), (5, 6)}  # "de" aligned to "." as well as to "de"
    p = _proj(en, es, "de Palacio", slipped)
    assert es[p.start:p.end] == "de Palacio"
    p = _proj(en, es, "de Palacio", slipped, settings=ProjectionSettings(trim_punctuation=False))
    assert es[p.start:p.end] == ". de Palacio"
    p = _proj("He said ; no", "Dijo ; no", ";", {(2, 1)})  # a span of punctuation alone is kept as it is
    assert (p.start, p.end) == (5, 6)


def test_verbatim_occurrence_is_unique_whole_tokens_and_free():
    tgt = "Tomás sah Tom und Erika ; Erika lachte"
    toks = tokenize(tgt)
    assert verbatim_occurrence("Tom", tgt, toks, []) == (10, 13)  # not inside "Tomás"
    assert verbatim_occurrence("Erika", tgt, toks, []) is None  # twice: the aligner decides
    assert verbatim_occurrence("Erika", tgt, toks, [(18, 23)]) == (26, 31)  # one of them already an answer
    assert verbatim_occurrence("Anna", tgt, toks, []) is None


def test_a_verbatim_name_overrides_a_wrong_link_and_the_option_turns_it_off():
    from clism.clism_data.instances import AnswerCaps, make_instance
    from clism.clism_data.spans import EnglishSpan

    en, de = "We thank Erika for her work .", "Wir danken Erika für ihre Arbeit ."
    links = {(0, 0), (1, 1), (2, 4), (3, 3), (5, 5), (6, 6)}  # "Erika" aligned to "ihre": a rare-word slip
    span = [EnglishSpan(9, 14, "PERSON")]

    def answer(verbatim):
        stats = Counter()
        inst = make_instance(0, "de", en, de, "test", span, links, S, stats, AnswerCaps(), verbatim)
        return inst.answers[0].text, stats

    text, stats = answer(True)
    assert text == "Erika" and stats["verbatim_names_overriding"] == 1
    assert stats["proxy_exact"] == 0  # the proxy still scores the aligner, not the override
    assert answer(False)[0] == "ihre"


def test_english_entities_lose_a_leading_article_and_end_punctuation():
    """spaCy's OntoNotes entities include "the" and a trailing "'" ("the European Parliament",
    "Commission '"); gold entities and QA answers do not. Measured on europarl_ner_gold:
    exact spaCy matches of gold English entities rose from 54% to 69% of them."""
    import spacy
    from spacy.tokens import Span

    from clism.clism_data.spans import filter_entities

    nlp = spacy.blank("en")
    doc = nlp.make_doc("The European Parliament ' s vote and the Commission agreed .")
    doc.ents = [Span(doc, 0, 4, "ORG"), Span(doc, 7, 9, "ORG")]
    spans = filter_entities(doc, frozenset({"ORG"}), 10, Counter())
    assert [s.text(doc.text) for s in spans] == ["European Parliament", "Commission"]
    untrimmed = filter_entities(doc, frozenset({"ORG"}), 10, Counter(), trim=False)
    assert [s.text(doc.text) for s in untrimmed] == ["The European Parliament '", "the Commission"]
    doc.ents = [Span(doc, 6, 7, "ORG")]  # "the" alone: nothing left after the trim
    rejected = Counter()
    assert filter_entities(doc, frozenset({"ORG"}), 10, rejected) == [] and rejected == {"stop_words_only": 1}
