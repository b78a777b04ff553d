"""The one training loop: pre-training, QA and NER fine-tuning all run through ``train``.

A task hands over a ``Job`` (the model, the items, how to collate them, how to order them
into global batches, which parameters form its head). The engine owns everything else:
the accelerator, seeding, AdamW parameter groups (encoder and head, each with and without
weight decay), the linear schedule, gradient accumulation, clipping, the NaN guard,
progress (loss, examples/s, ETA), ``log.jsonl``, trackers, and checkpoints.

Batches. ``batch_size`` is the effective global batch. The job's ``batch_plan(epoch)``
returns that epoch's global batches as lists of item indices (a pure function of the seed
and the epoch); process ``p`` takes its slice of each and cuts it into micro-batches.

Checkpoints (``<out>/checkpoint/``, written under a temporary name, then renamed) hold
accelerate's saved state (model, optimizer, scheduler, every RNG) and ``trainer_state.json``
(step, data position, losses so far, and the settings that shape learning). A rerun into the
same folder continues from it when those settings match, and refuses, naming the
difference, when they do not; ``overwrite`` starts again. On one process a resumed run ends
with the same weights as an uninterrupted one (kernels on GPUs may not be bitwise
deterministic).
"""
from __future__ import annotations

import json
import logging
import math
import os
import re
import shutil
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional, Sequence

import torch

from clism.config import ConfigError, changed_settings
from clism.errors import InputError, NotFoundError, TrainingDivergedError
from clism.files import write_atomic
from clism.interrupt import stop_if_requested
from clism.training.settings import TrainSettings

log = logging.getLogger(__name__)

STATE_FILE = "trainer_state.json"


# --------------------------------------------------------------------------- batch plans


def shuffled_batches(n: int, batch_size: int, seed: int) -> Callable[[int], list[list[int]]]:
    """A fresh permutation every epoch; the incomplete last batch is dropped (pre-training)."""

    def plan(epoch: int) -> list[list[int]]:
        order = torch.randperm(n, generator=torch.Generator().manual_seed(seed * 100_003 + epoch)).tolist()
        return [order[i: i + batch_size] for i in range(0, n - batch_size + 1, batch_size)]

    return plan


def length_grouped_batches(lengths: Sequence[int], batch_size: int, seed: int,
                           chunk_batches: int = 50) -> Callable[[int], list[list[int]]]:
    """Shuffled batches of similar length (fine-tuning): shuffle, sort within chunks of 50
    batches, cut into batches, shuffle the batches. Padding falls, randomness stays. Each
    epoch continues one seeded generator, so epoch ``e`` is found by replaying 0..e."""
    lengths = list(lengths)
    chunk = batch_size * chunk_batches

    def one_epoch(generator: torch.Generator) -> list[list[int]]:
        order = torch.randperm(len(lengths), generator=generator).tolist()
        batches = []
        for start in range(0, len(order), chunk):
            part = sorted(order[start: start + chunk], key=lambda i: -lengths[i])
            batches += [part[i: i + batch_size] for i in range(0, len(part), batch_size)]
        return [batches[b] for b in torch.randperm(len(batches), generator=generator).tolist()]

    def plan(epoch: int) -> list[list[int]]:
        generator = torch.Generator().manual_seed(seed)
        for _ in range(epoch):
            one_epoch(generator)
        return one_epoch(generator)

    return plan


# --------------------------------------------------------------------------- the job


@dataclass
class Job:
    """What a task gives the engine."""

    name: str
    model: torch.nn.Module  # forward(**batch) returns a dict with "loss" (and any "loss_<part>")
    items: Sequence
    collate: Callable[[list, int, int], dict]  # (items, step, micro-batch index) -> tensors
    batch_plan: Callable[[int], list[list[int]]]  # epoch -> global batches of item indices
    is_head: Callable[[str], bool] = lambda name: False  # parameters that form the task head
    tokens: Optional[Callable[[dict], int]] = None  # tokens in a batch, for tokens/s
    flops: Optional[Callable[[dict], float]] = None  # model FLOPs of a batch's forward and backward
    identity: dict = field(default_factory=dict)  # settings a resumed run must share
    settings_class: Optional[type] = None  # the options dataclass behind identity (a saved run's
    # identity that predates an option is read at that option's default)


