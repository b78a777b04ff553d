"""The pre-training model: encoder + MLM head + question-aware span head, three losses.

- ``L_clism``: for every ``[QUE]``, cross-entropy of its answer's start and end among
  the target-segment tokens (QASS scores ``x_k . W x_q``).
- ``L_cacr``: ``L(rt, r̂s) + L(rs, r̂s) + L(rt, rs)``, InfoNCE over cosine / tau with
  in-batch negatives (gathered from every process when distributed). ``r̂s``/``rt`` are
  mean-pooled English/target segments of the joint input, ``rs`` the mean-pooled
  separate English input.
- ``L_mlm``: BERT-style masked LM, 15% of joint tokens (not ``[QUE]``, not answers),
  logits computed at the masked positions only (the vocabulary is 250k).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from clism.constants import IGNORE_INDEX, QUE_TOKEN
from clism.errors import InputError
from clism.models.span_model import HEAD_FILE, META_FILE, QuestionAwareSpanHead, span_loss

MLM_HEAD_FILE = "mlm_head.safetensors"  # a masked-LM head clism created, beside an encoder that had none


@dataclass
class LossSettings:
    clism: bool = True
    cacr: bool = True
    mlm: bool = True
    weight_clism: float = 1.0
    weight_cacr: float = 1.0
    weight_mlm: float = 1.0
    temperature: float = 0.05
    mlm_probability: float = 0.15


def mean_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    mask = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)


def gather_with_grad(x: torch.Tensor) -> torch.Tensor:
    """All processes' rows; this process's rows keep their gradient."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return x
    from torch.distributed.nn.functional import all_gather

    return torch.cat(all_gather(x), dim=0)


def info_nce(anchors: torch.Tensor, positives: torch.Tensor, temperature: float) -> torch.Tensor:
    """-log softmax over the (gathered) batch of cos(anchor_i, positive_j) / tau, at j = i."""
    import torch.distributed as dist

    all_positives = gather_with_grad(positives)
    offset = dist.get_rank() * anchors.size(0) if dist.is_available() and dist.is_initialized() else 0
    logits = nn.functional.normalize(anchors, dim=-1) @ nn.functional.normalize(all_positives, dim=-1).T
    targets = torch.arange(anchors.size(0), device=anchors.device) + offset
    return nn.functional.cross_entropy(logits.float() / temperature, targets)


def _mlm_head(mlm_model: nn.Module):
    """The prediction head (transform + decoder) of the usual masked-LM classes."""
    for name in ("cls", "lm_head", "predictions"):
        head = getattr(mlm_model, name, None)
        if head is not None:
            return head
    raise InputError(f"{type(mlm_model).__name__}: no masked-LM head found (expected .cls or .lm_head)")


