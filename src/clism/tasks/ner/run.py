"""Cross-lingual NER: fine-tune on English, evaluate zero-shot with entity-level F1.

Outputs follow the QA task: ``config.yaml``; per seed ``predictions/<dataset>.<lang>.conll``
(``word<TAB>predicted tag``, a blank line between sentences), ``metrics.json``,
``train_log.json``, ``model/``; and ``metrics.json`` / ``metrics.md`` over seeds.

Label sets: a model knows the types it was trained on. Evaluated on a dataset whose
types differ, predicted types the dataset lacks (e.g. MISC on WikiAnn) become ``O`` and
are counted, and gold types the model cannot predict are listed in the metrics.
"""
from __future__ import annotations

import logging
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from clism.config import option, save_config
from clism.benchmarks.load import load_ner
from clism.benchmarks.ner import NERSentence, entity_types, read_ner, to_iob2
from clism.benchmarks.registry import get_dataset, inventory
from clism.errors import InputError, NotFoundError
from clism.files import write_atomic
from clism.interrupt import stop_if_requested
from clism.models.backbone import inference_dtype_option
from clism.evaluation.ner_metrics import entity_scores
from clism.tasks.runs import (claim_output_folder, claim_run_folder, push_model, record_training, run_seeds,
                              train_one_seed, write_summary)
from clism.training.processes import is_main_process
from clism.training.options import FinetuneOptions
from clism.training.settings import EvalSettings, TrainSettings, default_of

log = logging.getLogger(__name__)

NER_KEYS, NER_LABELS = ("f1", "precision", "recall"), ("F1", "P", "R")



@dataclass
class NEREvalOptions:
    model: Optional[str] = option(None, "fine-tuned NER checkpoint directory")
    datasets: list[str] = option(["wikiann", "conll2002", "conll2003"], "evaluation datasets")
    langs: list[str] = option([], "languages (default: every language present)")
    split: str = option("test", "split to evaluate")
    max_length: int = option(128, "tokens per window", minimum=1)
    eval_batch_size: int = option(128, "windows per inference batch", minimum=1)
    inference_dtype: str = inference_dtype_option()
    max_eval_examples: int = option(0, "evaluate only the first N sentences per language (0: all)")
    data_dir: Optional[str] = option(None, "offline data mirror (default: $CLISM_DATA_DIR)")
    out: str = option("runs/ner-eval", "output directory")
    predictions: Optional[str] = option(None, "score this predicted tag file (word<TAB>tag) instead")
    data: Optional[str] = option(None, "with --predictions: the gold file (same sentences, same words)")


@dataclass
class NERFinetuneOptions(FinetuneOptions):
    train_dataset: str = option("wikiann", "training dataset (wikiann or conll2003)")
    train_lang: str = option("en", "training language")
    train_file: Optional[str] = option(None, "train on this NER file instead of a registry dataset")
    lr: float = default_of(TrainSettings, "lr", 5e-5)
    max_length: int = default_of(FinetuneOptions, "max_length", 128)
    eval_datasets: list[str] = default_of(EvalSettings, "eval_datasets", ["wikiann", "conll2002", "conll2003"])
    eval_split: str = option("test", "evaluation split")
    eval_batch_size: int = default_of(EvalSettings, "eval_batch_size", 128)
    out: str = option("runs/ner", "output directory")


def label_list(types: list[str]) -> list[str]:
    return ["O"] + [f"{p}-{t}" for t in sorted(types) for p in ("B", "I")]


def load_token_classifier(name_or_path: str, labels: list[str] | None = None, dropout: float | None = None):
    """A token classifier. ``labels`` given: a fresh classifier for them (fine-tuning); None: the
    checkpoint's own trained classifier and labels, and an error if it has none."""
    from clism.models.backbone import load_backbone

    kwargs = {}
    if labels is not None:
        kwargs.update(num_labels=len(labels), id2label=dict(enumerate(labels)),
                      label2id={label: i for i, label in enumerate(labels)})
    model, tokenizer, created = load_backbone(name_or_path, "token-classification", dropout, **kwargs)
    if labels is None and created:
        raise InputError(f"{name_or_path} holds no trained NER classifier ({len(created)} weights would be random: "
                         f"{', '.join(sorted(created)[:2])}): give a checkpoint that `clism finetune ner` saved "
                         "(e.g. runs/ner/seed-1/model)")
    return model, tokenizer


