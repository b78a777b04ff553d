import json

import pytest

from clism.benchmarks.qa import read_squad, read_squad_files, to_squad_json
from clism.benchmarks.textio import DataFormatError
from conftest import squad_json, write


def test_reads_gzip_and_plain_alike(tmp_path):
    data = squad_json([("Paris is in France.", [("a", "Where is Paris?", "France", 12)])])
    plain = write(tmp_path / "a.json", json.dumps(data))
    packed = write(tmp_path / "b.json.gz", json.dumps(data), gz=True)
    (ex1,), _ = read_squad(plain, lang="en")
    (ex2,), _ = read_squad(packed, lang="en")
    assert ex1 == ex2
    assert ex1.context[ex1.answers[0].start: ex1.answers[0].end] == "France"


def test_answer_start_off_by_one_is_dropped_reported_and_counted(tmp_path):
    data = squad_json([("Paris is in France.", [("good", "Where?", "France", 12), ("bad", "Where?", "France", 13)])])
    data["data"][0]["paragraphs"][0]["qas"][0]["answers"].append({"text": "France", "answer_start": 11})
    examples, report = read_squad(write(tmp_path / "x.json", json.dumps(data)))
    assert [e.id for e in examples] == ["good"]
    assert len(examples[0].answers) == 1  # the wrong second answer of "good" is not used
    assert report.bad_offsets == 2
    assert report.examples_skipped == 1
    assert any("id bad" in p and "answer_start 13" in p for p in report.problems)
    assert any("id good" in p for p in report.problems)


def test_truncated_json_names_file_line_and_column(tmp_path):
    text = json.dumps(squad_json([("Paris is in France.", [("a", "Where?", "France", 12)])]), indent=1)
    path = write(tmp_path / "cut.json", text[: len(text) // 2])
    with pytest.raises(DataFormatError) as err:
        read_squad(path)
    message = str(err.value)
    assert "cut.json" in message and "line" in message and "column" in message and "truncated" in message


def test_bad_encoding_is_a_clear_error(tmp_path):
    path = tmp_path / "latin1.json"
    path.write_bytes('{"data": [{"title": "Bogotá"}]}'.encode("latin-1"))
    with pytest.raises(DataFormatError, match="latin1.json.*UTF-8"):
        read_squad(path)


def test_missing_field_names_the_record(tmp_path):
    data = squad_json([("Paris is in France.", [("a", "Where?", "France", 12)])])
    del data["data"][0]["paragraphs"][0]["qas"][0]["question"]
    with pytest.raises(DataFormatError, match=r"qas\[0\] \(id a\): missing field 'question'"):
        read_squad(write(tmp_path / "x.json", json.dumps(data)))


def test_id_prefix_selects_one_language_of_a_combined_file(tmp_path):
    data = squad_json([("Paris is in France.", [("english-1", "Where?", "France", 12),
                                                ("arabic-2", "Where?", "France", 12)])])
    examples, _ = read_squad(write(tmp_path / "x.json", json.dumps(data)), id_prefix="arabic-")
    assert [e.id for e in examples] == ["arabic-2"]


def test_split_files_with_duplicate_ids_are_rejected(tmp_path):
    data = json.dumps(squad_json([("Paris is in France.", [("a", "Where?", "France", 12)])]))
    with pytest.raises(DataFormatError, match="appears twice"):
        read_squad_files([write(tmp_path / "1.json", data), write(tmp_path / "2.json", data)])


def test_round_trip_through_squad_json(tmp_path):
    ctx = "東京は日本の首都です。"
    data = squad_json([(ctx, [("z", "首都は?", "東京", 0)])])
    examples, _ = read_squad(write(tmp_path / "x.json", json.dumps(data, ensure_ascii=False)))
    again, _ = read_squad(write(tmp_path / "y.json", json.dumps(to_squad_json(examples), ensure_ascii=False)))
    assert again == examples