@dataclass
class Result:
    steps: int
    seconds: float
    examples_per_second: float
    losses: list[float] = field(default_factory=list)  # mean loss of each optimizer step
    resumed_from: int = 0


# --------------------------------------------------------------------------- optimizer


ENCODER_LAYER = re.compile(r"\.layers?\.(\d+)\.")


def encoder_depth(named: list[tuple[str, torch.nn.Parameter]], is_head: Callable[[str], bool]) -> int:
    """The number of numbered encoder layers among ``named``."""
    return 1 + max((int(m.group(1)) for name, _ in named if (m := ENCODER_LAYER.search(name)) and not is_head(name)),
                   default=-1)


def parameter_part(name: str, is_head: Callable[[str], bool], layers: int, by_depth: bool = True) -> tuple[str, int]:
    """The part a parameter belongs to and its steps of depth below the top layer: ``head``;
    ``encoder_L{ii}`` for layer ii, ``encoder_emb`` for the embeddings (``layers`` steps down),
    ``encoder`` for anything else (a pooler); all encoder parameters are ``encoder`` when not ``by_depth``."""
    if is_head(name):
        return "head", 0
    if not by_depth:
        return "encoder", 0
    match = ENCODER_LAYER.search(name)
    if match:
        return f"encoder_L{int(match.group(1)):02d}", layers - 1 - int(match.group(1))
    return ("encoder_emb", layers) if "embed" in name else ("encoder", 0)


def parameter_groups(model: torch.nn.Module, settings: TrainSettings, is_head: Callable[[str], bool]) -> list[dict]:
    """Encoder and head, each split into decayed weights and undecayed biases/LayerNorms.
    The head's learning rate is ``lr * head_lr_scale``. With ``layer_lr_decay`` below 1 the encoder
    is split by depth too: layer i of L at ``lr * decay^(L-1-i)``, the embeddings at ``lr * decay^L``
    (other encoder parameters, such as a pooler, at ``lr``)."""
    named = [(name, param) for name, param in model.named_parameters() if param.requires_grad]
    layers = encoder_depth(named, is_head)
    by_depth = settings.layer_lr_decay != 1.0
    groups: dict[tuple[str, bool], list] = {}
    depth: dict[str, int] = {}
    for name, param in named:
        part, depth[part] = parameter_part(name, is_head, layers, by_depth)
        decay = not (param.ndim < 2 or "LayerNorm" in name or "layer_norm" in name)
        groups.setdefault((part, decay), []).append(param)
    out = []
    for (part, decay), params in sorted(groups.items(), key=lambda kv: (kv[0][0] == "head", kv[0][0], not kv[0][1])):
        lr = settings.lr * (settings.head_lr_scale if part == "head" else settings.layer_lr_decay ** depth[part])
        out.append({"params": params, "lr": lr, "weight_decay": settings.weight_decay if decay else 0.0,
                    "name": f"{part}{'' if decay else '_no_decay'}"})
    return out


