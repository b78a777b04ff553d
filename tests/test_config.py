import argparse
from dataclasses import dataclass, field

import pytest

from clism.config import ConfigError, add_arguments, load_config, resolve, save_config


@dataclass
class Opts:
    model: str = "m"
    lr: float = 3e-5
    epochs: int = 2
    langs: list[str] = field(default_factory=lambda: ["en"])
    fp16: bool = False


def parse(argv):
    parser = argparse.ArgumentParser()
    add_arguments(parser, Opts)
    return resolve(Opts, parser.parse_args(argv))


def test_defaults_file_then_flags(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("lr: 1.0e-4\nepochs: 5\nlangs: [ar, de]\n")
    opts = parse(["--config", str(cfg), "--epochs", "7", "--fp16"])
    assert opts == Opts(model="m", lr=1e-4, epochs=7, langs=["ar", "de"], fp16=True)
    assert parse(["--langs", "hi,vi"]).langs == ["hi", "vi"]
    # a list flag given twice adds up (it used to keep only the last, silently)
    assert parse(["--langs", "hi", "--langs", "vi,zh"]).langs == ["hi", "vi", "zh"]


def test_saved_config_reloads_identically(tmp_path):
    opts = Opts(lr=0.5, langs=["zh"])
    for name in ("run.yaml", "run.json"):
        assert load_config(Opts, save_config(opts, tmp_path / name)) == opts


def test_bad_values_are_named(tmp_path):
    with pytest.raises(ConfigError, match="epochs.*cannot read 'many' as int"):
        parse(["--epochs", "many"])
    cfg = tmp_path / "c.json"
    cfg.write_text('{"learning_rate": 1}')
    with pytest.raises(ConfigError, match=r"unknown option\(s\) \['learning_rate'\]"):
        parse(["--config", str(cfg)])
