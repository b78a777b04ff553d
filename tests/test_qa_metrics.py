"""Golden tests: each rule of the official SQuAD v1.1 and MLQA scripts, worked by hand."""
import pytest

from clism.evaluation.qa_metrics import (
    QAMetric, UnknownMetricLanguage, normalize_mlqa, normalize_squad, score_predictions,
)


def test_squad_normalisation_rules():
    assert normalize_squad("The  Eiffel Tower!") == "eiffel tower"
    assert normalize_squad("an apple, a pear") == "apple pear"
    assert normalize_squad("Theatre") == "theatre"  # articles only as whole words
    assert normalize_squad("«Paris»") == "«paris»"  # non-ASCII punctuation is kept by SQuAD rules
    assert normalize_squad("1,000") == "1000"


def test_squad_em_f1_max_over_golds():
    m = QAMetric("squad")
    assert m.exact_match("the Denver Broncos", ["Denver Broncos", "Broncos"]) == 1.0
    # pred tokens {denver, broncos, team}; gold {broncos}: P=1/3 R=1 F1=0.5
    assert m.f1("Denver Broncos team", ["Broncos", "Carolina"]) == pytest.approx(0.5)
    assert m.f1("", ["x"]) == 0.0 and m.f1("the", ["a"]) == 0.0  # empty after normalisation scores 0


def test_squad_on_chinese_is_whole_string():
    # SQuAD rules split on whitespace: a Chinese answer is one token, so F1 is all or nothing
    assert QAMetric("squad", "zh").f1("北京市", ["北京"]) == 0.0


def test_mlqa_unicode_punctuation_and_ascii_symbols():
    assert normalize_mlqa("«Paris» — ¿qué?", "es") == "paris qué"
    assert normalize_mlqa("$5+3=8", "en") == "538"  # string.punctuation holds symbols too


def test_mlqa_articles_per_language():
    assert normalize_mlqa("El gato y la casa", "es") == "gato y casa"
    assert normalize_mlqa("Der Hund und die Katze", "de") == "hund und katze"
    assert normalize_mlqa("Einstein", "de") == "einstein"  # whole words only
    assert normalize_mlqa("chiếc xe của tôi", "vi") == "xe tôi"
    assert normalize_mlqa("the book", "hi") == "the book"  # no article rules for Hindi


def test_mlqa_arabic_article_removed_everywhere():
    # 'ال' is removed wherever it appears, also inside a word, exactly as the official regex does
    assert normalize_mlqa("الكتاب", "ar") == "كتاب"
    assert normalize_mlqa("في المدرسة", "ar") == "في مدرسة"
    assert normalize_mlqa("سالم", "ar") == "س م"
    m = QAMetric("mlqa", "ar")
    assert m.exact_match("كتاب", ["الكتاب"]) == 1.0


def test_mlqa_chinese_mixed_segmentation():
    assert normalize_mlqa("北京大学2019年", "zh") == "北 京 大 学 2019 年"
    assert normalize_mlqa("iPhone手机", "zh") == "iphone 手 机"
    m = QAMetric("mlqa", "zh")
    # pred chars {北, 京, 市}, gold {北, 京}: P=2/3 R=1 F1=0.8
    assert m.f1("北京市", ["北京"]) == pytest.approx(0.8)
    assert m.exact_match("北京。", ["北京"]) == 1.0


def test_mlqa_rejects_unknown_language_unless_fallback():
    with pytest.raises(UnknownMetricLanguage, match="'th'"):
        QAMetric("mlqa", "th")
    m = QAMetric("mlqa", "th", whitespace_fallback=True)
    assert m.exact_match("กรุงเทพ", ["กรุงเทพ"]) == 1.0


def test_scores_count_missing_as_zero():
    gold = {"a": ["Paris"], "b": ["1856"], "c": ["Tesla", "Nikola Tesla"]}
    result = score_predictions(QAMetric("squad"), gold, {"a": "paris", "c": "Nikola"})
    assert result["missing"] == 1 and result["total"] == 3
    assert result["exact_match"] == pytest.approx(100 / 3)
    # a: 1, b: 0, c: max(F1('nikola','tesla')=0, F1('nikola','nikola tesla')=2/3)
    assert result["f1"] == pytest.approx(100 * (1 + 2 / 3) / 3)


def test_a_prediction_file_of_another_dataset_is_refused(tmp_path, capsys):
    import json as _json

    from clism.cli import main

    gold = tmp_path / "gold.json"
    gold.write_text(_json.dumps({"data": [{"title": "t", "paragraphs": [{"context": "Paris is in France.", "qas": [
        {"id": "a", "question": "Where?", "answers": [{"text": "France", "answer_start": 12}]}]}]}]}))
    other = tmp_path / "other.json"
    other.write_text(_json.dumps({"zz": "France"}))
    assert main(["evaluate", "qa", "--predictions", str(other), "--data", str(gold)]) == 2
    assert "none of its 1 question ids" in capsys.readouterr().err
