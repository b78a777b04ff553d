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
from typing import Iterator, Optional

from clism.config import option
from clism.benchmarks.textio import DataFormatError
from clism.errors import InputError

log = logging.getLogger(__name__)

@dataclass
class QAPredictOptions:
    model: str = option("", "fine-tuned QA checkpoint (the model/ directory of a `clism finetune qa` seed)")
    question: Optional[str] = option(None, "one question (with --context)")
    context: Optional[str] = option(None, "the passage to answer from")
    input: Optional[str] = option(None, "JSON Lines file of {id, question, context} records")
    out: Optional[str] = option(None, "write JSON Lines here (default: stdout)")
    max_length: int = option(384, "tokens per window", minimum=1)
    doc_stride: int = option(128, "tokens shared by neighbouring windows", minimum=1)
    max_answer_tokens: int = option(30, "longest answer, in tokens")
    batch_size: int = option(0, "windows per inference batch (0: 8 on CPU, 64 on GPU)")


@dataclass
class NERPredictOptions:
    model: str = option("", "fine-tuned NER checkpoint (the model/ directory of a `clism finetune ner` seed)")
    text: Optional[str] = option(None, "one sentence to tag")
    input: Optional[str] = option(None, "JSON Lines file of {id, text} or {id, words} records")
    out: Optional[str] = option(None, "write JSON Lines here (default: stdout)")
    max_length: int = option(128, "tokens per window", minimum=1)
    batch_size: int = option(64, "windows per inference batch", minimum=1)


def read_jsonl(path: str, required: tuple[str, ...], either: tuple[str, ...] = ()) -> list[dict]:
    """Every record of ``path``; a bad line raises an error naming the file, the line and the fix."""
    records = []
    with open(path, encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
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
            record.setdefault("id", str(n))
            records.append(record)
    if not records:
        raise DataFormatError(f"{path}: no records (expected one JSON object per line)")
    return records


def _write(records: Iterator[dict], out: Optional[str]) -> int:
    """Write the records as JSON Lines; the exit status is 0 (the count goes to the log)."""
    fh = open(out, "w", encoding="utf-8") if out else sys.stdout
    n = 0
    try:
        for record in records:
            fh.write(json.dumps(record, ensure_ascii=False) + "\n")
            n += 1
    finally:
        if out:
            fh.close()
    log.info("%d records written to %s", n, out or "stdout")
    return 0


def _qa_records(opts: QAPredictOptions) -> list[dict]:
    if opts.input:
        if opts.question or opts.context:
            raise InputError("give either --input or --question with --context, not both")
        return read_jsonl(opts.input, ("question", "context"))
    if not (opts.question and opts.context):
        raise InputError("give --question and --context, or --input FILE.jsonl")
    return [{"id": "1", "question": opts.question, "context": opts.context}]


def predict_qa(opts: QAPredictOptions) -> int:
    from clism.benchmarks.qa import QAExample
    from clism.tasks.qa.postprocess import predict_spans
    from clism.models.span_model import QUE_TOKEN, load_span_model, saved_head

    if not opts.model:
        raise InputError("give --model, a fine-tuned QA checkpoint directory")
    records = _qa_records(opts)
    head = saved_head(opts.model)
    model, tokenizer = load_span_model(opts.model, head, trained_head=True)
    que_id = tokenizer.convert_tokens_to_ids(QUE_TOKEN) if head == "qass" else None
    # Keyed by position, not by the records' ids: ids given by users may repeat.
    examples = [QAExample(str(i), r["question"], r["context"], []) for i, r in enumerate(records)]
    spans, _ = predict_spans(model, tokenizer, examples, opts.max_length, opts.doc_stride, opts.batch_size,
                             que_id, max_answer_tokens=opts.max_answer_tokens)
    return _write(({"id": r["id"], "question": r["question"], "answer": spans[str(i)].text,
                    "start": spans[str(i)].start, "end": spans[str(i)].end, "score": round(spans[str(i)].score, 4)}
                   for i, r in enumerate(records)), opts.out)


def _ner_records(opts: NERPredictOptions) -> list[dict]:
    if opts.input:
        if opts.text:
            raise InputError("give either --input or --text, not both")
        return read_jsonl(opts.input, (), either=("text", "words"))
    if not opts.text:
        raise InputError("give --text, or --input FILE.jsonl")
    return [{"id": "1", "text": opts.text}]


def entities(words: list[str], tags: list[str], offsets: list[tuple[int, int]] | None, text: str | None) -> list[dict]:
    """Entity spans from IOB2 tags; with ``text``, also their characters and offsets."""
    found, current = [], None
    for i, tag in enumerate([*tags, "O"]):
        if current and (tag == "O" or tag.startswith("B-") or tag[2:] != current["type"]):
            found.append(current)
            current = None
        if tag != "O" and current is None:
            current = {"type": tag[2:], "first_word": i, "last_word": i}
        elif current is not None:
            current["last_word"] = i
    for e in found:
        a, b = e["first_word"], e["last_word"]
        if offsets is not None and text is not None:
            e["start"], e["end"] = offsets[a][0], offsets[b][1]
            e["text"] = text[e["start"]:e["end"]]
        else:
            e["text"] = " ".join(words[a: b + 1])
    return found


def predict_ner(opts: NERPredictOptions) -> int:
    from clism.clism_data.alignment import tokenize
    from clism.benchmarks.ner import NERSentence
    from clism.tasks.ner.run import load_token_classifier, predict_tags

    if not opts.model:
        raise InputError("give --model, a fine-tuned NER checkpoint directory")
    records = _ner_records(opts)
    sentences, offsets = [], []
    for r in records:
        if "words" in r:
            if not isinstance(r["words"], list) or not all(isinstance(w, str) and w.strip() for w in r["words"]):
                raise DataFormatError(f"{opts.input} record {r['id']}: 'words' must be a list of non-empty strings")
            words, spans = r["words"], None
        else:
            spans = tokenize(r["text"])
            words = [r["text"][a:b] for a, b in spans]
        sentences.append(NERSentence(words, ["O"] * len(words)))
        offsets.append(spans)
    model, tokenizer = load_token_classifier(opts.model)
    tags, _ = predict_tags(model, tokenizer, sentences, opts.max_length, opts.batch_size)
    return _write(({"id": r["id"], "words": s.words, "tags": t,
                    "entities": entities(s.words, t, o, r.get("text"))}
                   for r, s, t, o in zip(records, sentences, tags, offsets)), opts.out)
