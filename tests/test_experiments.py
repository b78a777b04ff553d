"""`clism reproduce`, `clism report` and `clism quickstart` on a tiny model and the miniature mirror."""
import json
import shutil

import pytest
import yaml

import tiny_models
from clism.cli import main
from clism.config import ConfigError
from clism.experiments.grid import ReproduceOptions, cells_of, load_grid, reproduce
from clism.experiments.report import build_report
from test_pretrain import records


def tiny_base(tmp_path):
    model, tokenizer = tiny_models.tiny_model(hidden_size=32, num_layers=1)
    model.save_pretrained(tmp_path / "base")
    tokenizer.save_pretrained(tmp_path / "base")
    return tmp_path / "base"


def clism_data(directory):
    """Instances written directly, standing in for `clism build-data` (tested on its own)."""
    (directory / "instances").mkdir(parents=True)
    (directory / "instances" / "de-00000.jsonl").write_text("".join(json.dumps(x) + "\n" for x in records()))
    (directory / "manifest.json").write_text(json.dumps({"languages": {"de": {
        "input": {"kept": 40}, "output": {"instances": 40, "answers": 80}}}}))


def grid_file(tmp_path, **changes):
    grid = {
        "name": "tiny", "model": str(tiny_base(tmp_path)), "results": str(tmp_path / "results"),
        "work": str(tmp_path / "work"), "arms": ["base", "full", "mlm-only"], "curve_arms": ["base", "full"],
        "headline_k": 3, "tasks": ["qa-few-shot"],
        "pretrain": {"batch_size": 8, "max_steps": 3, "warmup_steps": 0, "lr": 1e-3, "max_side_tokens": 32,
                     "checkpoint_every": 2, "log_every": 1, "dropout": 0.0},
        "qa": {"head": "qass", "max_length": 96, "doc_stride": 32, "batch_size": 2, "few_shot_k": [2, 3],
               "few_shot_steps": 2, "few_shot_steps_per_k": {2: 1}, "few_shot_seeds": [1],
               "few_shot_seeds_per_k": {3: [1, 2]},
               "other_arms_k": [3], "other_arms_seeds": [1], "eval_datasets": ["xquad", "mlqa"]},
    }
    grid.update(changes)
    path = tmp_path / "grid.yaml"
    path.write_text(yaml.safe_dump(grid))
    return path


def test_cells_put_the_headline_first_and_ablations_get_their_own_budget(tmp_path):
    grid = load_grid(grid_file(tmp_path))
    names = [(c.name, c.seeds) for c in cells_of(grid)]
    assert names == [("qa/base/k3", [1, 2]), ("qa/mlm-only/k3", [1]), ("qa/full/k3", [1, 2]),
                     ("qa/base/k2", [1]), ("qa/full/k2", [1])]
    # --seeds 2: only the cells that have seed 2, with that seed alone (a session short of time runs
    # seed 1 of every arm, then seed 2, so each arm has a paired seed before any arm has its next)
    assert [(c.name, c.seeds) for c in cells_of(grid, seeds=[2])] == [("qa/base/k3", [2]), ("qa/full/k3", [2])]
    with pytest.raises(ConfigError, match=r"--seeds \[9\].*its seeds are \[1, 2\]"):  # a typo runs nothing silently
        reproduce(ReproduceOptions(grid=str(tmp_path / "grid.yaml"), seeds=[9], dry_run=True))


def test_run_first_orders_the_headline_settings(tmp_path):
    """A replicate grid runs every few-shot k before zero-shot and NER, where the claim rests."""
    grid = load_grid(grid_file(tmp_path, tasks=["qa-few-shot", "qa-zero-shot", "ner"], arms=["base", "full"],
                               run_first=["k2", "k3", "zero-shot"]))
    assert [c.name for c in cells_of(grid)] == [
        "qa/base/k2", "qa/full/k2", "qa/base/k3", "qa/full/k3", "qa/base/zero-shot", "qa/full/zero-shot",
        "ner/base/zero-shot", "ner/full/zero-shot"]
    default = load_grid(grid_file(tmp_path, tasks=["qa-few-shot", "qa-zero-shot", "ner"], arms=["base"]))
    assert [c.name for c in cells_of(default)] == [
        "qa/base/k3", "qa/base/zero-shot", "ner/base/zero-shot", "qa/base/k2"]


@pytest.mark.parametrize("change, message", [
    ({"arms": ["base", "fulll"]}, "unknown arm"),
    ({"run_first": ["k256", "zeroshot"]}, "zeroshot"),
    ({"pretrain": {"out": "x"}}, "set by the grid"),
    ({"pretrain": {"max_stepz": 3}}, "max_stepz"),
    ({"qa": {"few_shot_kk": [1]}}, "few_shot_kk"),
])
def test_a_bad_grid_file_fails_before_anything_runs(tmp_path, change, message):
    with pytest.raises(ConfigError, match=message) as error:
        load_grid(grid_file(tmp_path, **change))
    assert "grid.yaml" in str(error.value)


