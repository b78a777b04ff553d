"""Model FLOPs of an encoder, counted the way MFU is usually counted (PaLM, appendix B).

One forward and backward pass over a sequence of ``s`` real tokens costs ``6 N s`` for the
matrix weights of the layers (``N = L (4 d^2 + 2 d d_ff)``: Q, K, V, output, and the two
feed-forward matrices) plus ``12 L d s^2`` for attention scores and values. Padding,
embedding lookups, LayerNorms, softmax, biases and the task heads are not counted, so the
figure is the encoder's own matrix work, what the hardware peak is compared against.
"""
from __future__ import annotations

from typing import Iterable


def layer_matrix_params(config) -> int:
    """N: the weights of the encoder layers' matrix multiplications."""
    d, ff = config.hidden_size, config.intermediate_size
    return config.num_hidden_layers * (4 * d * d + 2 * d * ff)


def train_flops(config, lengths: Iterable[int]) -> float:
    """Model FLOPs of one forward and backward pass over sequences of these real lengths."""
    n, layers, d = layer_matrix_params(config), config.num_hidden_layers, config.hidden_size
    return float(sum(6 * n * s + 12 * layers * d * s * s for s in lengths))


def inference_flops(config, lengths: Iterable[int]) -> float:
    """Model FLOPs of one forward pass (a third of a training pass)."""
    return train_flops(config, lengths) / 3
