"""The gold measure of answer projection: gold CoNLL entities as character spans, and the
share of answers on gold English entities that land exactly on a gold target entity."""
import pytest

from clism.clism_data.instance import Instance
from clism.clism_data.projection_gold import gold_pairs, gold_report, measure, parse_gold
from clism.errors import InputError
from conftest import write

EN = "The\tO\nEuropean\tB-ORG\nParliament\tI-ORG\nmet\tO\nMr\tO\nProdi\tB-PER\n.\tO\n\nThanks\tO\n"
ES = "El\tO\nParlamento\tB-ORG\nEuropeo\tI-ORG\nrecibió\tO\nal\tO\nseñor\tO\nProdi\tB-PER\n.\tO\n\nGracias\tO\n"


def answer(en_text, en, target, text, type_="ORG"):
    return {"text": text, "start": target.index(text), "end": target.index(text) + len(text), "type": type_,
            "score": 1.0, "en_text": en_text, "en_start": en.index(en_text), "en_end": en.index(en_text) + len(en_text)}


def test_gold_entities_are_character_spans_of_the_space_joined_text(tmp_path):
    pairs = gold_pairs(write(tmp_path / "en.conll", EN), write(tmp_path / "es.conll", ES))
    en, es = pairs[0]
    assert en.text == "The European Parliament met Mr Prodi ."
    assert [en.text[s:e] for s, e, _ in en.entities] == ["European Parliament", "Prodi"]
    assert [(es.text[s:e], t) for s, e, t in es.entities] == [("Parlamento Europeo", "ORG"), ("Prodi", "PER")]
    assert pairs[1][0].entities == []


def test_answers_are_scored_against_the_gold_on_both_sides(tmp_path):
    pairs = gold_pairs(write(tmp_path / "en.conll", EN), write(tmp_path / "es.conll", ES))
    en, es = pairs[0][0].text, pairs[0][1].text
    inst = Instance.from_json({
        "id": "es-1", "lang": "es", "source": "projection_gold:1", "en": en, "en_masked": "", "target": es,
        "answers": [answer("European Parliament", en, es, "Parlamento Europeo"),  # exact, same type
                    answer("Prodi", en, es, "señor Prodi", "PERSON"),  # on a gold English entity, too long
                    answer("The", en, es, "El", "DATE")]})  # not a gold English entity
    m = measure([inst], pairs)
    assert m == {"gold_english_entities": 2, "answers": 3, "answers_on_gold_english": 2, "exact": 1,
                 "exact_same_type": 1, "gold_english_entities_answered": 2, "missed_around_one": 1}
    # the build's English spans split coverage: "The European Parliament" untrimmed misses its gold entity
    from clism.clism_data.spans import EnglishSpan
    kept = [[EnglishSpan(0, 23, "ORG"), EnglishSpan(31, 36, "PERSON")], []]
    assert measure([inst], pairs, kept)["gold_english_entities_kept_as_spans"] == 1
    report = gold_report({"es": measure([inst], pairs, kept)})
    assert "| es | 2 | 1 = 50.0% | 2 = 100.0% | 1 = 50.0% | 1 = 50.0% | 0 / 0 / 1 / 0 |" in report


def test_bad_entries_are_refused_with_the_fix(tmp_path):
    en = write(tmp_path / "en.conll", EN)
    with pytest.raises(InputError, match="LANG=en.conll"):
        parse_gold([f"es={en}"], ["es"])
    with pytest.raises(InputError, match="not among --langs"):
        parse_gold([f"de={en}+{en}"], ["es"])
    with pytest.raises(InputError, match="sentence-aligned"):
        gold_pairs(en, write(tmp_path / "short.conll", "Gracias\tO\n"))