def test_reproduce_runs_resumes_and_reports_from_results_alone(mirror, tmp_path, capsys):
    path = grid_file(tmp_path)
    clism_data(tmp_path / "work" / "clism-data")
    args = ["reproduce", "--grid", str(path), "--data-dir", str(mirror)]
    assert main(args) == 0
    results = tmp_path / "results"
    for cell, seeds in (("base/k3", [1, 2]), ("full/k3", [1, 2]), ("mlm-only/k3", [1]), ("full/k2", [1])):
        for seed in seeds:
            metrics = json.loads((results / "qa" / cell / f"seed-{seed}" / "metrics.json").read_text())
            assert set(metrics["results"]["xquad"]) == {"en", "de"}  # MLQA is absent from the mirror: skipped
            assert (results / "qa" / cell / f"seed-{seed}" / "predictions" / "xquad.de.json").is_file()
            assert not (results / "qa" / cell / f"seed-{seed}" / "model").exists()  # no checkpoints in results
            steps = json.loads((results / "qa" / cell / f"seed-{seed}" / "train_log.json").read_text())["steps"]
            assert steps == (1 if cell.endswith("k2") else 2)  # few_shot_steps_per_k, else few_shot_steps
    assert not (results / "qa" / "mlm-only" / "k2").exists()  # not a curve arm
    # both pre-trained arms ran the same budget, and their logs are kept with the results
    for arm in ("full", "mlm-only"):
        assert json.loads((results / "pretrain" / arm / "summary.json").read_text())["steps"] == 3
    ledger = (results / "ledger.jsonl").read_text().splitlines()
    assert len(ledger) == 2 + 5  # two pre-training arms, five cells
    report = (results / "report.md").read_text()
    assert "CLISM+CACR+MLM against base encoder" in report and "| **average** |" in report
    assert "paper: XLM-R base" in report and "Grid file:" in report
    losses = report.split("## Few-shot training loss")[1].split("##")[0]  # each k's curve, at its own steps
    assert "| 2 | CLISM+CACR+MLM | 1 |" in losses and "| 3 | CLISM+CACR+MLM | 2 |" in losses
    assert (results / "figures" / "few_shot_xquad.png").read_bytes()[:4] == b"\x89PNG"

    # restart: every cell is skipped, nothing new in the ledger
    capsys.readouterr()
    assert main(args) == 0
    assert capsys.readouterr().out.count(" done") == 5
    assert (results / "ledger.jsonl").read_text().splitlines() == ledger

    # the report is rebuilt anywhere from the results folder, without the work folder or a model
    shutil.rmtree(tmp_path / "work")
    moved = tmp_path / "elsewhere"
    shutil.copytree(results, moved)
    (moved / "report.md").unlink()
    assert main(["report", "--results", str(moved)]) == 0
    assert (moved / "report.md").read_text().split("Rebuilt")[1].split("## How")[0] == \
        report.split("Rebuilt")[1].split("## How")[0].replace(str(results), str(moved))


def test_base_seeds_are_copied_from_another_grid_only_after_one_matches_there(mirror, tmp_path, capsys):
    """`reuse_base_from`: base is the same encoder in every grid, so a base cell whose seed, run here, matches
    the other grid's in every prediction and score takes that grid's other seeds instead of running them."""
    args = ["reproduce", "--tasks", "qa-few-shot", "--k", "3", "--arms", "base", "--data-dir", str(mirror)]
    reference = tmp_path / "ref"
    assert main(args + ["--grid", str(grid_file(reference))]) == 0
    theirs = reference / "results" / "qa" / "base" / "k3"
    assert sorted(p.name for p in theirs.glob("seed-*")) == ["seed-1", "seed-2"]
    (theirs / "seed-2" / "predictions" / "marker").write_text("from the reference grid")

    here = tmp_path / "here"
    same = {"model": str(reference / "base"), "reuse_base_from": str(reference / "results")}  # the same encoder
    assert main(args + ["--grid", str(grid_file(here, **same))]) == 0
    ours = here / "results" / "qa" / "base" / "k3"
    assert (ours / "seed-2" / "predictions" / "marker").is_file()  # copied, not run
    assert json.loads((ours / "seed-2" / "metrics.json").read_text()) == \
        json.loads((theirs / "seed-2" / "metrics.json").read_text())
    assert [r["seed"] for r in json.loads((ours / "metrics.json").read_text())["per_seed"]] == [1, 2]
    ledger = [json.loads(line) for line in (here / "results" / "ledger.jsonl").read_text().splitlines()]
    assert [(r.get("seeds_copied"), r.get("seeds_run")) for r in ledger] == [([2], None), (None, [1])]

    # a reference that does not match (here: a changed prediction) gives nothing: every seed runs
    (theirs / "seed-1" / "predictions" / "xquad.de.json").write_text("{}")
    again = tmp_path / "again"
    assert main(args + ["--grid", str(grid_file(again, **same))]) == 0
    assert not (again / "results" / "qa" / "base" / "k3" / "seed-2" / "predictions" / "marker").exists()
    ledger = [json.loads(line) for line in (again / "results" / "ledger.jsonl").read_text().splitlines()]
    assert [r.get("seeds_run") for r in ledger] == [[1, 2]]
    capsys.readouterr()
    assert main(args + ["--grid", str(grid_file(tmp_path / "bad", reuse_base_from=str(tmp_path / "nowhere")))]) == 2
    assert "reuse_base_from" in capsys.readouterr().err and not (tmp_path / "bad" / "results").exists()


def test_an_arm_pre_trained_with_other_settings_is_refused(mirror, tmp_path):
    from clism.experiments.grid import ensure_arm

    clism_data(tmp_path / "work" / "clism-data")
    grid = load_grid(grid_file(tmp_path))
    ensure_arm(grid, "full", str(mirror))
    grid.pretrain["lr"] = 5e-4
    with pytest.raises(ConfigError, match="lr: 0.001 then, 0.0005 now"):
        ensure_arm(grid, "full", str(mirror))


def test_quickstart_prints_the_side_by_side_table(mirror, tmp_path, capsys):
    out = tmp_path / "qs"
    clism_data(out / "work" / "clism-data")
    assert main(["quickstart", "--out", str(out), "--model", str(tiny_base(tmp_path)), "--pretrain-steps", "2",
                 "--train-examples", "3", "--finetune-steps", "2", "--data-dir", str(mirror)]) == 0
    printed = capsys.readouterr().out
    assert "| **average** |" in printed and "difference F1 / EM" in printed and "this run:" in printed
    # the tiny base has no MLM head: pre-trained as `clism pretrain` does by default, without MLM
    assert "| language | base encoder F1 / EM | without MLM F1 / EM |" in printed
    assert (out / "report.md").is_file() and (out / "qa" / "no-mlm" / "k3" / "seed-1" / "metrics.json").is_file()


