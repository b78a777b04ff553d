"""The paper's experiments as one resumable grid: ``clism reproduce``.

A grid file (``configs/reproduce-*.yaml``) names the pre-trained arms and the budgets;
every arm is pre-trained with the same ``pretrain`` section, so the arms differ only in
their objectives (the MLM-only control sees the same data for the same steps as
CLISM+CACR+MLM). Cells are (task, arm, setting):

- ``qa``/<arm>/``zero-shot``: fine-tune on the English QA training set, test on every
  language of XQuAD, MLQA and TyDiQA-GoldP present;
- ``qa``/<arm>/``k<k>``: few-shot, k English questions per seed;
- ``ner``/<arm>/``zero-shot``: fine-tune NER on English, test on WikiAnn and CoNLL.

Layout: checkpoints go to ``work`` (not committed); what the report needs goes to
``results``: the grid file, per cell the fine-tuning runs' ``metrics.json``,
predictions and training logs, the pre-training logs and the data build's manifest,
the machine, and ``ledger.jsonl`` with each cell's wall time. A cell whose seeds all
have ``metrics.json`` is skipped, and an unfinished cell resumes at its first
unfinished seed, so an interrupted grid continues where it stopped.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import re
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from clism.config import ConfigError, from_dict, load_file, option
from clism.interrupt import stop_if_requested
from clism.errors import InputError

log = logging.getLogger(__name__)

# Pre-training switches of each arm; "base" is the encoder as it is.
ARMS: dict[str, Optional[dict]] = {
    "base": None,
    "mlm-only": {"clism": False, "cacr": False, "mlm": True},
    "full": {"clism": True, "cacr": True, "mlm": True},
    "no-clism": {"clism": False, "cacr": True, "mlm": True},
    "no-cacr": {"clism": True, "cacr": False, "mlm": True},
    "no-mlm": {"clism": True, "cacr": True, "mlm": False},
}
ARM_LABELS = {"base": "base encoder", "mlm-only": "MLM only (control)", "full": "CLISM+CACR+MLM",
              "no-clism": "without CLISM", "no-cacr": "without CACR", "no-mlm": "without MLM"}
TASKS = ("qa-zero-shot", "qa-few-shot", "ner")
# "<arm>-p<N>": the arm pre-trained again, with pre-training seed N and, for N > 1, its own data
# build (a separate eflomal run): the spread between pre-training runs, which intervals over
# fine-tuning seeds of one pre-trained model leave out.
REPLICATE = re.compile(r"^(?P<family>.+)-p(?P<n>[1-9][0-9]*)$")


def split_replicate(arm: str) -> tuple[str, int]:
    """("full", 2) for "full-p2"; ("full", 0) for "full"."""
    match = REPLICATE.match(arm)
    return (match["family"], int(match["n"])) if match else (arm, 0)


def arm_label(arm: str, variants: dict | None = None) -> str:
    family, n = split_replicate(arm)
    label = ARM_LABELS.get(family) or (variants or {}).get(family, {}).get("label") or family
    return f"{label} (pre-training run {n})" if n else label


def arm_order(arm: str) -> tuple:
    family, n = split_replicate(arm)
    return (list(ARMS).index(family) if family in ARMS else len(ARMS), family, n)


@dataclass
class QABudget:
    head: str = "qass"
    train_data: str = "english"  # see `clism finetune qa --help`: english, squad, or a SQuAD-format file
    mixed_precision: str = "no"
    max_length: int = 384
    doc_stride: int = 128
    lr: float = 3e-5
    batch_size: int = 32
    dropout: Optional[float] = None
    freeze_word_embeddings: bool = False
    zero_shot_epochs: float = 5.0
    zero_shot_steps: int = 0  # > 0: a step budget instead of epochs
    zero_shot_seeds: list[int] = field(default_factory=lambda: [1, 2, 3, 4, 5])
    few_shot_k: list[int] = field(default_factory=lambda: [64, 128, 256, 512, 1024])
    few_shot_steps: int = 200
    # {k: steps} where they differ: a small k trained for the steps of a large one learns its
    # sample by heart (training loss near zero), which hides what pre-training gave the model
    few_shot_steps_per_k: dict = field(default_factory=dict)
    few_shot_seeds: list[int] = field(default_factory=lambda: [1, 2, 3, 4, 5])
    few_shot_seeds_per_k: dict = field(default_factory=dict)  # {k: [seeds]} where they differ
    # arms outside the grid's curve_arms run few-shot only at these k, with these seeds
    other_arms_k: list[int] = field(default_factory=lambda: [64, 128, 256, 512, 1024])
    other_arms_seeds: list[int] = field(default_factory=lambda: [1, 2, 3, 4, 5])
    eval_datasets: list[str] = field(default_factory=lambda: ["xquad", "mlqa", "tydiqa_goldp"])
    eval_langs: list[str] = field(default_factory=lambda: ["en", "es", "de", "ar", "hi", "vi"])
    max_eval_examples: int = 0
    eval_batch_size: int = 0
    options: dict = field(default_factory=dict)  # any other `clism finetune qa` option (warmup_ratio, ...)

    def steps_for(self, k: int) -> int:
        return {int(key): int(steps) for key, steps in self.few_shot_steps_per_k.items()}.get(k, self.few_shot_steps)

    def seeds_for(self, k: int) -> list[int]:
        per_k = {int(key): [int(s) for s in seeds] for key, seeds in self.few_shot_seeds_per_k.items()}
        return per_k.get(k, self.few_shot_seeds)


@dataclass
class NERBudget:
    train_dataset: str = "wikiann"
    train_lang: str = "en"
    train_examples: int = 0
    lr: float = 5e-5
    batch_size: int = 32
    epochs: float = 5.0
    max_steps: int = 0
    max_length: int = 128
    dropout: Optional[float] = None
    freeze_word_embeddings: bool = False
    mixed_precision: str = "no"
    seeds: list[int] = field(default_factory=lambda: [1, 2, 3, 4, 5])
    eval_datasets: list[str] = field(default_factory=lambda: ["wikiann", "conll2002", "conll2003"])
    eval_langs: list[str] = field(default_factory=list)
    max_eval_examples: int = 0
    options: dict = field(default_factory=dict)  # any other `clism finetune ner` option (warmup_ratio, ...)


@dataclass
class GridConfig:
    name: str = "grid"
    description: str = ""
    model: str = "multilingual-e5-small-q4"
    results: str = "results/grid"
    work: str = "runs/grid"
    arms: list[str] = field(default_factory=lambda: list(ARMS))
    curve_arms: list[str] = field(default_factory=lambda: list(ARMS))  # arms with the whole few-shot curve
    headline_k: int = 256  # the few-shot size run first (with zero-shot) for base, control and full method
    # the settings run first for base, control and full method, in this order: "k<k>", "zero-shot" (QA), "ner";
    # empty: k<headline_k>, zero-shot, ner. The rest follow by k.
    run_first: list[str] = field(default_factory=list)
    tasks: list[str] = field(default_factory=lambda: list(TASKS))
    build_data: dict = field(default_factory=dict)  # BuildDataOptions fields (out is set by the grid)
    pretrain: dict = field(default_factory=dict)  # PretrainOptions fields shared by every pre-trained arm
    qa: QABudget = field(default_factory=QABudget)
    ner: NERBudget = field(default_factory=NERBudget)
    # an experiment's reference: another grid's results folder, compared seed by seed in the report
    compare_with: str = ""
    # another grid's results folder whose base cells this grid takes over where they are the same: base is the
    # same encoder everywhere, so a base cell whose first seed, run here, matches the seed there in every
    # prediction file, score and training loss (same settings, sample and seed) has its other seeds copied
    # from there instead of run again, and ledger.jsonl says so; a cell that does not match runs every seed
    reuse_base_from: str = ""
    # arms beyond the fixed ones: {name: {arm: <the arm whose losses it uses>, label: ..., pretrain: {...}}},
    # pre-trained with the grid's pretrain section overridden by its own
    variants: dict = field(default_factory=dict)


@dataclass
class ReproduceOptions:
    grid: str = option("configs/reproduce-cpu-small.yaml", "grid file: arms, budgets, output folders")
    arms: list[str] = option([], "run only these arms (default: the grid's)")
    tasks: list[str] = option([], "run only these tasks: qa-zero-shot, qa-few-shot, ner (default: the grid's)")
    k: list[int] = option([], "few-shot: run only these k (default: the grid's)")
    seeds: list[int] = option([], "run only these fine-tuning seeds (default: each cell's); `--seeds 1` then "
                                  "`--seeds 2` gives every arm a paired seed before any arm gets its next")
    dry_run: bool = option(False, "list the cells and whether each is done; run nothing")
    report: bool = option(True, "rebuild the report after the grid")
    data_dir: Optional[str] = option(None, "offline data mirror (default: $CLISM_DATA_DIR)")


def load_grid(path: str | Path) -> GridConfig:
    from clism.clism_data.instances import BuildDataOptions
    from clism.pretraining.options import PretrainOptions

    grid = from_dict(GridConfig, load_file(path), str(path))
    for name, variant in grid.variants.items():
        if not isinstance(variant, dict) or ARMS.get(variant.get("arm")) is None or name in ARMS:
            raise ConfigError(f"{path}: variants: {name} needs `arm:` one of the pre-trained arms "
                              f"{[a for a in ARMS if ARMS[a]]} (and a name of its own)")
        unknown = sorted(set(variant) - {"arm", "label", "pretrain", "build_data", "against"})
        if unknown:
            raise ConfigError(f"{path}: variants: {name}: unknown key(s) {unknown}; known: arm, label, pretrain, "
                              "build_data, against (the arm its report compares it with)")
        from_dict(PretrainOptions, variant.get("pretrain", {}), f"{path}: variants: {name}: pretrain")
        from_dict(BuildDataOptions, variant.get("build_data", {}), f"{path}: variants: {name}: build_data")
    known = list(ARMS) + list(grid.variants)
    unknown_arms = [a for a in grid.arms + grid.curve_arms if split_replicate(a)[0] not in known
                    or (split_replicate(a)[1] and split_replicate(a)[0] == "base")]
    if unknown_arms:
        raise ConfigError(f"{path}: unknown arm(s) {unknown_arms}; known: {known}, each pre-trained one also as "
                          "<arm>-p<N> (pre-training run N)")
    bad_settings = [s for s in grid.run_first if not re.fullmatch(r"k\d+|zero-shot|ner", str(s))]
    if bad_settings:
        raise ConfigError(f"{path}: run_first: {bad_settings} are not settings; use k<k> (k256), zero-shot or ner")
    unknown_tasks = [t for t in grid.tasks if t not in TASKS]
    if unknown_tasks:
        raise ConfigError(f"{path}: unknown task(s) {unknown_tasks}; known: {list(TASKS)}")
    for section, cls, owned in (("build_data", BuildDataOptions, ("out", "report", "links_dir")),
                                ("pretrain", PretrainOptions, ("model", "data", "out", "clism", "cacr", "mlm",
                                                               "resume"))):
        values = getattr(grid, section)
        clash = sorted(set(values) & set(owned))
        if clash:
            raise ConfigError(f"{path}: {section}: {clash} are set by the grid per arm; remove them")
        from_dict(cls, values, f"{path}: {section}")  # unknown or ill-typed options fail here, not hours later
    from clism.tasks.ner.run import NERFinetuneOptions
    from clism.tasks.qa.run import QAFinetuneOptions

    for section, cls in (("qa", QAFinetuneOptions), ("ner", NERFinetuneOptions)):
        budget = getattr(grid, section)
        named = {f.name for f in dataclasses.fields(budget)} & {f.name for f in dataclasses.fields(cls)}
        clash = sorted(set(budget.options) & (named | {"model", "seeds", "out", "data_dir", "train_examples",
                                                        "save_model"}))
        if clash:
            raise ConfigError(f"{path}: {section}.options: {clash} are set elsewhere in the grid; remove them here")
        from_dict(cls, budget.options, f"{path}: {section}.options")
    return grid


# --------------------------------------------------------------------------- cells


@dataclass
class Cell:
    task: str  # "qa" or "ner"
    arm: str
    setting: str  # "zero-shot" or "k<k>"
    seeds: list[int]

    @property
    def name(self) -> str:
        return f"{self.task}/{self.arm}/{self.setting}"

    @property
    def k(self) -> int:
        return int(self.setting[1:]) if self.setting.startswith("k") else 0


def cells_of(grid: GridConfig, arms: list[str] | None = None, tasks: list[str] | None = None,
             ks: list[int] | None = None, seeds: list[int] | None = None) -> list[Cell]:
    """Every cell, the headline ones first: the grid's ``run_first`` settings (by default
    ``headline_k``, then zero-shot) for the base, the control and the full method, so a grid
    stopped early still answers the main question. ``seeds`` keeps only those fine-tuning
    seeds (and the cells that have one of them)."""
    cells = []
    for arm in arms or grid.arms:
        if "qa-zero-shot" in (tasks or grid.tasks):
            cells.append(Cell("qa", arm, "zero-shot", grid.qa.zero_shot_seeds))
        if "qa-few-shot" in (tasks or grid.tasks):
            if arm in grid.curve_arms:
                cells += [Cell("qa", arm, f"k{k}", grid.qa.seeds_for(k)) for k in grid.qa.few_shot_k
                          if not ks or k in ks]
            else:
                cells += [Cell("qa", arm, f"k{k}", grid.qa.other_arms_seeds) for k in grid.qa.other_arms_k
                          if not ks or k in ks]
        if "ner" in (tasks or grid.tasks):
            cells.append(Cell("ner", arm, "zero-shot", grid.ner.seeds))

    if seeds:
        cells = [Cell(c.task, c.arm, c.setting, [s for s in c.seeds if s in seeds]) for c in cells]
        cells = [c for c in cells if c.seeds]
    first = grid.run_first or [f"k{grid.headline_k}", "zero-shot", "ner"]

    def priority(cell: Cell) -> tuple:
        headline = split_replicate(cell.arm)[0] in ("base", "mlm-only", "full")
        setting = "ner" if cell.task == "ner" else cell.setting
        rank = first.index(setting) if setting in first else len(first)
        return (not headline, rank, cell.k, arm_order(cell.arm))

    return sorted(cells, key=priority)


def cell_dir(grid: GridConfig, cell: Cell) -> Path:
    return Path(grid.results) / cell.task / cell.arm / cell.setting


def finished_seeds(grid: GridConfig, cell: Cell) -> list[int]:
    return [s for s in cell.seeds if (cell_dir(grid, cell) / f"seed-{s}" / "metrics.json").is_file()]


# --------------------------------------------------------------------------- arms


def clism_data_dir(grid: GridConfig, run: int = 0, family: str = "") -> Path:
    """The shared build, or the build of pre-training run ``run`` (> 1), of a variant that
    builds its data its own way (``family``), or both."""
    own = family if "build_data" in grid.variants.get(family, {}) else ""
    return Path(grid.work) / ("clism-data" + (f"-{own}" if own else "") + (f"-p{run}" if run > 1 else ""))


def ensure_clism_data(grid: GridConfig, data_dir: str | None, run: int = 0, family: str = "") -> Path:
    """A variant's build differs from the shared one only by its options: the pairs are the
    same, so it reuses the shared build's stored alignment and the comparison stays paired.

    Each build's eflomal links are kept in the results (``<results>/<build>/links/``): eflomal
    cannot be seeded, so without them a new machine would build other data, pre-train another
    model and could not add a seed to an arm's finished cells."""
    from clism.clism_data.instances import BuildDataOptions, build, keep_links, quality_report

    out = clism_data_dir(grid, run, family)
    copy_into = Path(grid.results) / out.name
    if not (out / "manifest.json").is_file():
        log.info("building CLISM data into %s", out)
        own = grid.variants.get(family, {}).get("build_data", {})
        manifest = build(BuildDataOptions(**{"data_dir": data_dir, **grid.build_data, **own, "out": str(out),
                                             "links_dir": str(copy_into / "links"),
                                             **({"alignment_run": run} if run > 1 else {})}))
        log.info("CLISM data:\n%s", quality_report(manifest))
    else:  # a build made before links were kept: keep them now, while this machine has them
        try:
            keep_links(json.loads((out / "manifest.json").read_text()), copy_into / "links")
        except InputError as err:  # the build itself is sound; only another machine could not repeat it
            log.warning("%s; a machine without %s will build other data for this grid", err, out)
    copy_into.mkdir(parents=True, exist_ok=True)
    for name in ("manifest.json", "timings.json"):
        if (out / name).is_file():
            shutil.copyfile(out / name, copy_into / name)
    return out


