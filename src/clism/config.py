"""Typed run configuration: dataclasses filled from defaults, a YAML/JSON file, then flags.

Every command describes its options as one dataclass. ``add_arguments`` turns the
fields into ``--kebab-case`` flags; ``resolve`` layers defaults < ``--config FILE`` <
flags given on the command line; ``save_config`` writes the result next to a run's
outputs so the run can be repeated with ``--config that/file.yaml``.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
import types
import typing
from pathlib import Path
from typing import Any, Optional, TypeVar

import yaml

from clism.errors import ClismError

T = TypeVar("T")


class ConfigError(ClismError, ValueError):
    """An option or config file that cannot be used."""


def option(default, help: str, minimum: int | float = 0, choices: tuple[str, ...] = ()):
    """A dataclass field with its ``--help`` text; list defaults are copied per instance.

    Numbers (and numbers in lists) below ``minimum`` are refused where they enter: counts, sizes
    and steps are never negative, and sizes that must be positive say ``minimum=1``. A value
    outside ``choices`` (when given) is refused the same way."""
    metadata = {"help": help, "minimum": minimum, "choices": tuple(choices)}
    if isinstance(default, (list, tuple)):
        return dataclasses.field(default_factory=lambda: list(default), metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _unwrap_optional(tp: Any) -> tuple[Any, bool]:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0], True
    return tp, False


def _parse_bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true/false, got {text!r}")


def _coerce(value: Any, tp: Any, where: str) -> Any:
    """Convert a value read from YAML/JSON or a flag into the field's declared type."""
    tp, optional = _unwrap_optional(tp)
    if value is None:
        if optional:
            return None
        raise ConfigError(f"{where}: null is not allowed here")
    origin = typing.get_origin(tp)
    try:
        if origin in (list, tuple):
            (item_tp, *_) = typing.get_args(tp) or (str,)
            if isinstance(value, str):
                value = [v for v in value.split(",") if v.strip()]
            items = [_coerce(v, item_tp, where) for v in value]
            return items if origin is list else tuple(items)
        if tp is bool:
            return value if isinstance(value, bool) else _parse_bool(str(value))
        if tp in (int, float, str):
            if tp is int and isinstance(value, float) and not value.is_integer():
                raise ValueError(f"{value} is not an integer")
            return tp(value)
        if dataclasses.is_dataclass(tp) and isinstance(value, dict):
            return from_dict(tp, value, where)
    except (TypeError, ValueError, argparse.ArgumentTypeError) as exc:
        raise ConfigError(f"{where}: cannot read {value!r} as {getattr(tp, '__name__', tp)}: {exc}") from None
    return value


def from_dict(cls: type[T], data: dict, where: str = "config") -> T:
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(f"{where}: unknown option(s) {unknown}; known: {sorted(names)}")
    kwargs = {k: _coerce(v, hints[k], f"{where}: {k}") for k, v in data.items()}
    return check_options(cls(**kwargs), where)


def check_options(obj: T, where: str = "options") -> T:
    """Refuse numbers below their option's ``minimum``, non-finite numbers and values outside its
    ``choices``: for flags and files here, and for options built in Python through the commands'
    own checks (the engine calls it too)."""
    for field in dataclasses.fields(obj):
        minimum = field.metadata.get("minimum")
        value = getattr(obj, field.name)
        choices = field.metadata.get("choices")
        if choices and value not in choices:
            raise ConfigError(f"{where}: {_flag(field.name)} {value!r}: choose one of {', '.join(choices)}")
        numbers = value if isinstance(value, list) else [value]
        unusable = [v for v in numbers if isinstance(v, float) and not math.isfinite(v)]
        if unusable:
            raise ConfigError(f"{where}: {_flag(field.name)} must be a finite number, got {unusable[0]}")
        low = [v for v in numbers if isinstance(v, (int, float)) and not isinstance(v, bool) and minimum is not None
               and v < minimum]
        if low:
            raise ConfigError(f"{where}: {_flag(field.name)} must be {minimum} or more, got {low[0]}")
    return obj


def merge(base: dict, override: dict) -> dict:
    """``override`` over ``base``: mappings merge key by key, anything else is replaced."""
    out = dict(base)
    for key, value in override.items():
        out[key] = merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def load_file(path: str | Path, _seen: tuple = ()) -> dict:
    """A YAML/JSON mapping. ``extends: other.yaml`` (a path relative to this file) at the top
    level, or in any section, starts that mapping from the other file's and states only what
    differs."""
    path = Path(path)
    if path.resolve() in _seen:
        raise ConfigError(f"{path}: `extends` loops back to itself ({' -> '.join(map(str, _seen))})")
    data = _read_mapping(path)
    return _expand(data, path, (*_seen, path.resolve()))


