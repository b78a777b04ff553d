"""`clism predict qa|ner` on new text: offsets that point into the input, any script, clear input errors."""
import json
import subprocess

import pytest
import torch
from transformers import BertConfig, BertForTokenClassification

import tiny_models
from clism.cli import main
from clism.clism_data.alignment import tokenize
from clism.models.span_model import load_span_model
from clism.api import entities
from conftest import write
from test_qa_task import SCRIPTS, tiny_checkpoint


def qa_checkpoint(tmp_path):
    torch.manual_seed(0)
    model, tokenizer = load_span_model(str(tiny_checkpoint(tmp_path / "base")), "qass")
    return model.save(tmp_path / "qa-model", tokenizer)


def test_predict_qa_answers_are_slices_of_each_passage(tmp_path, capsys):
    model_dir = qa_checkpoint(tmp_path)
    records = [{"id": lang, "question": q, "context": c} for lang, c, _, q in SCRIPTS]
    records.insert(2, {"question": "Where?", "context": "Paris is in France."})  # no id: the line number
    records.append({"id": "th", "question": "Who?", "context": "Ada Lovelace wrote the first program."})  # id reused
    source = write(tmp_path / "in.jsonl", "\n".join(json.dumps(r, ensure_ascii=False) for r in records) + "\n")
    out = tmp_path / "out.jsonl"
    assert main(["predict", "qa", "--model", str(model_dir), "--input", str(source), "--out", str(out),
                 "--max-length", "64", "--doc-stride", "16"]) == 0
    answers = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert [a["id"] for a in answers] == ["th", "zh", "3", "ar", "hi", "vi", "th"]
    for a, r in zip(answers, records):  # each answer comes from its own passage, even where ids repeat
        assert a["answer"] and r["context"][a["start"]:a["end"]] == a["answer"]
    # one pair from the command line, to stdout
    capsys.readouterr()
    assert main(["predict", "qa", "--model", str(model_dir), "--question", "Where?",
                 "--context", "Paris is in France."]) == 0
    (line,) = capsys.readouterr().out.splitlines()
    assert "Paris is in France."[json.loads(line)["start"]:json.loads(line)["end"]] == json.loads(line)["answer"]


