"""What a run ran on: clism's version and commit, the libraries, the machine. Every run folder
gets it as ``environment.json`` (and a grid's results as ``machine.json``), so a number can be
traced to the code and hardware that produced it."""
from __future__ import annotations

import json
import os
import platform
import subprocess
from pathlib import Path


def git_commit() -> dict:
    """The commit of the checkout clism runs from, and whether it had changes; {} when clism
    was installed from a wheel or git is missing."""
    root = Path(__file__).resolve().parents[2]
    if not (root / ".git").exists():
        return {}
    try:
        commit = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True,
                                timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return {}
    return {"git_commit": commit, "git_dirty": bool(dirty)}


def describe() -> dict:
    import accelerate
    import torch
    import transformers

    import clism

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return {"clism": clism.__version__, **git_commit(), "python": platform.python_version(),
            "torch": torch.__version__, "transformers": transformers.__version__, "accelerate": accelerate.__version__,
            "platform": platform.platform(), "processor": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(), "gpu": gpu,
            "gpu_count": torch.cuda.device_count() if gpu else 0}


def write_environment(path: str | Path) -> None:
    from clism.files import write_atomic

    write_atomic(Path(path), json.dumps(describe(), indent=1) + "\n")
