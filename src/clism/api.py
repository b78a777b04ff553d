"""clism from Python: load a fine-tuned checkpoint and use it, the same code as `clism predict`.

    from clism import QAPredictor, NERTagger

    qa = QAPredictor.from_pretrained("runs/qa/seed-1/model")
    qa("Where was Marie Curie born?", "Marie Curie was born in Warsaw in 1867.")
    # {'answer': 'Warsaw', 'start': 24, 'end': 30, 'score': ...}

    ner = NERTagger.from_pretrained("runs/ner/seed-1/model")
    ner("Angela Merkel visited Paris.")
    # [{'type': 'PER', 'text': 'Angela Merkel', 'start': 0, 'end': 13, ...}, ...]

The head type (linear or QASS) and the ``[QUE]`` token id come from the checkpoint itself;
a folder without the trained head is refused, never used with a random one.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable


@dataclass
class QAPredictor:
    model: object
    tokenizer: object
    head: str
    que_token_id: int | None
    max_length: int = 384
    doc_stride: int = 128
    batch_size: int = 0  # windows per inference batch (0: 8 on CPU, 64 on GPU)
    max_answer_tokens: int = 30
    inference_dtype: str = "auto"  # auto, fp32 or bf16 (clism.models.backbone.inference_precision)

    @classmethod
    def from_pretrained(cls, path: str, **settings) -> "QAPredictor":
        """A checkpoint saved by `clism finetune qa` (or `clism pretrain`, for its span head)."""
        from clism.constants import QUE_TOKEN
        from clism.models.span_model import load_span_model, saved_head

        head = saved_head(path)
        model, tokenizer = load_span_model(path, head, trained_head=True)
        que_id = tokenizer.convert_tokens_to_ids(QUE_TOKEN) if head == "qass" else None
        return cls(model, tokenizer, head, que_id, **settings)

    def predict(self, pairs: Iterable[tuple[str, str]]) -> list[dict]:
        """``[(question, context), ...]`` -> ``[{answer, start, end, score}, ...]``, in order;
        ``start``/``end`` are character offsets into the context."""
        from clism.benchmarks.qa import QAExample
        from clism.models.backbone import inference_dtype
        from clism.tasks.qa.postprocess import predict_spans

        examples = [QAExample(str(i), q, c, []) for i, (q, c) in enumerate(pairs)]
        with inference_dtype(self.inference_dtype):
            spans, _ = predict_spans(self.model, self.tokenizer, examples, self.max_length, self.doc_stride,
                                     self.batch_size, self.que_token_id, max_answer_tokens=self.max_answer_tokens)
        return [{"answer": spans[e.id].text, "start": spans[e.id].start, "end": spans[e.id].end,
                 "score": _finite(spans[e.id].score)} for e in examples]

    def __call__(self, question: str, context: str) -> dict:
        return self.predict([(question, context)])[0]


def _finite(score: float) -> float | None:
    """JSON has no infinity: a passage with no possible answer scores None, not -Infinity."""
    import math

    return round(score, 4) if math.isfinite(score) else None


@dataclass
class NERTagger:
    model: object
    tokenizer: object
    max_length: int = 128
    batch_size: int = 64
    inference_dtype: str = "auto"  # auto, fp32 or bf16 (clism.models.backbone.inference_precision)

    @classmethod
    def from_pretrained(cls, path: str, **settings) -> "NERTagger":
        """A checkpoint saved by `clism finetune ner`."""
        from clism.tasks.ner.run import load_token_classifier

        model, tokenizer = load_token_classifier(path)
        return cls(model, tokenizer, **settings)

    def tag(self, sentences: Iterable[str | list[str]]) -> list[dict]:
        """Each sentence (text, or a list of words) -> ``{words, tags, entities}``. Text is split
        into words as CLISM data is (character clusters for scripts written without spaces);
        entities of text carry character offsets into it."""
        from clism.benchmarks.ner import NERSentence
        from clism.clism_data.alignment import tokenize
        from clism.models.backbone import inference_dtype
        from clism.tasks.ner.run import predict_tags

        inputs, sentences_, offsets = [], [], []
        for sentence in sentences:
            if isinstance(sentence, str):
                spans = tokenize(sentence)
                words = [sentence[a:b] for a, b in spans]
            else:
                words, spans = list(sentence), None
            inputs.append(sentence)
            sentences_.append(NERSentence(words, ["O"] * len(words)))
            offsets.append(spans)
        with inference_dtype(self.inference_dtype):
            tags, _ = predict_tags(self.model, self.tokenizer, sentences_, self.max_length, self.batch_size)
        return [{"words": s.words, "tags": t,
                 "entities": entities(s.words, t, o, x if isinstance(x, str) else None)}
                for x, s, t, o in zip(inputs, sentences_, tags, offsets)]

    def __call__(self, text: str) -> list[dict]:
        return self.tag([text])[0]["entities"]


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


def load(path: str):
    """(model, tokenizer) of any checkpoint clism saved, with its trained head: a QA model
    (linear or QASS head; also the span head of a pre-trained encoder) or an NER token
    classifier. Never a random head: a folder without one is refused."""
    from pathlib import Path

    from clism.errors import InputError
    from clism.models.registry import resolve_model
    from clism.models.span_model import META_FILE, load_span_model, saved_head

    folder = Path(resolve_model(path))
    if (folder / META_FILE).is_file():
        return load_span_model(path, saved_head(path), trained_head=True)
    import json

    architectures = json.loads((folder / "config.json").read_text()).get("architectures") or [] \
        if (folder / "config.json").is_file() else []
    if any(a.endswith("ForTokenClassification") for a in architectures):
        from clism.tasks.ner.run import load_token_classifier

        return load_token_classifier(path)
    raise InputError(f"{path} holds no model that clism trained (no {META_FILE}, no token classifier): give the "
                     "model/ folder of a `clism finetune` seed or of `clism pretrain`")
