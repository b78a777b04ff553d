"""clism: CLISM + CACR pre-training for cross-lingual sequence labeling.

From Python, every command is a function taking its options dataclass, and a checkpoint
loads in one call:

    import clism

    clism.build_data(clism.BuildDataOptions(langs=["de"], out="runs/clism-data"))
    clism.pretrain(clism.PretrainOptions(data="runs/clism-data", out="runs/pretrain", max_steps=100))
    clism.finetune_qa(clism.QAFinetuneOptions(model="runs/pretrain/model", head="qass", out="runs/qa"))
    qa = clism.QAPredictor.from_pretrained("runs/qa/seed-1/model")   # answers questions
    model, tokenizer = clism.load("runs/qa/seed-1/model")            # the torch model itself

Names are imported on first use, so that ``import clism`` (and ``clism --help``) stays free of torch.
"""

__version__ = "0.1.0"

# name -> (module, attribute)
_EXPORTS = {
    "QAPredictor": ("clism.api", "QAPredictor"),
    "NERTagger": ("clism.api", "NERTagger"),
    "load": ("clism.api", "load"),
    "build_data": ("clism.clism_data.instances", "build"),
    "BuildDataOptions": ("clism.clism_data.instances", "BuildDataOptions"),
    "pretrain": ("clism.pretraining.train", "pretrain"),
    "PretrainOptions": ("clism.pretraining.options", "PretrainOptions"),
    "finetune_qa": ("clism.tasks.qa.run", "run_finetune"),
    "QAFinetuneOptions": ("clism.tasks.qa.run", "QAFinetuneOptions"),
    "finetune_ner": ("clism.tasks.ner.run", "run_finetune"),
    "NERFinetuneOptions": ("clism.tasks.ner.run", "NERFinetuneOptions"),
}
__all__ = [*_EXPORTS, "__version__"]


def __getattr__(name: str):
    if name in _EXPORTS:
        import importlib

        module, attribute = _EXPORTS[name]
        return getattr(importlib.import_module(module), attribute)
    raise AttributeError(f"module 'clism' has no attribute {name!r}")
