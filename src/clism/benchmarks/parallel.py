"""Parallel text: two line-aligned files (Tatoeba, FLORES) or one ``src<TAB>tgt`` file.

Readers stream, so memory stays flat however large the corpus. Pairs with an empty
side are skipped and counted with their line numbers; files of unequal length are an
error that names both files and both counts.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from itertools import zip_longest
from pathlib import Path
from typing import Iterator

from clism.benchmarks.textio import DataFormatError, iter_lines


@dataclass(frozen=True)
class ParallelPair:
    src: str
    tgt: str
    line: int  # 1-based line number in the source file(s)


@dataclass
class ParallelReport:
    source: str
    pairs: int = 0
    empty_lines: list[int] = field(default_factory=list)

    @property
    def skipped(self) -> int:
        return len(self.empty_lines)

    def summary(self) -> str:
        text = f"{self.source}: {self.pairs} pairs"
        if self.empty_lines:
            shown = ", ".join(map(str, self.empty_lines[:10]))
            more = f" and {len(self.empty_lines) - 10} more" if len(self.empty_lines) > 10 else ""
            text += f"; skipped {self.skipped} with an empty side (lines {shown}{more})"
        return text


def iter_line_aligned(src_path: str | Path, tgt_path: str | Path, report: ParallelReport | None = None
                      ) -> Iterator[ParallelPair]:
    src_path, tgt_path = Path(src_path), Path(tgt_path)
    report = report if report is not None else ParallelReport(f"{src_path} | {tgt_path}")
    for (s_no, src), (_, tgt) in _zip_checked(src_path, tgt_path):
        if not src.strip() or not tgt.strip():
            report.empty_lines.append(s_no)
            continue
        report.pairs += 1
        yield ParallelPair(src.strip(), tgt.strip(), s_no)


def _count_lines(path: Path) -> int:
    return sum(1 for _ in iter_lines(path))


def _zip_checked(src_path: Path, tgt_path: Path):
    count = 0
    for a, b in zip_longest(iter_lines(src_path), iter_lines(tgt_path)):
        if a is None or b is None:
            raise DataFormatError(
                f"parallel files differ in length: {src_path} has {_count_lines(src_path)} lines, "
                f"{tgt_path} has {_count_lines(tgt_path)}; they stop matching after line {count}. "
                f"Line-aligned files need one sentence per line on each side"
            )
        count += 1
        yield a, b


def iter_tsv(path: str | Path, report: ParallelReport | None = None) -> Iterator[ParallelPair]:
    path = Path(path)
    report = report if report is not None else ParallelReport(str(path))
    for line_no, line in iter_lines(path):
        if not line.strip():
            report.empty_lines.append(line_no)
            continue
        cols = line.split("\t")
        if len(cols) != 2:
            raise DataFormatError(
                f"{path}: line {line_no}: expected 'source<TAB>target' (2 columns), found {len(cols)}: "
                f"{line[:80]!r}"
            )
        src, tgt = cols[0].strip(), cols[1].strip()
        if not src or not tgt:
            report.empty_lines.append(line_no)
            continue
        report.pairs += 1
        yield ParallelPair(src, tgt, line_no)
