"""Sharing a saved model on the Hugging Face Hub (``clism model push``, ``--push-to-hub``).

One commit with every file of the model folder, through ``huggingface_hub`` (which decides
per file between an inline upload and its large-file transfer). The model card is sent as
the Hub will show it: its usage snippet names the repository rather than the local folder,
and a base model the Hub cannot link (a local path, the built-in name) is named by the hub
id it came from, or left out.
"""
from __future__ import annotations

import os
import re
from pathlib import Path

from clism.errors import HubError, InputError

# The built-in encoder is these weights, 4-bit quantised (clism.models.registry).
HUB_ID_OF_BUILTIN = {"multilingual-e5-small-q4": "intfloat/multilingual-e5-small"}
WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin")


def check_model_folder(folder: Path) -> None:
    if not folder.is_dir():
        raise InputError(f"{folder}: no such model folder; push the `model/` folder a run saved "
                         "(e.g. runs/pretrain/model or runs/qa/seed-1/model)")
    if not (folder / "config.json").is_file() or not any((folder / w).is_file() for w in WEIGHT_FILES):
        raise InputError(f"{folder}: not a complete model folder (config.json and model weights expected); "
                         "push the `model/` folder a finished run saved")


def _transport_errors() -> tuple[type[Exception], ...]:
    """Connection failures as the installed huggingface_hub raises them: its HTTP client was
    requests below 1.0, httpx in 1.x and httpx2 in 2.x (all allowed by transformers>=4.44)."""
    import importlib

    found = []
    for module, name in (("httpx2", "TransportError"), ("httpx", "TransportError"), ("requests", "ConnectionError")):
        try:
            found.append(getattr(importlib.import_module(module), name))
        except (ImportError, AttributeError):
            pass
    return tuple(found)


def check_repo_id(repo_id: str) -> None:
    from clism.models.registry import HUB_ID

    if not HUB_ID.fullmatch(repo_id):
        raise InputError(f"--push-to-hub {repo_id!r}: write a repository id, `user/name` or `name`")


def card_for_hub(text: str, folder: Path, repo_id: str) -> str:
    """The saved model card with the repository in place of the local folder, and a
    ``base_model`` the Hub can link (or none)."""
    # the usage lines name the folder as it was saved (relative, absolute, ...): name the repository
    text = re.sub(r'from_pretrained\("[^"]*"', f'from_pretrained("{repo_id}"', text.replace(str(folder), repo_id))
    text = re.sub(r"--model \S+", f"--model {repo_id}", text)

    from clism.models.registry import HUB_ID

    def base(match: re.Match) -> str:
        name = match.group(1).strip()
        hub_id = HUB_ID_OF_BUILTIN.get(name, name)
        looks_like_hub_id = "/" in hub_id and HUB_ID.fullmatch(hub_id) and not Path(hub_id).exists()
        return f"base_model: {hub_id}\n" if looks_like_hub_id else ""

    head, sep, body = text.partition("\n---\n")  # the YAML front matter only
    return re.sub(r"^base_model: (.*)\n", base, head + sep, flags=re.M) + body


def push_folder(folder: str | Path, repo_id: str, *, private: bool = False, commit_message: str | None = None,
                revision: str | None = None, token: str | None = None, endpoint: str | None = None) -> str:
    """Create ``repo_id`` if needed and commit the folder to it; the commit's URL.

    ``endpoint`` defaults to ``$HF_ENDPOINT`` (read when called), then to huggingface.co;
    the token to huggingface_hub's (``HF_TOKEN`` or ``hf auth login``)."""
    from huggingface_hub import CommitOperationAdd, HfApi
    from huggingface_hub.errors import HfHubHTTPError

    from clism import __version__

    folder = Path(folder)
    check_model_folder(folder)
    check_repo_id(repo_id)
    operations = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        name = path.relative_to(folder).as_posix()
        content: str | bytes = str(path)
        if name == "README.md":
            content = card_for_hub(path.read_text(encoding="utf-8"), folder, repo_id).encode("utf-8")
        operations.append(CommitOperationAdd(path_in_repo=name, path_or_fileobj=content))
    api = HfApi(endpoint=endpoint or os.environ.get("HF_ENDPOINT") or None, token=token)
    try:
        api.create_repo(repo_id, private=private, exist_ok=True)
        info = api.create_commit(repo_id, operations=operations, revision=revision,
                                 commit_message=commit_message or f"Upload {folder.name} from clism {__version__}")
    except HfHubHTTPError as e:
        status = e.response.status_code if e.response is not None else None
        fix = ("log in with `hf auth login` or set HF_TOKEN to a token that may write to it"
               if status in (401, 403) else "see the Hub's message above")
        raise HubError(f"pushing {folder} to {repo_id} failed (HTTP {status}): {e}; {fix}") from None
    except ValueError as e:  # huggingface_hub's word for a model card the Hub refused
        if "Invalid metadata" not in str(e):
            raise
        raise HubError(f"pushing {folder} to {repo_id}: the Hub refused the model card ({e}); mend the YAML "
                       f"header of {folder / 'README.md'}") from None
    except _transport_errors() as e:
        raise HubError(f"pushing {folder} to {repo_id}: the Hub at {api.endpoint} cannot be reached ({e}); "
                       "check the network, or HF_ENDPOINT") from None
    return info.commit_url
