"""Kill a long command anywhere (SIGKILL: no handler runs), run it again, and the outputs equal
an uninterrupted run's; Ctrl-C says how to resume, without a traceback. The engine's own kill
tests (test_engine, test_pretrain) stop one run at one point; here the whole grid is stopped
at several points, in pre-training, between seeds and at a seeded random moment."""
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import yaml

from test_experiments import clism_data, grid_file

VOLATILE = {"questions_per_second"}  # wall-clock rates: the only numbers two runs may differ by


def numbers(metrics: dict) -> dict:
    """A seed's metrics without the wall-clock rates."""
    def strip(x):
        if isinstance(x, dict):
            return {k: strip(v) for k, v in x.items() if k not in VOLATILE}
        if isinstance(x, list):
            return [strip(v) for v in x]
        return x
    return strip(metrics)


def outputs(results: Path) -> dict[str, object]:
    """What a grid leaves that a reader relies on: every seed's metrics and predictions."""
    found = {}
    for path in sorted(results.rglob("*")):
        rel = str(path.relative_to(results))
        if path.name == "metrics.json" and path.parent.name.startswith("seed-"):
            found[rel] = numbers(json.loads(path.read_text()))
        elif "predictions" in path.parts and path.is_file():
            found[rel] = path.read_bytes()
    return found


def run_until(cmd: list[str], env: dict, stop, timeout: float = 300) -> bool:
    """Run ``cmd``; SIGKILL it as soon as ``stop()`` holds. True if it was killed."""
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + timeout
    while proc.poll() is None and time.time() < deadline:
        if stop():
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
            return True
        time.sleep(0.02)
    if proc.poll() is None:
        proc.kill()
        raise AssertionError(f"{cmd} did not finish in {timeout} s")
    assert proc.returncode == 0, proc.stderr.read().decode()[-3000:]
    return False


def tiny_grid(tmp_path: Path, name: str, model: Path | None = None) -> Path:
    folder = tmp_path / name
    folder.mkdir()
    path = grid_file(folder, arms=["base", "full"], curve_arms=["base", "full"], headline_k=3,
                     qa={"head": "qass", "max_length": 96, "doc_stride": 32, "batch_size": 2, "few_shot_k": [3],
                         "few_shot_steps": 4, "few_shot_seeds": [1, 2], "other_arms_k": [3],
                         "other_arms_seeds": [1], "eval_datasets": ["xquad"], "options": {"checkpoint_every": 1}},
                     pretrain={"batch_size": 8, "max_steps": 6, "warmup_steps": 0, "lr": 1e-3, "max_side_tokens": 32,
                               "checkpoint_every": 1, "log_every": 1, "dropout": 0.0})
    if model is not None:  # the same base weights for both runs
        grid = yaml.safe_load(path.read_text())
        grid["model"] = str(model)
        path.write_text(yaml.safe_dump(grid))
    clism_data(folder / "work" / "clism-data")
    return path


