"""The GPU run's CPU dry run: bench/gpu_bundle.py packs a tiny grid that extends
configs/reproduce-gpu-e5.yaml (same arms, tasks and settings, tiny budgets, a tiny encoder),
and bench/gpu_run.sh runs it as the device would, part 1 then part 2, twice (the second call
finds every cell done). So the script cannot rot between the sessions that are lent a device."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from test_qa_task import tiny_checkpoint

REPO = Path(__file__).resolve().parent.parent
DATA_DIR = REPO.parent / "shared" / "data"  # the data mirror beside this checkout (as in CI)


@pytest.mark.skipif(not (DATA_DIR / "xquad").is_dir(), reason="needs the data mirror")
def test_the_gpu_script_runs_on_the_cpu_with_tiny_budgets(tmp_path):
    model = tiny_checkpoint(tmp_path / "tiny-encoder")
    grid = tmp_path / "grid.yaml"
    grid.write_text(yaml.safe_dump({
        "extends": str(REPO / "configs" / "reproduce-gpu-e5.yaml"),
        "name": "gpu-dry-run", "model": str(model), "arms": ["base", "full"], "curve_arms": ["base", "full"],
        # zero-shot QA is few-shot QA on all 13K English questions (a minute of features here):
        # left out of the dry run
        "tasks": ["qa-few-shot", "ner"],
        "results": "results/gpu-dry-run", "work": "runs/gpu-dry-run",
        "build_data": {"langs": ["de"], "corpora": ["tatoeba_challenge"], "max_pairs": 300},
        "pretrain": {"max_steps": 2, "batch_size": 4, "max_side_tokens": 32, "warmup_steps": 1, "log_every": 1},
        "qa": {"few_shot_k": [8], "few_shot_seeds": [1], "few_shot_steps": 2, "zero_shot_steps": 2,
               "batch_size": 4, "max_length": 128, "doc_stride": 32, "eval_langs": ["de", "en"],
               "max_eval_examples": 6, "eval_batch_size": 8},
        "ner": {"max_steps": 2, "train_examples": 16, "batch_size": 4, "eval_langs": ["de", "en"],
                "max_eval_examples": 10},
    }))
    bundle, work, out = tmp_path / "bundle", tmp_path / "device-work", tmp_path / "out"
    env = {**os.environ, "CLISM_GPU_WORK": str(work), "CLISM_DATA_DIR": str(DATA_DIR)}
    subprocess.run([sys.executable, str(REPO / "bench" / "gpu_bundle.py"), "--grid", str(grid), "--out", str(bundle)],
                   check=True, cwd=tmp_path, env=env)
    manifest = json.loads((bundle / "part-2" / "MANIFEST.json").read_text())
    assert "model.tar.gz" in manifest["files"] and any(n.startswith("wheels/clism-") for n in manifest["files"])

    device_env = {k: v for k, v in env.items() if k != "CLISM_DATA_DIR"}  # the device has only what travels
    first = subprocess.run(["bash", str(bundle / "part-1" / "gpu_run.sh")], env={**device_env, "OUT": str(out / "1")},
                           capture_output=True, text=True)
    assert first.returncode == 0, first.stderr[-3000:]
    second = subprocess.run(["bash", str(bundle / "part-2" / "gpu_run.sh")],
                            env={**device_env, "OUT": str(out / "2")}, capture_output=True, text=True)
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    results = out / "2" / "results"
    for cell in ("qa/base/k8", "qa/full/k8", "ner/base/zero-shot", "ner/full/zero-shot"):
        metrics = json.loads((results / cell / "seed-1" / "metrics.json").read_text())
        assert metrics["results"], cell
    assert (results / "report.md").is_file()
    summary = (out / "2" / "summary.md").read_text()
    assert "| pre-training full |" in summary and "each id once, as many as scored" in summary
    pretrain_log = [json.loads(line) for line in (results / "pretrain" / "full" / "log.jsonl").read_text().splitlines()]
    assert pretrain_log[-1]["model_tflops_per_s"] > 0

    again = subprocess.run(["bash", str(bundle / "part-2" / "gpu_run.sh")], env={**device_env, "OUT": str(out / "3")},
                           capture_output=True, text=True)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "0/" not in (out / "3" / "cells.txt").read_text()  # every cell done, nothing run twice