def _fake_cell(results, arm, setting, f1_by_seed, english_dev=None):
    """A QA cell's metrics: XQuAD F1 (en, de) per seed, and english-dev F1 per seed where given."""
    for seed, scores in f1_by_seed.items():
        seed_dir = results / "qa" / arm / setting / f"seed-{seed}"
        seed_dir.mkdir(parents=True)
        scored = {}
        if scores is not None:
            en, de = scores
            scored["xquad"] = {"en": {"f1": en, "exact_match": en - 10}, "de": {"f1": de, "exact_match": de - 10}}
        if english_dev:
            scored["english-dev"] = {"en": {"f1": english_dev[seed], "exact_match": english_dev[seed] - 10}}
        (seed_dir / "metrics.json").write_text(json.dumps({"seed": seed, "results": scored}))


def test_a_figure_shows_each_arm_once_on_the_seeds_every_arm_has(tmp_path):
    """The runs of an arm pre-trained several times are one line or bar, and every arm is read on the
    fine-tuning seeds all arms shown have, so an arm with more seeds finished is not drawn from another sample."""
    from clism.experiments.report import figure_series, few_shot_figure, read_cells

    results = tmp_path / "results"
    _fake_cell(results, "base", "k4", {1: (40, 30), 2: (42, 32), 3: (90, 90)})  # seed 3: only base has it
    _fake_cell(results, "full-p1", "k4", {1: (41, 31), 2: (45, 35)})
    _fake_cell(results, "full-p2", "k4", {1: (44, 34), 2: (46, 36), 3: (10, 10)})
    _fake_cell(results, "mlm-only", "k8", {1: (20, 20)})  # another k: it does not narrow k4's seeds
    cells = read_cells(results)
    series = dict(figure_series(results, cells, "k4", "xquad", variants={}))
    assert list(series) == ["base encoder", "CLISM+CACR+MLM (2 pre-training runs)"]
    assert series["base encoder"] == [{"en": 40, "de": 30}, {"en": 42, "de": 32}]
    assert [v["en"] for v in series["CLISM+CACR+MLM (2 pre-training runs)"]] == [41, 45, 44, 46]
    assert list(dict(figure_series(results, cells, "k8", "xquad", variants={}))) == ["MLM only (control)"]
    assert few_shot_figure(results, cells, tmp_path / "f.png", variants={}).read_bytes()[:4] == b"\x89PNG"


def test_an_experiment_report_compares_seed_by_seed_with_its_reference_grid(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    reference, experiment = tmp_path / "results" / "small", tmp_path / "results" / "small-longer"
    _fake_cell(reference, "base", "k256", {1: (40, 30), 2: (42, 32), 3: (50, 40)})
    _fake_cell(reference, "no-mlm", "k256", {1: (41, 31), 2: (43, 33)})  # seed 3 never ran here
    _fake_cell(experiment, "no-mlm", "k256", {1: (44, 32), 2: (44, 36), 3: (60, 60)})
    (experiment / "grid.yaml").write_text(yaml.safe_dump({"name": "small-longer", "compare_with": "results/small"}))
    report = build_report(experiment).read_text()
    # only the seeds both grids ran are compared: 1 and 2 (averages 38, 40 here; 36, 38 and 35, 37 there)
    assert "| no-mlm k256 | 1,2 | 39.00 ± 1.41 | 37.00 ± 1.41 | 36.00 ± 1.41 | +2.00 (+2.00, +2.00) " \
           "| +3.00 (+3.00, +3.00) |" in report
    assert "english-dev" not in report  # neither grid scored english-dev: no table for it
    # an arm the reference never ran (a variant of this experiment) is compared with its base alone
    _fake_cell(experiment, "no-mlm-longer", "k256", {1: (40, 30), 3: (50, 50)})  # 35, 50; base there 35, 45
    assert "| no-mlm-longer k256 | 1,3 | 42.50 ± 10.61 | – | 40.00 ± 7.07 | – | +2.50 (+0.00, +5.00) |" \
        in build_report(experiment).read_text()
    # declared a variant of no-mlm, it meets the reference's no-mlm on the seeds all three ran: seed 1
    (experiment / "grid.yaml").write_text(yaml.safe_dump({"name": "small-longer", "compare_with": "results/small",
                                                          "variants": {"no-mlm-longer": {"arm": "no-mlm"}}}))
    assert "| no-mlm-longer k256 | 1 | 35.00 | 36.00 (no-mlm) | 35.00 | -1.00 (-1.00) | +0.00 (+0.00) |" \
        in build_report(experiment).read_text()
    shutil.rmtree(reference)
    assert "(the reference folder results/small is not here)" in build_report(experiment).read_text()


def test_an_experiment_scored_on_english_dev_only_is_compared_on_english_dev(tmp_path, monkeypatch):
    # an experiment that chooses a setting evaluates english-dev alone; its reference grid scored both
    monkeypatch.chdir(tmp_path)
    reference, experiment = tmp_path / "results" / "grid", tmp_path / "results" / "more-steps"
    # the reference also ran seed 3, which the experiment did not
    _fake_cell(reference, "base", "k128", {1: (40, 30), 2: (42, 32), 3: (40, 30)},
               english_dev={1: 25.0, 2: 31.0, 3: 20.0})
    _fake_cell(reference, "full-p1", "k128", {1: (44, 34), 2: (46, 36), 3: (40, 30)},
               english_dev={1: 39.0, 2: 42.0, 3: 80.0})
    _fake_cell(reference, "full-p2", "k128", {1: (44, 34), 2: (46, 36), 3: (40, 30)},
               english_dev={1: 35.0, 2: 33.0, 3: 80.0})
    _fake_cell(experiment, "base", "k128", {1: None, 2: None}, english_dev={1: 41.0, 2: 42.0})
    _fake_cell(experiment, "full-p1", "k128", {1: None, 2: None}, english_dev={1: 40.0, 2: 42.0})
    (experiment / "grid.yaml").write_text(yaml.safe_dump({"name": "more-steps", "compare_with": "results/grid"}))
    stale = experiment / "figures" / "few_shot_xquad.png"  # left by an earlier report
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"\x89PNG")
    report = build_report(experiment).read_text()
    assert "## Against `results/grid` (the same seeds; english-dev F1" in report
    assert "## Against `results/grid` (the same seeds; XQuAD" not in report
    # full-p1 here 40, 42; there 39, 42 (same arm) and 25, 31 (base)
    assert "| full-p1 k128 | 1,2 | 41.00 ± 1.41 | 40.50 ± 2.12 | 28.00 ± 4.24 | +0.50 (+1.00, +0.00) " \
           "| +13.00 (+15.00, +11.00) |" in report
    # the reference's paired differences over its pre-training runs, read on the experiment's seeds 1, 2 only:
    # full - base run 1 +14, +11 (+12.50), run 2 +10, +2 (+6.00); 12.706 * sd 4.596 / sqrt(2) = 41.29
    assert "### `results/grid` over its pre-training runs, on this experiment's settings and seeds" in report
    assert "| CLISM+CACR+MLM | k128 | base encoder | 2 × 2 | +12.50, +6.00 | +9.25 [-32.04, +50.54] |" in report
    # no XQuAD scores here: no empty XQuAD tables and no XQuAD figure, while the reference keeps them
    assert "## Ablation" not in report and "## Few-shot XQuAD F1" not in report
    assert "few_shot_xquad.png" not in report and not (experiment / "figures" / "few_shot_xquad.png").exists()
    there = build_report(reference).read_text()
    assert "## Few-shot XQuAD F1" in there and "| 128 | 35.67 ± 1.15 (3) |" in there
    assert "## Ablation" not in there  # its columns are zero-shot and k = 256, which the reference did not run
    assert (reference / "figures" / "few_shot_xquad.png").is_file()