class CLISMPretrainModel(nn.Module):
    def __init__(self, mlm_model: nn.Module, losses: LossSettings, mlm_head_created: bool = False):
        super().__init__()
        self.mlm_model = mlm_model
        self.encoder = mlm_model.base_model
        self.span_head = QuestionAwareSpanHead(mlm_model.config.hidden_size)
        self.losses = losses
        # An encoder that came without an MLM head (multilingual-e5) is saved as it came, the
        # head clism made for it in a file of its own: AutoModel then loads the checkpoint as
        # it loads the source, with no table of unexpected weights.
        self.mlm_head_created = mlm_head_created

    def mlm_head_weights(self) -> dict[str, torch.Tensor]:
        """The MLM head's own tensors: not the decoder tied to the word embeddings."""
        shared = {p.data_ptr() for p in self.encoder.parameters()}
        return {k: v.detach().clone().contiguous() for k, v in _mlm_head(self.mlm_model).state_dict().items()
                if v.data_ptr() not in shared}

    def load_mlm_head(self, path: str | Path) -> None:
        from safetensors.torch import load_file

        missing, unexpected = _mlm_head(self.mlm_model).load_state_dict(load_file(str(path)), strict=False)
        own = set(self.mlm_head_weights())
        lacking = [k for k in missing if k in own]  # the decoder tied to the embeddings is not in the file
        if unexpected or lacking:
            raise InputError(f"{path}: does not fit this model's MLM head (unexpected {unexpected}, missing "
                             f"{lacking}); it belongs to another architecture")

    def get_input_embeddings(self) -> nn.Embedding:
        return self.encoder.get_input_embeddings()

    def forward(self, joint_ids, joint_mask, english_ids, english_mask, que_positions, answer_starts, answer_ends,
                english_segment, target_segment, english_alone=None, mlm_labels=None, **_) -> dict:
        s = self.losses
        hidden = self.encoder(input_ids=joint_ids, attention_mask=joint_mask).last_hidden_state
        zero = hidden.new_zeros(())
        out = {"loss_clism": zero, "loss_cacr": zero, "loss_mlm": zero}
        if s.clism:
            out["loss_clism"] = self._clism_loss(hidden, que_positions, answer_starts, answer_ends, target_segment)
        if s.mlm and mlm_labels is not None:
            positions = mlm_labels != IGNORE_INDEX
            if positions.any():
                logits = _mlm_head(self.mlm_model)(hidden[positions])
                out["loss_mlm"] = nn.functional.cross_entropy(logits.float(), mlm_labels[positions])
        if s.cacr:
            english_hidden = self.encoder(input_ids=english_ids, attention_mask=english_mask).last_hidden_state
            # the English sentence's own tokens: not [CLS]/<s> and [SEP]/</s>
            r_s = mean_pool(english_hidden, english_mask if english_alone is None else english_alone)
            r_hat_s = mean_pool(hidden, english_segment)
            r_t = mean_pool(hidden, target_segment)
            t = s.temperature
            out["loss_cacr"] = info_nce(r_t, r_hat_s, t) + info_nce(r_s, r_hat_s, t) + info_nce(r_t, r_s, t)
        out["loss"] = s.weight_clism * out["loss_clism"] + s.weight_cacr * out["loss_cacr"] \
            + s.weight_mlm * out["loss_mlm"]
        return out

    def _clism_loss(self, hidden, que_positions, answer_starts, answer_ends, target_segment) -> torch.Tensor:
        """Each [QUE]'s answer among the target-segment tokens."""
        start_logits, end_logits = self.span_head(hidden, que_positions)  # (B, Q, T)
        allowed = target_segment.unsqueeze(1).expand_as(start_logits)
        neg = torch.finfo(start_logits.dtype).min
        return span_loss(start_logits.masked_fill(~allowed, neg), end_logits.masked_fill(~allowed, neg),
                         answer_starts, answer_ends)

    def save(self, directory: str | Path, tokenizer) -> Path:
        """A standard Hugging Face checkpoint in the source's architecture (masked-LM weights
        for XLM-R, the bare encoder and ``mlm_head.safetensors`` for multilingual-e5; tokenizer
        with [QUE]) plus the span head that ``clism finetune qa --head qass`` picks up."""
        from safetensors.torch import save_file

        from clism.files import atomic_folder
        from clism.models.backbone import save_backbone

        with atomic_folder(directory) as tmp:
            if self.mlm_head_created:
                save_backbone(self.encoder, tmp, getattr(self.mlm_model, "clism_config_overrides", {}))
                save_file(self.mlm_head_weights(), str(tmp / MLM_HEAD_FILE))
            else:
                save_backbone(self.mlm_model, tmp)
            tokenizer.save_pretrained(tmp)
            save_file({k: v.contiguous() for k, v in self.span_head.state_dict().items()}, str(tmp / HEAD_FILE))
            (tmp / META_FILE).write_text(json.dumps({"head": "qass", "que_token": QUE_TOKEN}, indent=2))
        return Path(directory)