def test_predict_qa_rejects_bad_input_and_models_without_a_head(tmp_path, capsys):
    model_dir = qa_checkpoint(tmp_path)
    bad = write(tmp_path / "bad.jsonl", '{"question": "a", "context": "b"}\n{"question": "no context"}\n')
    assert main(["predict", "qa", "--model", str(model_dir), "--input", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "bad.jsonl line 2" in err and "context" in err
    assert main(["predict", "qa", "--model", str(tmp_path / "base"), "--question", "a", "--context", "b"]) == 2
    assert "holds no span head" in capsys.readouterr().err


def test_entities_carry_character_offsets_even_without_spaces():
    text = "习近平在北京会见了普京。"
    spans = tokenize(text)
    words = [text[a:b] for a, b in spans]
    tags = ["B-PER", "I-PER", "I-PER", "O", "B-LOC", "I-LOC", "O", "O", "O", "B-PER", "I-PER", "O"]
    found = entities(words, tags, spans, text)
    assert [(e["type"], e["text"]) for e in found] == [("PER", "习近平"), ("LOC", "北京"), ("PER", "普京")]
    assert all(text[e["start"]:e["end"]] == e["text"] for e in found)
    # a type change ends an entity even without a B- tag; pre-split words are joined with spaces
    assert [e["text"] for e in entities(["New", "York", "Times"], ["B-LOC", "I-LOC", "I-ORG"], None, None)] == \
        ["New York", "Times"]


def ner_checkpoint(tmp_path):
    tokenizer = tiny_models.tiny_tokenizer()
    labels = ["O", "B-PER", "I-PER"]
    config = BertConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=64, num_labels=3, id2label=dict(enumerate(labels)),
                        label2id={label: i for i, label in enumerate(labels)})
    torch.manual_seed(0)
    BertForTokenClassification(config).save_pretrained(tmp_path / "ner")
    tokenizer.save_pretrained(tmp_path / "ner")
    return tmp_path / "ner"


def test_predict_ner_tags_every_word(tmp_path):
    ner_checkpoint(tmp_path)
    source = write(tmp_path / "in.jsonl", json.dumps({"id": "zh", "text": "习近平在北京会见了普京。"}, ensure_ascii=False)
                   + "\n" + json.dumps({"words": ["Angela", "Merkel", "spoke"]}) + "\n")
    out = tmp_path / "out.jsonl"
    assert main(["predict", "ner", "--model", str(tmp_path / "ner"), "--input", str(source), "--out", str(out)]) == 0
    zh, words = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert zh["id"] == "zh" and len(zh["words"]) == 12 and len(zh["tags"]) == 12
    assert words["id"] == "2" and words["words"] == ["Angela", "Merkel", "spoke"] and len(words["tags"]) == 3
    assert all(t == "O" or t[2:] == "PER" for t in zh["tags"] + words["tags"])


def test_a_checkpoint_without_a_trained_head_is_refused_not_used_at_random(tmp_path, capsys):
    base = tmp_path / "base"
    model, tokenizer = tiny_models.tiny_model(hidden_size=32, num_layers=1)
    model.save_pretrained(base)
    tokenizer.save_pretrained(base)
    assert main(["predict", "qa", "--model", str(base), "--question", "Q?", "--context", "C."]) == 2
    assert "holds no span head" in capsys.readouterr().err
    assert main(["evaluate", "qa", "--model", str(base)]) == 2
    assert "holds no span head, not a trained linear head" in capsys.readouterr().err
    assert main(["evaluate", "qa", "--model", str(base), "--head", "qass"]) == 2
    assert "holds no span head, not a trained qass head" in capsys.readouterr().err
    assert main(["predict", "ner", "--model", str(base), "--text", "Anna lives in Rome."]) == 2
    assert "holds no trained NER classifier" in capsys.readouterr().err
    assert main(["predict", "qa", "--model", str(tmp_path / "typo"), "--question", "Q?", "--context", "C."]) == 2
    assert "typo: no such checkpoint folder" in capsys.readouterr().err


def test_the_python_api_gives_the_answers_of_clism_predict(tmp_path, capsys):
    import clism

    model_dir = qa_checkpoint(tmp_path)
    qa = clism.QAPredictor.from_pretrained(str(model_dir), max_length=64, doc_stride=16)
    assert qa.head == "qass" and qa.que_token_id == qa.tokenizer.convert_tokens_to_ids("[QUE]")  # from the checkpoint
    pairs = [(q, c) for _, c, _, q in SCRIPTS]
    answers = qa.predict(pairs)
    source = write(tmp_path / "in.jsonl", "\n".join(json.dumps({"question": q, "context": c}, ensure_ascii=False)
                                                    for q, c in pairs) + "\n")
    capsys.readouterr()
    assert main(["predict", "qa", "--model", str(model_dir), "--input", str(source), "--max-length", "64",
                 "--doc-stride", "16"]) == 0
    printed = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [{k: p[k] for k in ("answer", "start", "end", "score")} for p in printed] == answers
    assert qa(*pairs[1]) == answers[1]


def test_clism_load_gives_the_whole_model_and_the_commands_as_functions(tmp_path):
    import clism
    from clism.errors import InputError
    from clism.models.span_model import SpanExtractionModel

    model, tokenizer = clism.load(str(qa_checkpoint(tmp_path)))
    assert isinstance(model, SpanExtractionModel) and model.head_type == "qass"
    base = tmp_path / "base"
    bare, tok = tiny_models.tiny_model(hidden_size=32, num_layers=1)
    bare.save_pretrained(base)
    tok.save_pretrained(base)
    with pytest.raises(InputError, match="holds no model that clism trained"):
        clism.load(str(base))
    # every command as a function with its options dataclass
    assert clism.finetune_qa.__name__ == "run_finetune" and "head" in clism.QAFinetuneOptions.__dataclass_fields__
    assert callable(clism.build_data) and callable(clism.pretrain) and callable(clism.finetune_ner)


def test_an_output_file_is_never_replaced_silently_nor_left_cut(tmp_path, capsys):
    """--out that exists needs --overwrite; --out that is the input is refused; the file is
    written atomically, so a kill leaves the earlier file or none (never a cut one)."""
    import clism.tasks.predict as predict

    model_dir = qa_checkpoint(tmp_path)
    source = write(tmp_path / "in.jsonl", json.dumps({"id": "1", "question": "Where?", "context": "In Paris."}) + "\n")
    out = tmp_path / "out.jsonl"
    args = ["predict", "qa", "--model", str(model_dir), "--input", str(source), "--max-length", "64"]
    assert main(args + ["--out", str(out)]) == 0
    first = out.read_bytes()
    assert main(args + ["--out", str(out)]) == 2
    assert "exists; pass --overwrite" in capsys.readouterr().err
    assert main(args + ["--out", str(source), "--overwrite"]) == 2
    assert "is the --input file" in capsys.readouterr().err
    assert json.loads(source.read_text())["question"] == "Where?"  # the input is untouched

    real = predict.write_atomic
    gone = _ended_pid()
    litter = tmp_path / f".{out.name}.{gone}.tmp"  # what a kill leaves beside: write_atomic's name, a dead pid
    neighbour = tmp_path / f".other.jsonl.{gone}.tmp"  # not this command's file: left alone

    def killed_while_writing(path, text):
        litter.write_text(text[: len(text) // 2])
        raise KeyboardInterrupt

    predict.write_atomic = killed_while_writing
    try:
        assert main(args + ["--out", str(out), "--overwrite"]) == 130
    finally:
        predict.write_atomic = real
    assert out.read_bytes() == first  # the earlier file, whole
    neighbour.write_text("x")
    assert main(args + ["--out", str(out), "--overwrite"]) == 0 and out.read_bytes() == first
    assert not litter.exists() and neighbour.exists()  # the rerun sweeps its own cut temporary, only its own


def _ended_pid() -> int:
    process = subprocess.Popen(["true"])
    process.wait()
    return process.pid


@pytest.mark.parametrize("record, message", [
    ({"id": 1.5, "question": "Q?", "context": "C."}, "'id' is 1.5; write it as a string"),
    ({"id": ["a"], "question": "Q?", "context": "C."}, "'id' is [\"a\"]"),
    ({"id": "1", "question": "Q?", "context": "a \ud800 b"}, "'context' holds a lone surrogate"),
])
def test_bad_record_values_are_named_not_passed_on(tmp_path, capsys, record, message):
    """Each of these used to reach the output unchecked (a float id) or end in a traceback."""
    source = tmp_path / "in.jsonl"
    source.write_text(json.dumps(record) + "\n", encoding="utf-8")  # json.dumps escapes the surrogate as \ud800
    assert main(["predict", "qa", "--model", str(qa_checkpoint(tmp_path)), "--input", str(source)]) == 2
    err = capsys.readouterr().err
    assert f"{source} line 1: {message}" in err and "Traceback" not in err


def test_ner_text_must_be_text(tmp_path, capsys):
    model = ner_checkpoint(tmp_path)
    for record, message in (({"text": None}, "'text' must be a non-empty string, got null"),
                            ({"text": "a \ud800"}, "'text' holds a lone surrogate"),
                            ({"words": ["a", 3]}, "'words' must be a list of non-empty strings")):
        source = tmp_path / "in.jsonl"
        source.write_text(json.dumps(record) + "\n")
        assert main(["predict", "ner", "--model", str(model), "--input", str(source)]) == 2
        assert message in capsys.readouterr().err
    assert main(["predict", "ner", "--model", str(model), "--text", "a \udced b"]) == 2  # argv's undecodable bytes
    assert "--text: 'text' holds a lone surrogate" in capsys.readouterr().err
    source.write_text(json.dumps({"id": None, "text": "Anna lives in Paris."}) + "\n")  # null: the line number
    out = tmp_path / "out.jsonl"
    assert main(["predict", "ner", "--model", str(model), "--input", str(source), "--out", str(out)]) == 0
    assert json.loads(out.read_text())["id"] == "1"


def test_no_answer_is_written_as_strict_json(tmp_path):
    """A passage with nothing to answer from has no best span: its score is null, never the
    -Infinity that Python's json writes and other JSON readers refuse."""
    source = write(tmp_path / "in.jsonl", json.dumps({"id": "a", "question": "Q?", "context": " "}) + "\n")
    out = tmp_path / "out.jsonl"
    assert main(["predict", "qa", "--model", str(qa_checkpoint(tmp_path)), "--input", str(source),
                 "--out", str(out)]) == 0

    def refuse(constant):
        raise AssertionError(f"{constant} is not JSON")

    record = json.loads(out.read_text(), parse_constant=refuse)
    assert record["answer"] == "" and record["score"] is None and record["start"] == -1


def test_heads_created_on_purpose_are_one_quiet_line_not_transformers_tables(tmp_path, capfd, caplog):
    import logging

    from clism.models.backbone import load_backbone

    base = tmp_path / "base"
    model, tokenizer = tiny_models.tiny_model()
    model.save_pretrained(base)
    tokenizer.save_pretrained(base)
    capfd.readouterr()
    with caplog.at_level(logging.INFO, logger="clism.models.backbone"):
        _, _, created = load_backbone(str(base), "token-classification", num_labels=3)
    printed = "".join(capfd.readouterr())
    assert created == {"classifier.weight", "classifier.bias"}
    assert "MISSING" not in printed and "LOAD REPORT" not in printed and "newly initialized" not in printed
    assert "created 2 weights the checkpoint does not hold (classifier), as intended" in caplog.text


def test_inference_dtype_turns_bf16_autocast_on_where_asked_and_refuses_others(tmp_path, capsys):
    from clism.models.backbone import inference_dtype, inference_precision

    cpu = torch.device("cpu")
    with inference_precision(cpu):
        assert not torch.is_autocast_enabled("cpu")  # auto: fp32 on a CPU, results as before
    with inference_dtype("bf16"), inference_precision(cpu):
        assert torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == torch.bfloat16
    with inference_dtype("fp32"), inference_precision(cpu):
        assert not torch.is_autocast_enabled("cpu")
    model = qa_checkpoint(tmp_path)
    args = ["predict", "qa", "--model", str(model), "--question", "Where?", "--context", "Paris is in France."]
    assert main(args + ["--inference-dtype", "fp16"]) == 2
    assert "--inference-dtype 'fp16': choose one of auto, fp32, bf16" in capsys.readouterr().err
    assert main(args + ["--inference-dtype", "bf16"]) == 0
    answer = json.loads(capsys.readouterr().out)
    assert "Paris is in France."[answer["start"]:answer["end"]] == answer["answer"]
