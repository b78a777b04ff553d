"""Cross-lingual extractive QA: fine-tune on English, evaluate on every language present.

Outputs of a run directory::

    config.yaml                       the resolved options (repeat with --config)
    seed-<s>/predictions/<dataset>.<lang>.json   id -> answer text
    seed-<s>/metrics.json             per dataset and language: exact_match, f1, total, missing
    seed-<s>/train_log.json           loss per step, speed
    seed-<s>/model/                   the fine-tuned checkpoint (when save_model)
    metrics.json, metrics.md          mean and standard deviation over every seed finished in the folder

A seed whose ``metrics.json`` exists is skipped on restart, so an interrupted few-shot
run resumes where it stopped.
"""
from __future__ import annotations

import json
import logging
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from clism.config import option, save_config
from clism.benchmarks.load import english_qa_training_set, load_qa
from clism.benchmarks.qa import QAExample, read_squad_files
from clism.benchmarks.registry import get_dataset, inventory
from clism.errors import InputError, NotFoundError
from clism.files import write_atomic
from clism.models.backbone import inference_dtype_option
from clism.evaluation.qa_metrics import QAMetric, score_predictions
from clism.tasks.runs import (claim_output_folder, claim_run_folder, push_model, record_training, run_seeds,
                              train_one_seed, write_summary)
from clism.training.processes import is_main_process
from clism.training.options import FinetuneOptions
from clism.training.settings import EvalSettings, default_of

log = logging.getLogger(__name__)

DEFAULT_EVAL_SPLIT = {"xquad": "test", "mlqa": "test", "tydiqa_goldp": "dev", "squad_v1.1": "dev"}
QA_KEYS, QA_LABELS = ("f1", "exact_match"), ("F1", "EM")
DEFAULT_METRIC = {"xquad": "squad", "tydiqa_goldp": "squad", "squad_v1.1": "squad", "mlqa": "mlqa"}



@dataclass
class QAEvalOptions:
    model: Optional[str] = option(None, "fine-tuned checkpoint directory")
    head: str = option("", "answer head: linear or qass (default: the checkpoint's own)")
    datasets: list[str] = option(["xquad"], "evaluation datasets: xquad, mlqa, tydiqa_goldp")
    langs: list[str] = option([], "languages (default: every language present)")
    split: str = option("", "split (default: test; dev for TyDiQA-GoldP)")
    cross_lingual: bool = option(False, "also every question/context language pair (XQuAD, MLQA)")
    metric: str = option("", "squad or mlqa (default: squad for XQuAD/TyDiQA, mlqa for MLQA)")
    whitespace_fallback: bool = option(False, "MLQA metric: whitespace tokens for languages it has no rules for")
    max_length: int = option(384, "tokens per window", minimum=1)
    doc_stride: int = option(128, "tokens shared by neighbouring windows", minimum=1)
    eval_batch_size: int = option(0, "windows per inference batch (0: 8 on CPU, 64 on GPU)")
    inference_dtype: str = inference_dtype_option()
    max_eval_examples: int = option(0, "evaluate only the first N questions per language (0: all)")
    data_dir: Optional[str] = option(None, "offline data mirror (default: $CLISM_DATA_DIR)")
    out: str = option("runs/qa-eval", "output directory")
    # scoring a prediction file, no model
    predictions: Optional[str] = option(None, "score this prediction file (id -> answer text) instead")
    data: Optional[str] = option(None, "with --predictions: a SQuAD-format file, gzip or plain")
    lang: str = option("en", "with --predictions: the answer language")


@dataclass
class QAFinetuneOptions(FinetuneOptions):
    head: str = option("linear", "answer head: linear or qass ([QUE] after the question)")
    train_data: str = option("english", "'english' (SQuAD dev minus XQuAD + TyDiQA en), 'squad' (SQuAD train), "
                                        "or a SQuAD-format file")
    doc_stride: int = option(128, "tokens shared by neighbouring windows", minimum=1)
    max_query_tokens: int = option(64, "question tokens kept", minimum=1)
    cross_lingual: bool = option(False, "also evaluate question/context language pairs")
    dev_questions: int = option(0, "hold out whole English articles with at least this many questions from the "
                                   "training pool and evaluate on them as english-dev: choose settings on it, "
                                   "not on the test sets (0: none)")
    xling_dev_questions: int = option(0, "evaluate on the first N questions of each non-English TyDiQA-GoldP *train* "
                                         "file present (ko, sw in the mirror) as xling-dev: where cross-lingual "
                                         "settings are chosen, never trained on here (0: none)")
    eval_datasets: list[str] = default_of(EvalSettings, "eval_datasets", ["xquad"])
    out: str = option("runs/qa", "output directory")


