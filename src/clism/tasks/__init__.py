"""Tasks end to end: fine-tune, predict, score, write outputs (QA, NER)."""
