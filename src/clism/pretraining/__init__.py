"""CLISM + CACR + MLM continued pre-training."""