def arm_pretrain_options(grid: GridConfig, arm: str):
    """How ``arm`` is pre-trained (resolved for the grid's encoder): the grid's pretrain section, overridden by
    its variant's, its run's seed and its loss switches; None for base, which is not pre-trained."""
    from clism.pretraining.options import PretrainOptions

    family, run = split_replicate(arm)
    variant = grid.variants.get(family, {})
    switches = ARMS[variant.get("arm", family)]
    if switches is None:
        return None
    return PretrainOptions(**{**grid.pretrain, **variant.get("pretrain", {}), **({"seed": run} if run else {}),
                              "model": grid.model, "data": str(clism_data_dir(grid, run, family)),
                              "out": str(Path(grid.work) / "pretrain" / arm), **switches}).resolved()


def ensure_arm(grid: GridConfig, arm: str, data_dir: str | None) -> str:
    """The encoder a cell of ``arm`` fine-tunes: the base model, or the arm's pre-trained one."""
    from clism.pretraining.train import pretrain

    opts = arm_pretrain_options(grid, arm)
    if opts is None:
        return grid.model
    family, run = split_replicate(arm)
    out = Path(opts.out)
    check_same_budget(out, opts, arm)
    summary_path = out / "summary.json"
    done = summary_path.is_file() and json.loads(summary_path.read_text())["steps"] >= opts.max_steps
    if not done:
        ensure_clism_data(grid, data_dir, run, family)
        log.info("pre-training arm %s (%s)", arm, arm_label(arm, grid.variants))
        started = time.time()
        pretrain(opts)
        append_ledger(grid, {"cell": f"pretrain/{arm}", "seconds": round(time.time() - started, 1)})
    return str(out / "model")


