"""clism: CLISM + CACR pre-training for cross-lingual sequence labeling.

From Python: ``QAPredictor`` and ``NERTagger`` (see ``clism.api``) load fine-tuned checkpoints;
the commands' entry points are ``clism.clism_data.instances.build``,
``clism.pretraining.train.pretrain``, ``clism.tasks.qa.run.run_finetune`` and
``clism.tasks.ner.run.run_finetune``, each with its options dataclass.
"""

__version__ = "0.1.0"
__all__ = ["NERTagger", "QAPredictor", "__version__"]


def __getattr__(name: str):
    # imported on first use, so that `import clism` (and `clism --help`) stays free of torch
    if name in ("QAPredictor", "NERTagger"):
        from clism import api

        return getattr(api, name)
    raise AttributeError(f"module 'clism' has no attribute {name!r}")
