"""Building CLISM pre-training instances from parallel text: English spans (spaCy), word alignment (eflomal), projection, and the resumable build."""
