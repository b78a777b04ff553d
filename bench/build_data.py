"""CLISM data building throughput, per stage, and peak memory at two corpus sizes.

Builds from Tatoeba-Challenge en-de and en-es (the largest pairs in the mirror), at a
small and a large size, each in a fresh process with a cold alignment store, so eflomal
really runs. Prints pairs/s end to end and per stage (pairs, spaCy NER, eflomal,
projection + writing), and the peak resident memory of each build (the process and its
eflomal child).

    CLISM_DATA_DIR=../shared/data python bench/build_data.py --pairs 20000
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

CHILD = r"""
import json, os, resource, sys, time
from clism.clism_data.instances import BuildDataOptions, build
opts = BuildDataOptions(corpora=[], langs=["de", "es"], files=sys.argv[2].split(";"), out=sys.argv[1],
                        n_process=int(sys.argv[3]))
t = time.perf_counter()
build(opts)
total = time.perf_counter() - t
timings = json.load(open(os.path.join(sys.argv[1], "timings.json")))
self_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
child_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
print(json.dumps({"total_s": total, "timings": timings, "peak_rss_mb": self_kb / 1024,
                  "peak_child_rss_mb": child_kb / 1024}))
"""


def subset(lang3: str, pair: str, n: int, path: Path, data_dir: str | None) -> int:
    from clism.benchmarks.load import iter_parallel

    count = 0
    with open(path, "w", encoding="utf-8") as fh:
        for p in iter_parallel("tatoeba_challenge", lang3, data_dir=data_dir):
            if count >= n:
                break
            fh.write(f"{p.src}\t{p.tgt}\n")
            count += 1
    return count


def run(n: int, tmp: Path, data_dir: str | None, n_process: int) -> dict:
    files = []
    for lang, lang3 in (("de", "deu"), ("es", "spa")):
        path = tmp / f"{lang}-{n}.tsv"
        subset(lang3, lang, n // 2, path, data_dir)
        files.append(f"{lang}={path}")
    env = {**os.environ, "CLISM_ALIGNMENT_CACHE": str(tmp / f"align-{n}")}
    out = subprocess.run([sys.executable, "-c", CHILD, str(tmp / f"out-{n}"), ";".join(files), str(n_process)],
                         env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", type=int, default=20000, help="pairs of the large build (half de, half es)")
    parser.add_argument("--small", type=int, default=5000, help="pairs of the small build")
    parser.add_argument("--n-process", type=int, default=2)
    parser.add_argument("--data-dir", default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        results = {n: run(n, Path(tmp), args.data_dir, args.n_process) for n in (args.small, args.pairs)}
    print(f"{'pairs':>7} {'total p/s':>10} {'read p/s':>10} {'spaCy p/s':>10} {'eflomal p/s':>12} "
          f"{'project+write p/s':>18} {'peak MB':>8} {'eflomal peak MB':>16}")
    for n, r in results.items():
        stages = {k: sum(t[k] for t in r["timings"].values()) for k in ("pairs_s", "spacy_s", "align_s",
                                                                         "project_write_s")}
        pairs = sum(t["pairs"] for t in r["timings"].values())
        rate = {k: pairs / v if v else float("inf") for k, v in stages.items()}
        print(f"{pairs:>7} {pairs / r['total_s']:>10.0f} {rate['pairs_s']:>10.0f} {rate['spacy_s']:>10.0f} "
              f"{rate['align_s']:>12.0f} {rate['project_write_s']:>18.0f} {r['peak_rss_mb']:>8.0f} "
              f"{r['peak_child_rss_mb']:>16.0f}")
    small, large = results[args.small], results[args.pairs]
    print(f"peak memory, large / small build: {large['peak_rss_mb'] / small['peak_rss_mb']:.2f}x "
          f"for {args.pairs / args.small:.1f}x the pairs")


if __name__ == "__main__":
    main()
