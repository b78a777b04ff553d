"""``clism data verify``: checksums where known, and every file read by its reader."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from clism.benchmarks.ner import read_ner
from clism.benchmarks.parallel import ParallelReport, iter_line_aligned
from clism.benchmarks.qa import read_squad_files
from clism.benchmarks.registry import (
    DatasetSpec, Located, Resource, inventory, locate, mirror_dir, sha256_of,
)
from clism.benchmarks.textio import DataFormatError


@dataclass
class VerifyRow:
    resource: str
    source: str
    records: int
    checksum: str  # "ok", "MISMATCH", or "not pinned"
    problems: str
    ok: bool


def mirror_checksums(mirror: Path | None) -> dict[str, str]:
    """``SHA256SUMS`` at the mirror root (the reference layout ships one), as {relative path: digest}."""
    if mirror is None or not (mirror / "SHA256SUMS").is_file():
        return {}
    sums = {}
    for line in (mirror / "SHA256SUMS").read_text().splitlines():
        parts = line.split(maxsplit=1)
        if len(parts) == 2:
            sums[parts[1].lstrip("*").removeprefix("./")] = parts[0]
    return sums


def _checksum(located: Located, mirror: Path | None, sums: dict[str, str]) -> str:
    verdicts = []
    for path in located.paths:
        expected = None
        if located.source == "mirror" and mirror is not None:
            expected = sums.get(str(path.relative_to(mirror)))
        else:
            download = next((d for d in located.resource.downloads if d.cache_name == path.name), None)
            expected = download.sha256 if download else None
        if expected is None:
            verdicts.append("not pinned")
        else:
            verdicts.append("ok" if sha256_of(path) == expected else "MISMATCH")
    if "MISMATCH" in verdicts:
        return "MISMATCH"
    return "ok" if all(v == "ok" for v in verdicts) else ("not pinned" if "ok" not in verdicts else "partly pinned")


def read_records(spec: DatasetSpec, located: Located) -> tuple[int, str]:
    """(number of records, problems in one line) using the dataset's reader."""
    if spec.task == "qa":
        examples, report = read_squad_files(located.paths, lang=located.resource.lang, id_prefix=located.id_prefix)
        problems = "" if not report.problems else (
            f"{report.bad_offsets} answers with a bad answer_start, {report.examples_skipped} questions skipped: "
            + report.problems[0]
        )
        return len(examples), problems
    if spec.task == "ner":
        sentences = read_ner(located.paths[0], lang=located.resource.lang)
        return len(sentences), ""
    report = ParallelReport(" | ".join(map(str, located.paths)))
    for _ in iter_line_aligned(located.paths[0], located.paths[1], report):
        pass
    return report.pairs, "" if not report.skipped else report.summary()


def verify(spec: DatasetSpec, data_dir: str | Path | None, langs: list[str], splits: list[str],
           download: bool) -> list[VerifyRow]:
    mirror = mirror_dir(data_dir)
    sums = mirror_checksums(mirror)
    targets: list[Resource]
    if langs or splits:
        targets = [spec.get(lang, split) for lang in (langs or spec.languages) for split in (splits or spec.splits)]
    else:
        present = inventory(spec, data_dir)
        targets = [spec.resource(lang, split) for lang, by_split in present.items() for split in by_split]
        if not targets:  # nothing local: let locate() explain what was tried (or download)
            targets = [spec.get(spec.languages[0], spec.splits[0])]
    rows = []
    for resource in targets:
        located = locate(resource, data_dir=data_dir, download=download)
        checksum = _checksum(located, mirror, sums)
        try:
            records, problems = read_records(spec, located)
            ok = checksum != "MISMATCH"
        except DataFormatError as exc:
            records, problems, ok = 0, str(exc), False
        rows.append(VerifyRow(resource.name, located.source, records, checksum, problems, ok))
    return rows
