"""CLISM + CACR + MLM pre-training on a tiny model: losses, switches, resume, NaN, saving."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import tiny_models
from clism.clism_data.instance import Instance
from clism.pretraining.data import PairTemplate, build_pretrain_features, mask_tokens
from clism.pretraining.model import CLISMPretrainModel
from clism.pretraining.train import PretrainOptions, pretrain
from clism.training.engine import read_log

PEOPLE = [("Anna", "Anna"), ("Omar", "Omar"), ("Li Wei", "Li Wei"), ("Maria", "Maria"), ("Jonas", "Jonas")]
PLACES = [("Berlin", "Berlin"), ("Vienna", "Wien"), ("Rome", "Rom"), ("Cairo", "Kairo"), ("Paris", "Paris"),
          ("Lisbon", "Lissabon"), ("Prague", "Prag"), ("Warsaw", "Warschau")]


def records() -> list[dict]:
    out = []
    for i, (p_en, p_de) in enumerate(PEOPLE):
        for j, (c_en, c_de) in enumerate(PLACES):
            en = f"{p_en} lives in {c_en}."
            de = f"In {c_de} wohnt {p_de}."
            out.append({
                "id": f"de-{i}-{j}", "lang": "de", "source": "test", "en": en,
                "en_masked": "[QUE] lives in [QUE].", "target": de,
                "answers": [
                    {"text": p_de, "start": de.index(p_de, 3 + len(c_de)), "end": de.index(p_de, 3 + len(c_de)) + len(p_de),
                     "type": "PERSON", "score": 1.0, "en_text": p_en, "en_start": 0, "en_end": len(p_en)},
                    {"text": c_de, "start": 3, "end": 3 + len(c_de), "type": "GPE", "score": 1.0, "en_text": c_en,
                     "en_start": en.index(c_en), "en_end": en.index(c_en) + len(c_en)},
                ],
            })
    return out


def instances() -> list[Instance]:
    return [Instance.from_json(r) for r in records()]


@pytest.fixture
def data_dir(tmp_path) -> Path:
    d = tmp_path / "data"
    (d / "instances").mkdir(parents=True)
    (d / "instances" / "de-00000.jsonl").write_text("".join(json.dumps(x) + "\n" for x in records()))
    return d


@pytest.fixture
def base(tmp_path) -> Path:
    model, tokenizer = tiny_models.tiny_model(hidden_size=32, num_layers=2)
    model.save_pretrained(tmp_path / "base")
    tokenizer.save_pretrained(tmp_path / "base")
    return tmp_path / "base"


def opts(base, data_dir, out, **kw) -> PretrainOptions:
    # MLM on, as the paper has it, though the tiny base has no MLM head (off by default for such)
    settings = dict(model=str(base), data=str(data_dir), out=str(out), batch_size=8, max_steps=12, warmup_steps=0,
                    lr=3e-3, checkpoint_every=4, log_every=1, dropout=0.0, mlm=True)
    settings.update(kw)
    return PretrainOptions(**settings)


def test_features_point_each_que_at_its_answer(base):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(base)
    tokenizer.add_special_tokens({"additional_special_tokens": ["[QUE]"]})
    que = tokenizer.convert_tokens_to_ids("[QUE]")
    features, stats = build_pretrain_features(instances()[:3], tokenizer, que, max_side_tokens=64)
    for inst, f in zip(instances()[:3], features):
        assert [f.joint_ids[q] for q in f.que_positions] == [que, que]
        answers = [tokenizer.decode(f.joint_ids[a: b + 1]).replace(" ", "") for a, b in zip(f.answer_starts, f.answer_ends)]
        assert answers == [a.text.replace(" ", "") for a in inst.answers]
    assert stats["answers_used"] == 6


def test_truncation_drops_and_counts_answers(base):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(base)
    tokenizer.add_special_tokens({"additional_special_tokens": ["[QUE]"]})
    que = tokenizer.convert_tokens_to_ids("[QUE]")
    # the tiny tokenizer is per character: 12 target tokens keep "In Wien wohnt" but cut "Anna."
    features, stats = build_pretrain_features([instances()[1]], tokenizer, que, max_side_tokens=12)
    assert stats["answers_dropped_target_truncated"] == 1 and stats["answers_used"] == 1
    assert features[0].answer_starts[0] == -100  # the person's [QUE] stays, ignored in the loss
    # 5 English tokens cut the second [QUE] itself
    features, stats = build_pretrain_features([instances()[1]], tokenizer, que, max_side_tokens=5)
    assert stats["answers_dropped_que_truncated"] == 1 and len(features[0].que_positions) == 1


def test_mlm_masking_spares_que_answers_and_specials():
    ids = torch.arange(10, 30).unsqueeze(0)
    candidates = torch.ones_like(ids, dtype=torch.bool)
    candidates[0, :5] = False
    masked, labels = mask_tokens(ids, candidates, mask_id=4, vocab_size=50,
                                 generator=torch.Generator().manual_seed(0), probability=0.5)
    assert (labels[0, :5] == -100).all() and (masked[0, :5] == ids[0, :5]).all()
    chosen = labels != -100
    assert chosen.sum() > 3 and (labels[chosen] == ids[chosen]).all()


def test_full_run_losses_fall_and_checkpoint_loads_for_finetuning(base, data_dir, tmp_path):
    out = tmp_path / "full"
    pretrain(opts(base, data_dir, out, max_steps=30))
    log = read_log(out)
    first, last = log[0], log[-1]
    assert last["loss_clism"] < 0.7 * first["loss_clism"]
    assert last["loss_cacr"] < first["loss_cacr"]
    assert last["loss_mlm"] > 0 and 0 <= last["data_wait_share"] < 1
    # the summary says how far each part moved from where it started, layer by layer
    from safetensors.torch import load_file

    moved = json.loads((out / "summary.json").read_text())["moved"]
    assert set(moved) == {"encoder_emb", "encoder_L00", "encoder_L01", "head"}
    assert moved["head"] == log[-1]["head_moved"] and all(v > 0 for v in moved.values())
    before = load_file(str(base / "model.safetensors"))
    after = load_file(str(out / "model" / "model.safetensors"))
    layer = [k for k in before if ".layer.1." in k]  # every weight of layer 1, read back from the files
    change = sum(float((after[k] - before[k]).pow(2).sum()) for k in layer) ** 0.5
    assert moved["encoder_L01"] == pytest.approx(change / sum(float(before[k].pow(2).sum()) for k in layer) ** 0.5,
                                                 abs=1e-5)
    from clism.models.span_model import load_span_model
    from clism.tasks.ner.run import load_token_classifier

    model, tokenizer = load_span_model(str(out / "model"), "qass")
    from safetensors.torch import load_file

    saved = load_file(str(out / "model" / "span_head.safetensors"))
    assert torch.equal(model.head.start_query.weight, saved["start_query.weight"])
    trained = load_file(str(out / "model" / "model.safetensors"))
    layer = "encoder.layer.1.output.dense.weight"
    assert torch.equal(model.encoder.state_dict()[layer], trained[layer])  # pre-trained, not re-initialised
    assert tokenizer.convert_tokens_to_ids("[QUE]") == len(tokenizer) - 1
    classifier, _ = load_token_classifier(str(out / "model"), ["O", "B-PER", "I-PER"])
    assert classifier.config.num_labels == 3


def test_the_checkpoint_keeps_the_source_architecture_and_its_created_mlm_head_apart(base, data_dir, tmp_path):
    """The source is a bare encoder (as multilingual-e5 is): AutoModel loads the pre-trained
    checkpoint with nothing unexpected or missing, and a second pre-training from it takes up
    the MLM head clism trained, from mlm_head.safetensors."""
    import json

    from transformers import AutoModel

    pretrain(opts(base, data_dir, tmp_path / "one", max_steps=3))
    folder = tmp_path / "one" / "model"
    assert json.loads((folder / "config.json").read_text())["architectures"] == ["BertModel"]
    _, info = AutoModel.from_pretrained(folder, add_pooling_layer=False, output_loading_info=True)
    assert not any(info[k] for k in ("missing_keys", "unexpected_keys", "mismatched_keys"))
    from clism.pretraining.train import load_pretrain_model
    from safetensors.torch import load_file

    saved = load_file(str(folder / "mlm_head.safetensors"))
    assert saved and not any("decoder.weight" in k for k in saved)  # tied to the word embeddings: not copied
    model, *_, fresh = load_pretrain_model(opts(folder, data_dir, tmp_path / "two"))
    assert all(torch.equal(model.mlm_head_weights()[k], v) for k, v in saved.items())
    assert not any(name.startswith("mlm_model.cls") for name in fresh)  # trained once: not fresh any more


@pytest.mark.parametrize("switches", [dict(clism=False), dict(cacr=False), dict(mlm=False),
                                      dict(clism=False, cacr=False)])
def test_each_term_can_be_switched_off(base, data_dir, tmp_path, switches):
    out = tmp_path / "ablation"
    pretrain(opts(base, data_dir, out, max_steps=2, **switches))
    last = read_log(out)[-1]
    for term in ("clism", "cacr", "mlm"):
        if not switches.get(term, True):
            assert last[f"loss_{term}"] == 0.0
        else:
            assert last[f"loss_{term}"] > 0.0


def test_nan_stops_with_a_message_and_keeps_the_last_checkpoint(base, data_dir, tmp_path, monkeypatch):
    real = CLISMPretrainModel.forward
    calls = {"n": 0}

    def poisoned(self, *args, **kwargs):
        out = real(self, *args, **kwargs)
        calls["n"] += 1
        if calls["n"] == 6:
            out["loss"] = out["loss"] * float("nan")
        return out

    monkeypatch.setattr(CLISMPretrainModel, "forward", poisoned)
    out = tmp_path / "nan"
    with pytest.raises(FloatingPointError, match="at step 6.*last good checkpoint"):
        pretrain(opts(base, data_dir, out))
    assert json.loads((out / "checkpoint" / "trainer_state.json").read_text())["step"] == 4


def _state(path: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(path / "model" / "model.safetensors"))


def _step(path: Path) -> int:
    try:
        return json.loads(path.read_text())["step"]
    except (json.JSONDecodeError, OSError):  # caught between the rename and the write
        return -1


def test_sigkill_and_resume_gives_the_weights_of_an_uninterrupted_run(base, data_dir, tmp_path):
    settings = ["--model", str(base), "--data", str(data_dir), "--batch-size", "8", "--max-steps", "40",
                "--warmup-steps", "2", "--lr", "3e-3", "--checkpoint-every", "4", "--dropout", "0.1"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "-m", "clism.cli", "pretrain"]
    subprocess.run(cmd + settings + ["--out", str(tmp_path / "straight")], check=True, env=env,
                   capture_output=True)
    killed = tmp_path / "killed"
    proc = subprocess.Popen(cmd + settings + ["--out", str(killed)], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    step_file = killed / "checkpoint" / "trainer_state.json"
    while time.time() < deadline:
        if step_file.is_file() and _step(step_file) >= 8:
            break
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    stopped_at = _step(step_file)
    assert 8 <= stopped_at < 40, "the run was to be killed part way"
    resumed = subprocess.run(cmd + settings + ["--out", str(killed), "--resume"], check=True, env=env,
                             capture_output=True, text=True)
    assert f"resumed at step {stopped_at}" in resumed.stderr  # not a silent restart from scratch
    a, b = _state(tmp_path / "straight"), _state(killed)
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    steps = [r["step"] for r in read_log(killed)]
    assert steps == sorted(set(steps)) and steps[-1] == 40
    # how far each layer moved is measured from the loaded encoder, not from the checkpoint resumed
    moved = json.loads((killed / "summary.json").read_text())["moved"]
    assert moved == json.loads((tmp_path / "straight" / "summary.json").read_text())["moved"]


def test_cacr_negatives_are_gathered_across_two_processes(tmp_path):
    import socket

    with socket.socket() as s:  # a free port for the two processes to meet on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    script = Path(__file__).with_name("_gather_worker.py")
    result = subprocess.run([sys.executable, str(script), str(tmp_path)], capture_output=True, text=True,
                            timeout=180, env={**os.environ, "GATHER_PORT": str(port)})
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads((tmp_path / "gather.json").read_text())
    assert report["distributed_equals_full_batch"] and report["negatives_seen"] == 8


def test_pair_template_of_bert_and_xlmr_styles(base):
    from transformers import AutoTokenizer

    t = PairTemplate.of(AutoTokenizer.from_pretrained(base))
    assert t.pair_prefix == [0] and t.pair_middle == [2, 2] and t.pair_suffix == [2]
    assert (t.single_prefix, t.single_suffix) == ([0], [2])


def test_a_rerun_continues_refuses_other_settings_or_overwrites(base, data_dir, tmp_path):
    from clism.config import ConfigError

    out = tmp_path / "rerun"
    first = pretrain(opts(base, data_dir, out, max_steps=4))
    stamp = (out / "model" / "model.safetensors").stat().st_mtime_ns
    assert pretrain(opts(base, data_dir, out, max_steps=4)) == first  # finished: nothing to do
    assert (out / "model" / "model.safetensors").stat().st_mtime_ns == stamp
    with pytest.raises(ConfigError, match=r"lr: 0.003 then, 0.001 now.*--overwrite"):
        pretrain(opts(base, data_dir, out, max_steps=4, lr=1e-3))
    with pytest.raises(ConfigError, match=r"lr: 0.003 then, 0.001 now.*--overwrite"):  # no checkpoint either
        pretrain(opts(base, data_dir, out, max_steps=4, lr=1e-3, checkpoint_every=0))
    again = pretrain(opts(base, data_dir, out, max_steps=4, lr=1e-3, overwrite=True))
    assert again["identity"]["lr"] == 1e-3 and [r["step"] for r in read_log(out)] == [1, 2, 3, 4]


def test_two_processes_train_like_one_with_the_same_global_batch(base, data_dir, tmp_path):
    """The same loop on one process or several: with the global batch split over two CPU processes
    (gloo), losses and weights match one process's (MLM off: its masks are drawn per process)."""
    from safetensors.torch import load_file

    settings = ["--model", str(base), "--data", str(data_dir), "--batch-size", "8", "--max-steps", "6",
                "--warmup-steps", "0", "--lr", "3e-3", "--dropout", "0", "--checkpoint-every", "3", "--mlm", "false",
                "--log-every", "1"]
    env = {**os.environ, "ACCELERATE_USE_CPU": "true", "OMP_NUM_THREADS": "1"}
    two = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "-m", "clism.cli",
                          "pretrain", *settings, "--out", str(tmp_path / "two")], env=env, capture_output=True,
                         text=True, timeout=300)
    assert two.returncode == 0, two.stderr[-3000:]
    subprocess.run([sys.executable, "-m", "clism.cli", "pretrain", *settings, "--out", str(tmp_path / "one")],
                   env=env, check=True, capture_output=True, timeout=300)
    state = json.loads((tmp_path / "two" / "checkpoint" / "trainer_state.json").read_text())
    assert state["identity"]["world_size"] == 2
    logs = [read_log(tmp_path / name) for name in ("two", "one")]
    assert [r["step"] for r in logs[0]] == [1, 2, 3, 4, 5, 6]  # one log, written once
    assert [r["loss"] for r in logs[0]] == pytest.approx([r["loss"] for r in logs[1]], abs=1e-4)
    a, b = (load_file(str(tmp_path / name / "model" / "model.safetensors")) for name in ("two", "one"))
    assert max(float((a[k] - b[k]).abs().max()) for k in a) < 1e-3