def check_same_budget(out: Path, opts, arm: str) -> None:
    """An arm found in the work folder must have been pre-trained with the grid's settings,
    or the comparison between arms would not be the equal-budget one the grid promises."""
    from clism.config import changed_settings, load_file

    saved_path = out / "config.yaml"
    if not saved_path.is_file():
        return
    diff = changed_settings(type(opts), load_file(saved_path), opts.learning_identity())
    if diff:
        raise ConfigError(f"arm {arm}: {saved_path} was pre-trained with other settings ({'; '.join(diff)}; "
                          f"'now' is the grid). Delete {out} to pre-train it again, or make the grid's pretrain "
                          "section match")


# --------------------------------------------------------------------------- running


MODEL_FINGERPRINT = "pretrained-model.sha256"


def model_fingerprint(model: str) -> str | None:
    """SHA-256 of a pre-trained model's weights; None for the base encoder (the same on every machine)."""
    weights = Path(model) / "model.safetensors"
    if not weights.is_file():
        return None
    import hashlib

    digest = hashlib.sha256()
    with open(weights, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 24), b""):
            digest.update(block)
    return digest.hexdigest()


def check_one_model(grid: GridConfig, cell: Cell, model: str, done: list[int]) -> str | None:
    """Every seed of every cell of an arm, in every task, must fine-tune one pre-trained model. An
    arm pre-trained again (a new machine: no checkpoint, a fresh eflomal run) is another model;
    adding its seeds to the arm's results, or its NER cells beside QA cells of the first one,
    would mix the two without a word. The SHA-256 of the weights is recorded beside the arm's
    cells (``<results>/<task>/<arm>/``) before its first seed runs, so a session stopped mid-cell
    resumes; a cell-level record (grids run before this rule) is read as the arm's. Returns the
    fingerprint (None for the base encoder)."""
    digest = model_fingerprint(model)
    if digest is None:
        return None
    results, arm_dir = Path(grid.results), cell_dir(grid, cell).parent
    records = sorted(results.glob(f"*/{cell.arm}/{MODEL_FINGERPRINT}")) + sorted(
        results.glob(f"*/{cell.arm}/*/{MODEL_FINGERPRINT}"))
    other = next((p for p in records if p.read_text().strip() != digest), None)
    finished = done or any(arm_dir.glob("*/seed-*/metrics.json"))
    if other:
        why = f"{other} records another pre-training of arm {cell.arm} (weights differ)"
    elif finished and not any(p.is_relative_to(arm_dir) for p in records):
        why = f"the seeds in {arm_dir} have no fingerprint recorded"
    else:
        why = ""
    if why:
        raise ConfigError(f"{cell.name}: {why}; fine-tuning {model} here would mix two models. Move the arm's "
                          f"results ({results}/*/{cell.arm}) aside to run the arm again from this model")
    if not (arm_dir / MODEL_FINGERPRINT).is_file():
        arm_dir.mkdir(parents=True, exist_ok=True)
        (arm_dir / MODEL_FINGERPRINT).write_text(digest + "\n")
    return digest


