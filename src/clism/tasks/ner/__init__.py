"""NER: word-level windows, fine-tuning and evaluation runs."""
