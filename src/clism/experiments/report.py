"""The report of a grid, rebuilt from ``results/<grid>/`` alone (no model needed):
``clism report --results results/cpu-small`` writes ``report.md`` and ``figures/*.png``.

Tables follow the paper's: averages over languages, the ablation, few-shot mean ± std,
with the paper's published numbers alongside (they come from XLM-R base on 8 V100s and
far larger budgets, so they are a reference for the shape of the results, not a target
for a small CPU grid).
"""
from __future__ import annotations

import json
import statistics
from dataclasses import dataclass
from pathlib import Path

import yaml

from clism.benchmarks.registry import DATASETS
from clism.errors import NotFoundError
from clism.experiments.grid import arm_label, arm_order
from clism.tasks.runs import summarize

# How the report's headings name the benchmarks
QA_DATASETS = {"xquad": "XQuAD", "mlqa": "MLQA", "tydiqa_goldp": "TyDiQA-GoldP"}
NER_DATASETS = {"wikiann": "WikiAnn", "conll2002": "CoNLL-2002", "conll2003": "CoNLL-2003"}


def task_of(dataset: str) -> str:
    """The task whose cells score ``dataset``, as the benchmark registry files it: ``ner`` cells for
    the NER benchmarks, ``qa`` cells for the rest (the QA benchmarks and the development sets
    english-dev and xling-dev, which are not in the registry)."""
    spec = DATASETS.get(dataset)
    return "ner" if spec is not None and spec.task == "ner" else "qa"

# What the tables of one pre-trained model per arm hold
SEED_PAIRING = ("Paired by training sample and fine-tuning seed; the interval is over fine-tuning seeds, so it "
                "leaves out the spread between pre-training runs.")

# PAPER.md, "Reported results" (XLM-R base rows), the ablation and the few-shot table.
PAPER = {
    "average": {"base": {"mlqa": (64.14, 46.00), "xquad": (73.54, 57.55), "conll": 78.48, "wikiann": 70.28},
                "full": {"mlqa": (67.34, 49.11), "xquad": (76.73, 60.87), "conll": 80.63, "wikiann": 73.31}},
    "ablation_f1": {"base": (64.14, 73.54), "full": (67.34, 76.73), "no-clism": (64.56, 74.34),
                    "no-cacr": (66.40, 75.87), "no-mlm": (66.18, 75.34)},  # (MLQA, XQuAD)
    "few_shot_xquad_f1": {"base": {64: 8, 128: 12, 256: 20.4, 512: 33.35, 1024: 43.25},
                          "full": {64: 15.5, 128: 29.5, 256: 44.2, 512: 53.94, 1024: 61.25}},
}


@dataclass
class CellResult:
    task: str
    arm: str
    setting: str
    summary: dict  # {dataset: {lang | average: {f1_mean, f1_std, ..., seeds}}}
    seeds: int


def read_cells(results: Path) -> list[CellResult]:
    cells = []
    for task, keys in (("qa", ("f1", "exact_match")), ("ner", ("f1", "precision", "recall"))):
        for setting_dir in sorted(results.glob(f"{task}/*/*")):
            per_seed = [json.loads(p.read_text()) for p in sorted(setting_dir.glob("seed-*/metrics.json"))]
            per_seed = [run for run in per_seed if run.get("results")]
            if not per_seed:
                continue
            summary = summarize(per_seed, keys)
            cells.append(CellResult(task, setting_dir.parent.name, setting_dir.name, summary, len(per_seed)))
    return cells


def _find(cells: list[CellResult], task: str, arm: str, setting: str) -> CellResult | None:
    return next((c for c in cells if (c.task, c.arm, c.setting) == (task, arm, setting)), None)


def _mean_std(cell: CellResult | None, dataset: str, lang: str = "average", key: str = "f1") -> str:
    if cell is None or dataset not in cell.summary or lang not in cell.summary[dataset]:
        return "–"
    s = cell.summary[dataset][lang]
    spread = f" ± {s[key + '_std']:.2f}" if s["seeds"] > 1 else ""
    return f"{s[key + '_mean']:.2f}{spread}"


def _conll_average(cell: CellResult | None) -> str:
    """CoNLL as the paper reports it: one average over the CoNLL-2002 and -2003 languages."""
    if cell is None:
        return "–"
    values = [s["f1_mean"] for d in ("conll2002", "conll2003") for lang, s in cell.summary.get(d, {}).items()
              if lang != "average"]
    return f"{statistics.fmean(values):.2f}" if values else "–"


def arms_present(cells: list[CellResult]) -> list[str]:
    return sorted({c.arm for c in cells}, key=arm_order)


