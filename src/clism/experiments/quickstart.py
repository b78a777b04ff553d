"""``clism quickstart``: the whole method once, small enough for a laptop CPU.

Builds CLISM data (en-ar, en-hi, en-vi, en-de, en-es), pre-trains with CLISM + CACR (+ MLM
for an encoder with an MLM head of its own, as ``clism pretrain`` does by default),
fine-tunes the base encoder and the pre-trained one on the same 256 English questions,
evaluates both zero-shot on XQuAD and prints them side by side. It is a two-arm grid
(see ``clism.experiments.grid``) with small budgets, so it resumes the same way and its
report is built by the same code as the full grid's.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from clism.config import option
from clism.experiments.grid import GridConfig, NERBudget, QABudget, cells_of, prepare_results, run_pending


@dataclass
class QuickstartOptions:
    out: str = option("runs/quickstart", "results, report and (under work/) checkpoints")
    model: str = option("multilingual-e5-small-q4", "encoder: built-in name, local path or Hugging Face id")
    langs: list[str] = option(["ar", "hi", "vi", "de", "es"], "CLISM data languages (English is the source)")
    max_pairs: int = option(2000, "parallel pairs per language")
    pretrain_steps: int = option(60, "pre-training steps (batch 16, 64 tokens per side)")
    train_examples: int = option(256, "English QA questions both models are fine-tuned on")
    finetune_steps: int = option(60, "fine-tuning steps (batch 16, 256-token windows)")
    eval_langs: list[str] = option(["ar", "de", "en", "es", "hi", "vi"], "XQuAD languages")
    max_eval_examples: int = option(100, "XQuAD questions per language (0: all 1,190)")
    seed: int = option(1, "seed of the few-shot sample and of fine-tuning")
    data_dir: Optional[str] = option(None, "offline data mirror (default: $CLISM_DATA_DIR)")


def method_arm(model: str) -> str:
    """The arm that pre-trains as ``clism pretrain`` does by default (its one rule decides MLM)."""
    from clism.pretraining.options import PretrainOptions

    return "full" if PretrainOptions(model=model).resolved().mlm else "no-mlm"


def quickstart_grid(opts: QuickstartOptions) -> GridConfig:
    out = Path(opts.out)
    return GridConfig(
        name="quickstart",
        description=f"`clism quickstart`: {opts.max_pairs} pairs per language, {opts.pretrain_steps} pre-training "
                    f"steps, {opts.train_examples} English questions and {opts.finetune_steps} fine-tuning steps, "
                    f"{opts.max_eval_examples or 'all'} XQuAD questions per language. A smoke-sized run: "
                    "one seed, so differences of a few points are within noise.",
        model=opts.model, results=str(out), work=str(out / "work"), arms=["base", method_arm(opts.model)],
        tasks=["qa-few-shot"],
        build_data={"langs": opts.langs, "corpora": ["tatoeba_challenge", "flores200"], "max_pairs": opts.max_pairs},
        pretrain={"lr": 5e-5, "batch_size": 16, "max_steps": opts.pretrain_steps,
                  "warmup_steps": max(1, opts.pretrain_steps // 10), "max_side_tokens": 64, "dropout": 0.0,
                  "checkpoint_every": max(1, opts.pretrain_steps // 2), "log_every": 5},
        qa=QABudget(head="qass", max_length=256, doc_stride=64, lr=5e-5, batch_size=16, dropout=0.0,
                    freeze_word_embeddings=True, few_shot_k=[opts.train_examples], few_shot_steps=opts.finetune_steps,
                    few_shot_seeds=[opts.seed], eval_datasets=["xquad"], eval_langs=opts.eval_langs,
                    max_eval_examples=opts.max_eval_examples),
        ner=NERBudget(),
    )


def run_quickstart(opts: QuickstartOptions) -> str:
    import yaml

    from clism.config import to_dict
    from clism.experiments.report import build_report, comparison_table, read_cells

    grid = quickstart_grid(opts)
    results = prepare_results(grid, yaml.safe_dump(to_dict(grid), sort_keys=False, allow_unicode=True))
    started = time.time()
    run_pending(grid, cells_of(grid), opts.data_dir)
    report = build_report(results, title="clism quickstart")
    table = comparison_table(read_cells(results), f"k{opts.train_examples}", "base", grid.arms[1])
    minutes = (time.time() - started) / 60
    return (f"\nXQuAD zero-shot after fine-tuning on {opts.train_examples} English questions "
            f"({opts.max_eval_examples or 'all'} questions per language):\n\n{table}\n"
            f"report: {report}\nthis run: {minutes:.1f} min")
