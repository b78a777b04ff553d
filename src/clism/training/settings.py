"""The training settings, declared once: every training command (pre-training, QA and NER
fine-tuning) takes them, the CLI flags and the YAML validation come from them, and the
engine (``clism.training.engine``) reads them. Free of torch so that ``--help`` is fast.

A command that wants another default says so with ``default_of`` (the help text stays
the one written here).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Optional

from clism.models.backbone import inference_dtype_option

from clism.config import option

TRACKERS = ("none", "tensorboard", "wandb", "mlflow", "all")
PRECISIONS = ("no", "bf16", "fp16")


@dataclass
class EvalSettings:
    """What a fine-tuning run is evaluated on after training."""

    eval_datasets: list[str] = option([], "evaluate after training on these (empty: no evaluation)")
    eval_langs: list[str] = option([], "evaluation languages (default: every language present)")
    eval_batch_size: int = option(0, "windows per inference batch (0: a default for the device)")
    inference_dtype: str = inference_dtype_option()
    max_eval_examples: int = option(0, "evaluate only the first N examples per language (0: all)")


@dataclass
class ModelSettings:
    model: str = option("multilingual-e5-small-q4", "encoder: built-in name, local path or Hugging Face id")
    dropout: Optional[float] = option(None, "override the encoder's dropout (0 is ~2x faster on CPU)")


@dataclass
class OptimSettings:
    """What each optimizer step does. ``batch_size`` is always the effective global batch:
    examples per optimizer step, over all processes and accumulation steps together."""

    lr: float = option(3e-5, "peak learning rate of the encoder")
    head_lr_scale: float = option(1.0, "learning rate of the task head (span head, NER classifier, a created MLM "
                                       "head) as a multiple of lr")
    layer_lr_decay: float = option(1.0, "layer-wise learning-rate decay: encoder layer i of L trains at "
                                        "lr * decay^(L-1-i), the embeddings at lr * decay^L, so the lower layers "
                                        "move less (1: one rate for all)", minimum=1e-6)
    batch_size: int = option(32, "examples per optimizer step, all processes and accumulation steps together", minimum=1)
    micro_batch_size: int = option(0, "examples per forward pass and process (gradient accumulation); "
                                      "0: batch_size / processes")
    weight_decay: float = option(0.01, "AdamW weight decay (not on biases and LayerNorms)")
    max_grad_norm: float = option(1.0, "gradient clipping (0: none)")
    freeze_word_embeddings: bool = option(False, "keep the word embeddings fixed")
    mixed_precision: str = option("no", "no, bf16 or fp16 (GPU)", choices=PRECISIONS)
    torch_compile: bool = option(False, "compile the model with torch.compile (GPU; the first steps are slower)")


@dataclass
class ScheduleSettings:
    """How many steps, the learning-rate schedule, and what happens along the way."""

    epochs: float = option(5.0, "epochs (ignored when max_steps > 0)")
    max_steps: int = option(0, "optimizer steps (0: epochs)")
    warmup_steps: int = option(0, "linear warm-up steps, then linear decay to 0 (0: warmup_ratio of all steps)")
    warmup_ratio: float = option(0.1, "share of steps with a linear warm-up, when warmup_steps is 0")
    head_warmup_steps: int = option(0, "the first N steps train only the task head (encoder frozen), then all")
    checkpoint_every: int = option(500, "steps between checkpoints that a rerun resumes from (0: none)")
    log_every: int = option(10, "steps between lines of log.jsonl", minimum=1)
    report_to: str = option("none", "also log to trackers through accelerate: tensorboard, wandb, mlflow, all, none",
                            choices=TRACKERS)
    push_to_hub: Optional[str] = option(None, "REPO_ID: when the run has finished, push its model folder to this "
                                              "Hugging Face Hub repository (created if needed; token from HF_TOKEN "
                                              "or `hf auth login`, endpoint from HF_ENDPOINT)")


@dataclass
class TrainSettings(ScheduleSettings, OptimSettings):
    """Everything the engine reads: optimisation and schedule."""

    def check(self) -> None:
        from clism.config import check_options

        check_options(self)  # the same ranges and choices as for flags, for settings built in Python


# Settings that say where a run lives, how often it reports or how it is evaluated: changing
# them between a run and its resumption does not change what it learns.
NOT_LEARNING = ("out", "resume", "overwrite", "checkpoint_every", "log_every", "report_to", "save_model",
                "torch_compile", "push_to_hub")


def default_of(cls: type, name: str, value):
    """A field of ``cls`` with another default and the same help text."""
    field = next(f for f in dataclasses.fields(cls) if f.name == name)
    return option(value, field.metadata.get("help", ""), field.metadata.get("minimum", 0),
                  field.metadata.get("choices", ()))