def average_table(cells: list[CellResult], *, variants: dict) -> str:
    """Zero-shot averages, one row per arm scored zero-shot (QA or NER), then the paper's."""
    datasets = [d for d in QA_DATASETS if any(d in c.summary for c in cells if c.setting == "zero-shot")]
    head = ["model"] + [f"{QA_DATASETS[d]} F1 / EM" for d in datasets] + ["CoNLL F1", "WikiAnn F1"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for arm in arms_present(cells):
        qa, ner = _find(cells, "qa", arm, "zero-shot"), _find(cells, "ner", arm, "zero-shot")
        if qa is None and ner is None:  # an arm run few-shot only so far
            continue
        row = [arm_label(arm, variants)]
        row += [f"{_mean_std(qa, d)} / {_mean_std(qa, d, key='exact_match')}" for d in datasets]
        row += [_conll_average(ner), _mean_std(ner, "wikiann")]
        lines.append("| " + " | ".join(row) + " |")
    for arm, label in (("base", "paper: XLM-R base"), ("full", "paper: CLISM+CACR from XLM-R base")):
        p = PAPER["average"][arm]
        row = [label] + [f"{p[d][0]:.2f} / {p[d][1]:.2f}" if d in p else "–" for d in datasets]
        lines.append("| " + " | ".join(row + [f"{p['conll']:.2f}", f"{p['wikiann']:.2f}"]) + " |")
    return "\n".join(lines) + "\n"


def ablation_table(cells: list[CellResult], k: int = 256, *, variants: dict) -> str:
    """The paper's ablation table, or "" when no arm was scored on any of its columns (a grid that
    chooses settings on the dev sets alone)."""
    head = ["model", "XQuAD F1 zero-shot", f"XQuAD F1 k={k}", "MLQA F1 zero-shot", "WikiAnn F1",
            "paper XQuAD F1 (zero-shot)"]
    rows = []
    for arm in arms_present(cells):
        zero, few = _find(cells, "qa", arm, "zero-shot"), _find(cells, "qa", arm, f"k{k}")
        paper = PAPER["ablation_f1"].get(arm)
        rows.append([arm_label(arm, variants), _mean_std(zero, "xquad"), _mean_std(few, "xquad"),
                     _mean_std(zero, "mlqa"), _mean_std(_find(cells, "ner", arm, "zero-shot"), "wikiann"),
                     f"{paper[1]:.2f}" if paper else "–"])
    if all(value == "–" for row in rows for value in row[1:-1]):
        return ""
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows]) + "\n"


def few_shot_ks(cells: list[CellResult]) -> list[int]:
    return sorted({int(c.setting[1:]) for c in cells if c.task == "qa" and c.setting.startswith("k")})


def few_shot_scored(cells: list[CellResult], dataset: str) -> bool:
    """Whether any few-shot QA cell was scored on ``dataset`` (a dev-set grid scores no XQuAD)."""
    return any(c.task == "qa" and c.setting.startswith("k") and dataset in c.summary for c in cells)


