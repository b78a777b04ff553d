"""What every fine-tuning command takes (QA and NER add their own and set their defaults).
Free of torch so that the CLI starts fast."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Optional

from clism.config import option
from clism.training.settings import NOT_LEARNING, EvalSettings, ModelSettings, TrainSettings

# Settings that choose what a run is evaluated on, not what it learns.
EVALUATION_ONLY = ("seeds", "data_dir", "eval_datasets", "eval_langs", "eval_split", "eval_batch_size",
                   "max_eval_examples", "cross_lingual", "inference_dtype")


@dataclass
class FinetuneOptions(EvalSettings, TrainSettings, ModelSettings):
    train_examples: int = option(0, "few-shot: sample this many training examples per seed (0: all)")
    seeds: list[int] = option([1], "one fine-tuning run per seed; the seed also draws the few-shot sample")
    max_length: int = option(384, "tokens per window", minimum=1)
    data_dir: Optional[str] = option(None, "offline data mirror (default: $CLISM_DATA_DIR)")
    out: str = option("runs/finetune", "output directory")
    save_model: bool = option(True, "keep the fine-tuned checkpoint of each seed")
    overwrite: bool = option(False, "replace a run folder that holds a run with other settings")

    def train_settings(self) -> "FinetuneOptions":
        """The settings the engine trains with: few-shot runs default to 200 steps (the paper's)."""
        return dataclasses.replace(self, max_steps=self.max_steps or (200 if self.train_examples > 0 else 0))

    def learning_identity(self) -> dict:
        """The settings that shape what a seed learns: a rerun continues a seed only when they match."""
        return {k: v for k, v in dataclasses.asdict(self).items() if k not in NOT_LEARNING + EVALUATION_ONLY}
