"""Model code that travels inside checkpoints (transformers trust_remote_code): never imports clism."""