def keep_pretraining_record(grid: GridConfig, arm: str, model: str, digest: str) -> None:
    """Copy how ``arm`` was pre-trained (its log, summary, settings, machine) into
    ``<results>/pretrain/<arm>/``, with the fingerprint of the model they describe. Called only
    once :func:`check_one_model` has accepted the model, so a pre-training that differs from the
    one the arm's results came from never overwrites that one's record; a record of this same
    model is left as it is (a new machine would only change its timings)."""
    out, keep = Path(model).parent, Path(grid.results) / "pretrain" / arm
    fingerprint = keep / MODEL_FINGERPRINT
    if fingerprint.is_file() and fingerprint.read_text().strip() == digest:
        return
    keep.mkdir(parents=True, exist_ok=True)
    for name in ("summary.json", "log.jsonl", "config.yaml", "environment.json"):
        if (out / name).is_file():
            shutil.copyfile(out / name, keep / name)
    fingerprint.write_text(digest + "\n")


def reuse_base_seeds(grid: GridConfig, cell: Cell, model: str, data_dir: str | None, done: list[int]) -> dict:
    """Copy a base cell's pending seeds from ``grid.reuse_base_from`` once one seed run in both matches there
    (see ``GridConfig.reuse_base_from``), running that seed first when this grid has none of the reference's
    yet. Returns the ledger record of the copy ({} when nothing was copied)."""
    from clism.files import atomic_folder
    from clism.tasks.runs import finished_seed_numbers

    if cell.arm != "base" or not grid.reuse_base_from:
        return {}
    reference = Path(grid.reuse_base_from) / cell.task / cell.arm / cell.setting
    theirs = finished_seed_numbers(reference)
    pending = [s for s in cell.seeds if s not in done and s in theirs]
    if not pending:
        return {}
    checked = next((s for s in done if s in theirs), pending[0])
    if checked not in done:
        log.info("%s: running seed %d to compare with %s before copying seeds from there", cell.name, checked,
                 reference)
        run_cell(grid, dataclasses.replace(cell, seeds=[checked]), model, data_dir)
    mismatch = first_difference(cell_dir(grid, cell) / f"seed-{checked}", reference / f"seed-{checked}")
    if mismatch:
        log.warning("%s: seed %d differs from %s (%s): every seed runs here", cell.name, checked, reference,
                    mismatch)
        return {}
    copied = [s for s in pending if s != checked]
    for seed in copied:
        with atomic_folder(cell_dir(grid, cell) / f"seed-{seed}") as into:
            shutil.copytree(reference / f"seed-{seed}", into, dirs_exist_ok=True)
    log.info("%s: seed %d matched %s; copied seeds %s from there", cell.name, checked, reference, copied)
    return {"seeds_copied": copied, "copied_from": str(reference),
            "why": f"base is the same encoder; seed {checked}, run here, matched the reference in every prediction "
                   "file, score and training loss", "seconds": 0} if copied else {}


