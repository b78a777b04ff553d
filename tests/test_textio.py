"""Reading data files: every malformed input is a DataFormatError that names the file and the
right line, never a traceback from zlib, the codec or the JSON parser."""
import gzip
import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from clism.benchmarks.ner import read_ner
from clism.benchmarks.parallel import ParallelReport, iter_line_aligned, iter_tsv
from clism.benchmarks.qa import read_squad_files
from clism.benchmarks.textio import DataFormatError, iter_lines, read_json
from clism.clism_data.instance import iter_instances
from clism.tasks.predict import read_jsonl
from clism.tasks.qa.run import read_prediction_file


def test_bad_utf8_is_reported_at_its_own_line_far_into_a_file(tmp_path):
    # a text stream decodes 8 KB blocks ahead, so it used to name a line hundreds before the bad one
    path = tmp_path / "pairs.tsv"
    path.write_bytes(b"".join(b"sentence %d\tSatz %d\n" % (i, i) for i in range(1, 5000))
                     + b"caf\xe9\tCaf\xe9\n" + b"last\tletzte\n")
    with pytest.raises(DataFormatError, match=r"pairs.tsv: line 5000: not valid UTF-8 .* at byte 4 of the line"):
        list(iter_tsv(path, ParallelReport("t")))
    json_path = tmp_path / "squad.json"
    json_path.write_bytes(b'{"data": [\n{"title": "x",\n"paragraphs": "caf\xe9"}]}')
    with pytest.raises(DataFormatError, match="squad.json: line 3: not valid UTF-8"):
        read_json(json_path)


@pytest.mark.parametrize("damage", ["truncated", "corrupt"])
def test_a_damaged_gzip_names_the_file_and_the_fix(tmp_path, damage):
    data = gzip.compress("".join(f"word{i}\tO\n" for i in range(2000)).encode(), mtime=0)
    path = tmp_path / "en.train.conllu.gz"
    path.write_bytes(data[: len(data) // 2] if damage == "truncated" else data[:20] + b"\x00" * 50 + data[70:])
    with pytest.raises(DataFormatError, match=r"en.train.conllu.gz: cannot be read .* damaged or truncated"):
        read_ner(path)
    with pytest.raises(DataFormatError, match="damaged or truncated"):
        read_json(path)


def test_a_byte_order_mark_is_not_part_of_the_first_word(tmp_path):
    path = tmp_path / "x.txt"
    path.write_bytes("\ufeffHallo Welt\r\nzweite\n".encode())
    assert list(iter_lines(path)) == [(1, "Hallo Welt"), (2, "zweite")]


def instances_in(path):
    """A build folder whose one shard is the fuzzed file."""
    folder = path.with_name("build")
    (folder / "instances").mkdir(parents=True, exist_ok=True)
    shard = folder / "instances" / "de-00000.jsonl"
    shard.write_bytes(path.read_bytes())
    try:
        return list(iter_instances(folder))
    except DataFormatError as exc:
        raise DataFormatError(str(exc).replace(str(shard), str(path))) from None


READERS = {
    "ner": lambda p: read_ner(p),
    "tsv": lambda p: list(iter_tsv(p, ParallelReport("t"))),
    "aligned": lambda p: list(iter_line_aligned(p, p, ParallelReport("a"))),
    "squad": lambda p: read_squad_files([p]),
    "predict-input": lambda p: read_jsonl(str(p), ("question", "context")),
    "qa-predictions": lambda p: read_prediction_file(p),
    "instances": instances_in,
}


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(reader=st.sampled_from(sorted(READERS)), content=st.one_of(
    st.binary(max_size=300),
    st.text(max_size=300).map(lambda t: t.encode("utf-8", "surrogatepass")),
    st.lists(st.tuples(st.text(max_size=12), st.sampled_from(["O", "B-PER", "I-LOC", "E-X", "X", ""])), max_size=8)
      .map(lambda rows: "".join(f"{w}\t{t}\n" for w, t in rows).encode("utf-8", "surrogatepass")),
    st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
                 lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
                     st.sampled_from(["data", "paragraphs", "context", "qas", "id", "question", "answers", "text",
                                      "answer_start", "title", "start", "end", "en", "target", "en_masked"]),
                     inner, max_size=4), max_leaves=12)
      .map(lambda obj: json.dumps(obj).encode()),
), gz=st.booleans())
def test_readers_accept_or_refuse_clearly_whatever_the_bytes(tmp_path, reader, content, gz):
    path = tmp_path / "input"
    path.write_bytes(gzip.compress(content, mtime=0) if gz else content)
    try:
        READERS[reader](path)
    except DataFormatError as exc:
        assert str(path) in str(exc)


VALID_INSTANCE = {"id": "de-0000001", "lang": "de", "source": "t:1", "en_masked": "[QUE] lives here .",
                  "en": "Anna lives here .", "target": "Anna wohnt hier .", "answers": [
                      {"text": "Anna", "start": 0, "end": 4, "type": "PERSON", "score": 1.0, "en_text": "Anna",
                       "en_start": 0, "en_end": 4}]}
JSON_VALUES = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=5) | \
    st.lists(st.integers(), max_size=2)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(in_answer=st.booleans(), field=st.sampled_from(sorted(VALID_INSTANCE["answers"][0])), value=JSON_VALUES)
def test_an_instance_field_of_the_wrong_type_is_named_not_read(tmp_path, in_answer, field, value):
    """A hand-edited or foreign shard: `"start": "0"` used to be read and fail later, deep in
    pre-training, as a TypeError."""
    record = json.loads(json.dumps(VALID_INSTANCE))
    if in_answer:
        record["answers"][0][field] = value
        expected = {"text": str, "type": str, "en_text": str, "score": (int, float)}.get(field, int)
    else:
        field = {"text": "en", "start": "id", "end": "lang", "type": "source", "score": "target"}.get(field, "en_masked")
        record[field] = value
        expected = str
    path = tmp_path / "shard.jsonl"
    path.write_text(json.dumps(record) + "\n")
    try:
        (instance,) = instances_in(path)
    except DataFormatError as exc:
        assert str(path) in str(exc) and field in str(exc)
        assert isinstance(value, bool) or not isinstance(value, expected)
    else:
        assert isinstance(value, expected) and not isinstance(value, bool)