def test_a_variant_is_compared_seed_by_seed_with_the_run_it_changes(tmp_path):
    # a data option against the full method's first run (same seed, same alignment), english-dev only
    results = tmp_path / "results"
    _fake_cell(results, "full-p1", "k256", {1: None, 2: None, 3: None}, english_dev={1: 48.0, 2: 50.0, 3: 46.0})
    _fake_cell(results, "full-p2", "k256", {1: None}, english_dev={1: 60.0})  # another run: not the parent
    _fake_cell(results, "distract3", "k256", {1: None, 2: None, 3: None}, english_dev={1: 49.0, 2: 53.0, 3: 47.0})
    (results / "grid.yaml").write_text(yaml.safe_dump({"name": "dev-data", "variants": {
        "distract3": {"arm": "full", "label": "3 distractor sentences"}}}))
    report = build_report(results).read_text()
    # +1, +3, +1: mean +1.67, sd 1.155; 4.303 * 1.155 / sqrt(3) = 2.87
    assert "| 3 distractor sentences | CLISM+CACR+MLM (pre-training run 1) | k256 | 1,2,3 | +1.00, +3.00, +1.00 " \
           "| +1.67 [-1.20, +4.54] |" in report
    assert "## Variants against the arm they change (english-dev" in report
    assert "## Variants against the arm they change (XQuAD" not in report  # not scored there
    # a variant of a variant names the arm it changes
    _fake_cell(results, "distract3-long", "k256", {1: None, 2: None, 3: None}, english_dev={1: 50.0, 2: 50.0, 3: 50.0})
    (results / "grid.yaml").write_text(yaml.safe_dump({"name": "dev-data", "variants": {
        "distract3": {"arm": "full", "label": "3 distractor sentences"},
        "distract3-long": {"arm": "full", "label": "the same, longer", "against": "distract3"}}}))
    assert "| the same, longer | 3 distractor sentences | k256 | 1,2,3 | +1.00, -3.00, +3.00 |" \
        in build_report(results).read_text()
    shutil.rmtree(results / "qa" / "distract3-long")
    # without the arm's cells here, the variant meets them in the reference grid the experiment names
    shutil.move(results / "qa" / "full-p1", tmp_path / "full-p1")
    reference = tmp_path / "replicates"
    (reference / "qa").mkdir(parents=True)
    shutil.move(tmp_path / "full-p1", reference / "qa" / "full-p1")
    (results / "grid.yaml").write_text(yaml.safe_dump({"name": "dev-data", "compare_with": str(reference),
                                                       "variants": {"distract3": {"arm": "full"}}}))
    assert f"| CLISM+CACR+MLM (pre-training run 1) in `{reference}` | k256 | 1,2,3 | +1.00, +3.00, +1.00 " \
        in build_report(results).read_text()


