"""Span extraction on top of any encoder: a linear start/end head or the question-aware
span selection (QASS) head fed by ``[QUE]`` states, with save/load that keeps both.

QASS (PAPER.md, after Splinter): for a ``[QUE]`` state ``x_q``, ``s_q = W_s x_q`` and
``e_q = W_e x_q``; the start logit of token k is ``x_k . s_q`` (likewise the end). The
same head serves CLISM pre-training (several ``[QUE]`` per input) and fine-tuning
(one ``[QUE]`` after the question).
"""
from __future__ import annotations

import json
import logging
from pathlib import Path

import torch
from torch import nn

from clism.constants import IGNORE_INDEX, QUE_TOKEN  # noqa: F401  (QUE_TOKEN is re-exported)
from clism.errors import InputError, NotFoundError
from clism.models.backbone import dropout_overrides  # noqa: F401  (re-exported)

log = logging.getLogger(__name__)

HEADS = ("linear", "qass")
HEAD_FILE = "span_head.safetensors"
META_FILE = "clism_model.json"


class QuestionAwareSpanHead(nn.Module):
    def __init__(self, hidden_size: int):
        super().__init__()
        self.start_query = nn.Linear(hidden_size, hidden_size)
        self.end_query = nn.Linear(hidden_size, hidden_size)
        for layer in (self.start_query, self.end_query):
            nn.init.normal_(layer.weight, std=0.02)
            nn.init.zeros_(layer.bias)

    def forward(self, hidden: torch.Tensor, que_positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """hidden (B, T, H), que_positions (B, Q) -> start, end logits (B, Q, T)."""
        index = que_positions.unsqueeze(-1).expand(-1, -1, hidden.size(-1))
        que_states = hidden.gather(1, index)  # (B, Q, H)
        start = torch.einsum("bqh,bth->bqt", self.start_query(que_states), hidden)
        end = torch.einsum("bqh,bth->bqt", self.end_query(que_states), hidden)
        return start, end


def span_loss(start_logits: torch.Tensor, end_logits: torch.Tensor, starts: torch.Tensor,
              ends: torch.Tensor) -> torch.Tensor:
    """The span loss of pre-training and fine-tuning alike: cross-entropy of the gold start and
    of the gold end among the positions (last axis of the logits), each a mean over the
    labelled rows (``IGNORE_INDEX`` rows left out), then averaged. Logits (..., T), labels (...)."""
    length = start_logits.size(-1)
    starts, ends = starts.reshape(-1), ends.reshape(-1)
    if not (starts != IGNORE_INDEX).any():
        return start_logits.sum() * 0.0
    ce = nn.functional.cross_entropy
    return (ce(start_logits.reshape(-1, length).float(), starts, ignore_index=IGNORE_INDEX)
            + ce(end_logits.reshape(-1, length).float(), ends, ignore_index=IGNORE_INDEX)) / 2


class SpanExtractionModel(nn.Module):
    def __init__(self, encoder: nn.Module, head: str = "linear"):
        super().__init__()
        if head not in HEADS:
            raise InputError(f"unknown head {head!r}; choose one of {HEADS}")
        self.encoder = encoder
        self.head_type = head
        hidden = encoder.config.hidden_size
        self.head = nn.Linear(hidden, 2) if head == "linear" else QuestionAwareSpanHead(hidden)
        if head == "linear":
            nn.init.normal_(self.head.weight, std=0.02)
            nn.init.zeros_(self.head.bias)

    def get_input_embeddings(self) -> nn.Embedding:
        return self.encoder.get_input_embeddings()

    def forward(self, input_ids, attention_mask, allowed_mask, que_position=None, token_type_ids=None,
                start_positions=None, end_positions=None):
        """``allowed_mask`` (B, T) marks positions an answer may start/end at (passage + CLS)."""
        kwargs = {"input_ids": input_ids, "attention_mask": attention_mask}
        if token_type_ids is not None:
            kwargs["token_type_ids"] = token_type_ids
        hidden = self.encoder(**kwargs).last_hidden_state
        if self.head_type == "linear":
            start, end = self.head(hidden).unbind(-1)
        else:
            start, end = self.head(hidden, que_position.unsqueeze(1))
            start, end = start.squeeze(1), end.squeeze(1)
        neg = torch.finfo(start.dtype).min
        start = start.masked_fill(~allowed_mask, neg)
        end = end.masked_fill(~allowed_mask, neg)
        out = {"start_logits": start, "end_logits": end}
        if start_positions is not None:
            out["loss"] = span_loss(start, end, start_positions, end_positions)
        return out

    # ------------------------------------------------------------------ save / load

    def as_transformers_qa_model(self, tokenizer=None) -> nn.Module:
        """The model as a transformers question-answering model with the same weights, so that
        ``AutoModelForQuestionAnswering`` loads a fine-tuned checkpoint whole: the linear head
        as the encoder's own ``*ForQuestionAnswering`` (the head is its ``qa_outputs``), the
        QASS head as ``ClismQassForQuestionAnswering`` (``models/remote/``, with ``auto_map``)."""
        import copy

        from transformers import AutoModelForQuestionAnswering

        if self.head_type == "qass":
            from clism.models.remote.modeling_clism_qass import ClismQassForQuestionAnswering

            if tokenizer is None:
                raise InputError("saving a QASS model needs its tokenizer (for the [QUE] id)")
            config = copy.deepcopy(self.encoder.config)
            config.clism_que_token_id = tokenizer.convert_tokens_to_ids(QUE_TOKEN)
            config.auto_map = {"AutoModelForQuestionAnswering": "modeling_clism_qass.ClismQassForQuestionAnswering"}
            qa = ClismQassForQuestionAnswering(config)
            getattr(qa, qa.encoder_attribute).load_state_dict(self.encoder.state_dict())
            qa.qass.load_state_dict(self.head.state_dict())
            qa.clism_config_overrides = getattr(self.encoder, "clism_config_overrides", {})
            return qa
        qa = AutoModelForQuestionAnswering.from_config(self.encoder.config)
        qa.base_model.load_state_dict(self.encoder.state_dict())
        head = [m for name, m in qa.named_children() if name != qa.base_model_prefix]
        if len(head) != 1 or not isinstance(head[0], nn.Linear) or head[0].out_features != 2:
            raise InputError(f"{type(qa).__name__} has no single start/end layer to hold the span head")
        head[0].load_state_dict(self.head.state_dict())
        qa.clism_config_overrides = getattr(self.encoder, "clism_config_overrides", {})
        return qa

    def save(self, directory: str | Path, tokenizer=None) -> Path:
        from safetensors.torch import save_file

        from clism.files import atomic_folder
        from clism.models.backbone import save_backbone

        with atomic_folder(directory) as tmp:
            # either way AutoModelForQuestionAnswering loads it, head included (QASS: with
            # trust_remote_code, from the model code saved beside the weights)
            save_backbone(self.as_transformers_qa_model(tokenizer), tmp)
            if self.head_type == "qass":
                import shutil

                from clism.models.remote import modeling_clism_qass

                shutil.copy(modeling_clism_qass.__file__, tmp / "modeling_clism_qass.py")
            if tokenizer is not None:
                tokenizer.save_pretrained(tmp)
            save_file({k: v.contiguous() for k, v in self.head.state_dict().items()}, str(tmp / HEAD_FILE))
            (tmp / META_FILE).write_text(json.dumps({"head": self.head_type, "que_token": QUE_TOKEN}, indent=2))
        return Path(directory)


def ensure_que_token(tokenizer, encoder) -> int:
    """Add ``[QUE]`` to tokenizer and embeddings when missing; return its id.

    A new ``[QUE]`` row starts as the mean input embedding (a neutral point), not random."""
    if QUE_TOKEN in tokenizer.get_vocab():
        que_id = tokenizer.convert_tokens_to_ids(QUE_TOKEN)
        if que_id >= encoder.get_input_embeddings().num_embeddings:
            raise InputError(f"{QUE_TOKEN} id {que_id} is outside the model's embedding matrix")
        return que_id
    from tokenizers import AddedToken

    # lstrip: the space before [QUE] belongs to it, or SentencePiece tokenizers emit a lone "▁"
    # in front of every [QUE] (a token that carries nothing, and moves the answers' positions)
    tokenizer.add_special_tokens({"additional_special_tokens": [
        AddedToken(QUE_TOKEN, lstrip=True, rstrip=False, normalized=False, special=True)]})
    que_id = tokenizer.convert_tokens_to_ids(QUE_TOKEN)
    embeddings = encoder.get_input_embeddings()
    if que_id >= embeddings.num_embeddings:
        with torch.no_grad():
            mean = embeddings.weight.mean(dim=0)
        encoder.resize_token_embeddings(que_id + 1, mean_resizing=False)
        with torch.no_grad():
            encoder.get_input_embeddings().weight[que_id] = mean
    else:  # spare rows exist (multilingual-e5 has 35 beyond its vocabulary): use one
        with torch.no_grad():
            embeddings.weight[que_id] = embeddings.weight[: tokenizer.vocab_size].mean(dim=0)
    return que_id


def saved_head(name_or_path: str, default: str | None = None) -> str:
    """The head type a clism checkpoint was saved with; ``default`` (or an error) otherwise."""
    from clism.models.registry import DEFAULT_MODEL, resolve_model

    # a hub id cannot hold a clism head, and a mistyped path is the likelier case
    if name_or_path != DEFAULT_MODEL and not Path(name_or_path).expanduser().is_dir():
        raise NotFoundError(f"{name_or_path}: no such checkpoint folder; give the model/ folder of a fine-tuning "
                            "seed, e.g. runs/qa/seed-1/model")
    folder = Path(resolve_model(name_or_path))
    meta = folder / META_FILE
    if meta.is_file():
        return json.loads(meta.read_text())["head"]
    if default is None:
        raise InputError(f"{name_or_path} holds no span head ({META_FILE} is missing): give a checkpoint that "
                         "`clism finetune qa` (or `clism pretrain`) saved, e.g. runs/qa/seed-1/model")
    return default


def load_span_model(name_or_path: str, head: str, dropout: float | None = None, trained_head: bool = False):
    """Encoder + tokenizer + head. A clism checkpoint with the same head keeps its head
    weights (and its ``[QUE]`` row); anything else starts the head fresh, unless
    ``trained_head`` (evaluation, prediction): then a missing head is an error, never a
    random one."""
    from safetensors.torch import load_file

    from clism.models.backbone import load_backbone

    encoder, tokenizer, _ = load_backbone(name_or_path, "encoder", dropout)
    path = Path(encoder.name_or_path)
    if head == "qass":
        ensure_que_token(tokenizer, encoder)
    model = SpanExtractionModel(encoder, head)
    meta_path = path / META_FILE
    meta = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
    if meta.get("head") == head and (path / HEAD_FILE).is_file():
        model.head.load_state_dict(load_file(str(path / HEAD_FILE)))
        log.info("loaded the %s span head from %s", head, path)
    elif trained_head:
        held = f"a {meta['head']} head" if meta.get("head") else "no span head"
        raise InputError(f"{path} holds {held}, not a trained {head} head: give a checkpoint that `clism finetune "
                         f"qa --head {head}` saved (e.g. runs/qa/seed-1/model)"
                         + (f", or --head {meta['head']}" if meta.get("head") else ""))
    else:
        log.info("%s holds %s; starting a fresh %s head", path, f"a {meta['head']} head" if meta else
                 "no span head", head)
    return model, tokenizer
