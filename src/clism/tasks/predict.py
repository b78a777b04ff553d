"""Use a fine-tuned model on new text: ``clism predict qa`` and ``clism predict ner``.

Input comes from the command line (one question and passage, or one sentence) or from
a JSON Lines file, one record per line:

- QA: ``{"id": "...", "question": "...", "context": "..."}`` (``id`` optional);
- NER: ``{"id": "...", "text": "..."}`` or ``{"id": "...", "words": [...]}``.

Output is JSON Lines, one record per input record in the same order, to ``--out`` or
stdout. QA answers carry character offsets into the passage; NER entities carry the
character offsets of their words in ``text``. ``text`` is split into words the way the
CLISM data builder splits sentences, so scripts written without spaces (Chinese,
Japanese, Thai) are tagged one character cluster at a time.
"""
from __future__ import annotations

import json
import logging
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional

from clism.config import option
from clism.benchmarks.textio import DataFormatError
from clism.errors import InputError
from clism.files import remove_stale_temporaries, write_atomic
from clism.models.backbone import inference_dtype_option

log = logging.getLogger(__name__)

@dataclass
class QAPredictOptions:
    model: str = option("", "fine-tuned QA checkpoint (the model/ directory of a `clism finetune qa` seed)")
    question: Optional[str] = option(None, "one question (with --context)")
    context: Optional[str] = option(None, "the passage to answer from")
    input: Optional[str] = option(None, "JSON Lines file of {id, question, context} records")
    out: Optional[str] = option(None, "write JSON Lines here (default: stdout); whole or not at all")
    overwrite: bool = option(False, "replace an --out file that exists")
    max_length: int = option(384, "tokens per window", minimum=1)
    doc_stride: int = option(128, "tokens shared by neighbouring windows", minimum=1)
    max_answer_tokens: int = option(30, "longest answer, in tokens")
    batch_size: int = option(0, "windows per inference batch (0: 8 on CPU, 64 on GPU)")
    inference_dtype: str = inference_dtype_option()


@dataclass
class NERPredictOptions:
    model: str = option("", "fine-tuned NER checkpoint (the model/ directory of a `clism finetune ner` seed)")
    text: Optional[str] = option(None, "one sentence to tag")
    input: Optional[str] = option(None, "JSON Lines file of {id, text} or {id, words} records")
    out: Optional[str] = option(None, "write JSON Lines here (default: stdout); whole or not at all")
    overwrite: bool = option(False, "replace an --out file that exists")
    max_length: int = option(128, "tokens per window", minimum=1)
    batch_size: int = option(64, "windows per inference batch", minimum=1)
    inference_dtype: str = inference_dtype_option()


def _check_fields(record: dict, where: str) -> None:
    """Values a reader would otherwise pass on to a traceback or to the output unchecked."""
    rid = record.get("id")
    if rid is not None and (isinstance(rid, bool) or not isinstance(rid, (str, int))):
        raise DataFormatError(f"{where}: 'id' is {json.dumps(rid)}; write it as a string (or leave it out: the line "
                              "number is used)")
    if "text" in record and not (isinstance(record["text"], str) and record["text"].strip()):
        raise DataFormatError(f"{where}: 'text' must be a non-empty string, got {json.dumps(record['text'])}")
    if "words" in record and (not isinstance(record["words"], list)
                              or not all(isinstance(w, str) and w.strip() for w in record["words"])):
        raise DataFormatError(f"{where}: 'words' must be a list of non-empty strings")
    texts = [(k, v) for k, v in record.items() if isinstance(v, str)]
    texts += [("words", w) for w in record.get("words", []) if isinstance(w, str)]
    for key, value in texts:
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise DataFormatError(f"{where}: {key!r} holds a lone surrogate ({value[exc.start]!a}), left by bytes "
                                  "that were not valid UTF-8; fix the encoding") from None


