"""Fine-tuning options shared by the QA and NER commands (kept free of torch so the CLI
starts fast)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from clism.config import option


@dataclass
class LoopSettings:
    lr: float = 3e-5
    batch_size: int = 32
    micro_batch_size: int = 0  # 0: same as batch_size; smaller values accumulate gradients
    epochs: float = 2.0
    max_steps: int = 0  # > 0 overrides epochs
    warmup_ratio: float = 0.1
    weight_decay: float = 0.01
    max_grad_norm: float = 1.0
    seed: int = 1
    mixed_precision: str = "no"  # "no", "bf16" or "fp16" (GPU)
    freeze_word_embeddings: bool = False


@dataclass
class FinetuneOptions:
    """What every fine-tuning command takes; QA and NER add their own and set their defaults."""

    model: str = option("multilingual-e5-small-q4", "encoder: built-in name, local path or Hugging Face id")
    train_examples: int = option(0, "few-shot: sample this many training examples per seed (0: all)")
    seeds: list[int] = option([1], "one fine-tuning run per seed; the seed also draws the few-shot sample")
    lr: float = option(3e-5, "learning rate")
    batch_size: int = option(32, "examples (windows) per optimizer step")
    micro_batch_size: int = option(0, "examples per forward pass (gradient accumulation); 0: batch_size")
    epochs: float = option(5.0, "epochs (ignored when max_steps > 0)")
    max_steps: int = option(0, "optimizer steps; 0: epochs, or 200 when train_examples > 0 (paper few-shot)")
    warmup_ratio: float = option(0.1, "share of steps with a linear warm-up")
    weight_decay: float = option(0.01, "AdamW weight decay")
    max_length: int = option(384, "tokens per window")
    dropout: Optional[float] = option(None, "override the encoder's dropout (0 is ~2x faster on CPU)")
    freeze_word_embeddings: bool = option(False, "keep the word embeddings fixed")
    mixed_precision: str = option("no", "no, bf16 or fp16 (GPU)")
    eval_datasets: list[str] = option([], "evaluate after training on these (empty: no evaluation)")
    eval_langs: list[str] = option([], "evaluation languages (default: every language present)")
    eval_batch_size: int = option(0, "windows per inference batch (0: a default for the device)")
    max_eval_examples: int = option(0, "evaluate only the first N examples per language (0: all)")
    data_dir: Optional[str] = option(None, "offline data mirror (default: $CLISM_DATA_DIR)")
    out: str = option("runs/finetune", "output directory")
    save_model: bool = option(True, "keep the fine-tuned checkpoint of each seed")

    def loop_settings(self, seed: int) -> "LoopSettings":
        return LoopSettings(
            lr=self.lr, batch_size=self.batch_size, micro_batch_size=self.micro_batch_size, epochs=self.epochs,
            max_steps=self.max_steps or (200 if self.train_examples > 0 else 0), warmup_ratio=self.warmup_ratio,
            weight_decay=self.weight_decay, seed=seed, mixed_precision=self.mixed_precision,
            freeze_word_embeddings=self.freeze_word_embeddings)