def test_replicated_arms_get_paired_differences_with_intervals_over_pretraining_runs(tmp_path):
    results = tmp_path / "results"
    _fake_cell(results, "base", "k256", {1: (40, 30), 2: (42, 32)})
    _fake_cell(results, "mlm-only", "k256", {1: (38, 28), 2: (40, 30)})
    # full - base per seed: run 1 +1, +3 (mean +2); run 2 +4, +4 (+4); run 3 +3, +3 (+3)
    _fake_cell(results, "full-p1", "k256", {1: (41, 31), 2: (45, 35)})
    _fake_cell(results, "full-p2", "k256", {1: (44, 34), 2: (46, 36)})
    _fake_cell(results, "full-p3", "k256", {1: (43, 33), 2: (45, 35)})
    report = build_report(results).read_text()
    # mean +3, sd 1 over 3 runs: +3 +- 4.303 / sqrt(3) = [+0.52, +5.48]
    assert "| CLISM+CACR+MLM | k256 | base encoder | 3 × 2 | +2.00, +4.00, +3.00 | +3.00 [+0.52, +5.48] | " \
        "+1.00, +3.00 ; +4.00, +4.00 ; +3.00, +3.00 |" in report  # and each run's per-seed differences
    assert "| CLISM+CACR+MLM | k256 | MLM only (control) | 3 × 2 | +4.00, +6.00, +5.00 | +5.00 [+2.52, +7.48] |" \
        in report
    assert "CLISM+CACR+MLM (pre-training run 2)" in report  # the few-shot table names each run
    # the numbers the differences are made of: F1 per seed, averaged over languages (en 40, de 30 -> 35)
    assert "| 256 | base encoder | 35.00 / 37.00 (seeds 1,2) |" in report
    assert "| 256 | CLISM+CACR+MLM (pre-training run 2) | 39.00 / 41.00 (seeds 1,2) |" in report
    # another replicated arm also meets the full method's run of the same number (same seed, same data)
    _fake_cell(results, "no-mlm-p1", "k256", {1: (42, 32), 2: (45, 35)})  # - full-p1: +1, 0
    _fake_cell(results, "no-mlm-p2", "k256", {1: (44, 34), 2: (48, 38)})  # - full-p2: 0, +2
    report = build_report(results).read_text()
    assert "| without MLM | k256 | CLISM+CACR+MLM | 2 × 2 | +0.50, +1.00 | +0.75 [-2.43, +3.93] |" in report
    assert "| without MLM | k256 | base encoder | 2 × 2 |" in report
    assert "| CLISM+CACR+MLM | k256 | CLISM+CACR+MLM |" not in report
    _fake_cell(results, "no-cacr-p1", "k256", {1: (41, 31), 2: (45, 35)})  # one run: - base +1, +3
    assert "| without CACR | k256 | base encoder | 1 × 2 | +2.00 | +2.00 [-10.71, +14.71] over seeds (one run) |" \
        in build_report(results).read_text()
    # an arm pre-trained once: paired by seed against base, the interval over seeds (mlm-only - base: -2, -2)
    assert "| MLM only (control) | k256 | 1,2 | -2.00, -2.00 | -2.00 [-2.00, -2.00] |" in report
    assert "english-dev" not in report  # no english-dev in these cells: no tables for it


def test_replicated_arms_are_compared_with_base_language_by_language_over_runs(tmp_path):
    results = tmp_path / "results"
    _fake_cell(results, "base", "k64", {1: (40, 30), 2: (42, 32)})
    _fake_cell(results, "full-p1", "k64", {1: (41, 35), 2: (43, 37)})  # en +1, +1; de +5, +5
    _fake_cell(results, "full-p2", "k64", {1: (43, 34), 2: (45, 36)})  # en +3, +3; de +4, +4
    report = build_report(results).read_text()
    # en: runs +1, +3 (sd 1.41, t 12.706 over 2 runs: +-12.71); de: +5, +4 (+-6.35)
    assert "| CLISM+CACR+MLM | k64 | en | +1.00, +3.00 | +2.00 [-10.71, +14.71] |" in report
    assert "| CLISM+CACR+MLM | k64 | de | +5.00, +4.00 | +4.50 [-1.85, +10.85] |" in report


def _fake_ner_cell(results, arm, f1_by_seed):
    """A zero-shot NER cell's metrics: WikiAnn F1 (en, es) per seed, and CoNLL-2002 es, which the
    WikiAnn tables must not read."""
    for seed, (en, es) in f1_by_seed.items():
        seed_dir = results / "ner" / arm / "zero-shot" / f"seed-{seed}"
        seed_dir.mkdir(parents=True)
        scored = {"wikiann": {"en": {"f1": en, "precision": en, "recall": en},
                              "es": {"f1": es, "precision": es, "recall": es}},
                  "conll2002": {"es": {"f1": 0.0, "precision": 0.0, "recall": 0.0}}}
        (seed_dir / "metrics.json").write_text(json.dumps({"seed": seed, "results": scored}))


def test_replicated_arms_get_paired_wikiann_differences_over_pretraining_runs(tmp_path):
    """The paper's NER claim (WikiAnn, zero-shot from English) is read like the QA one: each run's
    paired difference to base, the interval over runs, and language by language."""
    results = tmp_path / "results"
    _fake_cell(results, "base", "k64", {1: (40, 30)})  # QA cells alongside: their tables are unchanged
    _fake_cell(results, "full-p1", "k64", {1: (42, 32)})
    _fake_ner_cell(results, "base", {1: (80, 60)})
    _fake_ner_cell(results, "mlm-only", {1: (78, 58)})
    # average over en, es minus base's 70: run 1 +1 (en +2, es 0), run 2 +3 (en +2, es +4), run 3 +2 (en +2, es +2)
    _fake_ner_cell(results, "full-p1", {1: (82, 60)})
    _fake_ner_cell(results, "full-p2", {1: (82, 64)})
    _fake_ner_cell(results, "full-p3", {1: (82, 62)})
    report = build_report(results).read_text()
    assert "## Paired differences over pre-training runs (WikiAnn NER F1" in report
    # mean +2, sd 1 over 3 runs: +-4.303 / sqrt(3) = 2.48
    assert "| CLISM+CACR+MLM | zero-shot | base encoder | 3 × 1 | +1.00, +3.00, +2.00 | +2.00 [-0.48, +4.48] |" \
        in report
    assert "| CLISM+CACR+MLM | zero-shot | MLM only (control) | 3 × 1 | +3.00, +5.00, +4.00 |" in report
    assert "### The same against base, per language (WikiAnn F1)" in report
    assert "| CLISM+CACR+MLM | zero-shot | es | +0.00, +4.00, +2.00 | +2.00 [-2.97, +6.97] |" in report
    assert "| MLM only (control) | zero-shot | 1 | -2.00 | -2.00 (one run) |" in report  # pre-trained once
    # the XQuAD tables hold the QA cells alone, the WikiAnn ones the NER cells alone
    xquad = report.split("## Paired differences over pre-training runs (XQuAD")[1].split("\n## ")[0]
    wikiann = report.split("## Paired differences over pre-training runs (WikiAnn")[1].split("\n## ")[0]
    assert "| CLISM+CACR+MLM | k64 | base encoder | 1 × 1 | +2.00 | +2.00 (one run) | +2.00 |" in xquad
    assert "zero-shot" not in xquad and "k64" not in wikiann
    # CoNLL, scored by the same English tagger, is paired the same way (every arm scores es 0 here)
    conll = report.split("## Paired differences over pre-training runs (CoNLL-2002")[1].split("\n## ")[0]
    assert "| CLISM+CACR+MLM | zero-shot | base encoder | 3 × 1 | +0.00, +0.00, +0.00 |" in conll