def test_reproduce_killed_at_several_points_ends_as_an_uninterrupted_run(mirror, tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    straight = tiny_grid(tmp_path, "straight")
    model = Path(yaml.safe_load(straight.read_text())["model"])
    killed = tiny_grid(tmp_path, "killed", model)

    def cmd(grid):
        return [sys.executable, "-m", "clism.cli", "reproduce", "--grid", str(grid), "--data-dir", str(mirror)]

    assert not run_until(cmd(straight), env, lambda: False)
    results = tmp_path / "killed" / "results"
    work = tmp_path / "killed" / "work"
    moment = random.Random(7).uniform(0.5, 4.0)  # seconds after a start: a seeded "anywhere"
    started = {}

    def at_random_moment():
        started.setdefault("t", time.time())
        return time.time() - started["t"] > moment

    stops = [
        lambda: (work / "pretrain" / "full" / "checkpoint" / "trainer_state.json").is_file(),  # mid pre-training
        lambda: (results / "qa" / "base" / "k3" / "seed-1" / "metrics.json").is_file(),  # between two seeds
        lambda: any(results.glob("qa/full/k3/seed-*/log.jsonl")),  # while fine-tuning a pre-trained arm
        at_random_moment,
    ]
    fired = [run_until(cmd(killed), env, stop) for stop in stops]
    assert sum(fired) >= 3, f"the grid was to be stopped part way, several times (stopped: {fired})"
    assert not run_until(cmd(killed), env, lambda: False)  # then run to the end

    expected = outputs(tmp_path / "straight" / "results")
    assert len([k for k in expected if k.endswith("metrics.json")]) == 4  # base and full, k3, seeds 1 and 2
    assert outputs(results) == expected


def test_ctrl_c_says_how_to_resume_without_a_traceback(mirror, tmp_path):
    grid = tiny_grid(tmp_path, "interrupted")
    proc = subprocess.Popen([sys.executable, "-m", "clism.cli", "reproduce", "--grid", str(grid), "--data-dir",
                             str(mirror)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    state = tmp_path / "interrupted" / "work" / "pretrain" / "full" / "checkpoint" / "trainer_state.json"
    deadline = time.time() + 120
    while not state.is_file() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-2000:]
    assert "Run the same command again to continue" in err and "Traceback" not in err


def test_evaluate_and_predict_killed_at_random_moments_end_as_uninterrupted_runs(mirror, tmp_path):
    """Each language's predictions and the metrics are written whole (temporary file, rename),
    so a killed evaluation or prediction, run again, leaves exactly what one run leaves."""
    from conftest import write
    from test_predict import qa_checkpoint

    model = qa_checkpoint(tmp_path)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    records = [{"id": str(i), "question": "Where is Normandy?", "context": "Normandy is a region in France."}
               for i in range(40)]
    source = write(tmp_path / "in.jsonl", "".join(json.dumps(r) + "\n" for r in records))
    rng = random.Random(11)

    def commands(out: Path) -> list[list[str]]:
        base = [sys.executable, "-m", "clism.cli"]
        return [base + ["evaluate", "qa", "--model", str(model), "--data-dir", str(mirror), "--out", str(out / "eval"),
                        "--max-length", "64", "--doc-stride", "16"],
                base + ["predict", "qa", "--model", str(model), "--input", str(source), "--out",
                        str(out / "pred.jsonl"), "--max-length", "64", "--doc-stride", "16", "--overwrite"]]

    evaluation = tmp_path / "killed" / "eval"
    events = [lambda: (evaluation / "config.yaml").is_file(),  # the folder taken, nothing evaluated yet
              lambda: any(evaluation.glob("predictions/*.json"))]  # between two languages
    for n, (straight, killed) in enumerate(zip(commands(tmp_path / "straight"), commands(tmp_path / "killed"))):
        assert not run_until(straight, env, lambda: False)
        if n == 0:
            fired = [run_until(killed, env, event) for event in events]
            assert all(fired), f"the evaluation was to be stopped at each event (stopped: {fired})"
        for _ in range(2):  # and at seeded moments, which a fast run may outlive
            moment, t0 = rng.uniform(0.5, 5.0), time.time()
            run_until(killed, env, lambda: time.time() - t0 > moment)
        assert not run_until(killed, env, lambda: False)

    for name in ("xquad.en.json", "xquad.de.json"):
        assert (tmp_path / "killed/eval/predictions" / name).read_bytes() == \
            (tmp_path / "straight/eval/predictions" / name).read_bytes()
    metrics = [numbers(json.loads((tmp_path / run / "eval/metrics.json").read_text())) for run in ("straight", "killed")]
    assert metrics[0] == metrics[1]
    assert (tmp_path / "killed/pred.jsonl").read_bytes() == (tmp_path / "straight/pred.jsonl").read_bytes()
    assert not list(tmp_path.rglob(".*.tmp"))  # no temporary file left behind by the kills


def test_build_data_killed_at_each_stage_ends_byte_identical(tmp_path):
    """Every stage is kept on disk (pairs, spans, links, shards): a build killed in any stage and
    run again writes what one uninterrupted build writes, byte for byte. (Stops are events, not
    moments: a 48-pair build can end before a random moment comes.)"""
    import pytest

    pytest.importorskip("spacy")
    pytest.importorskip("eflomal")
    from test_build_data import corpus, tree

    env = {**os.environ, "OMP_NUM_THREADS": "1", "CLISM_ALIGNMENT_CACHE": str(tmp_path / "links")}
    source = corpus(tmp_path)

    def cmd(out):
        return [sys.executable, "-m", "clism.cli", "build-data", "--langs", "de", "--corpora", "", "--files",
                f"de={source}", "--out", str(tmp_path / out), "--max-chars", "200", "--shard-size", "10"]

    assert not run_until(cmd("straight"), env, lambda: False)  # (its links are stored, so both builds share them)
    killed = tmp_path / "killed"
    stops = [lambda: any(killed.glob("work/de/*/spans.jsonl")),  # while spaCy writes the spans
             lambda: any(killed.glob("work/de/*/spans.done")),  # after the spans, at the links
             lambda: any(killed.glob("instances/de-00000.jsonl"))]  # among the shards
    fired = [run_until(cmd("killed"), env, stop) for stop in stops]
    assert sum(fired) >= 2, f"the build was to be stopped part way (stopped: {fired})"
    assert not run_until(cmd("killed"), env, lambda: False)
    assert tree(tmp_path / "killed") == tree(tmp_path / "straight")
