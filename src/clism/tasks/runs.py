"""What QA and NER runs share: one directory per seed, resume by skipping finished
seeds, and the mean ± standard deviation table over seeds."""
from __future__ import annotations

import dataclasses
import json
import logging
import shutil
import statistics
from pathlib import Path
from typing import Callable, Sequence

from clism.files import remove_stale_temporaries, write_atomic
from clism.training.processes import is_main_process, wait_for_everyone

log = logging.getLogger(__name__)


def claim_run_folder(opts) -> Path:
    """Make ``opts.out`` this run's folder. A folder that holds a run with other learning
    settings is refused (naming them) unless ``opts.overwrite``, which empties it first;
    one with the same settings is continued: finished seeds are kept, a seed cut short
    resumes from its checkpoint."""
    out = Path(opts.out)
    check_before_work(opts)
    if not is_main_process():  # the main process checks and prepares the folder
        wait_for_everyone()
        return out
    try:
        _claim(out, opts)
    finally:
        wait_for_everyone()
    return out


def check_before_work(opts) -> None:
    """What would fail a run late is refused before any data is read: a ``--model`` that is
    neither a folder nor a Hub id, and a ``--push-to-hub`` that could not push one model."""
    from clism.models.registry import resolve_model

    resolve_model(opts.model)
    if opts.push_to_hub is None:
        return
    from clism.config import ConfigError
    from clism.models.hub import check_repo_id

    check_repo_id(opts.push_to_hub)
    if len(opts.seeds) != 1 or not opts.save_model:
        raise ConfigError("--push-to-hub pushes one model: run one seed (--seeds N) with --save-model true, or push "
                          "a seed's folder afterwards with `clism model push <out>/seed-N/model REPO_ID`")


def push_model(opts, out: Path) -> None:
    """The finished run's model to ``--push-to-hub`` (one seed, checked by ``check_before_work``)."""
    if opts.push_to_hub is None or not is_main_process():
        return
    from clism.models.hub import push_folder

    url = push_folder(out / f"seed-{opts.seeds[0]}" / "model", opts.push_to_hub)
    log.info("pushed %s to %s: %s", out / f"seed-{opts.seeds[0]}" / "model", opts.push_to_hub, url)


def _folder(opts) -> Path:
    from clism.config import ConfigError

    out = Path(opts.out)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} is a file, not a folder: choose another --out")
    return out


def claim_output_folder(opts) -> Path:
    """The output folder of a command that is not a training run (evaluation): refused when it
    holds another command's run, whose metrics it would overwrite."""
    from clism.config import ConfigError, load_file

    out = _folder(opts)
    remove_stale_temporaries(out)  # what a killed evaluation left of an atomic write
    saved = out / "config.yaml"
    if saved.is_file():
        saved_type = load_file(saved).get("_type")
        if saved_type and saved_type != type(opts).__name__:
            raise ConfigError(f"--out {out} holds the outputs of another command ({saved_type}); evaluating into it "
                              "would overwrite them: choose another --out")
    return out


def _claim(out: Path, opts) -> None:
    from clism.config import ConfigError, changed_settings, load_file, save_config

    saved_path = _folder(opts) / "config.yaml"
    if saved_path.is_file():
        saved = load_file(saved_path)
        saved_type = saved.pop("_type", type(opts).__name__)
        diff = [f"command: {saved_type} then, {type(opts).__name__} now"] if saved_type != type(opts).__name__ \
            else changed_settings(type(opts), saved, opts.learning_identity())
        if diff and not opts.overwrite:
            raise ConfigError(f"{out} holds a run with other settings ({'; '.join(diff)}): choose another --out, "
                              "or pass --overwrite to replace it")
        if diff:
            log.warning("--overwrite: removing the earlier run in %s", out)
            shutil.rmtree(out)
    elif out.is_dir() and any(out.iterdir()) and not opts.overwrite:
        raise ConfigError(f"--out {out} is a folder that holds other files (no config.yaml of a run): choose another "
                          "--out, or pass --overwrite to write into it")
    out.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(out)  # what a killed run left of an atomic write
    if getattr(opts, "seeds", None):  # the saved settings name every seed the folder's summary holds
        opts = dataclasses.replace(opts, seeds=sorted(set(opts.seeds) | set(finished_seed_numbers(out))))
    save_config(opts, saved_path)
    from clism.environment import write_environment

    write_environment(_folder(opts) / "environment.json")


def run_seeds(out: Path, seeds: Sequence[int], run_one: Callable[[int, Path], dict]) -> list[dict]:
    """Call ``run_one(seed, out/seed-<s>)`` for each seed whose ``metrics.json`` is missing; return
    the metrics of every seed finished in ``out``, in seed order: seeds an earlier call ran there
    (``--seeds 1`` then ``--seeds 2``, the same settings, as ``claim_run_folder`` ensured) belong to
    the run's summary too."""
    per_seed = []
    for seed in seeds:
        run_dir = out / f"seed-{seed}"
        done = run_dir / "metrics.json"
        if done.is_file():
            log.info("seed %d already finished (%s); skipping", seed, done)
            per_seed.append(json.loads(done.read_text()))
            continue
        from accelerate.utils import set_seed

        set_seed(seed)  # a fresh head is drawn when the model loads, before the training loop seeds itself
        metrics = run_one(seed, run_dir)  # every process trains; the main one evaluates and writes
        if is_main_process():
            run_dir.mkdir(parents=True, exist_ok=True)
            write_atomic(done, json.dumps(metrics, indent=1, ensure_ascii=False) + "\n")
        wait_for_everyone()
        per_seed.append(metrics)
    earlier = {s: out / f"seed-{s}" / "metrics.json" for s in finished_seed_numbers(out) if s not in seeds}
    if earlier:
        log.info("the summary also holds seeds %s, finished earlier in %s", sorted(earlier), out)
    per_seed += [json.loads(path.read_text()) for path in earlier.values()]
    return sorted(per_seed, key=lambda m: m.get("seed", 0))