def test_a_replicated_variant_meets_the_run_of_the_arm_it_changes_with_the_same_number(tmp_path):
    """A setting chosen over pre-training runs: variant run N against its arm's run N (same seed,
    same data build), the interval over runs."""
    results = tmp_path / "results"
    results.mkdir()
    (results / "grid.yaml").write_text(yaml.safe_dump(
        {"variants": {"llrd": {"arm": "no-mlm", "label": "layer decay", "pretrain": {"layer_lr_decay": 0.8}}}}))
    _fake_cell(results, "base", "k256", {1: None, 2: None}, english_dev={1: 40, 2: 42})
    _fake_cell(results, "no-mlm-p1", "k256", {1: None, 2: None}, english_dev={1: 41, 2: 44})
    _fake_cell(results, "no-mlm-p2", "k256", {1: None, 2: None}, english_dev={1: 45, 2: 45})
    _fake_cell(results, "llrd-p1", "k256", {1: None, 2: None}, english_dev={1: 42, 2: 45})  # - no-mlm-p1: +1, +1
    _fake_cell(results, "llrd-p2", "k256", {1: None, 2: None}, english_dev={1: 48, 2: 48})  # - no-mlm-p2: +3, +3
    report = build_report(results).read_text()
    assert "| layer decay | k256 | without MLM | 2 × 2 | +1.00, +3.00 | +2.00 [-10.71, +14.71] |" in report
    assert "| layer decay | k256 | base encoder | 2 × 2 | +2.50, +7.00 |" in report


def test_every_table_names_a_variant_by_its_label_and_lists_only_arms_it_measured(tmp_path):
    """A variant that joined a grid late (few-shot only so far) appears under its label in the
    few-shot tables and not as an empty row of the zero-shot averages."""
    results = tmp_path / "results"
    results.mkdir()
    (results / "grid.yaml").write_text(yaml.safe_dump({"variants": {"llrd": {"arm": "no-mlm", "label": "layer decay"}}}))
    _fake_cell(results, "base", "zero-shot", {1: (50, 40)})
    _fake_cell(results, "base", "k128", {1: (30, 20)})
    _fake_cell(results, "llrd-p1", "k128", {1: (36, 24)})
    report = build_report(results).read_text()
    averages = report.split("## Averages over languages")[1].split("\n## ")[0]
    assert "| base encoder | 45.00" in averages and "llrd" not in averages and "layer decay" not in averages
    few_shot = report.split("## Few-shot XQuAD F1")[1].split("\n## ")[0]
    assert "| layer decay (pre-training run 1) (seeds) |" in few_shot and "| 128 | 25.00 (1) | 30.00 (1) |" in few_shot
    assert "llrd" not in report.split("Grid file:")[0]
    # so do the reference grid's tables, in an experiment that reruns the variant's cells with other settings
    experiment = tmp_path / "experiment"
    _fake_cell(results, "llrd-p2", "k128", {1: (34, 26)})
    _fake_cell(experiment, "base", "k128", {1: (32, 22)})
    _fake_cell(experiment, "llrd-p1", "k128", {1: (37, 25)})
    (experiment / "grid.yaml").write_text(yaml.safe_dump({"compare_with": str(results), "variants": {
        "llrd": {"arm": "no-mlm", "label": "layer decay"}}}))
    report = build_report(experiment).read_text()
    theirs = report.split(f"### `{results}` over its pre-training runs")[1].split("\n## ")[0]
    assert "| layer decay | k128 | base encoder | 2 × 1 | +5.00, +5.00 |" in theirs and "llrd" not in theirs
    # (the seed-by-seed table's "cell" column is the folder, qa/<arm>/<setting>, so that one is found on disk)
    assert "| llrd-p1 k128 | 1 | 31.00 | 30.00 | 25.00 |" in report


def test_replicate_and_variant_arms_are_pre_trained_with_their_own_seed_data_and_settings(tmp_path):
    from pathlib import Path

    from clism.config import load_file
    from clism.experiments.grid import clism_data_dir, ensure_arm, load_grid, split_replicate

    grid_file = tmp_path / "grid.yaml"
    grid_file.write_text(yaml.safe_dump({
        "arms": ["base", "full-p1", "full-p2", "headlr-p2"], "curve_arms": [], "results": str(tmp_path / "r"),
        "work": str(tmp_path / "w"), "pretrain": {"max_steps": 3},
        "variants": {"headlr": {"arm": "full", "label": "full, head lr x20", "pretrain": {"head_lr_scale": 20}}}}))
    grid = load_grid(grid_file)
    assert split_replicate("headlr-p2") == ("headlr", 2) and split_replicate("no-mlm") == ("no-mlm", 0)
    assert clism_data_dir(grid, 1).name == "clism-data" and clism_data_dir(grid, 2).name == "clism-data-p2"
    grid.model = str(tiny_base(tmp_path))
    grid.pretrain = {"max_steps": 2, "batch_size": 8, "warmup_steps": 0, "dropout": 0.0}
    for run in (1, 2):
        clism_data(clism_data_dir(grid, run))
    for arm, seed, data, head_lr in (("full-p1", 1, "clism-data", 1.0), ("full-p2", 2, "clism-data-p2", 1.0),
                                     ("headlr-p2", 2, "clism-data-p2", 20.0)):
        ensure_arm(grid, arm, None)
        saved = load_file(tmp_path / "w" / "pretrain" / arm / "config.yaml")
        assert (saved["seed"], Path(saved["data"]).name, saved["head_lr_scale"]) == (seed, data, head_lr)
    grid_file.write_text(yaml.safe_dump({"arms": ["base-p2"]}))
    with pytest.raises(ConfigError, match="unknown arm"):
        load_grid(grid_file)
    grid_file.write_text(yaml.safe_dump({"variants": {"x": {"arm": "base"}}}))
    with pytest.raises(ConfigError, match="variants: x"):
        load_grid(grid_file)