def few_shot_table(cells: list[CellResult], dataset: str = "xquad", *, variants: dict) -> str:
    """Few-shot F1 on ``dataset`` per k and arm, or "" when no few-shot cell was scored on it."""
    if not few_shot_scored(cells, dataset):
        return ""
    arms = [a for a in arms_present(cells) if any(c.arm == a and c.setting.startswith("k") for c in cells)]
    head = ["k"] + [f"{arm_label(a, variants)} (seeds)" for a in arms] + ["paper: XLM-R base", "paper: CLISM+CACR"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for k in few_shot_ks(cells):
        row = [str(k)]
        for arm in arms:
            cell = _find(cells, "qa", arm, f"k{k}")
            row.append(f"{_mean_std(cell, dataset)} ({cell.seeds})" if cell else "–")
        row += [str(PAPER["few_shot_xquad_f1"][a].get(k, "–")) for a in ("base", "full")]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"


def training_loss_table(results: Path, cells: list[CellResult], *, variants: dict) -> str:
    """Few-shot training loss at a few step counts (each the mean of the 5 steps up to it, then over
    seeds): whether a k was trained until it knew its sample by heart (loss near zero)."""
    rows = []
    for k in few_shot_ks(cells):
        for arm in [a for a in arms_present(cells) if _find(cells, "qa", a, f"k{k}")]:
            runs = [json.loads(p.read_text()).get("losses") or []
                    for p in sorted((results / "qa" / arm / f"k{k}").glob("seed-*/train_log.json"))]
            runs = [losses for losses in runs if losses]
            if runs:
                rows.append((k, arm, runs))
    if not rows:
        return ""
    steps = [s for s in (10, 20, 40, 80, 160) if any(len(r) >= s for _, _, runs in rows for r in runs)]
    head = ["k", "arm", "steps", *[f"loss at step {s}" for s in steps], "at the last step", "seeds"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for k, arm, runs in rows:
        def at(step: int) -> str:
            if any(len(r) < step for r in runs):
                return "–"
            return f"{statistics.mean(statistics.mean(r[max(0, step - 5):step]) for r in runs):.3f}"
        last = statistics.mean(statistics.mean(r[-5:]) for r in runs)
        lines.append(f"| {k} | {arm_label(arm, variants)} | {len(runs[0])} | " + "".join(f"{at(s)} | " for s in steps)
                     + f"{last:.3f} | {len(runs)} |")
    return "\n".join(lines) + "\n"


def comparison_table(cells: list[CellResult], setting: str, arm_a: str, arm_b: str, dataset: str = "xquad") -> str:
    """Per language F1 / EM of two arms side by side, and B minus A."""
    a, b = _find(cells, "qa", arm_a, setting), _find(cells, "qa", arm_b, setting)
    if a is None or b is None or dataset not in a.summary or dataset not in b.summary:
        return f"(no {dataset} results for both {arm_a} and {arm_b} at {setting})\n"
    langs = [lang for lang in a.summary[dataset] if lang in b.summary[dataset] and lang != "average"] + ["average"]
    head = ["language", f"{arm_label(arm_a)} F1 / EM", f"{arm_label(arm_b)} F1 / EM", "difference F1 / EM"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for lang in langs:
        sa, sb = a.summary[dataset][lang], b.summary[dataset][lang]
        diff = (sb["f1_mean"] - sa["f1_mean"], sb["exact_match_mean"] - sa["exact_match_mean"])
        name = f"**{lang}**" if lang == "average" else lang
        lines.append(f"| {name} | {_mean_std(a, dataset, lang)} / {_mean_std(a, dataset, lang, 'exact_match')} | "
                     f"{_mean_std(b, dataset, lang)} / {_mean_std(b, dataset, lang, 'exact_match')} | "
                     f"{diff[0]:+.2f} / {diff[1]:+.2f} |")
    return "\n".join(lines) + "\n"


def per_seed_table(results: Path, cells: list[CellResult], *, variants: dict) -> str:
    """Each few-shot cell's F1 per fine-tuning seed (the development sets, where present, and XQuAD,
    averaged over languages): the numbers every paired difference is made of."""
    few_shot = sorted((c for c in cells if c.task == "qa" and c.setting.startswith("k")),
                      key=lambda c: (int(c.setting[1:]), arm_order(c.arm)))
    datasets = [d for d in ("english-dev", "xling-dev", "xquad") if any(d in c.summary for c in few_shot)]
    if not few_shot or not datasets:
        return ""
    lines = ["| k | arm | " + " | ".join(f"{d} F1 per seed" for d in datasets) + " |",
             "|" + "---|" * (2 + len(datasets))]
    for c in few_shot:
        per_seed = [seed_averages(results, c.arm, c.setting, d) for d in datasets]
        cols = [" / ".join(f"{v:.2f}" for _, v in sorted(f1.items())) + f" (seeds {','.join(map(str, sorted(f1)))})"
                if f1 else "–" for f1 in per_seed]
        lines.append(f"| {c.setting[1:]} | {arm_label(c.arm, variants)} | " + " | ".join(cols) + " |")
    return "\n".join(lines) + "\n"


def seed_scores(results: Path, arm: str, setting: str, dataset: str = "xquad") -> dict[int, dict[str, float]]:
    """{seed: {language: F1}} of one cell: the QA cell, or the NER cell for an NER dataset."""
    out = {}
    for path in sorted((results / task_of(dataset) / arm / setting).glob("seed-*/metrics.json")):
        per_lang = json.loads(path.read_text()).get("results", {}).get(dataset, {})
        if per_lang:
            out[int(path.parent.name.split("-")[1])] = {lang: m["f1"] for lang, m in per_lang.items()}
    return out


def seed_averages(results: Path, arm: str, setting: str, dataset: str = "xquad") -> dict[int, float]:
    """{seed: F1 averaged over languages} of one cell (see ``seed_scores``)."""
    return {seed: statistics.fmean(f1.values()) for seed, f1 in seed_scores(results, arm, setting, dataset).items()}


def _spread(values: list[float]) -> str:
    return f"{statistics.fmean(values):.2f}" + (f" ± {statistics.stdev(values):.2f}" if len(values) > 1 else "")


# The datasets arms are compared on, with how the report names them: XQuAD is what is reported, english-dev
# (held-out English questions) is where settings are chosen.
COMPARED_DATASETS = (("xquad", "XQuAD F1 averaged over languages"),
                     ("english-dev", "english-dev F1: held-out English questions, where settings are chosen"),
                     ("xling-dev", "xling-dev F1: TyDiQA-GoldP train questions in languages other than English "
                                   "(Korean, Swahili in the mirror), never trained on: where cross-lingual "
                                   "settings are chosen"),
                     ("wikiann", "WikiAnn NER F1 averaged over languages, fine-tuned on English"),
                     ("conll2002", "CoNLL-2002 NER F1 (es, nl), the same English WikiAnn tagger"),
                     ("conll2003", "CoNLL-2003 NER F1 (en, de), the same English WikiAnn tagger"))


def variant_parent(results: Path, variant: str, setting: str, variants: dict, task: str = "qa") -> str:
    """The arm run a variant changes: its ``against:`` where the grid names one (a variant of a
    variant), else ``<arm>-p1`` where ``results`` replicated its arm, else ``<arm>``. A variant is
    pre-trained with its arm's first run's seed and data build."""
    if variants[variant].get("against"):
        return variants[variant]["against"]
    parent = variants[variant].get("arm", "")
    return f"{parent}-p1" if (results / task / f"{parent}-p1" / setting).is_dir() else parent


def reference_table(results: Path, reference: Path, cells: list[CellResult], dataset: str = "xquad",
                    *, variants: dict) -> str:
    """Each QA cell of an experiment against the reference grid's same arm and its base, on the same seeds.
    A variant's "same arm" there is the arm run it changes."""
    head = ["cell", "seeds", "this experiment", f"{reference.name}: same arm", f"{reference.name}: base",
            "vs same arm (per seed)", "vs base (per seed)"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for cell in (c for c in cells if c.task == task_of(dataset)):
        mine = seed_averages(results, cell.arm, cell.setting, dataset)
        if not mine:  # this cell was not scored on `dataset`
            continue
        same_arm = variant_parent(reference, cell.arm, cell.setting, variants, cell.task) \
            if cell.arm in variants else cell.arm
        same = seed_averages(reference, same_arm, cell.setting, dataset)
        base = seed_averages(reference, "base", cell.setting, dataset)
        # an arm the reference never ran (nor the arm it changes) is compared with base alone
        has_same = bool(same)
        seeds = sorted(s for s in mine if s in base and (s in same or not has_same))
        if not seeds:
            lines.append(f"| {cell.arm} {cell.setting} | – | {_spread(list(mine.values()))} | "
                         f"(no cell with these seeds in {reference}) | | | |")
            continue
        row = [f"{cell.arm} {cell.setting}", ",".join(map(str, seeds)), _spread([mine[s] for s in seeds]),
               (_spread([same[s] for s in seeds]) + ("" if same_arm == cell.arm else f" ({same_arm})"))
               if has_same else "–", _spread([base[s] for s in seeds])]
        for other in (same if has_same else None, base):
            if other is None:
                row.append("–")
                continue
            diffs = [mine[s] - other[s] for s in seeds]
            row.append(f"{statistics.fmean(diffs):+.2f} ({', '.join(f'{d:+.2f}' for d in diffs)})")
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"


# Two-sided 95% quantiles of Student's t by degrees of freedom (beyond 30: the normal's 1.96).
T_975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262, 10: 2.228,
         11: 2.201, 12: 2.179, 13: 2.160, 14: 2.145, 15: 2.131, 20: 2.086, 25: 2.060, 30: 2.042}


def mean_interval(values: list[float]) -> tuple[float, float | None]:
    """The mean and the half-width of its 95% t-interval (None for a single value)."""
    mean = statistics.fmean(values)
    if len(values) < 2:
        return mean, None
    df = len(values) - 1
    t = 1.96 if df > 30 else T_975.get(df) or T_975[max(d for d in T_975 if d <= df)]
    return mean, t * statistics.stdev(values) / len(values) ** 0.5


def _interval(values: list[float]) -> str:
    mean, half = mean_interval(values)
    return f"{mean:+.2f}" + (f" [{mean - half:+.2f}, {mean + half:+.2f}]" if half is not None else " (one run)")


def _range(values: list[int]) -> str:
    return f"{min(values)}" if min(values) == max(values) else f"{min(values)}–{max(values)}"


def replicated_arms(cells: list[CellResult], task: str = "qa") -> dict[str, list[str]]:
    """{arm family: its pre-training runs} for the arms pre-trained several times (``<arm>-p<N>``)
    that have cells of ``task``."""
    from clism.experiments.grid import split_replicate

    runs: dict[str, list[str]] = {}
    for arm in sorted({c.arm for c in cells if c.task == task}, key=arm_order):
        family, n = split_replicate(arm)
        if n:
            runs.setdefault(family, []).append(arm)
    return runs


def replicate_table(results: Path, cells: list[CellResult], dataset: str = "xquad",
                    only: dict[str, set[int]] | None = None, *, variants: dict) -> str:
    """Each arm pre-trained several times (``<arm>-p<N>``) against base, the MLM-only control
    and, for the others, the full method's run of the same N (same seed, same data build); a
    replicated variant also meets the replicated arm it changes (its ``against:``, else its
    ``arm:``), run N with run N, so the interval holds the spread between runs.

    Pairs share the training sample and the fine-tuning seed. A pre-training run's value is its
    mean paired difference over fine-tuning seeds; the interval is over pre-training runs, so it
    holds the spread between pre-training runs that one pre-trained model's seeds leave out.
    ``only`` ({setting: seeds}) keeps those settings and seeds: a reference grid read on an experiment's."""
    from clism.experiments.grid import split_replicate

    runs = replicated_arms(cells, task_of(dataset))
    settings = sorted({c.setting for c in cells if c.task == task_of(dataset) and (only is None or c.setting in only)},
                      key=lambda x: (x == "zero-shot", len(x), x))
    head = ["arm", "setting", "against", "runs × seeds", "per run: mean paired difference",
            "mean [95% interval over runs]", "per fine-tuning seed, run by run"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for family, arms in runs.items():
        variant = variants.get(family, {})
        parent = variant.get("against") or variant.get("arm")
        references = ["base", "mlm-only", "full"] + ([parent] if parent in runs and parent != "full" else [])
        for setting in settings:
            for reference in references:
                if reference == family or (reference == "full" and "full" not in runs):
                    continue  # the full method is a reference when it was replicated too (run N with run N)
                per_run, seeds_used, per_seed, by_run = [], [], [], []
                for arm in arms:
                    n = split_replicate(arm)[1]
                    ref_arm = f"{reference}-p{n}" if reference != "base" and \
                        (results / task_of(dataset) / f"{reference}-p{n}" / setting).is_dir() else reference
                    mine, ref = seed_averages(results, arm, setting, dataset), \
                        seed_averages(results, ref_arm, setting, dataset)
                    seeds = sorted(set(mine) & set(ref) & (only[setting] if only is not None else set(mine)))
                    if seeds:
                        per_seed = [mine[s] - ref[s] for s in seeds]
                        per_run.append(statistics.fmean(per_seed))
                        seeds_used.append(len(seeds))
                        by_run.append(", ".join(f"{d:+.2f}" for d in per_seed))
                # the differences each run's value is the mean of, so no one subtracts them by hand
                seed_column = " ; ".join(by_run)
                if len(per_run) == 1 and len(per_seed) > 1:  # until a second run exists: the seeds' interval
                    lines.append(f"| {arm_label(family, variants)} | {setting} | {arm_label(reference, variants)} | "
                                 f"1 × {len(per_seed)} | {per_run[0]:+.2f} | {_interval(per_seed)} over seeds "
                                 f"(one run) | {seed_column} |")
                elif per_run:
                    lines.append(f"| {arm_label(family, variants)} | {setting} | {arm_label(reference, variants)} | "
                                 f"{len(per_run)} × {_range(seeds_used)} | "
                                 + ", ".join(f"{d:+.2f}" for d in per_run)
                                 + f" | {_interval(per_run)} | {seed_column} |")
    return "\n".join(lines) + "\n" if len(lines) > 2 else ""


def replicate_language_table(results: Path, cells: list[CellResult], dataset: str = "xquad",
                             *, variants: dict) -> str:
    """Each arm pre-trained several times against base, language by language: a run's value is
    its mean paired difference over fine-tuning seeds in that language, the interval is over runs."""
    runs = replicated_arms(cells, task_of(dataset))
    settings = sorted({c.setting for c in cells if c.task == task_of(dataset)},
                      key=lambda x: (x == "zero-shot", len(x), x))
    lines = ["| arm | setting | language | per run: mean paired difference | mean [95% interval over runs] |",
             "|---|---|---|---|---|"]
    for family, arms in runs.items():
        for setting in settings:
            base = seed_scores(results, "base", setting, dataset)
            per_lang: dict[str, list[float]] = {}
            for arm in arms:
                mine = seed_scores(results, arm, setting, dataset)
                seeds = sorted(set(mine) & set(base))
                for lang in sorted(set().union(*(mine[s] for s in seeds))) if seeds else []:
                    pairs = [mine[s][lang] - base[s][lang] for s in seeds if lang in mine[s] and lang in base[s]]
                    if pairs:
                        per_lang.setdefault(lang, []).append(statistics.fmean(pairs))
            for lang, per_run in per_lang.items():
                if len(per_run) > 1:  # one run has its seeds' interval in the tables above
                    lines.append(f"| {arm_label(family, variants)} | {setting} | {lang} | "
                                 + ", ".join(f"{d:+.2f}" for d in per_run) + f" | {_interval(per_run)} |")
    return "\n".join(lines) + "\n" if len(lines) > 2 else ""


def single_run_table(results: Path, cells: list[CellResult], dataset: str = "xquad",
                     *, variants: dict) -> str:
    """Each arm pre-trained once against base, paired by training sample and fine-tuning seed.
    The interval is over fine-tuning seeds: it leaves out the spread between pre-training runs."""
    from clism.experiments.grid import split_replicate

    head = ["arm", "setting", "seeds", "per seed: paired difference", "mean [95% interval over seeds]"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for cell in sorted((c for c in cells if c.task == task_of(dataset)),
                       key=lambda c: (arm_order(c.arm), len(c.setting), c.setting)):
        if cell.arm == "base" or split_replicate(cell.arm)[1]:
            continue
        mine = seed_averages(results, cell.arm, cell.setting, dataset)
        base = seed_averages(results, "base", cell.setting, dataset)
        seeds = sorted(set(mine) & set(base))
        if seeds:
            diffs = [mine[s] - base[s] for s in seeds]
            lines.append(f"| {arm_label(cell.arm, variants)} | {cell.setting} | {','.join(map(str, seeds))} | "
                         + ", ".join(f"{d:+.2f}" for d in diffs) + f" | {_interval(diffs)} |")
    return "\n".join(lines) + "\n" if len(lines) > 2 else ""


def variant_table(results: Path, cells: list[CellResult], variants: dict, dataset: str = "xquad",
                  reference: Path | None = None) -> str:
    """Each variant against the arm it changes, paired by training sample and fine-tuning seed.

    The option the variant sets is the one difference (see ``variant_parent``). The arm's cells are
    read from this folder or, where it has none with these seeds, from the reference grid (the same
    pre-trained model, seed and sample give the same F1). The interval is over fine-tuning seeds
    (one pre-training run each)."""
    head = ["variant", "against", "setting", "seeds", "per seed: paired difference", "mean [95% interval over seeds]"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for cell in sorted((c for c in cells if c.task == task_of(dataset) and c.arm in variants),
                       key=lambda c: (c.arm, c.setting)):
        mine = seed_averages(results, cell.arm, cell.setting, dataset)
        parent, seeds, where = "", [], ""
        for folder in (results, reference):
            if folder is not None and folder.is_dir():
                parent = variant_parent(folder, cell.arm, cell.setting, variants, cell.task)
                ref = seed_averages(folder, parent, cell.setting, dataset)
                seeds = sorted(set(mine) & set(ref))
                if seeds:
                    where = "" if folder == results else f" in `{folder}`"
                    break
        if seeds:
            diffs = [mine[s] - ref[s] for s in seeds]
            lines.append(f"| {arm_label(cell.arm, variants)} | {arm_label(parent, variants)}{where} | {cell.setting} | "
                         f"{','.join(map(str, seeds))} | " + ", ".join(f"{d:+.2f}" for d in diffs)
                         + f" | {_interval(diffs)} |")
    return "\n".join(lines) + "\n" if len(lines) > 2 else ""


# --------------------------------------------------------------------------- figures


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def figure_series(results: Path, cells: list[CellResult], setting: str, dataset: str,
                  *, variants: dict) -> list[tuple[str, list[dict[str, float]]]]:
    """What a figure shows at one setting: [(label, [{language: F1} of each run and seed])], one entry per
    arm, the runs of an arm pre-trained several times making one. Every entry is read on the fine-tuning
    seeds that all of them have there, so the bars and points compare like with like, as the paired
    tables do (a figure drawn while one arm has more seeds than another would mix samples)."""
    from clism.experiments.grid import split_replicate

    groups: dict[tuple[str, bool], list[str]] = {}
    for arm in arms_present(cells):
        cell = _find(cells, "qa", arm, setting)
        if cell and dataset in cell.summary:
            family, run = split_replicate(arm)
            groups.setdefault((family, True) if run else (arm, False), []).append(arm)
    scores = {arm: seed_scores(results, arm, setting, dataset) for members in groups.values() for arm in members}
    common = sorted(set.intersection(*(set(s) for s in scores.values()))) if scores else []
    series = []
    for (name, replicated), members in groups.items():
        runs = f" ({len(members)} pre-training runs)" if replicated and len(members) > 1 else ""
        label = arm_label(name if replicated and len(members) > 1 else members[0], variants) + runs
        series.append((label, [scores[arm][seed] for arm in members for seed in common]))
    return [(label, values) for label, values in series if values]


def _finish(fig, ax, path: Path) -> None:
    # the legend goes under the axes, where it can hide no point and no bar
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=1, frameon=False)
    fig.savefig(path, dpi=120, bbox_inches="tight")


def few_shot_figure(results: Path, cells: list[CellResult], path: Path, dataset: str = "xquad",
                    *, variants: dict) -> Path | None:
    ks = few_shot_ks(cells)
    if not few_shot_scored(cells, dataset):
        path.unlink(missing_ok=True)  # a figure from an earlier report would show data this one does not hold
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    points: dict[str, list[tuple[int, float, float]]] = {}
    for k in ks:
        for label, values in figure_series(results, cells, f"k{k}", dataset, variants=variants):
            averages = [statistics.fmean(v.values()) for v in values]
            spread = statistics.stdev(averages) if len(averages) > 1 else 0.0
            points.setdefault(label, []).append((k, statistics.fmean(averages), spread))
    for label, line in points.items():
        ax.errorbar([k for k, _, _ in line], [m for _, m, _ in line], yerr=[s for _, _, s in line],
                    marker="o", capsize=3, label=label)
    for arm, style in (("base", ":"), ("full", "--")):
        paper = PAPER["few_shot_xquad_f1"][arm]
        ax.plot(list(paper), list(paper.values()), style, color="grey", label=f"paper: {arm_label(arm)} (XLM-R)")
    ax.set_xscale("log", base=2)
    ax.set_xticks(sorted(set(ks) | {64, 128, 256, 512, 1024}))
    ax.get_xaxis().set_major_formatter(plt.FuncFormatter(lambda v, _: f"{int(v)}"))
    ax.set_xlabel("English training questions (k)")
    ax.set_ylabel(f"{QA_DATASETS[dataset]} average F1\n(mean ± std over seeds and runs)")
    ax.set_title(f"Few-shot cross-lingual QA: {QA_DATASETS[dataset]}\n"
                 "(at each k, the fine-tuning seeds every arm shown has)", fontsize=10)
    ax.grid(alpha=0.3)
    _finish(fig, ax, path)
    plt.close(fig)
    return path


def per_language_figure(results: Path, cells: list[CellResult], setting: str, path: Path, dataset: str = "xquad",
                        *, variants: dict) -> Path | None:
    present = figure_series(results, cells, setting, dataset, variants=variants)
    if not present:
        path.unlink(missing_ok=True)  # as in few_shot_figure
        return None
    langs = [lang for lang in present[0][1][0] if "-" not in lang]
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7.2, 4.2))
    width = 0.8 / len(present)
    for i, (label, values) in enumerate(present):
        per_lang = [[v[lang] for v in values if lang in v] for lang in langs]
        ax.bar([j + i * width for j in range(len(langs))], [statistics.fmean(f) if f else 0.0 for f in per_lang],
               width, yerr=[statistics.stdev(f) if len(f) > 1 else 0.0 for f in per_lang], capsize=2, label=label)
    ax.set_xticks([j + 0.4 - width / 2 for j in range(len(langs))], langs)
    ax.set_ylabel("F1 (mean ± std over seeds and runs)")
    label = "zero-shot (English training set)" if setting == "zero-shot" else f"few-shot, k={setting[1:]}"
    ax.set_title(f"{QA_DATASETS[dataset]} F1 per language, {label}\n"
                 "(the fine-tuning seeds every arm shown has)", fontsize=10)
    ax.grid(axis="y", alpha=0.3)
    _finish(fig, ax, path)
    plt.close(fig)
    return path


# --------------------------------------------------------------------------- report


def _wall_time(results: Path) -> tuple[float, list[dict]]:
    path = results / "ledger.jsonl"
    records = [json.loads(line) for line in path.read_text().splitlines()] if path.is_file() else []
    return sum(r["seconds"] for r in records), records


def _pretrain_rows(results: Path, *, variants: dict) -> list[str]:
    rows = []
    for arm in sorted((p.name for p in (results / "pretrain").glob("*")), key=arm_order):
        summary_path = results / "pretrain" / arm / "summary.json"
        if not summary_path.is_file():
            continue
        summary = json.loads(summary_path.read_text())
        logged = [json.loads(line) for line in (results / "pretrain" / arm / "log.jsonl").read_text().splitlines()]
        # a logged loss is one step's, and with length-grouped batches one step may be all long
        # passages: the end of a run is read as the mean over its last quarter
        end = [r for r in logged if r["step"] > 0.75 * logged[-1]["step"]]
        losses = " · ".join(f"{k[5:]} {logged[0][k]:.3f} → {sum(r[k] for r in end) / len(end):.3f}"
                            for k in ("loss_clism", "loss_cacr", "loss_mlm") if logged[0].get(k))
        rows.append(f"| {arm_label(arm, variants)} | {summary['steps']} | {summary['seconds']:.0f} | {losses} | "
                    f"{_moved_text(summary.get('moved'))} |")
    return rows


def _moved_text(moved: dict | None) -> str:
    """`clism pretrain`'s per-part weight change, short: the lowest and the top layer, the range
    over layers, and the head ("–" for a run from before it was recorded)."""
    layers = sorted((part, value) for part, value in (moved or {}).items() if part.startswith("encoder_L"))
    if not layers:
        return "–"
    values = [value for _, value in layers]
    text = (f"layer 0 {values[0]:.2%}, layer {len(values) - 1} {values[-1]:.2%} "
            f"(range {min(values):.2%}–{max(values):.2%})")
    return text + (f"; head {moved['head']:.1%}" if "head" in moved else "")


def build_report(results: str | Path, title: str = "") -> Path:
    results = Path(results)
    if not results.is_dir():
        raise NotFoundError(f"no results directory {results}; run `clism reproduce` (or `clism quickstart`) first")
    cells = read_cells(results)
    if not cells:
        raise NotFoundError(f"{results} holds no finished cell (no */*/*/seed-*/metrics.json)")
    grid_text = (results / "grid.yaml").read_text() if (results / "grid.yaml").is_file() else ""
    grid = yaml.safe_load(grid_text) if grid_text else {}
    k = int(grid.get("headline_k", 256))
    figures = results / "figures"
    figures.mkdir(exist_ok=True)
    variants = grid.get("variants") or {}
    made = [few_shot_figure(results, cells, figures / "few_shot_xquad.png", variants=variants),
            per_language_figure(results, cells, f"k{k}", figures / f"xquad_per_language_k{k}.png",
                                variants=variants),
            per_language_figure(results, cells, "zero-shot", figures / "xquad_per_language_zero_shot.png",
                                variants=variants)]
    machine = json.loads((results / "machine.json").read_text()) if (results / "machine.json").is_file() else {}
    seconds, ledger = _wall_time(results)
    name = grid.get("name", results.name)
    out = [f"# {title or 'Results of the grid ' + name}", ""]
    if grid.get("description"):
        out += [grid["description"].strip(), ""]
    out += ["Rebuilt from the files in this folder by `clism report --results " + str(results) + "`; "
            "every number below was measured by `clism reproduce --grid " + str(results / "grid.yaml") + "`.", ""]
    for setting in (f"k{k}", "zero-shot"):
        for other in ("base", "mlm-only"):
            if _find(cells, "qa", "full", setting) and _find(cells, "qa", other, setting):
                label = "zero-shot" if setting == "zero-shot" else f"few-shot k={setting[1:]}"
                out += [f"## XQuAD, {label}: {arm_label('full')} against {arm_label(other)}", "",
                        comparison_table(cells, setting, other, "full"), ""]
    for dataset, name in COMPARED_DATASETS:
        replicates = replicate_table(results, cells, dataset, variants=variants)
        if replicates:
            out += [f"## Paired differences over pre-training runs ({name})", "",
                    "Each pre-trained arm was pre-trained several times (`<arm>-p<N>`: pre-training seed N and, "
                    "for N > 1, its own data build). Within a run, the difference is paired by training sample "
                    "and fine-tuning seed and averaged over seeds; the 95% interval is Student's t over runs. A "
                    "reference pre-trained once (without `-p<N>`) is the same model in every run, so its own "
                    "run-to-run spread is not in the interval.", "",
                    replicates, ""]
        by_language = replicate_language_table(results, cells, dataset, variants=variants) \
            if dataset in ("xquad", "wikiann") else ""
        if by_language:
            out += [f"### The same against base, per language ({(QA_DATASETS | NER_DATASETS)[dataset]} F1)", "",
                    by_language, ""]
        changed = variant_table(results, cells, variants, dataset,
                                Path(grid["compare_with"]) if grid.get("compare_with") else None)
        if changed:
            out += [f"## Variants against the arm they change ({name})", "",
                    "A variant is pre-trained with its arm's first run's seed and data build, so the option it "
                    "sets is the one difference (a variant of a variant meets the arm its `against:` names). "
                    + SEED_PAIRING, "",
                    changed, ""]
        single = single_run_table(results, cells, dataset, variants=variants)
        if single:
            out += [f"## Arms pre-trained once, against base ({name})", "",
                    SEED_PAIRING, "", single, ""]
    if grid.get("compare_with"):
        reference = Path(grid["compare_with"])
        reference_cells = read_cells(reference) if reference.is_dir() else []
        for dataset, name in COMPARED_DATASETS:
            if any(seed_averages(results, c.arm, c.setting, dataset) for c in cells if c.task == task_of(dataset)):
                out += [f"## Against `{reference}` (the same seeds; {name})", "",
                        reference_table(results, reference, cells, dataset, variants=variants)
                        if reference.is_dir()
                        else f"(the reference folder {reference} is not here)\n", ""]
                # the reference's own paired differences over pre-training runs, on this experiment's seeds
                mine = {}
                for c in cells:
                    if c.task == task_of(dataset):
                        mine.setdefault(c.setting, set()).update(seed_averages(results, c.arm, c.setting, dataset))
                there = replicate_table(reference, reference_cells, dataset, only=mine, variants=variants) \
                    if reference_cells else ""
                if there:
                    out += [f"### `{reference}` over its pre-training runs, on this experiment's settings and "
                            "seeds", "", there, ""]
    if any(c.setting == "zero-shot" for c in cells):
        out += ["## Averages over languages (zero-shot, fine-tuned on English)", "",
                average_table(cells, variants=variants), ""]
    ablation, few_shot = ablation_table(cells, k, variants=variants), few_shot_table(cells, variants=variants)
    if ablation:
        out += ["## Ablation", "", ablation, ""]
    if few_shot:
        out += ["## Few-shot XQuAD F1 (average over languages, mean ± std over seeds)", "", few_shot, ""]
    out += [f"![{p.stem}](figures/{p.name})" for p in made if p] + [""]
    seeds = per_seed_table(results, cells, variants=variants)
    if seeds:
        out += ["## Few-shot F1 per fine-tuning seed (averaged over languages)", "", seeds, ""]
    losses = training_loss_table(results, cells, variants=variants)
    if losses:
        out += ["## Few-shot training loss (mean of the 5 steps up to each step count, then over seeds)", "",
                losses, ""]
    rows = _pretrain_rows(results, variants=variants)
    if rows:
        out += ["## Pre-training (the same budget for every arm)", "",
                "| arm | steps | seconds | losses, first step → mean of the steps logged in the last quarter | "
                "weights moved from the base (relative L2 change) |",
                "|---|---|---|---|---|", *rows, ""]
    manifest_path = results / "clism-data" / "manifest.json"
    if manifest_path.is_file():
        manifest = json.loads(manifest_path.read_text())
        langs = manifest["languages"]
        out += ["## CLISM data", "", "| language | pairs kept | instances | answers |", "|---|---|---|---|"]
        out += [f"| {lang} | {v['input']['kept']} | {v['output'].get('instances', 0)} | "
                f"{v['output'].get('answers', 0)} |" for lang, v in langs.items()] + [""]
    out += ["## How this was run", "", f"- Command: `clism reproduce --grid {results / 'grid.yaml'}`; "
            f"report: `clism report --results {results}`."]
    if machine:
        out.append(f"- Machine: {machine.get('cpu_count')} CPU cores ({machine.get('processor')}), GPU: "
                   f"{machine.get('gpu') or 'none'}; Python {machine.get('python')}, torch {machine.get('torch')}, "
                   f"transformers {machine.get('transformers')}; {machine.get('platform')}.")
    if ledger:
        out.append(f"- Wall time of the cells recorded in `ledger.jsonl`: {seconds / 3600:.2f} h over "
                   f"{len(ledger)} entries (pre-training arms and fine-tuning cells).")
    out.append(f"- Cells present: {len(cells)}; seeds per cell as shown in the tables.")
    if grid_text:
        out += ["", "Grid file:", "", "```yaml", grid_text.rstrip(), "```"]
    path = results / "report.md"
    path.write_text("\n".join(out) + "\n", encoding="utf-8")
    return path
