"""A clism QASS question-answering checkpoint as a transformers model (copied into every such
checkpoint; it imports transformers and torch only, never clism):

    from transformers import AutoModelForQuestionAnswering, AutoTokenizer
    model = AutoModelForQuestionAnswering.from_pretrained(path, trust_remote_code=True)

The input must hold one ``[QUE]`` token right after the question, as clism writes it:
``[CLS] question [QUE] [SEP] passage [SEP]`` (``config.clism_que_token_id`` is its id). The
start logit of token k is ``x_k . W_s x_q`` and the end logit ``x_k . W_e x_q``, with ``x_q``
the state of ``[QUE]`` (question-aware span selection, as in Splinter).
"""
import torch
from torch import nn
from transformers import AutoModel, PretrainedConfig, PreTrainedModel
from transformers.modeling_outputs import QuestionAnsweringModelOutput


class QuestionAwareSpanHead(nn.Module):
    def __init__(self, hidden_size: int):
        super().__init__()
        self.start_query = nn.Linear(hidden_size, hidden_size)
        self.end_query = nn.Linear(hidden_size, hidden_size)


class ClismQassForQuestionAnswering(PreTrainedModel):
    config_class = PretrainedConfig
    # attention is the wrapped encoder's: it says what it supports when it is built
    _supports_sdpa = True
    _supports_flash_attn = True

    def __init__(self, config):
        super().__init__(config)
        try:  # BERT-style encoders take add_pooling_layer; the span head never reads a pooler
            encoder = AutoModel.from_config(config, add_pooling_layer=False)
        except TypeError:
            encoder = AutoModel.from_config(config)
        self.encoder_attribute = encoder.base_model_prefix  # "bert", "roberta", ...: the saved keys' prefix
        setattr(self, self.encoder_attribute, encoder)
        self.qass = QuestionAwareSpanHead(config.hidden_size)
        self.post_init()

    def _init_weights(self, module):
        pass  # every weight comes from the checkpoint

    def forward(self, input_ids, attention_mask=None, token_type_ids=None, start_positions=None,
                end_positions=None, **kwargs):
        encoder = getattr(self, self.encoder_attribute)
        inputs = {"input_ids": input_ids, "attention_mask": attention_mask}
        if token_type_ids is not None:
            inputs["token_type_ids"] = token_type_ids
        hidden = encoder(**inputs).last_hidden_state
        que = (input_ids == self.config.clism_que_token_id).int().argmax(dim=1)
        x_q = hidden[torch.arange(hidden.size(0), device=hidden.device), que]
        start = torch.einsum("bh,bth->bt", self.qass.start_query(x_q), hidden)
        end = torch.einsum("bh,bth->bt", self.qass.end_query(x_q), hidden)
        loss = None
        if start_positions is not None and end_positions is not None:
            ce = nn.functional.cross_entropy
            loss = (ce(start.float(), start_positions) + ce(end.float(), end_positions)) / 2
        return QuestionAnsweringModelOutput(loss=loss, start_logits=start, end_logits=end)