def first_difference(ours: Path, theirs: Path) -> str:
    """How two runs of one seed differ ("" when they do not): their scores and training losses
    (metrics.json), and every prediction file, byte for byte. Timings are not compared."""
    mine, other = (_without_timings(json.loads((d / "metrics.json").read_text())) for d in (ours, theirs))
    if mine != other:
        return "metrics.json: " + ", ".join(sorted(k for k in set(mine) | set(other) if mine.get(k) != other.get(k)))
    files = [sorted(p.relative_to(d / "predictions") for p in (d / "predictions").rglob("*") if p.is_file())
             for d in (ours, theirs)]
    if files[0] != files[1]:
        return "not the same prediction files"
    changed = [str(f) for f in files[0] if (ours / "predictions" / f).read_bytes()
               != (theirs / "predictions" / f).read_bytes()]
    return f"predictions differ: {', '.join(changed)}" if changed else ""


def _without_timings(value):
    if isinstance(value, dict):
        return {k: _without_timings(v) for k, v in value.items() if "per_second" not in k and "seconds" not in k}
    return value


def append_ledger(grid: GridConfig, record: dict) -> None:
    path = Path(grid.results) / "ledger.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    record = {**record, "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(record) + "\n")


def run_cell(grid: GridConfig, cell: Cell, model: str, data_dir: str | None) -> None:
    out = cell_dir(grid, cell)
    if cell.task == "qa":
        from clism.tasks.qa.run import QAFinetuneOptions, run_finetune

        qa = grid.qa
        zero = cell.setting == "zero-shot"
        run_finetune(QAFinetuneOptions(
            model=model, head=qa.head, train_data=qa.train_data, train_examples=0 if zero else cell.k,
            seeds=cell.seeds, lr=qa.lr,
            batch_size=qa.batch_size, epochs=qa.zero_shot_epochs,
            max_steps=qa.zero_shot_steps if zero else qa.steps_for(cell.k), max_length=qa.max_length,
            doc_stride=qa.doc_stride, dropout=qa.dropout, freeze_word_embeddings=qa.freeze_word_embeddings,
            eval_datasets=qa.eval_datasets, eval_langs=qa.eval_langs, eval_batch_size=qa.eval_batch_size,
            max_eval_examples=qa.max_eval_examples, mixed_precision=qa.mixed_precision, data_dir=data_dir,
            out=str(out), save_model=False, **qa.options))
    else:
        from clism.tasks.ner.run import NERFinetuneOptions, run_finetune

        ner = grid.ner
        run_finetune(NERFinetuneOptions(
            model=model, train_dataset=ner.train_dataset, train_lang=ner.train_lang,
            train_examples=ner.train_examples, seeds=cell.seeds, lr=ner.lr, batch_size=ner.batch_size,
            epochs=ner.epochs, max_steps=ner.max_steps, max_length=ner.max_length, dropout=ner.dropout,
            freeze_word_embeddings=ner.freeze_word_embeddings, eval_datasets=ner.eval_datasets,
            eval_langs=ner.eval_langs, max_eval_examples=ner.max_eval_examples,
            mixed_precision=ner.mixed_precision, data_dir=data_dir,
            out=str(out), save_model=False, **ner.options))


