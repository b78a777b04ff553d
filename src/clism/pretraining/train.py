"""``clism pretrain``: one readable loop from a laptop CPU to many GPUs (accelerate).

A checkpoint (``<out>/checkpoint/``, written to a temporary name then renamed) holds the
model, optimizer, scheduler, every RNG state and the data position, so ``--resume``
continues a killed run and ends with the same weights as an uninterrupted one (on one
process; kernels on GPUs may not be bitwise deterministic). A NaN or infinite loss
stops the run with a message and leaves the last good checkpoint. The final model goes
to ``<out>/model/``: a standard Hugging Face checkpoint directory that the fine-tuning
commands load directly.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import torch

from clism.config import option, save_config
from clism.pretraining.data import (
    build_pretrain_features, collate_pretrain, load_instances, mask_tokens,
)
from clism.pretraining.model import CLISMPretrainModel, LossSettings
from clism.training.loop import make_adamw

log = logging.getLogger(__name__)



@dataclass
class PretrainOptions:
    model: str = option("multilingual-e5-small-q4", "encoder to continue: built-in name, local path or hub id")
    data: str = option("runs/clism-data", "a `clism build-data` output directory")
    out: str = option("runs/pretrain", "output directory")
    clism: bool = option(True, "the CLISM span-selection loss")
    cacr: bool = option(True, "the CACR contrastive loss")
    mlm: bool = option(True, "the masked-LM loss")
    weight_clism: float = option(1.0, "weight of L_clism")
    weight_cacr: float = option(1.0, "weight of L_cacr")
    weight_mlm: float = option(1.0, "weight of L_mlm")
    temperature: float = option(0.05, "CACR temperature tau (cosine / tau)")
    mlm_probability: float = option(0.15, "share of tokens masked for MLM")
    max_side_tokens: int = option(128, "tokens per side of the joint input")
    lr: float = option(1e-5, "peak learning rate")
    batch_size: int = option(64, "instances per optimizer step (all processes together)")
    micro_batch_size: int = option(0, "instances per forward pass and process; 0: batch_size / processes")
    max_steps: int = option(15000, "optimizer steps")
    warmup_steps: int = option(1500, "linear warm-up steps, then linear decay to 0")
    weight_decay: float = option(0.01, "AdamW weight decay")
    max_grad_norm: float = option(1.0, "gradient clipping")
    dropout: Optional[float] = option(None, "override the encoder's dropout (0 is ~2x faster on CPU)")
    mixed_precision: str = option("no", "no, bf16 or fp16 (GPU)")
    seed: int = option(1, "seed of initialisation, data order and masking")
    max_instances: int = option(0, "use only the first N instances (0: all)")
    checkpoint_every: int = option(500, "steps between checkpoints")
    log_every: int = option(10, "steps between log lines")
    resume: bool = option(False, "continue from <out>/checkpoint")


def _loss_settings(opts: PretrainOptions) -> LossSettings:
    return LossSettings(opts.clism, opts.cacr, opts.mlm, opts.weight_clism, opts.weight_cacr, opts.weight_mlm,
                        opts.temperature, opts.mlm_probability)


def load_pretrain_model(opts: PretrainOptions):
    from transformers import AutoConfig, AutoModelForMaskedLM, AutoTokenizer

    from clism.models.registry import resolve_model
    from clism.models.span_model import dropout_overrides, ensure_que_token

    path = resolve_model(opts.model)
    config = AutoConfig.from_pretrained(path)
    # A checkpoint without an MLM head (multilingual-e5) gets one initialised by transformers,
    # its decoder tied to the input embeddings.
    mlm_model = AutoModelForMaskedLM.from_pretrained(path, **dropout_overrides(config, opts.dropout))
    tokenizer = AutoTokenizer.from_pretrained(path)
    que_id = ensure_que_token(tokenizer, mlm_model.base_model)
    if mlm_model.get_output_embeddings() is not None:
        mlm_model.tie_weights()
    model = CLISMPretrainModel(mlm_model, _loss_settings(opts))
    head_file = Path(path) / "span_head.safetensors"
    if head_file.is_file():
        from safetensors.torch import load_file

        model.span_head.load_state_dict(load_file(str(head_file)))
    return model, tokenizer, que_id


@dataclass
class DataPosition:
    epoch: int = 0
    batch: int = 0  # batches of this epoch already consumed


def epoch_order(n: int, seed: int, epoch: int) -> list[int]:
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed * 100_003 + epoch)).tolist()


def _rng_state() -> dict:
    import random

    import numpy as np

    state = {"torch": torch.get_rng_state(), "python": random.getstate(), "numpy": np.random.get_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict) -> None:
    import random

    import numpy as np

    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(out: Path, accelerator, model, optimizer, scheduler, step: int, position: DataPosition) -> None:
    if not accelerator.is_main_process:
        return
    final = out / "checkpoint"
    tmp = out / "checkpoint.tmp"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    torch.save({
        "model": accelerator.unwrap_model(model).state_dict(), "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(), "rng": _rng_state(), "step": step,
        "position": dataclasses.asdict(position),
    }, tmp / "state.pt")
    (tmp / "step.json").write_text(json.dumps({"step": step}) + "\n")
    old = out / "checkpoint.old"
    if final.exists():
        os.replace(final, old)
    os.replace(tmp, final)
    if old.exists():
        shutil.rmtree(old)


def pretrain(opts: PretrainOptions) -> dict:
    from accelerate import Accelerator
    from accelerate.utils import set_seed
    from tqdm.auto import tqdm
    from transformers import get_linear_schedule_with_warmup

    out = Path(opts.out)
    accelerator = Accelerator(mixed_precision=opts.mixed_precision)
    world = accelerator.num_processes
    micro = opts.micro_batch_size or max(1, opts.batch_size // world)
    if opts.batch_size % (micro * world):
        raise ValueError(f"batch_size {opts.batch_size} must be a multiple of micro_batch_size {micro} x "
                         f"{world} processes")
    accumulation = opts.batch_size // (micro * world)
    if accelerator.is_main_process:
        out.mkdir(parents=True, exist_ok=True)
        save_config(opts, out / "config.yaml")
    set_seed(opts.seed)
    model, tokenizer, que_id = load_pretrain_model(opts)
    instances = load_instances(opts.data)[: opts.max_instances or None]
    features, stats = build_pretrain_features(instances, tokenizer, que_id, opts.max_side_tokens, opts.clism)
    log.info("%d instances; answers used %d, dropped by truncation %d", len(features), stats["answers_used"],
             stats["answers_dropped_que_truncated"] + stats["answers_dropped_target_truncated"])
    special_ids = set(tokenizer.all_special_ids)
    vocab_size = len(tokenizer)

    optimizer = make_adamw(model, opts.lr, opts.weight_decay)
    scheduler = get_linear_schedule_with_warmup(optimizer, opts.warmup_steps, opts.max_steps)
    step, position = 0, DataPosition()
    checkpoint = out / "checkpoint" / "state.pt"
    if opts.resume and not checkpoint.is_file() and (out / "checkpoint.old" / "state.pt").is_file():
        checkpoint = out / "checkpoint.old" / "state.pt"  # killed between the two renames of a save
    if opts.resume:
        if not checkpoint.is_file():
            raise FileNotFoundError(f"--resume: no checkpoint at {checkpoint}")
        state = torch.load(checkpoint, map_location="cpu", weights_only=False)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        step, position = state["step"], DataPosition(**state["position"])
        _set_rng_state(state["rng"])
        log.info("resumed at step %d (epoch %d, batch %d)", step, position.epoch, position.batch)
        if accelerator.is_main_process:  # log lines written after the checkpoint are replayed
            kept = [r for r in read_log(out) if r["step"] <= step]
            (out / "log.jsonl").write_text("".join(json.dumps(r) + "\n" for r in kept))
    model, optimizer = accelerator.prepare(model, optimizer)

    log_path = out / "log.jsonl"
    writer = _tensorboard(out) if accelerator.is_main_process else None
    per_step = micro * accumulation * world
    batches_per_epoch = len(features) // per_step
    if batches_per_epoch == 0:
        raise ValueError(f"{len(features)} instances are fewer than one batch of {per_step}")
    bar = tqdm(total=opts.max_steps, initial=step, desc="pretrain", unit="step",
               disable=not accelerator.is_main_process)
    started, tokens, waited = time.perf_counter(), 0, 0.0
    model.train()
    while step < opts.max_steps:
        order = epoch_order(len(features), opts.seed, position.epoch)
        while position.batch < batches_per_epoch and step < opts.max_steps:
            t_data = time.perf_counter()
            base = position.batch * per_step + accelerator.process_index * micro * accumulation
            micro_batches = []
            for a in range(accumulation):
                chosen = [features[i] for i in order[base + a * micro: base + (a + 1) * micro]]
                batch = collate_pretrain(chosen, tokenizer.pad_token_id, special_ids)
                generator = torch.Generator().manual_seed(
                    opts.seed * 1_000_003 + step * 1009 + accelerator.process_index * 101 + a)
                if opts.mlm:
                    batch["joint_ids"], batch["mlm_labels"] = mask_tokens(
                        batch["joint_ids"], batch.pop("mlm_candidates"), tokenizer.mask_token_id, vocab_size,
                        generator, opts.mlm_probability)
                else:
                    batch.pop("mlm_candidates")
                micro_batches.append({k: v.to(accelerator.device) for k, v in batch.items()})
            waited += time.perf_counter() - t_data
            components = {"loss": 0.0, "loss_clism": 0.0, "loss_cacr": 0.0, "loss_mlm": 0.0}
            for batch in micro_batches:
                result = model(**batch)
                loss = result["loss"] / accumulation
                if not torch.isfinite(loss):
                    raise FloatingPointError(
                        f"pretrain: loss is {loss.item()} at step {step + 1} (clism {result['loss_clism'].item():.4g}, "
                        f"cacr {result['loss_cacr'].item():.4g}, mlm {result['loss_mlm'].item():.4g}); stopped. "
                        f"The last good checkpoint is {out / 'checkpoint'}; lower --lr and resume")
                accelerator.backward(loss)
                for k in components:
                    components[k] += result[k].item() / accumulation
                tokens += int(batch["joint_mask"].sum() + batch["english_mask"].sum()) * world
            if opts.max_grad_norm:
                accelerator.clip_grad_norm_(model.parameters(), opts.max_grad_norm)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad()
            step += 1
            position.batch += 1
            elapsed = time.perf_counter() - started
            bar.set_postfix(loss=f"{components['loss']:.3f}", clism=f"{components['loss_clism']:.3f}",
                            cacr=f"{components['loss_cacr']:.3f}", mlm=f"{components['loss_mlm']:.3f}",
                            tok_s=f"{tokens / elapsed:.0f}")
            bar.update(1)
            if accelerator.is_main_process and (step % opts.log_every == 0 or step == opts.max_steps or step == 1):
                record = {"step": step, **{k: round(v, 5) for k, v in components.items()},
                          "lr": scheduler.get_last_lr()[0], "tokens_per_s": round(tokens / elapsed, 1),
                          "data_wait_share": round(waited / elapsed, 4)}
                with open(log_path, "a") as fh:
                    fh.write(json.dumps(record) + "\n")
                if writer is not None:
                    for k, v in components.items():
                        writer.add_scalar(f"train/{k}", v, step)
            if step % opts.checkpoint_every == 0 or step == opts.max_steps:
                accelerator.wait_for_everyone()
                save_checkpoint(out, accelerator, model, optimizer, scheduler, step, position)
        if position.batch >= batches_per_epoch:
            position = DataPosition(position.epoch + 1, 0)
    bar.close()
    accelerator.wait_for_everyone()
    summary = {"steps": step, "seconds": round(time.perf_counter() - started, 1), "feature_stats": dict(stats)}
    if accelerator.is_main_process:
        accelerator.unwrap_model(model).save(out / "model", tokenizer)
        (out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    return summary


def _tensorboard(out: Path):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        return None
    try:
        return SummaryWriter(str(out / "tensorboard"))
    except Exception:  # tensorboard itself missing
        return None


def read_log(out: str | Path) -> list[dict]:
    path = Path(out) / "log.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.is_file() else []