def predict_tags(model, tokenizer, sentences: list[NERSentence], max_length: int, batch_size: int,
                 desc: str = "predict") -> tuple[list[list[str]], float]:
    """One predicted tag per word of every sentence; also sentences per second."""
    import torch
    from tqdm.auto import tqdm

    from clism.tasks.ner.features import build_ner_features, collate_ner

    started = time.perf_counter()
    id2label = {int(k): v for k, v in model.config.id2label.items()}
    features = build_ner_features(sentences, tokenizer, max_length)
    tags = [["O"] * len(s.words) for s in sentences]
    order = sorted(range(len(features)), key=lambda i: len(features[i].input_ids))
    device = next(model.parameters()).device
    model.eval()
    from clism.models.backbone import inference_precision

    with torch.inference_mode(), inference_precision(device), \
            tqdm(total=len(order), desc=desc, unit="win", leave=False) as bar:
        for start in range(0, len(order), batch_size):
            stop_if_requested()
            idx = order[start: start + batch_size]
            batch = collate_ner([features[i] for i in idx], tokenizer.pad_token_id, False)
            logits = model(**{k: v.to(device) for k, v in batch.items()}).logits
            best = logits.argmax(-1).cpu().numpy()
            for row, i in enumerate(idx):
                f = features[i]
                for w, pos in enumerate(f.word_starts):
                    if pos is not None:
                        tags[f.sentence_index][f.first_word + w] = id2label[int(best[row, pos])]
            bar.update(len(idx))
    seconds = time.perf_counter() - started
    return [to_iob2(t) for t in tags], len(sentences) / seconds if seconds else 0.0


def harmonise(predicted: list[list[str]], model_types: set[str], gold_types: set[str]) -> tuple[list[list[str]], dict]:
    """Map predicted types the dataset does not have to O; report both differences."""
    extra = model_types - gold_types
    mapped = 0
    if extra:
        out = []
        for tags in predicted:
            row = []
            for t in tags:
                if t != "O" and t[2:] in extra:
                    row.append("O")
                    mapped += t.startswith("B-")
                else:
                    row.append(t)
            out.append(row)
        predicted = out
    note = {}
    if extra:
        note["predicted_types_mapped_to_O"] = {"types": sorted(extra), "entities": mapped}
    if gold_types - model_types:
        note["gold_types_the_model_cannot_predict"] = sorted(gold_types - model_types)
    return predicted, note


@dataclass
class NEREvalSet:
    dataset: str
    lang: str
    sentences: list[NERSentence]


def ner_evaluation_sets(datasets: list[str], langs: list[str], split: str, data_dir: str | None,
                        max_examples: int = 0) -> list[NEREvalSet]:
    sets = []
    for dataset in datasets:
        spec = get_dataset(dataset)
        present = [lang for lang, splits in inventory(spec, data_dir).items() if split in splits]
        for lang in [lang for lang in present if not langs or lang in langs]:
            sentences = load_ner(dataset, lang, split, data_dir)[: max_examples or None]
            sets.append(NEREvalSet(dataset, lang, sentences))
    if not sets:
        raise NotFoundError(f"no NER evaluation data for {datasets} (languages {langs or 'any'}, split {split})")
    return sets


def write_conll(path: Path, sentences: list[NERSentence], tags: list[list[str]]) -> None:
    """One word and its tag per line, a blank line after each sentence; whole or not at all."""
    write_atomic(path, "".join("".join(f"{w}\t{t}\n" for w, t in zip(sentence.words, row)) + "\n"
                               for sentence, row in zip(sentences, tags)))


def evaluate_sets(model, tokenizer, sets: list[NEREvalSet], out_dir: Path, max_length: int, batch_size: int,
                  dtype: str = "auto") -> dict:
    from clism.models.backbone import inference_dtype

    model_types = {label[2:] for label in model.config.id2label.values() if label != "O"}
    results: dict = {}
    for s in sets:
        with inference_dtype(dtype):
            predicted, speed = predict_tags(model, tokenizer, s.sentences, max_length, batch_size,
                                            desc=f"{s.dataset}.{s.lang}")
        predicted, note = harmonise(predicted, model_types, set(entity_types(s.sentences)))
        write_conll(out_dir / "predictions" / f"{s.dataset}.{s.lang}.conll", s.sentences, predicted)
        scores = entity_scores([x.tags for x in s.sentences], predicted)
        scores.update(note, sentences=len(s.sentences), sentences_per_second=round(speed, 1))
        results.setdefault(s.dataset, {})[s.lang] = scores
        log.info("%s %s: F1 %.2f (P %.2f R %.2f, %d sentences, %.0f sent/s)", s.dataset, s.lang, scores["f1"],
                 scores["precision"], scores["recall"], len(s.sentences), speed)
    return results