def test_que_takes_the_space_before_it_so_no_lone_metaspace_token_precedes_it(base):
    """Without lstrip, SentencePiece-style tokenizers emit a bare "▁" before every [QUE]."""
    from transformers import AutoModel, AutoTokenizer

    from clism.models.span_model import ensure_que_token

    tokenizer = AutoTokenizer.from_pretrained(base)
    que = ensure_que_token(tokenizer, AutoModel.from_pretrained(base))
    tokens = tokenizer.backend_tokenizer.encode("Anna lives in [QUE] today.", add_special_tokens=False)
    at = tokens.ids.index(que)
    assert tokens.tokens[at - 1] != "\u2581" and tokens.tokens[at - 1].endswith("n")
    assert tokens.tokens[at + 1] == "\u2581t"  # the word after keeps its own space


def test_cacr_pools_each_segment_over_its_own_tokens(base):
    """r̂s: the English segment less its [QUE]s; rs: the separate English input less <s> and </s>."""
    from transformers import AutoTokenizer

    from clism.pretraining.data import collate_pretrain

    tokenizer = AutoTokenizer.from_pretrained(base)
    tokenizer.add_special_tokens({"additional_special_tokens": ["[QUE]"]})
    que = tokenizer.convert_tokens_to_ids("[QUE]")
    features, _ = build_pretrain_features(instances()[:2], tokenizer, que, max_side_tokens=64)
    batch = collate_pretrain(features, tokenizer.pad_token_id, set(tokenizer.all_special_ids))
    for i, f in enumerate(features):
        english = batch["joint_ids"][i][batch["english_segment"][i]].tolist()
        assert que not in english and len(english) == f.english_end - f.english_start - len(f.que_positions)
        alone = batch["english_ids"][i][batch["english_alone"][i]].tolist()
        assert alone == f.english_ids[1:-1]  # <s> ... </s> without the two