def prepare_results(grid: GridConfig, grid_yaml: str) -> Path:
    """The results folder with the grid file and the machine, so the report can say how it ran."""
    results = Path(grid.results)
    results.mkdir(parents=True, exist_ok=True)
    (results / "grid.yaml").write_text(grid_yaml, encoding="utf-8")
    from clism.environment import write_environment

    write_environment(results / "machine.json")
    return results


def run_pending(grid: GridConfig, cells: list[Cell], data_dir: str | None) -> list[tuple[Cell, str]]:
    """Run every unfinished cell in order (pre-training an arm when a cell first needs it);
    each cell's wall time, pre-training excluded, goes to ``ledger.jsonl``."""
    statuses = []
    for i, cell in enumerate(cells, 1):
        stop_if_requested()
        done = finished_seeds(grid, cell)
        if len(done) == len(cell.seeds):
            statuses.append((cell, "done"))
            continue
        log.info("cell %d/%d: %s (seeds %s; %d already finished)", i, len(cells), cell.name, cell.seeds, len(done))
        model = ensure_arm(grid, cell.arm, data_dir)
        digest = check_one_model(grid, cell, model, done)
        if digest:
            keep_pretraining_record(grid, cell.arm, model, digest)
        started = time.time()
        reused = reuse_base_seeds(grid, cell, model, data_dir, done)
        if reused:
            append_ledger(grid, {"cell": cell.name, **reused})
        copied = reused.get("seeds_copied", [])
        run_cell(grid, cell, model, data_dir)  # the seeds neither finished nor copied, then the cell's summary
        seconds = round(time.time() - started, 1)
        append_ledger(grid, {"cell": cell.name, "seeds_run": [s for s in cell.seeds if s not in done + copied],
                             "seconds": seconds})
        statuses.append((cell, f"ran in {seconds:.0f} s"))
    return statuses