def test_the_best_variant_config_pretrains_as_the_grid_measured_it():
    """`clism pretrain --config configs/pretrain-cpu-30k.yaml` is how a user gets the best variant: it must learn
    with the settings of the end-point grid's llrd-30k runs, whose gains the README reports; only the data, the
    output folder and the seed are the user's."""
    from pathlib import Path

    from clism.config import from_dict, load_file
    from clism.experiments.grid import arm_pretrain_options
    from clism.pretraining.options import PretrainOptions

    configs = Path(__file__).resolve().parents[1] / "configs"
    measured = arm_pretrain_options(load_grid(configs / "reproduce-cpu-end-point.yaml"), "llrd-30k-p2")
    user = from_dict(PretrainOptions, load_file(configs / "pretrain-cpu-30k.yaml"), "pretrain-cpu-30k").resolved()
    assert (measured.layer_lr_decay, measured.max_steps * measured.batch_size, measured.mlm) == (0.8, 30_000, False)
    assert measured.seed == 2 and user.seed == 1
    assert {**user.learning_identity(), "seed": 2} == measured.learning_identity()


def test_a_variant_builds_its_own_data_on_the_shared_alignment(tmp_path):
    """`variants: {name: {build_data: ...}}` measures a data option: the variant's instances
    come from the same pairs and the same stored links as the shared build's, so the arms
    differ by the option alone."""
    pytest.importorskip("spacy")
    pytest.importorskip("eflomal")
    from test_build_data import corpus

    from clism.experiments.grid import clism_data_dir, ensure_clism_data, load_grid

    grid_file = tmp_path / "grid.yaml"
    settings = {"arms": ["base", "full", "capped", "capped-p2"], "results": str(tmp_path / "r"),
                "work": str(tmp_path / "w"),
                "build_data": {"corpora": [], "langs": ["de"], "files": [f"de={corpus(tmp_path)}"], "max_chars": 200},
                "variants": {"capped": {"arm": "full", "build_data": {"max_copied_share": 0.3}}}}
    grid_file.write_text(yaml.safe_dump(settings))
    grid = load_grid(grid_file)
    assert [clism_data_dir(grid, run, family).name for run, family in ((0, ""), (0, "capped"), (2, "capped"),
                                                                        (0, "headlr"))] == \
        ["clism-data", "clism-data-capped", "clism-data-capped-p2", "clism-data"]
    shared = json.loads((ensure_clism_data(grid, None) / "manifest.json").read_text())
    capped = json.loads((ensure_clism_data(grid, None, 0, "capped") / "manifest.json").read_text())
    assert capped["config"]["max_copied_share"] == 0.3 and "max_copied_share" not in shared["config"]
    assert capped["alignment_cache_keys"] == shared["alignment_cache_keys"]  # the same links
    assert capped["languages"]["de"]["output"]["rejected_copied_answer"] > 0
    settings["variants"]["capped"]["build_data"] = {"max_copied_shares": 0.3}
    grid_file.write_text(yaml.safe_dump(settings))
    with pytest.raises(ConfigError, match="variants: capped: build_data"):
        load_grid(grid_file)


def test_a_new_machine_rebuilds_a_grids_data_byte_for_byte_from_the_links_in_its_results(tmp_path, monkeypatch):
    """eflomal cannot be seeded: a build's links are kept in the grid's results, so a machine
    without the work folder and the alignment store makes the same data (and so can pre-train
    the same model and resume an arm's cells) instead of aligning again."""
    pytest.importorskip("spacy")
    pytest.importorskip("eflomal")
    from test_build_data import corpus

    import clism.clism_data.instances as instances
    from clism.clism_data.instances import alignment_cache_dir
    from clism.errors import InputError
    from clism.experiments.grid import ensure_clism_data, load_grid

    grid_file = tmp_path / "grid.yaml"
    grid_file.write_text(yaml.safe_dump({
        "arms": ["base", "full"], "results": str(tmp_path / "r"), "work": str(tmp_path / "w"),
        "build_data": {"corpora": [], "langs": ["de"], "files": [f"de={corpus(tmp_path)}"], "max_chars": 200}}))
    grid = load_grid(grid_file)
    first = ensure_clism_data(grid, None)
    built = {p.relative_to(first): p.read_bytes() for p in first.glob("instances/*")}
    kept = sorted(p.name for p in (tmp_path / "r/clism-data/links").iterdir())
    key = json.loads((first / "manifest.json").read_text())["alignment_cache_keys"]["de"]
    assert built and kept == [f"de.{key}.fwd.gz", f"de.{key}.rev.gz"]
    before = {p.name: p.read_bytes() for p in (tmp_path / "r/clism-data/links").iterdir()}

    shutil.rmtree(tmp_path / "w")  # the new machine: no work folder, no alignment store
    shutil.rmtree(alignment_cache_dir())

    def no_eflomal(*args, **kwargs):
        raise AssertionError("eflomal ran again: the kept links were not used")

    monkeypatch.setattr(instances, "run_eflomal", no_eflomal)
    again = ensure_clism_data(grid, None)
    assert {p.relative_to(again): p.read_bytes() for p in again.glob("instances/*")} == built
    assert {p.name: p.read_bytes() for p in (tmp_path / "r/clism-data/links").iterdir()} == before  # unchanged

    # this machine's own eflomal run under the same key is not silently used, nor overwritten
    shutil.rmtree(tmp_path / "w")
    store = alignment_cache_dir() / key / "links.fwd"
    store.write_text("0-0\n" * len(store.read_text().splitlines()))
    with pytest.raises(InputError, match="holds other eflomal links"):
        ensure_clism_data(grid, None)
    assert store.read_text().startswith("0-0\n")


