"""One loader for every model clism builds on: the bare encoder, the encoder with a
masked-LM head (pre-training) and the token classifier (NER).

Weights that the checkpoint lacks are created here on purpose (an MLM head for
multilingual-e5, a fresh NER classifier): they are named in one quiet log line, and
transformers' own report about them, which reads like a broken install, is not printed.
"""
from __future__ import annotations

import logging
from contextlib import contextmanager, nullcontext
from contextvars import ContextVar
from typing import Iterator

log = logging.getLogger(__name__)

KINDS = ("encoder", "masked-lm", "token-classification")


def dropout_overrides(config, dropout: float | None) -> dict:
    """Config values that set every dropout of the encoder to ``dropout`` (None: keep)."""
    if dropout is None:
        return {}
    names = [n for n in vars(config) if n.endswith("dropout_prob") or n in ("dropout", "attention_dropout")]
    return {n: dropout for n in names}


def load_backbone(name_or_path: str, kind: str = "encoder", dropout: float | None = None, **kwargs):
    """(model, tokenizer, created): ``created`` holds the names of the weights made fresh."""
    import transformers
    from transformers import AutoConfig, AutoModel, AutoModelForMaskedLM, AutoModelForTokenClassification, \
        AutoTokenizer

    from clism.models.registry import resolve_model

    classes = {"encoder": AutoModel, "masked-lm": AutoModelForMaskedLM,
               "token-classification": AutoModelForTokenClassification}
    if kind not in classes:
        raise ValueError(f"unknown model kind {kind!r}; choose one of {KINDS}")
    path = resolve_model(name_or_path)
    try:
        config = AutoConfig.from_pretrained(path)
    except OSError as exc:  # a Hub id that cannot be fetched: offline, mistyped, or private
        from clism.errors import NotFoundError

        reason = str(exc).strip().splitlines()[0][:200]
        raise NotFoundError(f"--model {name_or_path}: not a local folder, and the Hugging Face Hub did not give it "
                            f"({reason}); give a local model folder, or check the id, the network and "
                            "HF_HUB_OFFLINE") from None
    kwargs = {**dropout_overrides(config, dropout), **kwargs}
    verbosity = transformers.logging.get_verbosity()
    transformers.logging.set_verbosity_error()
    try:
        if kind == "encoder":
            try:  # no clism task reads the pooler; checkpoints converted without one would warn
                model, info = AutoModel.from_pretrained(path, add_pooling_layer=False, output_loading_info=True,
                                                        **kwargs)
            except TypeError:  # architectures without a pooler do not take the argument
                model, info = AutoModel.from_pretrained(path, output_loading_info=True, **kwargs)
        else:
            model, info = classes[kind].from_pretrained(path, output_loading_info=True, **kwargs)
    finally:
        transformers.logging.set_verbosity(verbosity)
    # what the overrides replaced, put back on save (save_backbone): the run's speed setting
    # (--dropout 0) is not the model's
    model.clism_config_overrides = {name: getattr(config, name) for name in dropout_overrides(config, dropout)}
    created = set(info.get("missing_keys", []))
    if created:
        heads = sorted({name.split(".")[0] for name in created})
        log.info("%s: created %d weights the checkpoint does not hold (%s), as intended", path, len(created),
                 ", ".join(heads))
    return model, AutoTokenizer.from_pretrained(path), created


def save_backbone(model, folder, overrides: dict | None = None) -> None:
    """``save_pretrained`` with the checkpoint's own config values where a run overrode them
    (``--dropout 0`` for speed), so that the saved model trains as its source did; ``overrides``
    when ``model`` is a part (the encoder) of the model that was loaded."""
    overrides = getattr(model, "clism_config_overrides", {}) if overrides is None else overrides
    current = {name: getattr(model.config, name) for name in overrides}
    for name, value in overrides.items():
        setattr(model.config, name, value)
    try:
        model.save_pretrained(folder)
    finally:
        for name, value in current.items():
            setattr(model.config, name, value)


def has_mlm_head(name_or_path: str) -> bool:
    """Whether the checkpoint holds a masked-LM head of its own (by its saved architecture)."""
    from transformers import AutoConfig

    from clism.models.registry import resolve_model

    architectures = AutoConfig.from_pretrained(resolve_model(name_or_path)).architectures or []
    return any(a.endswith(("ForMaskedLM", "ForPreTraining")) for a in architectures)


INFERENCE_DTYPES = ("auto", "fp32", "bf16")
_inference_dtype: ContextVar[str] = ContextVar("clism_inference_dtype", default="auto")


def inference_dtype_option():
    """The ``--inference-dtype`` option of every command that runs inference."""
    from clism.config import option

    return option("auto", "inference precision: auto (bf16 on a GPU that has it, fp32 on CPUs), fp32, or bf16 "
                          "(bf16 autocast; on CPUs with AVX512-BF16 or AMX about 1.8x faster, README)",
                  choices=INFERENCE_DTYPES)


@contextmanager
def inference_dtype(name: str) -> Iterator[None]:
    """Inference inside runs at precision ``name`` (see ``inference_precision``); options are
    checked where they enter, this is for the Python API (``QAPredictor(inference_dtype=...)``)."""
    if name not in INFERENCE_DTYPES:
        from clism.errors import InputError

        raise InputError(f"--inference-dtype {name!r}: choose one of {', '.join(INFERENCE_DTYPES)}")
    token = _inference_dtype.set(name)
    try:
        yield
    finally:
        _inference_dtype.reset(token)


def inference_precision(device):
    """The context one inference pass runs in: bf16 autocast when ``inference_dtype("bf16")``
    holds, or under "auto" on a GPU that has bf16; fp32 otherwise, so CPU results stay as
    they were unless bf16 is asked for."""
    import torch

    choice = _inference_dtype.get()
    if choice == "bf16" or (choice == "auto" and device.type == "cuda" and torch.cuda.is_bf16_supported()):
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return nullcontext()