def reproduce(opts: ReproduceOptions) -> list[tuple[Cell, str]]:
    """Run the grid's unfinished cells in priority order; return (cell, status) for each."""
    grid = load_grid(opts.grid)
    bad = [a for a in opts.arms if a not in grid.arms] + [t for t in opts.tasks if t not in grid.tasks]
    if bad:
        raise ConfigError(f"{bad} are not in the grid {opts.grid} (arms {grid.arms}, tasks {grid.tasks})")
    cells = cells_of(grid, opts.arms or None, opts.tasks or None, opts.k or None, opts.seeds or None)
    if opts.seeds and not cells:
        known = sorted({s for c in cells_of(grid, opts.arms or None, opts.tasks or None, opts.k or None)
                        for s in c.seeds})
        raise ConfigError(f"--seeds {opts.seeds}: no cell of {opts.grid} (with these arms, tasks and k) has "
                          f"them; its seeds are {known}")
    if grid.reuse_base_from and not Path(grid.reuse_base_from, "qa").is_dir() \
            and not Path(grid.reuse_base_from, "ner").is_dir():
        raise ConfigError(f"{opts.grid}: reuse_base_from: {grid.reuse_base_from} holds no grid results (qa/ or ner/); "
                          "give another grid's results folder, relative to where clism runs, or remove the key")
    if opts.dry_run:
        return [(cell, "done" if len(done := finished_seeds(grid, cell)) == len(cell.seeds)
                 else f"{len(done)}/{len(cell.seeds)} seeds") for cell in cells]
    import yaml

    resolved = f"# {opts.grid}, with every `extends` resolved\n" + yaml.safe_dump(
        load_file(opts.grid), sort_keys=False, allow_unicode=True)
    prepare_results(grid, resolved)
    return run_pending(grid, cells, opts.data_dir)
