"""clism build-data on a small corpus written here: offsets, determinism, resume."""
import shutil
from collections import Counter
from pathlib import Path

import pytest

pytest.importorskip("spacy")
pytest.importorskip("eflomal")

from clism.cli import main  # noqa: E402
from clism.clism_data import instances as build_instances  # noqa: E402
from clism.clism_data.instances import (BuildDataOptions, answer_concentration, build, check_instances,  # noqa: E402
                                        iter_instances)

PEOPLE = ["Angela Merkel", "Barack Obama", "Marie Curie", "Albert Einstein", "Nelson Mandela", "Pablo Picasso"]
CITIES = [("Berlin", "Berlin"), ("Paris", "Paris"), ("London", "London"), ("Rome", "Rom"), ("Vienna", "Wien"),
          ("Madrid", "Madrid"), ("Munich", "München"), ("Cologne", "Köln")]
TEMPLATES = [
    ("{p} visited {c} last year.", "{p} besuchte letztes Jahr {c}."),
    ("{p} lived in {c} for many years.", "{p} lebte viele Jahre in {c}."),
    ("Yesterday {p} arrived in {c}.", "Gestern kam {p} in {c} an."),
    ("In {c}, {p} gave a famous speech.", "In {c} hielt {p} eine berühmte Rede."),
]


def corpus(tmp_path: Path) -> Path:
    lines = []
    for i, person in enumerate(PEOPLE):
        for j, (city_en, city_de) in enumerate(CITIES):
            en, de = TEMPLATES[(i + j) % len(TEMPLATES)]
            lines.append(f"{en.format(p=person, c=city_en)}\t{de.format(p=person, c=city_de)}\n")
    lines.append(lines[0])  # a duplicate
    lines.append("This sentence is far too long. " * 20 + "\tZu lang.\n")
    path = tmp_path / "en-de.tsv"
    path.write_text("".join(lines), encoding="utf-8")
    return path


def options(tmp_path: Path, out: str, **kw) -> BuildDataOptions:
    return BuildDataOptions(corpora=[], langs=["de"], files=[f"de={corpus(tmp_path)}"], out=str(tmp_path / out),
                            max_chars=200, shard_size=10, n_process=1, **kw)


def tree(directory: Path) -> dict[str, bytes]:
    return {str(p.relative_to(directory)): p.read_bytes() for p in sorted(directory.rglob("*"))
            if p.is_file() and "work" not in p.parts and p.name != "timings.json"}


COMMITTED_LINKS = Path(__file__).with_name("data") / "en-de-links"


def committed_links(src_lines, tgt_lines, workdir: Path, n_samplers: int = 3):
    """eflomal's links for ``corpus()``, stored once: eflomal 2.0 cannot be seeded, and a
    fresh run projects a name wrongly about 1 time in 50."""
    fwd, rev = Path(f"{COMMITTED_LINKS}.fwd"), Path(f"{COMMITTED_LINKS}.rev")
    assert len(src_lines) == len(tgt_lines) == len(fwd.read_text().splitlines()), "corpus() changed: store new links"
    workdir.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(fwd, workdir / "links.fwd")
    shutil.copyfile(rev, workdir / "links.rev")
    return workdir / "links.fwd", workdir / "links.rev"


def test_instances_match_offsets_and_the_manifest_counts(tmp_path, monkeypatch):
    monkeypatch.setattr(build_instances, "run_eflomal", committed_links)
    manifest = build(options(tmp_path, "a"))
    de = manifest["languages"]["de"]
    assert de["input"]["duplicate"] == 1 and de["input"]["too_long"] == 1 and de["input"]["kept"] == 48
    n, problems = check_instances(tmp_path / "a")
    assert n == de["output"]["instances"] > 30 and problems == []
    names = {a.en_text: a.text for inst in iter_instances(tmp_path / "a") for a in inst.answers}
    assert names["Vienna"] == "Wien" and names["Angela Merkel"] == "Angela Merkel"
    projected = de["output"]["proxy_projected"]
    assert projected and de["output"]["proxy_exact"] / projected > 0.8  # names copied verbatim land on themselves
    for inst in iter_instances(tmp_path / "a"):
        assert inst.en_masked.count("[QUE]") == len(inst.answers) >= 1


