"""``clism pretrain``: CLISM + CACR + MLM through the one training engine
(``clism.training.engine``), from a laptop CPU to many GPUs (accelerate).

The run folder holds ``config.yaml``, ``log.jsonl`` (every loss term, learning rate per
parameter group, tokens/s, how far the span head has moved), ``checkpoint/`` (what a
rerun resumes from: a killed run continues to the same weights as an uninterrupted one,
on one process) and, at the end, ``model/``: a standard Hugging Face checkpoint directory
that the fine-tuning commands load directly, and ``summary.json``.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path

import torch

from clism.config import ConfigError, changed_settings, save_config
from clism.environment import write_environment
from clism.files import remove_stale_temporaries, write_atomic
from clism.pretraining.options import PretrainOptions
from clism.training.processes import is_main_process, process_index
from clism.pretraining.data import build_pretrain_features, collate_pretrain, load_instances, mask_tokens
from clism.pretraining.model import CLISMPretrainModel, LossSettings

log = logging.getLogger(__name__)


def _loss_settings(opts: PretrainOptions) -> LossSettings:
    return LossSettings(opts.clism, opts.cacr, opts.mlm, opts.weight_clism, opts.weight_cacr, opts.weight_mlm,
                        opts.temperature, opts.mlm_probability)


def load_pretrain_model(opts: PretrainOptions):
    """The encoder with an MLM head, ``[QUE]`` and the span head; also the names of the
    parameters created fresh here (the task head of the engine)."""
    from clism.models.backbone import load_backbone
    from clism.models.span_model import HEAD_FILE, ensure_que_token
    from clism.pretraining.model import MLM_HEAD_FILE

    # A checkpoint without an MLM head (multilingual-e5) gets one initialised by transformers,
    # its decoder tied to the input embeddings.
    mlm_model, tokenizer, created = load_backbone(opts.model, "masked-lm", opts.dropout)
    path = mlm_model.name_or_path
    que_id = ensure_que_token(tokenizer, mlm_model.base_model)
    if mlm_model.get_output_embeddings() is not None:
        mlm_model.tie_weights()
    encoder_prefix = mlm_model.base_model_prefix + "."
    model = CLISMPretrainModel(mlm_model, _loss_settings(opts),
                               mlm_head_created=any(not k.startswith(encoder_prefix) for k in created))
    head_file = Path(path) / HEAD_FILE
    if head_file.is_file():
        from safetensors.torch import load_file

        model.span_head.load_state_dict(load_file(str(head_file)))
    if (Path(path) / MLM_HEAD_FILE).is_file():  # a clism checkpoint of such an encoder: its head, trained
        model.load_mlm_head(Path(path) / MLM_HEAD_FILE)
        created = {k for k in created if k.startswith(encoder_prefix)}
    created = {f"mlm_model.{k}" for k in created}
    encoder_weights = {id(p) for p in model.encoder.parameters()}
    fresh = {name for name, p in model.named_parameters()
             if name.startswith("span_head.") or (name in created and id(p) not in encoder_weights)}
    return model, tokenizer, que_id, fresh


def pretrain(opts: PretrainOptions) -> dict:
    from accelerate.utils import set_seed

    from clism.training.engine import (Job, length_grouped_batches, moved_by_part, shuffled_batches, train,
                                       trainable_weights)

    if opts.push_to_hub is not None:  # refused now, not after the run
        from clism.models.hub import check_repo_id

        check_repo_id(opts.push_to_hub)
    asked = opts
    opts = opts.resolved()
    if asked.mlm is None and not opts.mlm:
        log.warning("%s has no MLM head of its own: pre-training without the masked-LM loss (through a created "
                    "head it measured no better, at 1.4x the time; --mlm true turns it on)", opts.model)
    if asked.freeze_word_embeddings is None and opts.freeze_word_embeddings:
        log.info("%s has no MLM head of its own: its word embeddings stay fixed (--freeze-word-embeddings false "
                 "trains them)", opts.model)
    out = Path(opts.out)
    summary_path = out / "summary.json"
    if summary_path.is_file() and not opts.overwrite:
        summary = json.loads(summary_path.read_text())
        diff = changed_settings(PretrainOptions, summary.get("identity", {}), opts.learning_identity())
        if not diff:
            log.info("%s already holds this finished run (%d steps); nothing to train", out, summary["steps"])
            if is_main_process():
                _push(opts, out, summary)
            return summary
        raise ConfigError(f"{out} holds a finished pre-training run with other settings ({'; '.join(diff)}): choose "
                          "another --out, or pass --overwrite to replace it")
    set_seed(opts.seed)
    model, tokenizer, que_id, fresh = load_pretrain_model(opts)
    instances = load_instances(opts.data)[: opts.max_instances or None]
    features, stats = build_pretrain_features(instances, tokenizer, que_id, opts.max_side_tokens, opts.clism)
    log.info("%d instances; answers used %d, dropped by truncation %d", len(features), stats["answers_used"],
             stats["answers_dropped_que_truncated"] + stats["answers_dropped_target_truncated"])
    special_ids = set(tokenizer.all_special_ids)
    vocab_size = len(tokenizer)
    pad_id = tokenizer.pad_token_id

    def collate(chosen: list, step: int, micro: int) -> dict:
        batch = collate_pretrain(chosen, pad_id, special_ids)
        candidates = batch.pop("mlm_candidates")
        if opts.mlm:  # masking depends on the step, the process and the micro-batch alone: resumable
            generator = torch.Generator().manual_seed(opts.seed * 1_000_003 + step * 1009 + process_index() * 101
                                                      + micro)
            batch["joint_ids"], batch["mlm_labels"] = mask_tokens(batch["joint_ids"], candidates,
                                                                  tokenizer.mask_token_id, vocab_size, generator,
                                                                  opts.mlm_probability)
        return batch

    from clism.models.flops import train_flops

    config = model.encoder.config

    def flops(b: dict) -> float:  # the joint input, and the English side again when CACR encodes it
        streams = [b["joint_mask"]] + ([b["english_mask"]] if opts.cacr else [])
        return sum(train_flops(config, mask.sum(1).tolist()) for mask in streams)

    if opts.group_by_length:
        lengths = [len(f.joint_ids) + (len(f.english_ids) if opts.cacr else 0) for f in features]
        batches = length_grouped_batches(lengths, opts.batch_size, opts.seed)
    else:
        batches = shuffled_batches(len(features), opts.batch_size, opts.seed)
    job = Job("pretrain", model, features, collate, batches, is_head=lambda name: name in fresh,
              tokens=lambda b: int(b["joint_mask"].sum() + (b["english_mask"].sum() if opts.cacr else 0)),
              flops=flops, identity=opts.learning_identity(), settings_class=PretrainOptions)
    out.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(out)  # what a killed run left of an atomic write (a half-saved model)
    start = trainable_weights(model)  # the loaded encoder: train() restores a checkpoint only after this
    result = train(job, opts, opts.seed, out=out, overwrite=opts.overwrite, require_checkpoint=opts.resume,
                   on_start=lambda: (save_config(opts, out / "config.yaml"),
                                     write_environment(out / "environment.json")))
    # where pre-training moved the encoder, layer by layer: what fine-tuning inherits
    moved = moved_by_part(model, start, job.is_head)
    del start
    log.info("moved from the start, |θ − θ₀| / |θ₀|: %s", ", ".join(
        f"{part.removeprefix('encoder_')} {value * 100:.3g}%" for part, value in moved.items()))
    summary = {"steps": result.steps, "seconds": round(result.seconds, 1), "resumed_from": result.resumed_from,
               "moved": moved, "feature_stats": dict(stats), "identity": opts.learning_identity()}
    if is_main_process():
        model.save(out / "model", tokenizer)
        from clism.models.card import write_model_card

        write_model_card(out / "model", "pretrain", opts.learning_identity(), notes=[
            f"{stats['instances']} CLISM instances from `{opts.data}`; {result.steps} steps."])
        write_atomic(out / "summary.json", json.dumps(summary, indent=1) + "\n")
        _push(opts, out, summary)
    return summary


def _push(opts: PretrainOptions, out: Path, summary: dict) -> None:
    if opts.push_to_hub is not None:
        from clism.models.hub import push_folder

        summary["pushed"] = push_folder(out / "model", opts.push_to_hub)
        log.info("pushed %s to %s: %s", out / "model", opts.push_to_hub, summary["pushed"])