# --------------------------------------------------------------------------- data


def training_pool(train_data: str, data_dir: str | None) -> list[QAExample]:
    if train_data == "english":
        examples, _ = english_qa_training_set(data_dir)
    elif train_data == "squad":
        examples, _ = load_qa("squad_v1.1", "en", "train", data_dir)
    else:
        examples, _ = read_squad_files([train_data], lang="en")
    return sorted(examples, key=lambda e: e.id)


DEV_SET = "english-dev"


def hold_out_dev(pool: list[QAExample], questions: int) -> tuple[list[QAExample], list[QAExample]]:
    """(training pool, development set): whole articles, so that no passage is in both, taken in
    the order of a hash of their titles (fixed, whatever the seed) until ``questions`` are held out."""
    import hashlib

    if questions <= 0:
        return pool, []
    by_title: dict[str, list[QAExample]] = {}
    for e in pool:
        by_title.setdefault(e.title or e.id, []).append(e)
    held: set[str] = set()
    count = 0
    for title in sorted(by_title, key=lambda t: hashlib.sha256(t.encode("utf-8")).hexdigest()):
        if count >= questions:
            break
        held.add(title)
        count += len(by_title[title])
    if count >= len(pool):
        raise InputError(f"--dev-questions {questions} would hold out the whole training pool ({len(pool)} questions)")
    train = [e for e in pool if (e.title or e.id) not in held]
    dev = [e for e in pool if (e.title or e.id) in held]
    return train, dev


XLING_DEV_SET = "xling-dev"


def xling_dev_sets(questions: int, data_dir: str | None, pool: list[QAExample]) -> list[EvalSet]:
    """Development sets in languages other than English: the first ``questions`` of each TyDiQA-GoldP
    train file present but English's (whose questions are in the English training pool). Train files,
    so the benchmark's dev split stays for reporting; a question also in the training pool is refused."""
    if questions <= 0:
        return []
    spec = get_dataset("tydiqa_goldp")
    langs = sorted(lang for lang, splits in inventory(spec, data_dir).items() if "train" in splits and lang != "en")
    if not langs:
        raise NotFoundError("--xling-dev-questions: no non-English TyDiQA-GoldP train file here (the mirror has "
                            "korean and swahili); see `clism data list`, or set it to 0")
    pool_ids = {e.id for e in pool}
    sets = []
    for lang in langs:
        examples, _ = load_qa("tydiqa_goldp", lang, "train", data_dir, require_valid_answers=False)
        examples = examples[:questions]
        shared = [e.id for e in examples if e.id in pool_ids]
        if shared:
            raise InputError(f"xling-dev {lang}: {len(shared)} questions (e.g. {shared[0]}) are also in the "
                             "training pool; train on other data or set --xling-dev-questions 0")
        sets.append(EvalSet(XLING_DEV_SET, lang, lang, examples, _gold(examples)))
    log.info("xling-dev: %s", ", ".join(f"{s.lang} {len(s.examples)}" for s in sets))
    return sets


def few_shot_sample(pool: list[QAExample], k: int, seed: int) -> list[QAExample]:
    """The same seed always draws the same k questions from the same pool."""
    if k <= 0 or k >= len(pool):
        return list(pool)
    return random.Random(seed).sample(pool, k)


@dataclass
class EvalSet:
    dataset: str
    lang: str  # "ar", or "<context>-<question>" for a cross-lingual pair
    answer_lang: str
    examples: list[QAExample]
    gold: dict[str, list[str]]


def _gold(examples: list[QAExample]) -> dict[str, list[str]]:
    return {e.id: [a.text for a in e.answers] for e in examples}