def test_two_builds_are_byte_identical(tmp_path):
    build(options(tmp_path, "a"))
    build(options(tmp_path, "b"))  # same input: eflomal links are reused from the alignment store
    assert tree(tmp_path / "a") == tree(tmp_path / "b")


@pytest.mark.parametrize("caps", [{}, {"max_answer_repeats": 2, "max_copied_share": 0.4}])
def test_a_build_killed_half_way_resumes_to_the_same_output(tmp_path, monkeypatch, caps):
    build(options(tmp_path, "full", **caps))
    real = build_instances.write_atomic
    calls = {"n": 0}

    def dies_after_two_shards(path, text):
        if path.suffix == ".jsonl" and "instances" in path.parts:
            calls["n"] += 1
            if calls["n"] == 3:
                raise KeyboardInterrupt("killed")
        return real(path, text)

    monkeypatch.setattr(build_instances, "write_atomic", dies_after_two_shards)
    with pytest.raises(KeyboardInterrupt):
        build(options(tmp_path, "resumed", **caps))
    monkeypatch.setattr(build_instances, "write_atomic", real)
    assert len(list((tmp_path / "resumed/instances").glob("*.jsonl"))) == 2
    build(options(tmp_path, "resumed", **caps))  # the caps' counts carry over the finished shards
    assert tree(tmp_path / "full") == tree(tmp_path / "resumed")


def test_cli_report(tmp_path, capsys):
    opts = options(tmp_path, "cli")
    assert main(["build-data", "--langs", "de", "--corpora", "", "--files", opts.files[0], "--out", opts.out,
                 "--max-chars", "200", "--shard-size", "10", "--n-process", "1"]) == 0
    out = capsys.readouterr().out
    assert "| de | 48 |" in out and "0 with answers that do not match" in out
    assert "| de | " in out.split("share of the top 5")[1]  # the concentration table follows the quality one
    assert main(["build-data", "--out", opts.out, "--report"]) == 0


def test_max_answer_repeats_caps_each_english_answer_and_counts_the_rest(tmp_path):
    uncapped = build(options(tmp_path, "all"))["languages"]["de"]["output"]
    capped = build(options(tmp_path, "capped", max_answer_repeats=2))["languages"]["de"]["output"]
    uses = Counter(a.en_text.casefold() for inst in iter_instances(tmp_path / "capped") for a in inst.answers)
    assert max(uses.values()) == 2 and len(uses) >= 10  # every person and city still there, twice at most
    assert capped["answers"] < uncapped["answers"]
    assert capped["rejected_repeated_answer"] >= uncapped["answers"] - capped["answers"] > 0
    assert check_instances(tmp_path / "capped")[1] == []

    # the report's concentration table counts what the cap counts, and shows it worked
    before, after = answer_concentration(tmp_path / "all", top=3)["de"], answer_concentration(tmp_path / "capped")["de"]
    assert before["answers"] == uncapped["answers"] and after["answers"] == capped["answers"]
    assert before["top"][0][1] > 2 and len(before["top"]) == 3 and {n for _, n in after["top"]} == {2}
    assert after["distinct"] == len(uses) and before["top"][0][0] == before["top"][0][0].casefold()


