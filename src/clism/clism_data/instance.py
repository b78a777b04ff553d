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


_JSON_TYPES = {"str": (str,), "int": (int,), "float": (int, float)}


def _typed(cls, record) -> dict:
    """``record`` when each of ``cls``'s plain fields holds a value of its type (TypeError if not)."""
    if not isinstance(record, dict):
        raise TypeError(f"expected an object, got {type(record).__name__}")
    for field in dataclasses.fields(cls):
        kinds = _JSON_TYPES.get(field.type)  # field.type is a string: annotations are postponed
        value = record.get(field.name)
        if kinds and (isinstance(value, bool) or not isinstance(value, kinds)):
            raise TypeError(f"{field.name} is {json.dumps(value)[:40]}, not {field.type}")
    return record


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
            if not isinstance(record, dict) or not isinstance(record.get("answers"), list):
                raise TypeError("expected an object with a list of answers")
            answers = tuple(ProjectedAnswer(**_typed(ProjectedAnswer, a)) for a in record["answers"])
            return cls(**{**_typed(cls, record), "answers": answers})
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
    from clism.benchmarks.textio import iter_lines

    for path in sorted((Path(directory) / "instances").glob("*.jsonl")):
        for number, line in iter_lines(path):
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataFormatError(f"{path} line {number}: not valid JSON ({exc.msg}); the build is damaged: "
                                      f"delete {directory} and run `clism build-data` again") from None
            yield Instance.from_json(record, f"{path} line {number}")
