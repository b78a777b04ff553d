"""Encoders: the built-in offline default, any Hugging Face id or local path, tiny test models."""