def test_the_copy_cap_and_the_minimum_target_length(tmp_path, monkeypatch):
    """Most names in this corpus are copied verbatim into German (all but Rom, Wien, München,
    Köln); the cap keeps copies to the share asked, in corpus order, and counts the rest."""
    monkeypatch.setattr(build_instances, "run_eflomal", committed_links)
    everything = build(options(tmp_path, "all"))["languages"]["de"]["output"]
    assert everything["answers_copied"] / everything["answers"] > 0.5
    capped = build(options(tmp_path, "capped", max_copied_share=0.3))["languages"]["de"]["output"]
    answers = [a for inst in iter_instances(tmp_path / "capped") for a in inst.answers]
    copied = sum(a.text == a.en_text for a in answers)
    assert copied == capped["answers_copied"] and 0 < copied <= 0.3 * len(answers)
    assert capped["rejected_copied_answer"] > 0 and check_instances(tmp_path / "capped")[1] == []
    assert capped["answers"] + capped["rejected_copied_answer"] == everything["answers"]
    short = build(options(tmp_path, "short", min_target_tokens=8))["languages"]["de"]["output"]
    targets = [inst.target for inst in iter_instances(tmp_path / "short")]
    assert short["rejected_short_target"] > 0 and targets and all(len(t.split()) >= 7 for t in targets)
    with pytest.raises(ValueError, match="--max-copied-share 1.5: a share"):
        build(options(tmp_path, "bad", max_copied_share=1.5))


def test_a_folder_refuses_a_build_with_other_settings(tmp_path):
    build(options(tmp_path, "one"))
    with pytest.raises(ValueError, match=r"settings\.json.*max_answer_repeats: 0 -> 3.*another --out"):
        build(options(tmp_path, "one", max_answer_repeats=3))
    build(options(tmp_path, "one", spacy_batch_size=64))  # how a build runs is not what it writes


def test_max_pairs_caps_each_language_and_says_so(tmp_path):
    manifest = build(options(tmp_path, "capped", max_pairs=20))
    stats = manifest["languages"]["de"]["input"]
    assert stats["kept"] == 20 and stats["read"] == 20 and manifest["config"]["max_pairs"] == 20
    assert check_instances(tmp_path / "capped")[1] == []


@pytest.mark.parametrize("entry, message", [
    ("es={corpus}", "es is not among --langs de"),
    ("DE={corpus}", "languages are lower case: de"),
    ("{corpus}", "write LANG=pairs.tsv"),
    ("de=missing.tsv", "no such file missing.tsv"),
])
def test_a_files_entry_that_would_be_ignored_is_refused(tmp_path, capsys, entry, message):
    path = corpus(tmp_path)
    assert main(["build-data", "--langs", "de", "--corpora", "", "--files", entry.format(corpus=path),
                 "--out", str(tmp_path / "out")]) == 2
    assert message in capsys.readouterr().err


def test_distractors_make_a_passage_whose_answers_keep_their_text():
    """--distractors: the target sentence among others of the language; answers move with it."""
    from clism.clism_data.instance import Instance, ProjectedAnswer
    from clism.clism_data.instances import into_passage

    target = "Tom wohnt in Berlin."
    inst = Instance("de-0000007", "de", "t:1", "[QUE] lives in [QUE].", "Tom lives in Berlin.", target, (
        ProjectedAnswer("Tom", 0, 3, "PERSON", 1.0, "Tom", 0, 3),
        ProjectedAnswer("Berlin", 13, 19, "GPE", 1.0, "Berlin", 13, 19)))
    pool = [(x, f"t:{i}") for i, x in enumerate([target, "Es regnet.", "Ich habe Hunger.",
                                                  "Das Wetter ist heute sehr schön.", "Wo ist der Bahnhof?"])]
    stats = Counter()
    passage = into_passage(inst, pool, 0, 3, 80, stats)
    assert passage.target.count(target) == 1 and len(passage.target) <= 80 and passage.target != target
    assert [passage.target[a.start: a.end] for a in passage.answers] == ["Tom", "Berlin"]
    assert into_passage(inst, pool, 0, 3, 80, Counter()) == passage  # seeded by the instance id
    assert sum(stats.values()) == 1
    assert into_passage(inst, pool, 0, 3, len(target), Counter()).target == target  # no room: the sentence alone
    zh = Instance("zh-0000001", "zh", "t:1", "[QUE]很好。", "Tom is fine.", "汤姆很好。",
                  (ProjectedAnswer("汤姆", 0, 2, "PERSON", 1.0, "Tom", 0, 3),))
    joined = into_passage(zh, [("下雨了。", "t:1"), ("我饿了。", "t:2")], 0, 2, 50, Counter())
    assert " " not in joined.target and joined.target[joined.answers[0].start:joined.answers[0].end] == "汤姆"


