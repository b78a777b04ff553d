"""One fine-tuning loop for every task: the same code on one CPU or many GPUs (accelerate).

AdamW with linear warm-up and decay, gradient accumulation, a fixed number of steps
(few-shot) or of epochs, progress with loss, examples/s and ETA. Deterministic for a
given seed on one process (the shuffling generator is seeded; CPU kernels are
deterministic); across GPU counts the data order differs.
"""
from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from typing import Callable, Sequence

import torch

from clism.training.options import LoopSettings

log = logging.getLogger(__name__)


def make_adamw(model: torch.nn.Module, lr: float, weight_decay: float) -> torch.optim.Optimizer:
    """AdamW without decay on biases and LayerNorms; the fused kernel where the build has it
    (on CPU it is ~10x faster than the default loop over a 250k-row embedding matrix)."""
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if param.requires_grad:
            (no_decay if param.ndim < 2 or "LayerNorm" in name else decay).append(param)
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    try:
        return torch.optim.AdamW(groups, lr=lr, fused=True)
    except (RuntimeError, TypeError):
        return torch.optim.AdamW(groups, lr=lr)


class LengthGroupedBatches(torch.utils.data.Sampler):
    """Shuffled batches of similar length: shuffle, sort within chunks of 50 batches,
    cut into batches, shuffle the batches. Padding falls, randomness stays; each pass
    draws a new order from the seeded generator."""

    def __init__(self, lengths: Sequence[int], batch_size: int, generator: torch.Generator, chunk_batches: int = 50):
        self.lengths, self.batch_size, self.generator = list(lengths), batch_size, generator
        self.chunk = batch_size * chunk_batches

    def __len__(self) -> int:
        return math.ceil(len(self.lengths) / self.batch_size)

    def __iter__(self):
        order = torch.randperm(len(self.lengths), generator=self.generator).tolist()
        batches = []
        for start in range(0, len(order), self.chunk):
            chunk = sorted(order[start: start + self.chunk], key=lambda i: -self.lengths[i])
            batches += [chunk[i: i + self.batch_size] for i in range(0, len(chunk), self.batch_size)]
        for b in torch.randperm(len(batches), generator=self.generator).tolist():
            yield batches[b]


@dataclass
class LoopResult:
    steps: int
    seconds: float
    examples_per_second: float
    losses: list[float] = field(default_factory=list)  # mean loss of each optimizer step


def train(model: torch.nn.Module, items: Sequence, collate: Callable[[list], dict], settings: LoopSettings,
          desc: str = "train", lengths: Sequence[int] | None = None) -> LoopResult:
    """Train ``model`` (whose forward returns a dict with ``loss``) on ``items``.

    With ``lengths`` (tokens per item), batches group items of similar length."""
    from accelerate import Accelerator
    from accelerate.utils import set_seed
    from tqdm.auto import tqdm
    from transformers import get_linear_schedule_with_warmup

    if not items:
        raise ValueError(f"{desc}: nothing to train on")
    micro = settings.micro_batch_size or settings.batch_size
    if settings.batch_size % micro:
        raise ValueError(f"batch_size {settings.batch_size} is not a multiple of micro_batch_size {micro}")
    accelerator = Accelerator(gradient_accumulation_steps=settings.batch_size // micro,
                              mixed_precision=settings.mixed_precision)
    set_seed(settings.seed)
    if settings.freeze_word_embeddings:
        model.get_input_embeddings().weight.requires_grad_(False)
    generator = torch.Generator().manual_seed(settings.seed)
    if lengths is not None:
        loader = torch.utils.data.DataLoader(list(items), collate_fn=collate,
                                             batch_sampler=LengthGroupedBatches(lengths, micro, generator))
    else:
        loader = torch.utils.data.DataLoader(list(items), batch_size=micro, shuffle=True, collate_fn=collate,
                                             generator=generator, drop_last=False)
    per_process_batches = math.ceil(len(items) / micro / accelerator.num_processes)
    steps_per_epoch = max(1, per_process_batches // accelerator.gradient_accumulation_steps)
    total_steps = settings.max_steps or max(1, math.ceil(settings.epochs * steps_per_epoch))

    optimizer = make_adamw(model, settings.lr, settings.weight_decay)
    scheduler = get_linear_schedule_with_warmup(optimizer, int(settings.warmup_ratio * total_steps), total_steps)
    # The scheduler is stepped by hand once per optimizer step: accelerate's wrapper would
    # step it once per process.
    model, optimizer, loader = accelerator.prepare(model, optimizer, loader)

    model.train()
    losses: list[float] = []
    step, seen, running = 0, 0, []
    started = time.perf_counter()
    bar = tqdm(total=total_steps, desc=desc, unit="step", disable=not accelerator.is_local_main_process)
    while step < total_steps:
        for batch in loader:
            with accelerator.accumulate(model):
                loss = model(**batch)["loss"]
                if not torch.isfinite(loss):
                    raise FloatingPointError(f"{desc}: loss became {loss.item()} at step {step + 1}; lower the "
                                             f"learning rate or check the inputs")
                accelerator.backward(loss)
                if accelerator.sync_gradients and settings.max_grad_norm:
                    accelerator.clip_grad_norm_(model.parameters(), settings.max_grad_norm)
                optimizer.step()
                if accelerator.sync_gradients:
                    scheduler.step()
                optimizer.zero_grad()
            running.append(loss.item())
            seen += batch["input_ids"].size(0) * accelerator.num_processes
            if accelerator.sync_gradients:
                step += 1
                losses.append(sum(running) / len(running))
                running = []
                elapsed = time.perf_counter() - started
                bar.set_postfix(loss=f"{losses[-1]:.3f}", ex_s=f"{seen / elapsed:.1f}")
                bar.update(1)
                if step >= total_steps:
                    break
    bar.close()
    elapsed = time.perf_counter() - started
    model = accelerator.unwrap_model(model)
    model.eval()
    return LoopResult(step, elapsed, seen / elapsed if elapsed else 0.0, losses)
