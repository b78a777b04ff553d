import json

import pytest

from clism.cli import COMMANDS, main


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def _every_command() -> list[list[str]]:
    return [[group] if isinstance(commands, tuple) else [group, name]
            for group, commands in COMMANDS.items() for name in ([None] if isinstance(commands, tuple) else commands)]


@pytest.mark.parametrize("command", _every_command(), ids=" ".join)
def test_every_command_prints_its_help(command, capsys):
    # argparse formats each help text with %, so a stray "%" in an option's help breaks --help
    with pytest.raises(SystemExit) as exit_:
        main(command + ["--help"])
    assert exit_.value.code == 0 and "usage: clism " + " ".join(command) in capsys.readouterr().out


def test_help_lists_the_commands(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    assert "data" in out and "model" in out
    with pytest.raises(SystemExit):
        main(["data", "--help"])
    out = capsys.readouterr().out
    assert "list" in out and "verify" in out and "english-qa" in out


def test_data_list_shows_present_languages(mirror, capsys):
    code, out, _ = run(capsys, "data", "list", "--data-dir", str(mirror))
    assert code == 0
    block = out.split("xquad  [qa]")[1].split("\n\n")[0]
    assert "present (mirror): en de  [test]" in block or "present (mirror): de en  [test]" in block
    assert "mlqa  [qa]" in out and "present: none" in out.split("mlqa  [qa]")[1].split("\n\n")[0]


def test_data_list_without_mirror_fails_clearly(capsys):
    code, _, err = run(capsys, "data", "list")
    assert code == 2
    assert "no mirror directory set" in err and "CLISM_DATA_DIR" in err


def test_data_list_env_var_and_missing_directory(mirror, capsys, monkeypatch):
    monkeypatch.setenv("CLISM_DATA_DIR", str(mirror))
    assert run(capsys, "data", "list")[0] == 0
    code, _, err = run(capsys, "data", "list", "--data-dir", str(mirror / "nope"))
    assert code == 2 and "does not exist" in err


def test_data_verify_checks_sums_and_reads(mirror, capsys):
    code, out, _ = run(capsys, "data", "verify", "xquad", "--data-dir", str(mirror))
    assert code == 0 and "xquad/en/test  mirror          1  ok" in out
    # corrupt one file: checksum mismatch is reported and the command fails
    (mirror / "xquad/xquad.de.json").write_text('{"data": [')
    code, out, _ = run(capsys, "data", "verify", "xquad", "--data-dir", str(mirror))
    assert code == 1 and "MISMATCH" in out and "invalid JSON" in out


def test_english_qa_writes_squad_json_and_config(mirror, tmp_path, capsys):
    out_file = tmp_path / "out" / "train.json"
    code, out, _ = run(capsys, "data", "english-qa", "--data-dir", str(mirror), "--out", str(out_file))
    assert code == 0 and "3 questions" in out
    data = json.loads(out_file.read_text())
    assert sum(len(p["qas"]) for a in data["data"] for p in a["paragraphs"]) == 3
    assert "include_tydiqa: true" in (tmp_path / "out" / "config.yaml").read_text()


@pytest.mark.parametrize("argv, flag", [
    (["finetune", "qa", "--max-eval-examples", "-5"], "--max-eval-examples must be 0 or more, got -5"),
    (["finetune", "qa", "--batch-size", "0"], "--batch-size must be 1 or more, got 0"),
    (["finetune", "ner", "--seeds", "1,-2"], "--seeds must be 0 or more, got -2"),
    (["build-data", "--shard-size", "0"], "--shard-size must be 1 or more, got 0"),
    (["predict", "qa", "--doc-stride", "-1"], "--doc-stride must be 1 or more, got -1"),
    (["pretrain", "--temperature", "0"], "--temperature must be 1e-06 or more, got 0.0"),
])
def test_out_of_range_numbers_are_refused_where_they_enter(argv, flag, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert flag in err and "Traceback" not in err


@pytest.mark.parametrize("command", [["finetune", "qa"], ["finetune", "ner"]])
def test_an_out_that_is_a_file_is_refused_and_left_alone(command, tmp_path, capsys):
    taken = tmp_path / "notes.txt"
    taken.write_text("keep me")
    assert main([*command, "--out", str(taken)]) == 2
    assert f"--out {taken} is a file, not a folder" in capsys.readouterr().err
    assert taken.read_text() == "keep me"


@pytest.mark.parametrize("command", [["finetune", "qa"], ["finetune", "ner"], ["pretrain"], ["evaluate", "qa"],
                                     ["predict", "qa", "--question", "Q?", "--context", "C."]])
def test_a_model_that_is_no_folder_nor_hub_id_is_named_before_any_work(command, tmp_path, capsys):
    """It was a transformers repo-id traceback, or came after minutes of data loading."""
    assert main([*command, "--model", str(tmp_path / "typo" / "model"), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "no such" in err and "Traceback" not in err and not (tmp_path / "out").exists()


def test_a_hub_id_that_cannot_be_fetched_is_one_line(tmp_path, capsys, monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)  # never the network: fails at once
    assert main(["predict", "ner", "--model", "someone/no-such-model", "--text", "Hi."]) == 2
    err = capsys.readouterr().err
    assert "--model someone/no-such-model: not a local folder, and the Hugging Face Hub did not give it" in err