def test_neighbour_passages_are_the_sentences_around_it_in_its_own_corpus():
    """--passage neighbours: a passage of the document the sentence came from (FLORES keeps
    document order), in order, nearest first, never across corpus files."""
    from clism.clism_data.instance import Instance, ProjectedAnswer
    from clism.clism_data.instances import into_passage

    doc = ["Der Fluss ist lang.", "Er fließt durch Wien.", "Viele Schiffe fahren dort.", "Das Ende."]
    pool = [("Anderes Korpus.", "tatoeba:9")] + [(x, f"flores200:{i}") for i, x in enumerate(doc, 1)]
    inst = Instance("de-0000002", "de", "flores200:2", "It flows through [QUE].", "It flows through Vienna.",
                    doc[1], (ProjectedAnswer("Wien", 16, 20, "GPE", 1.0, "Vienna", 17, 23),))
    two = into_passage(inst, pool, 2, 2, 500, Counter(), "neighbours")
    assert two.target == " ".join(doc[:3])  # one after, one before, in document order
    assert two.target[two.answers[0].start:two.answers[0].end] == "Wien"
    first = Instance("de-0000001", "de", "flores200:1", "", "", doc[0], ())
    assert into_passage(first, pool, 1, 2, 500, Counter(), "neighbours").target == " ".join(doc[:3])  # not tatoeba's
    room_for_one = len(doc[1]) + 1 + len(doc[2])  # the sentence after comes first, when it fits
    assert into_passage(inst, pool, 2, 3, room_for_one, Counter(), "neighbours").target == " ".join(doc[1:3])


def test_an_entity_type_the_recogniser_never_predicts_is_refused(tmp_path):
    """It used to build 0 instances with exit status 0."""
    with pytest.raises(ValueError, match=r"--entity-types: PERSN not among the labels of .*PERSON"):
        build(options(tmp_path, "typo", entity_types=["PERSN", "GPE"]))
    assert not (tmp_path / "typo").exists()


def test_a_language_without_one_usable_pair_is_an_error_not_a_traceback(tmp_path):
    """eflomal died with ZeroDivisionError when every pair had been filtered out."""
    long_only = tmp_path / "long.tsv"
    long_only.write_text("word " * 100 + "\tWort\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"de: none of the 1 pairs read is usable .*--max-chars 200: 1"):
        build(BuildDataOptions(corpora=[], langs=["de"], files=[f"de={long_only}"], out=str(tmp_path / "o"),
                               max_chars=200))


def test_an_out_that_is_a_file_is_refused_before_any_work(tmp_path):
    (tmp_path / "taken").write_text("someone's notes")
    with pytest.raises(ValueError, match="--out .*taken is a file, not a folder"):
        build(options(tmp_path, "taken"))
    assert (tmp_path / "taken").read_text() == "someone's notes"


def test_options_built_in_python_are_checked_like_flags(tmp_path):
    with pytest.raises(ValueError, match="--passage 'sideways': choose one of random, neighbours"):
        build(options(tmp_path, "p", distractors=2, passage="sideways"))
    with pytest.raises(ValueError, match="--max-copied-share must be 0 or more, got -0.1"):
        build(options(tmp_path, "p", max_copied_share=-0.1))
    assert not (tmp_path / "p").exists()
