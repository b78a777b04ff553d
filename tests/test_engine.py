"""The one training engine: parameter groups, head warm-up, resume after a kill, run folders
that refuse other settings, and saved configs that reproduce a run."""
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
from clism.cli import main
from clism.config import ConfigError, load_file
from clism.tasks.qa.features import build_features, collate
from clism.models.span_model import SpanExtractionModel, ensure_que_token
from clism.training.engine import Job, length_grouped_batches, read_log, shuffled_batches, train
from clism.training.settings import TrainSettings
from conftest import squad_json, write
from test_qa_task import SCRIPTS, examples_for, tiny_checkpoint


def qa_job(seed: int = 0):
    torch.manual_seed(seed)
    encoder, tokenizer = tiny_models.tiny_model(hidden_size=32, num_layers=1)
    que_id = ensure_que_token(tokenizer, encoder)
    model = SpanExtractionModel(encoder, "qass")
    features, _ = build_features(examples_for(SCRIPTS), tokenizer, max_length=96, que_token_id=que_id,
                                 training=True)
    return Job("qa", model, features, lambda b, step, micro: collate(b, tokenizer.pad_token_id, True),
               length_grouped_batches([len(f.input_ids) for f in features], 2, seed=1),
               is_head=lambda name: name.startswith("head."))


def test_the_head_gets_its_own_learning_rate(tmp_path):
    job = qa_job()
    train(job, TrainSettings(lr=1e-3, head_lr_scale=20, batch_size=2, max_steps=3, warmup_ratio=0.0,
                             log_every=1, checkpoint_every=0), seed=1, out=tmp_path / "run")
    first = read_log(tmp_path / "run")[0]
    assert first["lr_head"] == pytest.approx(20 * first["lr_encoder"])
    assert first["lr_encoder"] == pytest.approx(1e-3 * 2 / 3)  # linear decay over 3 steps, after step 1
    assert first["head_moved"] > 0


def test_layer_wise_decay_slows_the_lower_layers_and_leaves_the_head_alone():
    from clism.training.engine import parameter_groups

    torch.manual_seed(0)
    encoder, _ = tiny_models.tiny_model(hidden_size=32, num_layers=3)
    model = SpanExtractionModel(encoder, "qass")
    settings = TrainSettings(lr=1e-3, layer_lr_decay=0.5, head_lr_scale=4)
    lrs = {g["name"]: g["lr"] for g in parameter_groups(model, settings, lambda n: n.startswith("head."))}
    # top layer (2 of 3) at lr, then halving per layer down to the embeddings
    assert lrs["encoder_L02"] == pytest.approx(1e-3) and lrs["encoder_L01"] == pytest.approx(5e-4)
    assert lrs["encoder_L00"] == pytest.approx(2.5e-4) and lrs["encoder_emb"] == pytest.approx(1.25e-4)
    assert lrs["encoder_L00_no_decay"] == lrs["encoder_L00"] and lrs["head"] == pytest.approx(4e-3)
    every = [p for g in parameter_groups(model, settings, lambda n: n.startswith("head.")) for p in g["params"]]
    assert len(every) == len(set(map(id, every))) == len([p for p in model.parameters() if p.requires_grad])
    # without decay: one encoder group, as before
    names = [g["name"] for g in parameter_groups(model, TrainSettings(lr=1e-3), lambda n: n.startswith("head."))]
    assert names == ["encoder", "encoder_no_decay", "head", "head_no_decay"]


def test_head_warmup_trains_the_head_alone_then_everything():
    job = qa_job()
    encoder_before = {k: v.clone() for k, v in job.model.encoder.state_dict().items()}
    head_before = {k: v.clone() for k, v in job.model.head.state_dict().items()}
    settings = TrainSettings(lr=1e-2, batch_size=2, max_steps=3, head_warmup_steps=3, warmup_ratio=0.0)
    train(job, settings, seed=1)
    assert all(torch.equal(v, job.model.encoder.state_dict()[k]) for k, v in encoder_before.items())
    assert not all(torch.equal(v, job.model.head.state_dict()[k]) for k, v in head_before.items())
    assert all(p.requires_grad for p in job.model.parameters())  # the encoder is trainable again afterwards
    job = qa_job()
    train(job, TrainSettings(lr=1e-2, batch_size=2, max_steps=5, head_warmup_steps=3, warmup_ratio=0.0), seed=1)
    assert not all(torch.equal(v, job.model.encoder.state_dict()[k]) for k, v in encoder_before.items())


