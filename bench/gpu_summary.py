"""What a GPU run bought, read from its results folder (bench/gpu_run.sh prints it).

- Throughput: tokens/s, examples/s and model TFLOP/s of every pre-training arm and the mean
  over fine-tuning seeds, from the last line of each log.jsonl; model FLOPs utilisation (MFU)
  against the device's dense bf16 peak. FLOPs are the encoder layers' matrix work, 6 N s +
  12 L d s^2 per sequence of s real tokens (clism/models/flops.py): padding, embeddings,
  softmax and heads are not counted.
- Predictions written once: every QA prediction file parses with unique ids, and holds as many
  answers as the metrics say were scored (a duplicate written by a second process would show).

  python bench/gpu_summary.py results/gpu-e5 [--peak-tflops 989]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
from pathlib import Path

# Dense bf16 peaks from the vendors' data sheets (TFLOP/s, no sparsity).
PEAKS = {"H200": 989.4, "H100": 989.4, "A100": 312.0, "L40S": 362.1, "L4": 121.0}


def device_peak() -> tuple[float, str]:
    if os.environ.get("PEAK_TFLOPS"):
        return float(os.environ["PEAK_TFLOPS"]), "$PEAK_TFLOPS"
    try:
        import torch

        name = torch.cuda.get_device_name(0) if torch.cuda.is_available() else ""
    except ImportError:
        name = ""
    for key, peak in PEAKS.items():
        if key in name:
            return peak, f"{name} (dense bf16 data-sheet peak)"
    return 0.0, name or "no GPU"


def last_line(path: Path) -> dict:
    lines = [line for line in path.read_text().splitlines() if line.strip()] if path.is_file() else []
    return json.loads(lines[-1]) if lines else {}


def throughput(results: Path, peak: float) -> list[str]:
    def row(what: str, record: dict) -> str:
        tflops = record.get("model_tflops_per_s", 0.0)
        mfu = f"{100 * tflops / peak:.1f}%" if peak else "n/a"
        return (f"| {what} | {record.get('tokens_per_s', 0):,.0f} | {record.get('examples_per_s', 0):,.1f} | "
                f"{tflops:.2f} | {mfu} |")

    out = ["| run | tokens/s | examples/s | model TFLOP/s | MFU |", "|---|---|---|---|---|"]
    for log in sorted((results / "pretrain").glob("*/log.jsonl")):
        out.append(row(f"pre-training {log.parent.name}", last_line(log)))
    seeds = [last_line(p) for p in sorted((results / "qa").glob("*/*/seed-*/log.jsonl"))]
    seeds = [s for s in seeds if s]
    if seeds:
        mean = {k: statistics.mean(s.get(k, 0.0) for s in seeds)
                for k in ("tokens_per_s", "examples_per_s", "model_tflops_per_s")}
        out.append(row(f"QA fine-tuning (mean of {len(seeds)} seeds)", mean))
    return out


def duplicated_predictions(results: Path) -> list[str]:
    """Problems found: a repeated id in a prediction file, or a count that differs from the metrics'."""
    problems = []

    def no_repeats(pairs):
        keys = [k for k, _ in pairs]
        if len(keys) != len(set(keys)):
            raise ValueError(f"{len(keys) - len(set(keys))} repeated ids")
        return dict(pairs)

    for metrics_path in sorted((results / "qa").glob("*/*/seed-*/metrics.json")):
        scored = json.loads(metrics_path.read_text()).get("results", {})
        for dataset, langs in scored.items():
            for lang, m in langs.items():
                path = metrics_path.parent / "predictions" / f"{dataset}.{lang}.json"
                if not path.is_file():
                    continue
                try:
                    answers = json.loads(path.read_text(encoding="utf-8"), object_pairs_hook=no_repeats)
                except ValueError as exc:
                    problems.append(f"{path}: {exc}")
                    continue
                if len(answers) != m["total"] - m.get("missing", 0):
                    problems.append(f"{path}: {len(answers)} answers, the metrics scored {m['total']}")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("results", type=Path)
    parser.add_argument("--peak-tflops", type=float, default=0.0, help="the device's peak (default: by its name)")
    args = parser.parse_args(argv)
    peak, source = (args.peak_tflops, "--peak-tflops") if args.peak_tflops else device_peak()
    print(f"## Throughput ({args.results})\n\nPeak: {peak or 'unknown'} TFLOP/s, {source}.\n")
    print("\n".join(throughput(args.results, peak)))
    problems = duplicated_predictions(args.results)
    files = len(list((args.results / "qa").glob("*/*/seed-*/predictions/*.json")))
    print(f"\n## Predictions\n\n{files} QA prediction files checked: "
          + ("each id once, as many as scored." if not problems else f"{len(problems)} problems:"))
    for p in problems:
        print(f"- {p}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