def test_an_encoder_without_an_mlm_head_by_default_skips_mlm_and_keeps_its_word_embeddings_fixed(
        base, data_dir, tmp_path, caplog):
    from transformers import BertForMaskedLM

    headless = opts(base, data_dir, tmp_path / "a", mlm=None).resolved()  # a bare BertModel
    assert headless.freeze_word_embeddings is True and headless.mlm is False
    with_head = tmp_path / "with-head"
    model, tokenizer = tiny_models.tiny_model()
    BertForMaskedLM(model.config).save_pretrained(with_head)
    tokenizer.save_pretrained(with_head)
    own = opts(with_head, data_dir, tmp_path / "b", mlm=None).resolved()
    assert own.freeze_word_embeddings is False and own.mlm is True
    asked = opts(base, data_dir, tmp_path / "c", freeze_word_embeddings=False, mlm=True).resolved()
    assert asked.freeze_word_embeddings is False and asked.mlm is True
    # the defaults in a run: a notice, no MLM loss, and the word embeddings of the saved model
    # are those it started from
    with caplog.at_level("WARNING", logger="clism.pretraining.train"):
        pretrain(opts(base, data_dir, tmp_path / "run", max_steps=2, mlm=None))
    assert "pre-training without the masked-LM loss" in caplog.text and "--mlm true" in caplog.text
    assert all(r["loss_mlm"] == 0 for r in read_log(tmp_path / "run"))
    from safetensors.torch import load_file

    before = load_file(str(base / "model.safetensors"))["embeddings.word_embeddings.weight"]
    after = load_file(str(tmp_path / "run" / "model" / "model.safetensors"))
    after = next(v for k, v in after.items() if k.endswith("word_embeddings.weight"))
    que = after.shape[0] - 1  # [QUE], added after the vocabulary, starts as the mean row and stays there
    assert torch.equal(after[:que], before) and torch.allclose(after[que], before.mean(0))
