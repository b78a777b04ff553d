"""Writing files so that a kill leaves the old version or the new one, never half of either."""
from __future__ import annotations

import contextlib
import glob
import os
import shutil
from pathlib import Path
from typing import Iterator


def write_atomic(path: str | Path, text: str | bytes) -> Path:
    """Write ``text`` (UTF-8, or bytes as they are) to a temporary file beside ``path``, flush it
    to disk, rename it over."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as fh:
        fh.write(text.encode("utf-8") if isinstance(text, str) else text)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    return path


@contextlib.contextmanager
def atomic_folder(path: str | Path) -> Iterator[Path]:
    """Fill a folder under a temporary name; it replaces ``path`` only once complete, so a model
    folder is whole or absent (a kill during a save leaves the earlier one, or none)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = path.with_name(f".{path.name}.{os.getpid()}.old")
    if path.exists():
        os.replace(path, old)
    os.replace(tmp, path)
    if old.exists():
        shutil.rmtree(old)


def remove_stale_temporaries(folder: str | Path, of: str | None = None) -> int:
    """Delete what a killed process left of its atomic writes in ``folder`` (``.<name>.<pid>.tmp``
    files and folders, ``.<name>.<pid>.old`` folders) when that process is gone; the count.
    Commands call it where they take a folder over, so a rerun after a kill leaves no litter;
    ``of`` limits it to one file's temporaries, directly in ``folder`` (a folder the command
    does not own, such as the one `clism predict --out` writes into)."""
    folder = Path(folder)
    if not folder.is_dir():
        return 0
    removed = 0
    found = folder.glob(f".{glob.escape(of)}.*.tmp") if of else [*folder.rglob(".*.tmp"), *folder.rglob(".*.old")]
    for path in found:
        pid = path.name.rsplit(".", 2)[-2]
        if not pid.isdigit() or _alive(int(pid)):
            continue
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
        removed += 1
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True