def test_batch_plans_are_pure_functions_of_seed_and_epoch():
    plan = length_grouped_batches([5, 3, 9, 1, 7, 2, 8], 3, seed=4)
    assert plan(2) == plan(2) and plan(0) != plan(1)
    assert sorted(i for b in plan(1) for i in b) == list(range(7))  # the short last batch is kept
    shuffled = shuffled_batches(10, 4, seed=1)
    assert len(shuffled(0)) == 2 and shuffled(3) == shuffled(3)  # the incomplete batch is dropped


# --------------------------------------------------------------------------- fine-tuning runs


@pytest.fixture
def qa_inputs(tmp_path):
    base = tiny_checkpoint(tmp_path / "base")
    train_file = write(tmp_path / "train.json", json.dumps(squad_json(
        [(c, [(f"t-{lang}", q, a, c.index(a))]) for lang, c, a, q in SCRIPTS]), ensure_ascii=False))
    return base, train_file


def finetune_args(base, train_file, out, *extra):
    return ["finetune", "qa", "--model", str(base), "--head", "qass", "--train-data", str(train_file),
            "--max-length", "96", "--batch-size", "2", "--eval-datasets", "", "--out", str(out), *extra]


def weights(model_dir: Path) -> dict:
    from safetensors.torch import load_file

    return {**load_file(str(model_dir / "model.safetensors")), **{
        f"head.{k}": v for k, v in load_file(str(model_dir / "span_head.safetensors")).items()}}