def _expand(data: dict, path: Path, seen: tuple) -> dict:
    data = {k: _expand(v, path, seen) if isinstance(v, dict) else v for k, v in data.items()}
    if "extends" not in data:
        return data
    parent = data.pop("extends")
    if not isinstance(parent, str):
        raise ConfigError(f"{path}: `extends` takes the path of another config file, got {parent!r}")
    return merge(load_file(path.parent / parent, seen), data)


def _read_mapping(path: Path) -> dict:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
    try:
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: not valid {'JSON' if path.suffix == '.json' else 'YAML'}: {exc}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of option: value at the top level")
    return data


def add_arguments(parser: argparse.ArgumentParser, cls: type, *, positional: tuple[str, ...] = ()) -> None:
    """Add one flag per dataclass field (default None so only given flags override)."""
    hints = typing.get_type_hints(cls)
    parser.add_argument("--config", metavar="FILE", help="YAML or JSON file with any of these options")
    for field in dataclasses.fields(cls):
        tp, _ = _unwrap_optional(hints[field.name])
        help_text = field.metadata.get("help", "")
        default = field.default if field.default is not dataclasses.MISSING else None
        if field.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
            default = field.default_factory()  # type: ignore[misc]
        if default not in (None, "", []):
            help_text += f" (default: {default if not isinstance(default, list) else ','.join(map(str, default))})"
        if field.name in positional:
            parser.add_argument(field.name, nargs="?", default=None, help=help_text)
            continue
        kwargs: dict[str, Any] = {"dest": field.name, "default": None, "help": help_text}
        if tp is bool:
            kwargs["type"] = _parse_bool
            kwargs["nargs"] = "?"
            kwargs["const"] = True
            kwargs["metavar"] = "BOOL"
        elif typing.get_origin(tp) in (list, tuple):
            kwargs["metavar"] = "A,B,..."
            kwargs["action"] = "append"  # `--arms a --arms b` means `--arms a,b`, never just b
        else:
            kwargs["metavar"] = getattr(tp, "__name__", "VALUE").upper()
        parser.add_argument(_flag(field.name), **kwargs)


def resolve(cls: type[T], args: argparse.Namespace) -> T:
    data: dict = {}
    if getattr(args, "config", None):
        data.update(load_file(args.config))
        saved_type = data.pop("_type", cls.__name__)  # a run's saved config.yaml says what wrote it
        if saved_type != cls.__name__:
            raise ConfigError(f"{args.config} holds {saved_type} options, not {cls.__name__}: it was saved by "
                              "another command")
    for field in dataclasses.fields(cls):
        value = getattr(args, field.name, None)
        if isinstance(value, list):  # a list flag given once or more (action="append")
            value = ",".join(value)
        if value is not None:
            data[field.name] = value
    where = f"options (from {args.config} and flags)" if getattr(args, "config", None) else "options"
    try:
        return from_dict(cls, data, where)
    except TypeError as exc:  # a required field was not given
        raise ConfigError(f"{where}: {exc}") from None


def to_dict(obj: Any) -> dict:
    return dataclasses.asdict(obj)


def save_config(obj: Any, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"_type": type(obj).__name__, **to_dict(obj)}
    from clism.files import write_atomic

    write_atomic(path, json.dumps(payload, indent=2, ensure_ascii=False) + "\n" if path.suffix == ".json"
                 else yaml.safe_dump(payload, sort_keys=False, allow_unicode=True))
    return path


def load_config(cls: type[T], path: str | Path) -> T:
    data = load_file(path)
    data.pop("_type", None)
    return from_dict(cls, data, str(path))


def differences(saved: dict, wanted: dict) -> list[str]:
    """``"name: then-value then, now-value now"`` for every setting that differs (for messages)."""
    wanted = json.loads(json.dumps(wanted))  # tuples and lists compare as a saved file reads them
    keys = sorted(set(saved) | set(wanted))
    return [f"{k}: {saved.get(k)!r} then, {wanted.get(k)!r} now" for k in keys if saved.get(k) != wanted.get(k)]


def changed_settings(cls: Optional[type], saved: dict, wanted: dict) -> list[str]:
    """``differences`` between a saved run's settings and today's, over today's settings, with
    options the saved run predates read at their defaults (it ran as that default does)."""
    filled = with_defaults(cls, saved) if cls is not None else saved
    return differences({k: filled.get(k) for k in wanted}, wanted)


def with_defaults(cls: type, saved: dict) -> dict:
    """A saved config with every option it lacks at its default: a run saved before an option
    existed ran as that option's default does."""
    out = dict(saved)
    for f in dataclasses.fields(cls):
        if f.name not in out:
            if f.default is not dataclasses.MISSING:
                out[f.name] = f.default
            elif f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
                out[f.name] = f.default_factory()  # type: ignore[misc]
    return out