def trainable_weights(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """A copy of every trainable parameter: the start that ``moved_by_part`` measures from."""
    return {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}


def moved_by_part(model: torch.nn.Module, start: dict[str, torch.Tensor],
                  is_head: Callable[[str], bool]) -> dict[str, float]:
    """How far each part (``parameter_part``, always by depth) has moved from ``start``:
    |θ − θ₀| / |θ₀| over the part's parameters in ``start``, rounded to 5 decimals."""
    params = dict(model.named_parameters())
    layers = encoder_depth(list(start.items()), is_head)
    sums: dict[str, list[float]] = {}
    for name, before in start.items():
        part = parameter_part(name, is_head, layers)[0]
        diff, norm = sums.setdefault(part, [0.0, 0.0])
        sums[part] = [diff + float((params[name].detach() - before).pow(2).sum()), norm + float(before.pow(2).sum())]
    return {part: round(math.sqrt(diff / norm), 5) if norm else 0.0 for part, (diff, norm) in sorted(sums.items())}


def make_optimizer(groups: list[dict]) -> torch.optim.Optimizer:
    """AdamW; the fused kernel where the build has it (on CPU ~10x faster than the default
    loop over a 250k-row embedding matrix)."""
    try:
        return torch.optim.AdamW(groups, fused=True)
    except (RuntimeError, TypeError):
        return torch.optim.AdamW(groups)


def split_evenly(items: list, parts: int) -> list[list]:
    """``parts`` contiguous pieces whose sizes differ by at most one (the first ones longer)."""
    size, extra = divmod(len(items), parts)
    bounds = [i * size + min(i, extra) for i in range(parts + 1)]
    return [items[bounds[i]: bounds[i + 1]] for i in range(parts)]


def micro_batches(batch: list[int], world: int, rank: int, micro: int) -> list[list[int]]:
    """This process's micro-batches of one global batch. Every process gets the same number of
    micro-batches (so gradient synchronisation lines up), all non-empty; a full batch gives
    each process ``batch_size / world`` examples in micro-batches of ``micro``."""
    shares = split_evenly(batch, world)
    count = -(-len(shares[0]) // micro)  # the first share is the longest
    return split_evenly(shares[rank], count)


def usable(batch: list[int], world: int, micro: int) -> bool:
    """False for a last, short batch too small to give every process a non-empty micro-batch
    of each accumulation step: such a batch (only ever the tail of an epoch) is skipped."""
    smallest, longest = len(batch) // world, -(-len(batch) // world)
    return smallest > 0 and smallest >= -(-longest // micro)


def reads_every_step(device: torch.device) -> bool:
    """On an accelerator, reading a loss back (``.item()``, an isfinite test) waits for the
    device: there, losses are read every ``log_every`` steps. On a CPU reading is free."""
    return device.type == "cpu"


def total_steps(settings: TrainSettings, batches_per_epoch: int) -> int:
    return settings.max_steps or max(1, math.ceil(settings.epochs * batches_per_epoch))


def warmup_steps(settings: TrainSettings, total: int) -> int:
    return settings.warmup_steps or int(settings.warmup_ratio * total)


# --------------------------------------------------------------------------- checkpoints


def read_state(out: Path) -> Optional[dict]:
    """The trainer state of the checkpoint in ``out``, or None (also after a kill between the
    two renames of a save, when only ``checkpoint.old`` is complete)."""
    for name in ("checkpoint", "checkpoint.old"):
        path = out / name / STATE_FILE
        if path.is_file():
            try:
                return {**json.loads(path.read_text()), "_dir": str(out / name)}
            except json.JSONDecodeError:
                continue
    return None


def _save(out: Path, accelerator, state: dict) -> None:
    tmp, final, old = out / "checkpoint.tmp", out / "checkpoint", out / "checkpoint.old"
    if accelerator.is_main_process and tmp.exists():
        shutil.rmtree(tmp)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(tmp), safe_serialization=False)
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        (tmp / STATE_FILE).write_text(json.dumps(state) + "\n")
        if final.exists():
            if old.exists():
                shutil.rmtree(old)
            os.replace(final, old)
        os.replace(tmp, final)
        if old.exists():
            shutil.rmtree(old)
    accelerator.wait_for_everyone()


def remove_checkpoint(out: Path) -> None:
    for name in ("checkpoint", "checkpoint.old", "checkpoint.tmp"):
        if (out / name).exists():
            shutil.rmtree(out / name)


def read_log(out: str | Path) -> list[dict]:
    path = Path(out) / "log.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.is_file() else []


# --------------------------------------------------------------------------- trackers


def _trackers(report_to: str) -> list[str]:
    if report_to == "none":
        return []
    from accelerate.utils import is_mlflow_available, is_tensorboard_available, is_wandb_available

    available = {"tensorboard": is_tensorboard_available(), "wandb": is_wandb_available(),
                 "mlflow": is_mlflow_available()}
    wanted = list(available) if report_to == "all" else [report_to]
    missing = [t for t in wanted if not available[t]]
    if missing and report_to != "all":
        raise ConfigError(f"--report-to {report_to}: the {report_to} package is not installed "
                          f"(pip install {report_to}), or choose --report-to none")
    for name in missing:
        log.warning("--report-to all: %s is not installed; not logging to it", name)
    return [t for t in wanted if available[t]]


# --------------------------------------------------------------------------- the loop


def train(job: Job, settings: TrainSettings, seed: int, out: Optional[Path] = None, overwrite: bool = False,
          require_checkpoint: bool = False, on_start: Optional[Callable[[], None]] = None) -> Result:
    """Train ``job.model`` in place; with ``out``, log, checkpoint and resume there.
    ``on_start`` runs on the main process once the folder is known to be this run's."""
    from accelerate import Accelerator
    from accelerate.utils import set_seed
    from tqdm.auto import tqdm
    from transformers import get_linear_schedule_with_warmup

    settings.check()
    if not job.items:
        raise InputError(f"{job.name}: nothing to train on")
    trackers = _trackers(settings.report_to) if out is not None else []
    from datetime import timedelta

    from accelerate.utils import DistributedDataParallelKwargs, InitProcessGroupKwargs

    # Some parameters get no gradient in some steps (a switched-off loss term's head; the encoder
    # during head-only warm-up), which DistributedDataParallel must be told about.
    accelerator = Accelerator(mixed_precision=settings.mixed_precision, log_with=trackers or None,
                              project_dir=str(out) if out is not None else None,
                              kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=True),
                                               # the others wait while the main process evaluates
                                               InitProcessGroupKwargs(timeout=timedelta(hours=6))])
    world = accelerator.num_processes
    micro = settings.micro_batch_size or max(1, settings.batch_size // world)
    if settings.batch_size % (micro * world):
        raise ConfigError(f"batch_size {settings.batch_size} must be a multiple of micro_batch_size {micro} x "
                          f"{world} processes")
    set_seed(seed)
    model = job.model
    if settings.freeze_word_embeddings:
        model.get_input_embeddings().weight.requires_grad_(False)
    read_every_step = reads_every_step(accelerator.device)
    pin = accelerator.device.type == "cuda"

    def plan_of(epoch: int) -> list[list[int]]:
        return [b for b in job.batch_plan(epoch) if usable(b, world, micro)]

    batches_per_epoch = len(plan_of(0))
    if batches_per_epoch == 0:
        raise InputError(f"{job.name}: {len(job.items)} examples are fewer than one batch of {settings.batch_size}")
    total = total_steps(settings, batches_per_epoch)
    identity = {**job.identity, "seed": seed, "world_size": world}

    head_names = {name for name, _ in model.named_parameters() if job.is_head(name)}
    groups = parameter_groups(model, settings, job.is_head)
    optimizer = make_optimizer(groups)
    scheduler = get_linear_schedule_with_warmup(optimizer, warmup_steps(settings, total), total)
    # The scheduler is stepped by hand once per optimizer step (accelerate's wrapper would
    # step it once per process); it is registered so that save_state keeps it.
    model, optimizer = accelerator.prepare(model, optimizer)
    accelerator.register_for_checkpointing(scheduler)
    if settings.torch_compile:  # in place, so parameter names (and checkpoints) stay as they are
        accelerator.unwrap_model(model).compile()
    head_start = {n: p.detach().clone() for n, p in accelerator.unwrap_model(model).named_parameters()
                  if n in head_names}

    step, epoch, batch_in_epoch, losses, seen, tokens, resumed_from = 0, 0, 0, [], 0, 0, 0
    flops = 0.0
    if out is not None:
        if accelerator.is_main_process:
            out.mkdir(parents=True, exist_ok=True)
        saved = read_state(out)
        if saved is not None and overwrite:
            if accelerator.is_main_process:
                remove_checkpoint(out)
                (out / "log.jsonl").unlink(missing_ok=True)
            accelerator.wait_for_everyone()
            saved = None
        if saved is None and require_checkpoint:
            raise NotFoundError(f"--resume: no checkpoint in {out}")
        if saved is None and accelerator.is_main_process and read_log(out):
            (out / "log.jsonl").unlink()  # the log of a run that left no checkpoint
        if saved is not None:
            diff = changed_settings(job.settings_class, saved["identity"], identity)
            if diff:
                raise ConfigError(f"{out} holds a {job.name} run with other settings ({'; '.join(diff)}): rerun with "
                                  "the same settings to continue it, or pass --overwrite to start again")
            accelerator.load_state(saved["_dir"])
            step, epoch, batch_in_epoch = saved["step"], saved["epoch"], saved["batch_in_epoch"]
            losses, seen, tokens = saved["losses"], saved["seen"], saved["tokens"]
            resumed_from = step
            log.info("%s: resumed at step %d (epoch %d, batch %d) from %s", job.name, step, epoch, batch_in_epoch,
                     saved["_dir"])
            if accelerator.is_main_process:  # log lines written after the checkpoint are replayed
                kept = [r for r in read_log(out) if r["step"] <= step]
                write_atomic(out / "log.jsonl", "".join(json.dumps(r) + "\n" for r in kept))
        if on_start is not None and accelerator.is_main_process:
            on_start()
        if trackers:
            accelerator.init_trackers(job.name.replace(" ", "-"), config=json.loads(json.dumps(identity)))

    def state() -> dict:
        return {"step": step, "epoch": epoch, "batch_in_epoch": batch_in_epoch, "losses": losses, "seen": seen,
                "tokens": tokens, "identity": identity}

    def set_head_only(on: bool) -> None:
        for name, param in accelerator.unwrap_model(model).named_parameters():
            if name not in head_names and not (settings.freeze_word_embeddings and param is
                                               accelerator.unwrap_model(model).get_input_embeddings().weight):
                param.requires_grad_(not on)

    model.train()
    head_only = settings.head_warmup_steps > 0 and step < settings.head_warmup_steps
    if head_only:
        set_head_only(True)
    bar = tqdm(total=total, initial=step, desc=job.name, unit="step", disable=not accelerator.is_local_main_process)
    started, seen_before, tokens_before, waited = time.perf_counter(), seen, tokens, 0.0
    pending: list[tuple[int, dict[str, torch.Tensor]]] = []  # (step, loss parts) not yet read back

    def read_losses() -> dict[str, float]:
        """Read back the loss parts of the pending steps (one device sync, one all-reduce),
        append each step's loss to ``losses``, stop on the first non-finite one; return the
        parts of the last step."""
        names = sorted(pending[0][1])
        values = torch.stack([torch.stack([parts[k] for k in names]) for _, parts in pending])
        if world > 1:  # the loss of a step is the mean over processes, not this process's share
            values = accelerator.reduce(values, reduction="mean")
        rows = values.tolist()
        for (at, _), row in zip(pending, rows):
            if not all(math.isfinite(v) for v in row):
                raise diverged(at, dict(zip(names, row)))
            losses.append(row[names.index("loss")])
        pending.clear()
        return dict(zip(names, rows[-1]))

    def diverged(at: int, parts: dict[str, float]) -> TrainingDivergedError:
        where = (f"; the last good checkpoint is {out / 'checkpoint'}" if out is not None
                 and (out / "checkpoint").exists() else "")
        parts_text = ", ".join(f"{k[5:]} {v:.4g}" for k, v in parts.items() if k.startswith("loss_"))
        return TrainingDivergedError(
            f"{job.name}: loss is {parts['loss']} at step {at}" + (f" ({parts_text})" if parts_text else "")
            + f"; stopped{where}. Lower the learning rate, or check the inputs of this step")

    while step < total:
        plan = plan_of(epoch)
        while batch_in_epoch < len(plan) and step < total:
            stop_if_requested()
            if head_only and step >= settings.head_warmup_steps:
                set_head_only(False)
                head_only = False
            mine = micro_batches(plan[batch_in_epoch], world, accelerator.process_index, micro)
            parts: dict[str, torch.Tensor] = {}
            examples = sum(len(m) for m in mine)
            equal = len({len(m) for m in mine}) == 1
            for a, indices in enumerate(mine):
                t_data = time.perf_counter()
                batch = job.collate([job.items[i] for i in indices], step, a)
                waited += time.perf_counter() - t_data
                if job.tokens is not None:
                    tokens += job.tokens(batch) * world
                if job.flops is not None:
                    flops += job.flops(batch) * world
                batch = {k: (v.pin_memory() if pin else v).to(accelerator.device, non_blocking=pin)
                         for k, v in batch.items()}
                result = model(**batch)
                # a short last micro-batch counts for what it holds
                weight = 1 / len(mine) if equal else len(indices) / examples
                loss = result["loss"] * weight
                if read_every_step and not torch.isfinite(loss):  # before the step, so the weights stay good
                    raise diverged(step + 1, {k: v.item() for k, v in result.items() if k.startswith("loss")})
                with accelerator.no_sync(model) if a < len(mine) - 1 else nullcontext():
                    accelerator.backward(loss)
                for k, v in result.items():
                    if k.startswith("loss"):
                        parts[k] = parts.get(k, 0.0) + v.detach().float() * weight
            if settings.max_grad_norm:
                accelerator.clip_grad_norm_(model.parameters(), settings.max_grad_norm)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad()
            step += 1
            batch_in_epoch += 1
            seen += len(plan[batch_in_epoch - 1])
            pending.append((step, parts))
            bar.update(1)
            every = settings.checkpoint_every
            checkpoint_due = out is not None and every and (step % every == 0 or (step == total and total > every))
            log_due = step % max(settings.log_every, 1) == 0 or step in (1, total)
            if not (read_every_step or log_due or checkpoint_due):
                continue
            parts = read_losses()
            elapsed = time.perf_counter() - started
            speed = {"examples_per_s": round((seen - seen_before) / max(elapsed, 1e-9), 2),
                     "data_wait_share": round(waited / max(elapsed, 1e-9), 4)}
            if job.tokens is not None:
                speed["tokens_per_s"] = round((tokens - tokens_before) / max(elapsed, 1e-9), 1)
            if job.flops is not None:  # since this process started (a resumed run counts anew)
                # four significant digits: a tiny model's rate must not round to zero
                speed["model_tflops_per_s"] = float(f"{flops / max(elapsed, 1e-9) / 1e12:.4g}")
            bar.set_postfix({k.replace("loss_", ""): f"{v:.3f}" for k, v in parts.items()}
                            | {"ex_s": f"{speed['examples_per_s']:.1f}"})
            if out is not None and log_due:
                record = {"step": step, **{k: round(v, 5) for k, v in parts.items()},
                          **{f"lr_{g['name']}": g["lr"] for g in optimizer.param_groups
                             if not g["name"].endswith("no_decay")}, **speed}
                if head_start:
                    unwrapped = accelerator.unwrap_model(model)
                    record["head_moved"] = moved_by_part(unwrapped, head_start, job.is_head)["head"]
                if accelerator.is_main_process:
                    with open(out / "log.jsonl", "a") as fh:
                        fh.write(json.dumps(record) + "\n")
                if trackers:
                    accelerator.log(record, step=step)
            if checkpoint_due:
                _save(out, accelerator, state())
        if batch_in_epoch >= len(plan):
            epoch, batch_in_epoch = epoch + 1, 0
    bar.close()
    if head_only:
        set_head_only(False)
    if trackers:
        accelerator.end_training()
    elapsed = time.perf_counter() - started
    model = accelerator.unwrap_model(model)
    model.eval()
    return Result(step, elapsed, (seen - seen_before) / elapsed if elapsed else 0.0, losses, resumed_from)
