"""Training loops: fine-tuning (shared by QA and NER) and, later, CLISM pre-training."""