def evaluation_sets(datasets: list[str], langs: list[str], split: str, cross_lingual: bool,
                    data_dir: str | None, max_examples: int = 0) -> list[EvalSet]:
    sets: list[EvalSet] = []
    for dataset in datasets:
        spec = get_dataset(dataset)
        the_split = split or DEFAULT_EVAL_SPLIT.get(dataset, spec.splits[-1])
        if dataset == "mlqa":
            present = [lang for lang, splits in inventory(spec, data_dir).items() if the_split in splits]
            wanted = [p for p in present if cross_lingual or p.split("-")[0] == p.split("-")[1]]
            if langs:
                wanted = [p for p in wanted if p.split("-")[0] in langs and p.split("-")[1] in langs]
            for pair in wanted:
                examples, _ = load_qa(dataset, pair, the_split, data_dir, require_valid_answers=False)
                examples = examples[: max_examples or None]
                sets.append(EvalSet(dataset, pair, pair.split("-")[0], examples, _gold(examples)))
            continue
        present = [lang for lang, splits in inventory(spec, data_dir).items() if the_split in splits]
        chosen = [lang for lang in langs if lang in present] if langs else present
        absent = [lang for lang in langs if lang not in present and lang in spec.languages]
        if absent and chosen:
            log.warning("%s %s: no local copy of %s; evaluating %s", dataset, the_split, ",".join(absent),
                        ",".join(chosen))
        loaded = {}
        for lang in chosen:
            examples, _ = load_qa(dataset, lang, the_split, data_dir, require_valid_answers=False)
            loaded[lang] = examples[: max_examples or None]
            sets.append(EvalSet(dataset, lang, lang, loaded[lang], _gold(loaded[lang])))
        if cross_lingual and dataset == "xquad":  # G-XLT: the files are parallel by question id
            for c_lang in chosen:
                for q_lang in chosen:
                    if c_lang == q_lang:
                        continue
                    questions = {e.id: e.question for e in loaded[q_lang]}
                    mixed = [QAExample(e.id, questions[e.id], e.context, e.answers, e.title, f"{c_lang}-{q_lang}")
                             for e in loaded[c_lang] if e.id in questions]
                    sets.append(EvalSet(dataset, f"{c_lang}-{q_lang}", c_lang, mixed, _gold(mixed)))
    if not sets:
        raise NotFoundError(f"no evaluation data found for {datasets} (languages {langs or 'any'}, split "
                                f"{split or 'default'}); see `clism data list`")
    return sets


def metric_for(dataset: str, answer_lang: str, name: str = "", whitespace_fallback: bool = False) -> QAMetric:
    return QAMetric(name or DEFAULT_METRIC.get(dataset, "squad"), answer_lang, whitespace_fallback)


# --------------------------------------------------------------------------- runs


def evaluate_model(model, tokenizer, sets: list[EvalSet], out_dir: Path, head: str, max_length: int,
                   doc_stride: int, batch_size: int, metric_name: str = "", whitespace_fallback: bool = False,
                   dtype: str = "auto") -> dict:
    from clism.models.backbone import inference_dtype
    from clism.tasks.qa.postprocess import predict
    from clism.models.span_model import QUE_TOKEN

    que_id = tokenizer.convert_tokens_to_ids(QUE_TOKEN) if head == "qass" else None
    results: dict = {}
    (out_dir / "predictions").mkdir(parents=True, exist_ok=True)
    for s in sets:
        metric = metric_for(s.dataset, s.answer_lang, metric_name, whitespace_fallback)
        with inference_dtype(dtype):
            predictions, stats = predict(model, tokenizer, s.examples, max_length, doc_stride, batch_size, que_id,
                                         desc=f"{s.dataset}.{s.lang}")
        path = out_dir / "predictions" / f"{s.dataset}.{s.lang}.json"
        write_atomic(path, json.dumps(predictions, ensure_ascii=False, indent=0) + "\n")
        scores = score_predictions(metric, s.gold, predictions)
        scores.update(metric=metric.name, questions_per_second=round(stats.questions_per_second, 2))
        results.setdefault(s.dataset, {})[s.lang] = scores
        log.info("%s %s: F1 %.2f EM %.2f (%d questions, %.1f q/s)", s.dataset, s.lang, scores["f1"],
                 scores["exact_match"], scores["total"], stats.questions_per_second)
    return results


def read_prediction_file(path: str | Path) -> dict[str, str]:
    """A prediction file in the official scripts' format: question id -> answer text."""
    from clism.benchmarks.textio import DataFormatError, read_json

    predictions = read_json(path)
    if not isinstance(predictions, dict) or not all(isinstance(v, str) for v in predictions.values()):
        raise DataFormatError(f"{path}: expected a JSON object mapping question id to answer text")
    return predictions


