#!/usr/bin/env bash
# Do two revisions of clism give the same numbers? Runs the same small pipeline with each
# (one CLISM build, shared; 6 pre-training steps; QA fine-tuning from the base encoder and
# from the pre-trained one, 8 steps on 32 questions; NER 8 steps) and compares weights,
# losses and metrics. About 10 minutes per revision on 2 cores. Needs $CLISM_DATA_DIR.
#   bash bench/same_numbers.sh e1e65e6 HEAD
set -euo pipefail
old=${1:?usage: same_numbers.sh OLD_REV NEW_REV}; new=${2:-HEAD}
repo=$(cd "$(dirname "$0")/.." && pwd)
work=${SAME_NUMBERS_DIR:-/tmp/clism-same-numbers}
mkdir -p "$work"
run() {  # $1 revision, $2 output folder
  local sha; sha=$(git -C "$repo" rev-parse --short "$1")
  local src="$work/src-$sha"  # by commit, so that HEAD today is not HEAD of an earlier run
  [ -d "$src" ] || git -C "$repo" worktree add -f --detach "$src" "$sha" >/dev/null
  export PYTHONPATH="$src/src"
  local o="$2"; mkdir -p "$o"
  local qa=(--head qass --train-examples 32 --seeds 1 --max-steps 8 --max-length 256 --dropout 0
            --freeze-word-embeddings --eval-langs en,de --max-eval-examples 30)
  python3 -m clism.cli finetune qa --model multilingual-e5-small-q4 "${qa[@]}" --out "$o/qa"
  python3 -m clism.cli finetune ner --train-examples 64 --max-steps 8 --seeds 1 --eval-datasets wikiann \
      --eval-langs en,de --max-eval-examples 100 --dropout 0 --out "$o/ner"
  [ -d "$work/data" ] || python3 -m clism.cli build-data --langs de,es --max-pairs 500 --out "$work/data"
  python3 -m clism.cli pretrain --data "$work/data" --max-steps 6 --batch-size 8 --max-side-tokens 64 \
      --lr 5e-5 --warmup-steps 2 --dropout 0 --checkpoint-every 3 --log-every 1 --out "$o/pt"
  python3 -m clism.cli finetune qa --model "$o/pt/model" "${qa[@]}" --out "$o/qa-pt"
}
run "$old" "$work/old" > "$work/old.log" 2>&1
run "$new" "$work/new" > "$work/new.log" 2>&1
python3 - "$work/old" "$work/new" <<'PY'
import json, sys
from pathlib import Path
import torch
from safetensors.torch import load_file
old, new = map(Path, sys.argv[1:])
def results(path):
    r = json.loads((path / "seed-1/metrics.json").read_text())
    return {d: {l: {k: v for k, v in s.items() if "per_second" not in k} for l, s in by.items()}
            for d, by in r["results"].items()}
for run in ("qa", "ner", "qa-pt"):
    losses = [json.loads((p / run / "seed-1/train_log.json").read_text())["losses"] for p in (old, new)]
    print(f"{run}: losses {'identical' if losses[0] == losses[1] else 'DIFFER'}, "
          f"metrics {'identical' if results(old / run) == results(new / run) else 'DIFFER'}")
for name in ("model.safetensors", "span_head.safetensors"):
    a, b = (load_file(str(p / "pt/model" / name)) for p in (old, new))
    same = a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    print(f"pretrain {name}: {'identical' if same else 'DIFFER'}")
PY