def test_an_arm_never_mixes_seeds_from_two_pretrainings(tmp_path):
    """An arm pre-trained again (a new machine) is another model: its seeds may not join the
    arm's results whose finished seeds came from the first one, in any task, and its log may not
    replace the first one's pre-training record. The record is made before the first seed, so a
    session stopped mid-cell resumes on the same machine."""
    import pytest

    from clism.config import ConfigError
    from clism.experiments.grid import MODEL_FINGERPRINT, Cell, GridConfig, check_one_model, keep_pretraining_record

    grid = GridConfig(results=str(tmp_path / "results"))
    cell, other_k = Cell("qa", "full", "k8", [1, 2]), Cell("qa", "full", "k16", [1])
    model = tmp_path / "pretrain" / "model"
    model.mkdir(parents=True)
    (model / "model.safetensors").write_bytes(b"first pre-training")
    (model.parent / "log.jsonl").write_text('{"step": 1, "loss": 2.0}\n')
    digest = check_one_model(grid, cell, str(model), done=[])  # seed 1 about to run: recorded now
    record = tmp_path / "results" / "qa" / "full" / MODEL_FINGERPRINT
    assert record.read_text().strip() == digest
    keep_pretraining_record(grid, "full", str(model), digest)
    kept_log = tmp_path / "results" / "pretrain" / "full" / "log.jsonl"
    assert kept_log.read_text() == '{"step": 1, "loss": 2.0}\n'
    (model.parent / "log.jsonl").write_text('{"step": 1, "loss": 2.0, "seconds": 9}\n')  # the same model, rerun
    keep_pretraining_record(grid, "full", str(model), digest)
    assert kept_log.read_text() == '{"step": 1, "loss": 2.0}\n'  # the record of the model is kept as it was
    (tmp_path / "results/qa/full/k8/seed-1").mkdir(parents=True)
    (tmp_path / "results/qa/full/k8/seed-1/metrics.json").write_text("{}")  # the session stops after seed 1
    check_one_model(grid, cell, str(model), done=[1])  # the same model: seed 2 may join
    (model / "model.safetensors").write_bytes(b"pre-trained again")
    with pytest.raises(ConfigError, match="would mix two models"):
        check_one_model(grid, cell, str(model), done=[1])
    with pytest.raises(ConfigError, match="would mix two models"):  # nor may another cell of the arm
        check_one_model(grid, other_k, str(model), done=[])
    with pytest.raises(ConfigError, match="weights differ"):  # nor a cell of another task, nor its pre-training log
        check_one_model(grid, Cell("ner", "full", "zero-shot", [1]), str(model), done=[])
    assert not (tmp_path / "results" / "ner" / "full").exists()
    for kept in (tmp_path / "results").glob(f"*/full/{MODEL_FINGERPRINT}"):
        kept.unlink()  # seeds without any record: refused too
    with pytest.raises(ConfigError, match="no fingerprint recorded"):
        check_one_model(grid, other_k, str(model), done=[])
    assert check_one_model(grid, Cell("qa", "base", "k8", [1, 2]), "multilingual-e5-small-q4", done=[1]) is None


def test_the_pretraining_table_reads_the_end_of_a_run_over_its_last_quarter(tmp_path):
    results = tmp_path / "results"
    _fake_cell(results, "base", "k256", {1: (40, 30)})
    run = results / "pretrain" / "no-mlm"
    run.mkdir(parents=True)
    (run / "summary.json").write_text(json.dumps({"steps": 100, "seconds": 90.0}))
    # single-step losses, logged every 5 steps; the last step is one batch of long passages
    clism = {1: 2.0, 5: 1.9, 75: 1.0, 80: 0.6, 85: 0.5, 90: 0.6, 95: 0.5, 100: 2.8}
    (run / "log.jsonl").write_text("".join(json.dumps({"step": s, "loss_clism": v, "loss_cacr": 1.0, "loss_mlm": 0.0})
                                           + "\n" for s, v in clism.items()))
    report = build_report(results).read_text()
    # steps 80-100: (0.6 + 0.5 + 0.6 + 0.5 + 2.8) / 5 = 1.0; MLM was off (0.0 from the start): not shown
    assert "| without MLM | 100 | 90 | clism 2.000 → 1.000 · cacr 1.000 → 1.000 | – |" in report  # no "moved" yet
    # a run that recorded how far each part moved (clism pretrain's summary) shows it
    (run / "summary.json").write_text(json.dumps({"steps": 100, "seconds": 90.0, "moved": {
        "encoder_L00": 0.0061, "encoder_L01": 0.0042, "encoder_L02": 0.0055, "encoder_emb": 0.0001, "head": 0.3412}}))
    report = build_report(results).read_text()
    assert "| layer 0 0.61%, layer 2 0.55% (range 0.42%–0.61%); head 34.1% |" in report
    table = report.split("## Pre-training")[1].split("\n\n")[1].splitlines()
    assert len(table) == 3 and len({line.count("|") for line in table}) == 1  # header, rule, row: same columns