def finetune_one_seed(opts: QAFinetuneOptions, pool: list[QAExample], seed: int, sets: list[EvalSet],
                      run_dir: Path) -> dict:
    from clism.tasks.qa.features import build_features, collate
    from clism.models.span_model import QUE_TOKEN, load_span_model

    model, tokenizer = load_span_model(opts.model, opts.head, opts.dropout)
    que_id = tokenizer.convert_tokens_to_ids(QUE_TOKEN) if opts.head == "qass" else None
    train_examples = few_shot_sample(pool, opts.train_examples, seed)
    features, report = build_features(train_examples, tokenizer, opts.max_length, opts.doc_stride,
                                      opts.max_query_tokens, que_id, training=True)
    log.info("seed %d: %s", seed, report.summary())
    pad_id = tokenizer.pad_token_id
    result = train_one_seed("qa", model, features, lambda batch: collate(batch, pad_id, True), opts, seed, run_dir,
                            head_prefix="head.")
    if not is_main_process():  # evaluation and files are the main process's
        return {}
    if opts.save_model:
        model.save(run_dir / "model", tokenizer)
    metrics = evaluate_model(model, tokenizer, sets, run_dir, opts.head, opts.max_length, opts.doc_stride,
                             opts.eval_batch_size, dtype=opts.inference_dtype) if sets else {}
    if opts.save_model:
        from clism.models.card import write_model_card

        write_model_card(run_dir / "model", f"qa-{opts.head}", {**opts.learning_identity(), "seed": seed},
                         metrics, [f"{len(train_examples)} training questions ({opts.train_data})."])
    return record_training(run_dir, seed, result, metrics, train_questions=len(train_examples),
                           train_windows=len(features), feature_report=report.summary(),
                           train_ids=[e.id for e in train_examples] if opts.train_examples else None)


def run_finetune(opts: QAFinetuneOptions) -> dict:
    out = claim_run_folder(opts)
    pool, dev = hold_out_dev(training_pool(opts.train_data, opts.data_dir), opts.dev_questions)
    sets = evaluation_sets(opts.eval_datasets, opts.eval_langs, "", opts.cross_lingual, opts.data_dir,
                           opts.max_eval_examples) if opts.eval_datasets else []
    if dev:
        log.info("english-dev: %d questions held out of the training pool (%d left)", len(dev), len(pool))
    # the development sets first: where settings are chosen; then the benchmarks that are reported
    sets = ([EvalSet(DEV_SET, "en", "en", dev, _gold(dev))] if dev else []) \
        + xling_dev_sets(opts.xling_dev_questions, opts.data_dir, pool) + sets
    per_seed = run_seeds(out, opts.seeds, lambda seed, run_dir: finetune_one_seed(opts, pool, seed, sets, run_dir))
    k = f"{opts.train_examples} examples" if opts.train_examples else "full training set"
    title = f"{opts.model}, head {opts.head}, {k}, seeds {','.join(str(m.get('seed', '?')) for m in per_seed)}"
    summary = write_summary(out, per_seed, QA_KEYS, QA_LABELS, title)
    push_model(opts, out)
    return summary


def run_evaluate(opts: QAEvalOptions) -> dict:
    from clism.models.span_model import load_span_model, saved_head

    if opts.predictions:
        return score_file(opts)
    if not opts.model:
        raise InputError("give --model (a fine-tuned checkpoint) or --predictions with --data")
    head = opts.head or saved_head(opts.model, default="linear")
    model, tokenizer = load_span_model(opts.model, head, trained_head=True)
    out = claim_output_folder(opts)
    save_config(opts, out / "config.yaml")
    sets = evaluation_sets(opts.datasets, opts.langs, opts.split, opts.cross_lingual, opts.data_dir,
                           opts.max_eval_examples)
    results = evaluate_model(model, tokenizer, sets, out, head, opts.max_length, opts.doc_stride,
                             opts.eval_batch_size, opts.metric, opts.whitespace_fallback, opts.inference_dtype)
    return write_summary(out, [{"results": results}], QA_KEYS, QA_LABELS, f"{opts.model}, head {head}")


def score_file(opts: QAEvalOptions) -> dict:
    """Score a prediction file against a SQuAD-format file: no model needed."""
    from clism.benchmarks.textio import DataFormatError, read_json
    from clism.evaluation.qa_metrics import gold_answers_from_squad_json

    if not opts.data:
        raise InputError("--predictions needs --data (the SQuAD-format file to score against)")
    predictions = read_prediction_file(opts.predictions)
    # Reading through the checked reader reports bad offsets; scoring uses every answer text.
    read_squad_files([opts.data], require_valid_answers=False)
    gold = gold_answers_from_squad_json(read_json(opts.data))
    metric = QAMetric(opts.metric or "squad", opts.lang, opts.whitespace_fallback)
    matched = set(predictions) & set(gold)
    if not matched:
        raise DataFormatError(f"{opts.predictions}: none of its {len(predictions)} question ids is in {opts.data} "
                              "(is it the prediction file of another dataset or language?)")
    result = score_predictions(metric, gold, predictions)
    unknown = len(set(predictions) - set(gold))
    if unknown:
        log.warning("%d predicted ids are not in %s (ignored)", unknown, opts.data)
    if result["missing"]:
        log.warning("%d of %d questions of %s have no prediction (scored 0)", result["missing"], result["total"],
                    opts.data)
    return result