def read_jsonl(path: str, required: tuple[str, ...], either: tuple[str, ...] = ()) -> list[dict]:
    """Every record of ``path``; a bad line raises an error naming the file, the line and the fix."""
    from clism.benchmarks.textio import iter_lines

    if Path(path).is_dir():
        raise InputError(f"--input {path} is a folder; give a JSON Lines file")
    records = []
    for n, line in iter_lines(path):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataFormatError(f"{path} line {n}: not JSON ({exc.msg}); write one JSON object per line")
        if not isinstance(record, dict):
            raise DataFormatError(f"{path} line {n}: expected a JSON object, got {type(record).__name__}")
        missing = [k for k in required if not isinstance(record.get(k), str)]
        if missing:
            raise DataFormatError(f"{path} line {n}: missing or non-string field(s) {', '.join(missing)}; "
                                  f"each record needs {', '.join(required)}")
        if either and not any(k in record for k in either):
            raise DataFormatError(f"{path} line {n}: needs one of the fields {' or '.join(either)}")
        _check_fields(record, f"{path} line {n}")
        if record.get("id") is None:  # absent or null: the line number
            record["id"] = str(n)
        records.append(record)
    if not records:
        raise DataFormatError(f"{path}: no records (expected one JSON object per line)")
    return records


def check_out(opts) -> None:
    """Before any work: ``--out`` neither replaces the input nor, without ``--overwrite``, an
    earlier output."""
    if not opts.out:
        return
    out = Path(opts.out)
    if out.is_dir():
        raise InputError(f"--out {out} is a folder; give a file name (e.g. {out / 'predictions.jsonl'})")
    if opts.input and out.exists() and out.resolve() == Path(opts.input).resolve():
        raise InputError(f"--out {out} is the --input file; write the predictions to another file")
    if out.exists() and not opts.overwrite:
        raise InputError(f"--out {out} exists; pass --overwrite to replace it, or choose another file")
    remove_stale_temporaries(out.parent, of=out.name)  # what a killed run left of its atomic write


def _write(records: Iterator[dict], out: Optional[str]) -> int:
    """Write the records as JSON Lines, to a file atomically (a kill leaves the earlier file or
    none, never a cut one); the exit status is 0 (the count goes to the log)."""
    lines = [json.dumps(record, ensure_ascii=False) + "\n" for record in records]
    if out:
        write_atomic(out, "".join(lines))
    else:
        sys.stdout.writelines(lines)
    log.info("%d records written to %s", len(lines), out or "stdout")
    return 0


def _qa_records(opts: QAPredictOptions) -> list[dict]:
    if opts.input:
        if opts.question or opts.context:
            raise InputError("give either --input or --question with --context, not both")
        return read_jsonl(opts.input, ("question", "context"))
    if not (opts.question and opts.context):
        raise InputError("give --question and --context, or --input FILE.jsonl")
    record = {"id": "1", "question": opts.question, "context": opts.context}
    _check_fields(record, "--question/--context")  # bytes that are not UTF-8 reach argv as lone surrogates
    return [record]


def predict_qa(opts: QAPredictOptions) -> int:
    from clism.api import QAPredictor

    if not opts.model:
        raise InputError("give --model, a fine-tuned QA checkpoint directory")
    check_out(opts)
    records = _qa_records(opts)
    predictor = QAPredictor.from_pretrained(opts.model, max_length=opts.max_length, doc_stride=opts.doc_stride,
                                            batch_size=opts.batch_size, max_answer_tokens=opts.max_answer_tokens,
                                            inference_dtype=opts.inference_dtype)
    # In order, by position: ids given by users may repeat.
    answers = predictor.predict([(r["question"], r["context"]) for r in records])
    return _write(({"id": r["id"], "question": r["question"], **a} for r, a in zip(records, answers)), opts.out)


def _ner_records(opts: NERPredictOptions) -> list[dict]:
    if opts.input:
        if opts.text:
            raise InputError("give either --input or --text, not both")
        return read_jsonl(opts.input, (), either=("text", "words"))
    if not opts.text:
        raise InputError("give --text, or --input FILE.jsonl")
    record = {"id": "1", "text": opts.text}
    _check_fields(record, "--text")  # bytes that are not UTF-8 reach argv as lone surrogates
    return [record]


def predict_ner(opts: NERPredictOptions) -> int:
    from clism.api import NERTagger

    if not opts.model:
        raise InputError("give --model, a fine-tuned NER checkpoint directory")
    check_out(opts)
    records = _ner_records(opts)
    tagger = NERTagger.from_pretrained(opts.model, max_length=opts.max_length, batch_size=opts.batch_size,
                                       inference_dtype=opts.inference_dtype)
    tagged = tagger.tag([r["words"] if "words" in r else r["text"] for r in records])
    return _write(({"id": r["id"], **t} for r, t in zip(records, tagged)), opts.out)
