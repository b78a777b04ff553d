import pytest

from clism.benchmarks.ner import entity_types, iter_ner, read_ner, to_iob2
from clism.benchmarks.textio import DataFormatError
from conftest import write


def test_index_token_tag_layout_with_docstart(tmp_path):
    path = write(tmp_path / "en.conllu.gz",
                 "0\t-DOCSTART-\tO\n\n0\tEU\tB-ORG\n1\trejects\tO\n2\tGerman\tB-MISC\n\n0\tPeter\tB-PER\n", gz=True)
    sentences = read_ner(path)
    assert [s.words for s in sentences] == [["EU", "rejects", "German"], ["Peter"]]
    assert sentences[0].tags == ["B-ORG", "O", "B-MISC"]
    assert entity_types(sentences) == ["MISC", "ORG", "PER"]


def test_conll2002_token_pos_tag_layout(tmp_path):
    path = write(tmp_path / "esp.train", "-DOCSTART- -DOCSTART- O\n\nLa DA O\nCoruña NC B-LOC\n, Fc O\n\n")
    (sentence,) = read_ner(path)
    assert sentence.words == ["La", "Coruña", ","] and sentence.tags == ["O", "B-LOC", "O"]
    assert sentence.line == 3


def test_words_with_spaces_inside_tab_layout_are_kept(tmp_path):
    (sentence,) = read_ner(write(tmp_path / "x", "0\tNew York\tB-LOC\n"))
    assert sentence.words == ["New York"]


def test_iob1_starts_are_read_as_written_and_converted_on_request(tmp_path):
    (sentence,) = read_ner(write(tmp_path / "x", "0\tThe\tO\n1\tU.N.\tI-ORG\n2\tsaid\tO\n3\tEU\tI-ORG\n4\tUN\tI-LOC\n"))
    assert sentence.tags == ["O", "I-ORG", "O", "I-ORG", "I-LOC"]
    assert to_iob2(sentence.tags) == ["O", "B-ORG", "O", "B-ORG", "B-LOC"]
    assert to_iob2(["B-PER", "I-PER", "I-PER"]) == ["B-PER", "I-PER", "I-PER"]


def test_missing_tag_column_names_file_and_line(tmp_path):
    path = write(tmp_path / "broken.txt", "0\tJohn\tB-PER\n1\tlives\n")
    with pytest.raises(DataFormatError, match=r"broken.txt: line 2: .*not a tag"):
        read_ner(path)
    path = write(tmp_path / "single.txt", "John B-PER\nlives\n")
    with pytest.raises(DataFormatError, match=r"single.txt: line 2: expected a word and a tag"):
        read_ner(path)


def test_tag_outside_label_set_is_an_error(tmp_path):
    path = write(tmp_path / "x", "0\tParis\tB-LOC\n1\tHilton\tB-MISC\n")
    with pytest.raises(DataFormatError, match=r"line 2: entity type 'MISC' is not in the label set"):
        read_ner(path, label_set={"PER", "ORG", "LOC"})


def test_empty_file_is_an_error(tmp_path):
    with pytest.raises(DataFormatError, match="empty.txt: no sentences"):
        read_ner(write(tmp_path / "empty.txt", "\n\n"))


def test_xtreme_language_prefix_is_stripped(tmp_path):
    sentences = list(iter_ner(write(tmp_path / "x", "de:Berlin\tB-LOC\nde:ist\tO\n"), lang="de"))
    assert sentences[0].words == ["Berlin", "ist"]


def test_iobes_tags_are_read_as_iob2_and_numbers_as_words(tmp_path):
    from clism.benchmarks.ner import read_ner

    path = tmp_path / "iobes.tsv"
    path.write_text("Angela\tNNP\tB-PER\nMerkel\tNNP\tE-PER\nin\tIN\tO\n1990\tCD\tO\nParis\tNNP\tS-LOC\n\n"
                    "0\tJohn\tS-PER\n1\tlives\tO\n", encoding="utf-8")
    first, second = read_ner(path)
    assert first.words == ["Angela", "Merkel", "in", "1990", "Paris"]  # "1990" is a word, not an index
    assert first.tags == ["B-PER", "I-PER", "O", "O", "B-LOC"]
    assert second.words == ["John", "lives"] and second.tags == ["B-PER", "O"]  # WikiAnn's index column
