import pytest

from clism.benchmarks.parallel import ParallelReport, iter_line_aligned, iter_tsv
from clism.benchmarks.textio import DataFormatError
from conftest import write


def test_line_aligned_pairs_keep_line_numbers_and_count_empty_sides(tmp_path):
    en = write(tmp_path / "x.eng", "Hello.\n\nGood night.\nThanks.\n")
    de = write(tmp_path / "x.deu.gz", "Hallo.\nLeer.\nGute Nacht.\n \n", gz=True)
    report = ParallelReport("x")
    pairs = list(iter_line_aligned(en, de, report))
    assert [(p.src, p.tgt, p.line) for p in pairs] == [("Hello.", "Hallo.", 1), ("Good night.", "Gute Nacht.", 3)]
    assert report.empty_lines == [2, 4] and report.pairs == 2
    assert "lines 2, 4" in report.summary()


def test_unequal_lengths_name_both_files_and_counts(tmp_path):
    en = write(tmp_path / "a.eng", "one\ntwo\nthree\n")
    de = write(tmp_path / "a.deu", "eins\nzwei\n")
    with pytest.raises(DataFormatError) as err:
        list(iter_line_aligned(en, de))
    message = str(err.value)
    assert "a.eng has 3 lines" in message and "a.deu has 2" in message and "after line 2" in message


def test_tsv_pairs_and_malformed_line(tmp_path):
    report = ParallelReport("t")
    path = write(tmp_path / "p.tsv", "Hello\tHallo\n\tleer\nBye\tTschüss\n")
    assert [(p.src, p.tgt) for p in iter_tsv(path, report)] == [("Hello", "Hallo"), ("Bye", "Tschüss")]
    assert report.empty_lines == [2]
    with pytest.raises(DataFormatError, match=r"bad.tsv: line 2: expected 'source<TAB>target'"):
        list(iter_tsv(write(tmp_path / "bad.tsv", "a\tb\nno tab here\n")))
