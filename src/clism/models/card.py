"""The model card (``README.md``) of every checkpoint clism saves: what it was trained from and
with, how to load it, and what it scored, so a folder shared alone still explains itself."""
from __future__ import annotations

from pathlib import Path

USAGE = {
    "qa-linear": '''```python
import clism
qa = clism.QAPredictor.from_pretrained("{path}")
qa.predict([("Where is the Eiffel Tower?", "The Eiffel Tower is in Paris.")])
# or with transformers alone: AutoModelForQuestionAnswering.from_pretrained("{path}")
```''',
    "qa-qass": '''```python
import clism  # clism writes the [QUE] token after each question, which the QASS head reads
qa = clism.QAPredictor.from_pretrained("{path}")
qa.predict([("Where is the Eiffel Tower?", "The Eiffel Tower is in Paris.")])
# or with transformers alone, inputs "[CLS] question [QUE] [SEP] passage [SEP]":
# AutoModelForQuestionAnswering.from_pretrained("{path}", trust_remote_code=True)
```''',
    "ner": '''```python
import clism
tagger = clism.NERTagger.from_pretrained("{path}")
tagger.tag(["Angela Merkel visited Paris."])
# or with transformers alone: AutoModelForTokenClassification.from_pretrained("{path}")
```''',
    "pretrain": '''An encoder to fine-tune (its span head is kept for the QASS head):

```bash
clism finetune qa --model {path} --head qass --train-examples 256 --out runs/qa
clism finetune ner --model {path} --out runs/ner
```

With transformers alone, `AutoModel.from_pretrained("{path}")` gives the encoder (add
`add_pooling_layer=False` for a BERT-style encoder saved without a pooler, as multilingual-e5 is).''',
}
TITLES = {"qa-linear": "extractive QA (linear span head)", "qa-qass": "extractive QA (QASS span head)",
          "ner": "named-entity recognition", "pretrain": "CLISM + CACR + MLM pre-trained encoder"}
PIPELINE = {"qa-linear": "question-answering", "qa-qass": "question-answering", "ner": "token-classification",
            "pretrain": "feature-extraction"}


def metrics_table(metrics: dict) -> list[str]:
    rows = ["| data set | language | F1 | exact match / precision | examples |", "|---|---|---|---|---|"]
    for dataset, langs in metrics.items():
        for lang, m in langs.items():
            second = m.get("exact_match", m.get("precision"))
            rows.append(f"| {dataset} | {lang} | {m.get('f1', 0):.2f} | "
                        f"{'' if second is None else f'{second:.2f}'} | {m.get('total', m.get('sentences', ''))} |")
    return rows


def write_model_card(folder: str | Path, kind: str, settings: dict, metrics: dict | None = None,
                     notes: list[str] | None = None) -> Path:
    """``README.md`` in ``folder``: ``kind`` is qa-linear, qa-qass, ner or pretrain;
    ``settings`` the run's learning settings (its ``model`` is the base model)."""
    from clism import __version__
    from clism.environment import git_commit
    from clism.files import write_atomic

    folder = Path(folder)
    base = settings.get("model", "")
    commit = git_commit().get("git_commit")
    lines = ["---", "library_name: transformers", f"pipeline_tag: {PIPELINE[kind]}", "tags: [clism]",
             *([f"base_model: {base}"] if base else []), "---", "",
             f"# {TITLES[kind]}, from {base or 'an encoder'}", "",
             f"Trained with clism {__version__}"
             + (f" (commit `{commit[:12]}`)" if commit else "") + ".", "", "## Use", "",
             USAGE[kind].format(path=folder), "", "## Training settings", "", "| setting | value |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in settings.items() if v not in (None, [], "")]
    if metrics:
        lines += ["", "## Evaluation", "", *metrics_table(metrics)]
    if notes:
        lines += ["", *notes]
    path = folder / "README.md"
    write_atomic(path, "\n".join(lines) + "\n")
    return path
