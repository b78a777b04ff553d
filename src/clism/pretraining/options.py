"""``clism pretrain`` options (free of torch, so that ``--help`` is fast)."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Optional

from clism.config import option
from clism.training.settings import NOT_LEARNING, ModelSettings, TrainSettings, default_of


@dataclass
class PretrainOptions(TrainSettings, ModelSettings):
    data: str = option("runs/clism-data", "a `clism build-data` output directory")
    out: str = option("runs/pretrain", "output directory")
    clism: bool = option(True, "the CLISM span-selection loss")
    cacr: bool = option(True, "the CACR contrastive loss")
    mlm: Optional[bool] = option(
        None, "the masked-LM loss; default: on for an encoder with an MLM head of its own (XLM-R), off for one "
              "without (such as multilingual-e5), for which a created head measured no better and costs 1.4x the time")
    weight_clism: float = option(1.0, "weight of L_clism")
    weight_cacr: float = option(1.0, "weight of L_cacr")
    weight_mlm: float = option(1.0, "weight of L_mlm")
    temperature: float = option(0.05, "CACR temperature tau (cosine / tau)", minimum=1e-6)
    mlm_probability: float = option(0.15, "share of tokens masked for MLM")
    max_side_tokens: int = option(128, "tokens per side of the joint input", minimum=1)
    lr: float = default_of(TrainSettings, "lr", 1e-5)
    batch_size: int = default_of(TrainSettings, "batch_size", 64)
    max_steps: int = default_of(TrainSettings, "max_steps", 15000)
    warmup_steps: int = default_of(TrainSettings, "warmup_steps", 1500)
    freeze_word_embeddings: Optional[bool] = option(
        None, "keep the word embeddings fixed; default: yes for an encoder without an MLM head of its own (such as "
              "multilingual-e5), whose created MLM head, tied to them, would otherwise shift every row; no otherwise")
    seed: int = option(1, "seed of initialisation, data order and masking")
    max_instances: int = option(0, "use only the first N instances (0: all)")
    group_by_length: bool = option(False, "batches of instances of similar length (less padding, faster; "
                                          "batches are less mixed)")
    resume: bool = option(False, "require a checkpoint in --out to continue (a rerun continues one anyway)")
    overwrite: bool = option(False, "start again in an --out that holds a run (its checkpoint and log are removed)")

    def resolved(self) -> "PretrainOptions":
        """These options with ``mlm`` and ``freeze_word_embeddings`` decided by whether the encoder
        has an MLM head of its own (README, "Encoders without an MLM head", for the figures).
        Word embeddings, on english-dev (k=256, seeds 1-3, e5-small, 100 steps): frozen minus
        trained -0.37, -1.13, +0.32 F1, at 1.4x the pre-training speed on a CPU. MLM, on
        english-dev (k=256, 3 pre-training runs x 5 seeds, configs/reproduce-cpu-replicates.yaml):
        without minus with +1.32, +2.00, +0.78 F1 per run, at 1.4x less pre-training time."""
        if self.freeze_word_embeddings is not None and self.mlm is not None:
            return self
        from clism.models.backbone import has_mlm_head

        own_head = has_mlm_head(self.model)
        return dataclasses.replace(
            self, mlm=own_head if self.mlm is None else self.mlm,
            freeze_word_embeddings=not own_head if self.freeze_word_embeddings is None else self.freeze_word_embeddings)

    def learning_identity(self) -> dict:
        return {k: v for k, v in dataclasses.asdict(self).items() if k not in NOT_LEARNING + ("data",)}
