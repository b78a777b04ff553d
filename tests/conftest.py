"""Fixtures written for these tests: a miniature data mirror in the reference layout."""
from __future__ import annotations

import gzip
import hashlib
import json
from pathlib import Path

import pytest

XQUAD_CONTEXT = "Normandy is a region in France. The Normans gave their name to it in the 10th century."
OTHER_CONTEXT = "Tesla was born in 1856 in Smiljan, in the Austrian Empire."


def squad_json(paragraphs: list[tuple[str, list[tuple[str, str, str, int]]]], title: str = "T") -> dict:
    """paragraphs: (context, [(id, question, answer_text, answer_start)])"""
    return {
        "version": "1.1",
        "data": [{
            "title": title,
            "paragraphs": [
                {"context": c, "qas": [{"id": i, "question": q, "answers": [{"text": a, "answer_start": s}]}
                                       for i, q, a, s in qas]}
                for c, qas in paragraphs
            ],
        }],
    }


def write(path: Path, text: str, gz: bool = False) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    data = text.encode("utf-8")
    path.write_bytes(gzip.compress(data, mtime=0) if gz else data)
    return path


@pytest.fixture
def mirror(tmp_path: Path) -> Path:
    """A tiny mirror with XQuAD en/de, SQuAD dev halves, TyDiQA en, WikiAnn en, CoNLL-2002 es, FLORES de."""
    root = tmp_path / "mirror"
    xquad_en = squad_json([(XQUAD_CONTEXT, [("q1", "Where is Normandy?", "France", 24)])])
    write(root / "xquad/xquad.en.json.gz", json.dumps(xquad_en), gz=True)
    ctx_de = "Die Normandie ist eine Region in Frankreich."
    xquad_de = squad_json([(ctx_de, [("q1", "Wo liegt die Normandie?", "Frankreich", ctx_de.index("Frankreich"))])])
    write(root / "xquad/xquad.de.json", json.dumps(xquad_de))
    # SQuAD dev halves: the first holds the XQuAD paragraph (with whitespace changed) and one other
    half1 = squad_json([
        ("  " + XQUAD_CONTEXT.replace(". ", ".  ") + " ", [("s0", "Where is Normandy?", "France", 26)]),
        (OTHER_CONTEXT, [("s1", "When was Tesla born?", "1856", 18)]),
    ])
    died = OTHER_CONTEXT + " He died in 1943."
    half2 = squad_json([(died, [("s2", "When did he die?", "1943", died.index("1943"))])])
    write(root / "squad_v1.1_dev/dev-v1.1.json.gz", json.dumps(half1), gz=True)
    write(root / "squad_v1.1_dev/test-v1.1.json.gz", json.dumps(half2), gz=True)
    tydi = {"data": [{"title": "x", "paragraphs": [{"context": "Paris is the capital of France.", "qas": [
        {"id": "english-1", "question": "What is the capital of France?",
         "answers": [{"text": "Paris", "answer_start": 0}]}]}]}]}
    write(root / "tydiqa_goldp_v1.1/english_tydiqa_train.json.gz", json.dumps(tydi), gz=True)
    write(root / "wikiann/en.train.conllu.gz",
          "0\tJohn\tB-PER\n1\tlives\tO\n2\tin\tO\n3\tNew\tB-LOC\n4\tYork\tI-LOC\n\n0\tHi\tO\n", gz=True)
    write(root / "conll2002/esp.train.gz",
          "-DOCSTART- -DOCSTART- O\n\nMelbourne NP B-LOC\n( Fpa O\nAustralia NP B-LOC\n) Fpt O\n", gz=True)
    write(root / "flores200_devtest/eng.devtest.gz", "Hello world.\nGood morning.\n", gz=True)
    write(root / "flores200_devtest/deu.devtest.gz", "Hallo Welt.\nGuten Morgen.\n", gz=True)
    sums = []
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        sums.append(f"{hashlib.sha256(path.read_bytes()).hexdigest()}  {path.relative_to(root)}")
    (root / "SHA256SUMS").write_text("\n".join(sums) + "\n")
    return root


@pytest.fixture(autouse=True)
def isolated_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """No test sees the developer's mirror or dataset cache."""
    monkeypatch.delenv("CLISM_DATA_DIR", raising=False)
    monkeypatch.setenv("CLISM_CACHE_DIR", str(tmp_path / "cache"))