def training_sentences(opts: NERFinetuneOptions) -> list[NERSentence]:
    if opts.train_file:
        return read_ner(opts.train_file, lang=opts.train_lang)
    return load_ner(opts.train_dataset, opts.train_lang, "train", opts.data_dir)


def finetune_one_seed(opts: NERFinetuneOptions, pool: list[NERSentence], seed: int, sets: list[NEREvalSet],
                      run_dir: Path) -> dict:
    from clism.tasks.ner.features import build_ner_features, collate_ner

    chosen = pool if not opts.train_examples or opts.train_examples >= len(pool) else \
        random.Random(seed).sample(pool, opts.train_examples)
    chosen = [NERSentence(s.words, to_iob2(s.tags), s.line, s.lang) for s in chosen]
    labels = label_list(entity_types(chosen))
    model, tokenizer = load_token_classifier(opts.model, labels, opts.dropout)
    features = build_ner_features(chosen, tokenizer, opts.max_length, {label: i for i, label in enumerate(labels)})
    pad_id = tokenizer.pad_token_id
    result = train_one_seed("ner", model, features, lambda batch: collate_ner(batch, pad_id, True), opts, seed,
                            run_dir, head_prefix="classifier.")
    if not is_main_process():  # evaluation and files are the main process's
        return {}
    if opts.save_model:
        from clism.files import atomic_folder
        from clism.models.backbone import save_backbone

        with atomic_folder(run_dir / "model") as tmp:
            save_backbone(model, tmp)
            tokenizer.save_pretrained(tmp)
    metrics = evaluate_sets(model, tokenizer, sets, run_dir, opts.max_length, opts.eval_batch_size,
                            opts.inference_dtype) if sets else {}
    if opts.save_model:
        from clism.models.card import write_model_card

        write_model_card(run_dir / "model", "ner", {**opts.learning_identity(), "seed": seed}, metrics,
                         [f"{len(chosen)} training sentences; labels: {', '.join(labels)}."])
    return record_training(run_dir, seed, result, metrics, train_sentences=len(chosen),
                           train_windows=len(features), labels=labels)


def run_finetune(opts: NERFinetuneOptions) -> dict:
    out = claim_run_folder(opts)
    pool = training_sentences(opts)
    sets = ner_evaluation_sets(opts.eval_datasets, opts.eval_langs, opts.eval_split, opts.data_dir,
                               opts.max_eval_examples) if opts.eval_datasets else []
    per_seed = run_seeds(out, opts.seeds, lambda seed, run_dir: finetune_one_seed(opts, pool, seed, sets, run_dir))
    source = opts.train_file or f"{opts.train_dataset}-{opts.train_lang}"
    k = f"{opts.train_examples} sentences" if opts.train_examples else "all sentences"
    summary = write_summary(out, per_seed, NER_KEYS, NER_LABELS, f"{opts.model}, NER from {source}, {k}")
    push_model(opts, out)
    return summary


def run_evaluate(opts: NEREvalOptions) -> dict:
    if opts.predictions:
        return score_file(opts.predictions, opts.data)
    if not opts.model:
        raise InputError("give --model (a fine-tuned NER checkpoint) or --predictions with --data")
    model, tokenizer = load_token_classifier(opts.model)
    out = claim_output_folder(opts)
    save_config(opts, out / "config.yaml")
    sets = ner_evaluation_sets(opts.datasets, opts.langs, opts.split, opts.data_dir, opts.max_eval_examples)
    results = evaluate_sets(model, tokenizer, sets, out, opts.max_length, opts.eval_batch_size, opts.inference_dtype)
    return write_summary(out, [{"results": results}], NER_KEYS, NER_LABELS, f"{opts.model}")


def score_file(predictions: str, data: str | None) -> dict:
    """Compare a predicted tag file with a gold file sentence by sentence, word by word."""
    from clism.benchmarks.textio import DataFormatError

    if not data:
        raise InputError("--predictions needs --data (the gold file)")
    predicted, gold = read_ner(predictions), read_ner(data)
    if len(predicted) != len(gold):
        raise DataFormatError(f"{predictions} has {len(predicted)} sentences but {data} has {len(gold)}")
    for i, (p, g) in enumerate(zip(predicted, gold)):
        if p.words != g.words:
            raise DataFormatError(
                f"sentence {i + 1} ({predictions} line {p.line}, {data} line {g.line}) differs: "
                f"{len(p.words)} predicted words vs {len(g.words)} gold"
                + ("" if len(p.words) != len(g.words) else f", first difference at word "
                   f"{next(j for j, (a, b) in enumerate(zip(p.words, g.words)) if a != b) + 1}")
            )
    result = entity_scores([g.tags for g in gold], [p.tags for p in predicted])
    return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in result.items()}

