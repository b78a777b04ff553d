"""clism: CLISM + CACR pre-training for cross-lingual sequence labeling."""

__version__ = "0.1.0"