def finished_seed_numbers(out: Path) -> list[int]:
    """The seeds with a ``seed-<s>/metrics.json`` in ``out``, in order."""
    found = [p.parent.name.removeprefix("seed-") for p in out.glob("seed-*/metrics.json")]
    return sorted(int(s) for s in found if s.isdigit())


def train_one_seed(task: str, model, features: list, collate, opts, seed: int, run_dir: Path, head_prefix: str):
    """Fine-tune ``model`` on ``features`` (windows with ``input_ids``) through the engine, in
    length-grouped batches; the parameters under ``head_prefix`` form the head group."""
    from clism.models.flops import train_flops
    from clism.training.engine import Job, length_grouped_batches, train

    config = getattr(model, "config", None) or model.encoder.config  # a transformers model, or our span model
    job = Job(f"{task} seed {seed}", model, features, lambda batch, step, micro: collate(batch),
              length_grouped_batches([len(f.input_ids) for f in features], opts.batch_size, seed),
              is_head=lambda name: name.startswith(head_prefix),
              tokens=lambda batch: int(batch["attention_mask"].sum()),
              flops=lambda batch: train_flops(config, batch["attention_mask"].sum(1).tolist()),
              identity=opts.learning_identity(), settings_class=type(opts))
    return train(job, opts.train_settings(), seed, out=run_dir)


def record_training(run_dir: Path, seed: int, result, metrics: dict, **details) -> dict:
    """Write ``train_log.json`` (loss per step, speed, ``details``), drop the seed's checkpoint;
    return the seed's metrics."""
    run_dir.mkdir(parents=True, exist_ok=True)
    write_atomic(run_dir / "train_log.json", json.dumps({
        "seed": seed, **details, "steps": result.steps, "seconds": round(result.seconds, 1),
        "examples_per_second": round(result.examples_per_second, 2), "losses": result.losses,
    }, indent=1, ensure_ascii=False) + "\n")
    from clism.training.engine import remove_checkpoint

    remove_checkpoint(run_dir)  # the seed is finished; its checkpoint was only for resuming
    return {"seed": seed, "train_loss_first": result.losses[0], "train_loss_last": result.losses[-1],
            "results": metrics}


def _is_same_language(lang: str) -> bool:
    parts = lang.split("-")
    return len(parts) != 2 or parts[0] == parts[1]


def summarize(per_seed: list[dict], keys: Sequence[str]) -> dict:
    """{dataset: {lang | 'average': {<key>_mean, <key>_std, seeds}}} over the seeds' ``results``.

    The average covers same-language cells only (cross-lingual pairs are listed, not averaged)."""
    cells: dict = {}
    for run in per_seed:
        for dataset, by_lang in run["results"].items():
            for lang, scores in by_lang.items():
                cell = cells.setdefault(dataset, {}).setdefault(lang, {k: [] for k in keys})
                for k in keys:
                    cell[k].append(scores[k])
    summary: dict = {}
    for dataset, by_lang in cells.items():
        summary[dataset] = {lang: _stats(cell, keys) for lang, cell in by_lang.items()}
        langs = [lang for lang in by_lang if _is_same_language(lang)]
        averages = {k: [statistics.fmean(v) for v in zip(*(by_lang[lang][k] for lang in langs))] for k in keys}
        summary[dataset]["average"] = _stats(averages, keys)
    return summary


def _stats(cell: dict[str, list[float]], keys: Sequence[str]) -> dict:
    out: dict = {}
    for k in keys:
        values = cell[k]
        out[f"{k}_mean"] = statistics.fmean(values)
        out[f"{k}_std"] = statistics.stdev(values) if len(values) > 1 else 0.0
    out["seeds"] = len(cell[keys[0]])
    return out


def markdown_table(summary: dict, title: str, keys: Sequence[str], labels: Sequence[str]) -> str:
    head = "| dataset | language | " + " | ".join(labels) + " | seeds |"
    lines = [f"### {title}", "", head, "|" + "---|" * (len(keys) + 3)]
    for dataset, by_lang in summary.items():
        for lang, s in by_lang.items():
            spread = s["seeds"] > 1
            values = [f"{s[k + '_mean']:.2f}" + (f" ± {s[k + '_std']:.2f}" if spread else "") for k in keys]
            name = f"**{lang}**" if lang == "average" else lang
            lines.append(f"| {dataset} | {name} | " + " | ".join(values) + f" | {s['seeds']} |")
    return "\n".join(lines) + "\n"


def write_summary(out: Path, per_seed: list[dict], keys: Sequence[str], labels: Sequence[str], title: str) -> dict:
    if not is_main_process():
        return {}
    has_results = any(run.get("results") for run in per_seed)
    summary = summarize(per_seed, keys) if has_results else {}
    write_atomic(out / "metrics.json", json.dumps({"summary": summary, "per_seed": per_seed}, indent=1,
                                                 ensure_ascii=False) + "\n")
    write_atomic(out / "metrics.md", markdown_table(summary, title, keys, labels) if summary else "no evaluation\n")
    return summary