def test_a_killed_finetuning_run_resumes_to_the_weights_of_an_uninterrupted_one(qa_inputs, tmp_path):
    base, train_file = qa_inputs
    settings = ["--max-steps", "40", "--lr", "3e-3", "--checkpoint-every", "2", "--dropout", "0.1"]
    cmd = [sys.executable, "-m", "clism.cli"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    subprocess.run(cmd + finetune_args(base, train_file, tmp_path / "straight", *settings), check=True, env=env,
                   capture_output=True)
    killed = tmp_path / "killed"
    proc = subprocess.Popen(cmd + finetune_args(base, train_file, killed, *settings), env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    state = killed / "seed-1" / "checkpoint" / "trainer_state.json"
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        try:
            if json.loads(state.read_text())["step"] >= 6:
                break
        except (OSError, json.JSONDecodeError):
            pass
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    stopped_at = json.loads(state.read_text())["step"]
    assert 6 <= stopped_at < 40, "the run was to be killed part way"
    resumed = subprocess.run(cmd + finetune_args(base, train_file, killed, *settings), env=env,
                             capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert f"resumed at step {stopped_at}" in resumed.stderr
    a, b = weights(tmp_path / "straight" / "seed-1" / "model"), weights(killed / "seed-1" / "model")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    straight_log = json.loads((tmp_path / "straight" / "seed-1" / "train_log.json").read_text())
    resumed_log = json.loads((killed / "seed-1" / "train_log.json").read_text())
    assert resumed_log["losses"] == straight_log["losses"]
    assert not (killed / "seed-1" / "checkpoint").exists()  # a finished seed keeps no checkpoint


def test_a_saved_config_fed_back_reproduces_the_run(qa_inputs, tmp_path, capsys):
    base, train_file = qa_inputs
    first = tmp_path / "first"
    assert main(finetune_args(base, train_file, first, "--max-steps", "3", "--lr", "1e-3", "--train-examples",
                              "4", "--warmup-steps", "1", "--max-grad-norm", "0.5")) == 0
    assert main(["finetune", "qa", "--config", str(first / "config.yaml"), "--out", str(tmp_path / "again")]) == 0
    a, b = weights(first / "seed-1" / "model"), weights(tmp_path / "again" / "seed-1" / "model")
    assert all(torch.equal(a[k], b[k]) for k in a)
    # the run says what it ran on: clism version and commit (this is a checkout), libraries
    import clism

    environment = json.loads((first / "environment.json").read_text())
    assert environment["clism"] == clism.__version__ and len(environment["git_commit"]) == 40
    assert environment["torch"] == torch.__version__ and environment["cpu_count"] > 0
    # the config of another command is refused, by name
    capsys.readouterr()
    assert main(["pretrain", "--config", str(first / "config.yaml")]) == 2
    assert "QAFinetuneOptions" in capsys.readouterr().err


def test_a_run_folder_refuses_other_settings_unless_overwritten(qa_inputs, tmp_path, capsys):
    base, train_file = qa_inputs
    out = tmp_path / "run"
    assert main(finetune_args(base, train_file, out, "--max-steps", "2")) == 0
    capsys.readouterr()
    assert main(finetune_args(base, train_file, out, "--max-steps", "2", "--lr", "1e-4")) == 2
    err = capsys.readouterr().err
    assert "lr: 3e-05 then, 0.0001 now" in err and "--overwrite" in err
    assert main(finetune_args(base, train_file, out, "--max-steps", "2", "--lr", "1e-4", "--overwrite")) == 0
    assert load_file(out / "config.yaml")["lr"] == 1e-4


# --------------------------------------------------------------------------- configs


def test_extends_states_only_what_differs(tmp_path):
    write(tmp_path / "base.yaml", "a: 1\nsection: {x: 1, y: [1, 2]}\n")
    write(tmp_path / "sub" / "child.yaml", "extends: ../base.yaml\nsection: {y: [3]}\nb: 2\n")
    assert load_file(tmp_path / "sub" / "child.yaml") == {"a": 1, "b": 2, "section": {"x": 1, "y": [3]}}
    write(tmp_path / "loop.yaml", "extends: loop.yaml\n")
    with pytest.raises(ConfigError, match="loops"):
        load_file(tmp_path / "loop.yaml")


def test_every_grid_file_loads_and_experiments_are_a_few_lines():
    from clism.experiments.grid import load_grid

    configs = Path(__file__).resolve().parents[1] / "configs"
    grids = sorted(configs.glob("reproduce-*.yaml")) + sorted((configs / "experiments").glob("*.yaml"))
    assert grids
    for path in grids:
        load_grid(path)
    for path in (configs / "experiments").glob("*.yaml"):
        lines = [line for line in path.read_text().splitlines() if line.strip() and not line.startswith("#")]
        assert lines[0].startswith("extends:") and len(lines) <= 20, path


def test_a_missing_tracker_is_named(tmp_path, monkeypatch):
    import accelerate.utils

    monkeypatch.setattr(accelerate.utils, "is_wandb_available", lambda: False)
    with pytest.raises(ConfigError, match="wandb package is not installed"):
        train(qa_job(), TrainSettings(batch_size=2, max_steps=1, report_to="wandb"), seed=1, out=tmp_path / "run")


def test_each_process_gets_the_same_number_of_non_empty_micro_batches():
    from clism.training.engine import micro_batches, usable

    batch = list(range(16))
    assert micro_batches(batch, 2, 0, 4) == [[0, 1, 2, 3], [4, 5, 6, 7]]
    assert micro_batches(batch, 2, 1, 4) == [[8, 9, 10, 11], [12, 13, 14, 15]]
    tail = list(range(5))  # an epoch's short last batch
    shares = [micro_batches(tail, 2, rank, 2) for rank in (0, 1)]
    assert shares == [[[0, 1], [2]], [[3], [4]]] and sorted(i for s in shares for m in s for i in m) == tail
    assert usable(tail, 2, 2) and not usable([7], 2, 8) and not usable([1, 2, 3], 2, 1)


def test_a_folder_written_atomically_is_whole_or_absent(tmp_path):
    from clism.files import atomic_folder, write_atomic

    target = tmp_path / "model"
    with atomic_folder(target) as tmp:
        (tmp / "config.json").write_text("{}")
        (tmp / "weights").write_text("1")
    with pytest.raises(KeyboardInterrupt):  # killed half way through a second save
        with atomic_folder(target) as tmp:
            (tmp / "config.json").write_text('{"new": 1}')
            raise KeyboardInterrupt
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]  # no half-written folder left beside it
    assert (target / "config.json").read_text() == "{}" and (target / "weights").read_text() == "1"
    write_atomic(tmp_path / "state.json", "{}")
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


def test_tensorboard_gets_the_same_records_as_the_log(tmp_path):
    pytest.importorskip("tensorboard")
    train(qa_job(), TrainSettings(lr=1e-3, batch_size=2, max_steps=2, log_every=1, checkpoint_every=0,
                                  report_to="tensorboard"), seed=1, out=tmp_path / "run")
    events = list((tmp_path / "run").rglob("events.out.tfevents.*"))
    assert events and events[0].stat().st_size > 0
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    scalars = EventAccumulator(str(events[0].parent)).Reload().Tags()["scalars"]
    assert {"loss", "lr_encoder", "lr_head", "head_moved"} <= set(scalars)


def test_settings_built_in_python_are_checked_like_flags():
    with pytest.raises(ConfigError, match="--batch-size must be 1 or more, got 0"):
        train(qa_job(), TrainSettings(batch_size=0, max_steps=1), seed=1)
    with pytest.raises(ConfigError, match="--max-steps must be 0 or more, got -3"):
        train(qa_job(), TrainSettings(batch_size=2, max_steps=-3), seed=1)
    with pytest.raises(ConfigError, match="--lr must be a finite number, got nan"):  # nan < 0 is False: it slipped by
        train(qa_job(), TrainSettings(batch_size=2, max_steps=1, lr=float("nan")), seed=1)
    with pytest.raises(ConfigError, match="--report-to 'tensorbord': choose one of none, tensorboard"):
        train(qa_job(), TrainSettings(batch_size=2, max_steps=1, report_to="tensorbord"), seed=1)


def test_losses_read_back_every_few_steps_are_the_losses_read_every_step(tmp_path, monkeypatch):
    """On a GPU the engine reads losses back only every log_every steps (no host sync per
    step): the same losses, the same log lines, and a non-finite loss still named by its step."""
    from clism.errors import TrainingDivergedError
    from clism.training import engine

    settings = TrainSettings(lr=1e-3, batch_size=2, max_steps=7, warmup_ratio=0.0, log_every=3, checkpoint_every=0)
    every_step = train(qa_job(), settings, seed=1, out=tmp_path / "a")
    monkeypatch.setattr(engine, "reads_every_step", lambda device: False)
    deferred = train(qa_job(), settings, seed=1, out=tmp_path / "b")
    assert deferred.losses == every_step.losses and len(deferred.losses) == 7
    strip = lambda rows: [{k: v for k, v in r.items() if "per_s" not in k and "share" not in k} for r in rows]
    assert strip(read_log(tmp_path / "b")) == strip(read_log(tmp_path / "a"))
    assert [r["step"] for r in read_log(tmp_path / "b")] == [1, 3, 6, 7]

    job = qa_job()
    forward = job.model.forward

    def nan_at_step_5(**batch):
        out = forward(**batch)
        nan_at_step_5.calls += 1
        return {**out, "loss": out["loss"] * float("nan")} if nan_at_step_5.calls == 5 else out

    nan_at_step_5.calls = 0
    job.model.forward = nan_at_step_5
    with pytest.raises(TrainingDivergedError, match="at step 5"):
        train(job, settings, seed=1, out=tmp_path / "c")


def test_model_flops_follow_the_usual_count():
    """6 N s + 12 L d s^2 per sequence (PaLM's MFU convention), N the layers' matrix weights."""
    from types import SimpleNamespace

    from clism.models.flops import layer_matrix_params, train_flops

    e5_small = SimpleNamespace(hidden_size=384, intermediate_size=1536, num_hidden_layers=12)
    assert layer_matrix_params(e5_small) == 21_233_664  # the layers' 21.29M weights less biases and LayerNorms
    assert train_flops(e5_small, [100, 28]) == 6 * 21_233_664 * 128 + 12 * 12 * 384 * (100 ** 2 + 28 ** 2)


def test_a_saved_checkpoint_carries_a_model_card(qa_inputs, tmp_path):
    base, train_file = qa_inputs
    out = tmp_path / "run"
    assert main(finetune_args(base, train_file, out, "--max-steps", "2", "--train-examples", "4")) == 0
    card = (out / "seed-1" / "model" / "README.md").read_text()
    assert card.startswith("---\nlibrary_name: transformers\npipeline_tag: question-answering")
    assert f"base_model: {base}" in card and "| lr |" in card and "QAPredictor.from_pretrained" in card


def test_a_rerun_removes_what_a_killed_process_left_of_its_atomic_writes(tmp_path):
    import subprocess
    import sys

    from clism.files import remove_stale_temporaries

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True).stdout.strip()
    (tmp_path / "seed-1").mkdir()
    (tmp_path / "seed-1" / f".metrics.json.{dead}.tmp").write_text("{half")
    (tmp_path / f".model.{dead}.tmp").mkdir()
    (tmp_path / f".model.{dead}.tmp" / "config.json").write_text("{}")
    mine = tmp_path / f".metrics.json.{os.getpid()}.tmp"  # a live process's write in progress: kept
    mine.write_text("{}")
    (tmp_path / ".notes.tmp").write_text("not ours: no pid")
    assert remove_stale_temporaries(tmp_path) == 2
    assert sorted(p.name for p in tmp_path.rglob("*")) == sorted(["seed-1", mine.name, ".notes.tmp"])


def test_a_ctrl_c_swallowed_on_its_way_still_stops_the_run_at_the_next_step(qa_inputs, tmp_path, monkeypatch,
                                                                             capsys, caplog):
    """Python drops a KeyboardInterrupt raised inside ``__del__`` (or a GC callback): a Ctrl-C that
    lands there used to be lost and the command ran to the end. It must stop at the next step,
    with the resume message and status 130, and the rerun must go on from the checkpoint."""
    import clism.tasks.qa.features as features

    class DroppedOnItsWay:
        def __del__(self):
            signal.raise_signal(signal.SIGINT)  # the handler raises here; Python prints and drops it

    calls = []
    real_collate = features.collate

    def collate_then_ctrl_c(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            DroppedOnItsWay()  # freed at once: the Ctrl-C arrives inside its __del__
        return real_collate(*args, **kwargs)

    base, train_file = qa_inputs
    out = tmp_path / "run"
    args = finetune_args(base, train_file, out, "--max-steps", "8", "--checkpoint-every", "1")
    dropped = []  # what Python drops, as it prints "Exception ignored in ..."
    monkeypatch.setattr(sys, "unraisablehook", lambda unraisable: dropped.append(unraisable.exc_type))
    monkeypatch.setattr(features, "collate", collate_then_ctrl_c)
    assert main(args) == 130
    assert dropped == [KeyboardInterrupt]  # the Ctrl-C was swallowed on its way, as on a busy machine
    assert "Run the same command again to continue" in capsys.readouterr().err
    state = json.loads((out / "seed-1" / "checkpoint" / "trainer_state.json").read_text())
    assert state["step"] == 3  # step 3 finished (its batch was already made), step 4 never began
    assert len(calls) == 3
    monkeypatch.setattr(features, "collate", real_collate)
    with caplog.at_level("INFO"):
        assert main(args) == 0
    assert "resumed at step 3" in caplog.text
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # the CLI restores Python's handler
