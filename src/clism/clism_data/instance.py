"""The CLISM instance: what `clism build-data` writes (one JSON object per line of
``instances/<lang>-<k>.jsonl``) and pre-training reads.

The English sentence with each selected span replaced by ``[QUE]``, the target sentence,
and per ``[QUE]``, in order, its answer: the projected span of the target sentence, with
character offsets into both sentences::

    {"id": "ar-0000042", "lang": "ar", "source": "flores200:43",
     "en_masked": "[QUE] was born in [QUE] .", "en": "Obama was born in Hawaii .",
     "target": "...", "answers": [{"text": "...", "start": 0, "end": 5, "type": "PERSON",
     "score": 1.0, "en_text": "Obama", "en_start": 0, "en_end": 5}, ...]}
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from clism.benchmarks.textio import DataFormatError
from clism.constants import QUE_TOKEN


@dataclass(frozen=True)
class ProjectedAnswer:
    text: str  # target[start:end]
    start: int
    end: int
    type: str  # the English span's label (spaCy)
    score: float  # the projection's alignment score
    en_text: str  # en[en_start:en_end]
    en_start: int
    en_end: int


@dataclass(frozen=True)
class Instance:
    id: str
    lang: str
    source: str  # "<corpus>:<line>"
    en_masked: str
    en: str
    target: str
    answers: tuple[ProjectedAnswer, ...]

    def to_json(self) -> dict:
        """The file format (field order is the dataclasses': builds stay byte-identical)."""
        return dataclasses.asdict(self) | {"answers": [dataclasses.asdict(a) for a in self.answers]}

    @classmethod
    def from_json(cls, record: dict, where: str = "instance") -> "Instance":
        try:
            answers = tuple(ProjectedAnswer(**a) for a in record["answers"])
            return cls(**{**record, "answers": answers})
        except (TypeError, KeyError) as exc:
            fields = [f.name for f in dataclasses.fields(cls)]
            raise DataFormatError(f"{where}: not a CLISM instance ({exc}); expected the fields {fields}, as "
                                  "`clism build-data` writes them") from None

    def problems(self) -> list[str]:
        """What is wrong with the instance's offsets (nothing, for a sound build)."""
        out = []
        if self.en_masked.count(QUE_TOKEN) != len(self.answers):
            out.append(f"{self.id}: {self.en_masked.count(QUE_TOKEN)} [QUE] but {len(self.answers)} answers")
        for a in self.answers:
            if self.target[a.start: a.end] != a.text or self.en[a.en_start: a.en_end] != a.en_text:
                out.append(f"{self.id}: answer {a.text!r} does not match its offsets")
        return out


def iter_instances(directory: str | Path) -> Iterator[Instance]:
    """Every instance of a build, shard by shard, in order."""
    for path in sorted((Path(directory) / "instances").glob("*.jsonl")):
        with open(path, encoding="utf-8") as fh:
            for number, line in enumerate(fh, 1):
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise DataFormatError(f"{path} line {number}: not valid JSON ({exc.msg}); rebuild with "
                                          "`clism build-data --overwrite`") from None
                yield Instance.from_json(record, f"{path} line {number}")
