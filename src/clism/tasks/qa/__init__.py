"""Extractive QA: model windows, fine-tuning and evaluation runs, and post-processing of span logits into answers."""
