"""Opening data files: gzip or plain, UTF-8, with errors that name the file and line."""
from __future__ import annotations

import gzip
import io
import json
from pathlib import Path
from typing import Any, Iterator

from clism.errors import ClismError


class DataFormatError(ClismError, ValueError):
    """A data file is malformed. The message names the file, the place and the fix."""


def _is_gzip(path: Path) -> bool:
    with open(path, "rb") as fh:
        return fh.read(2) == b"\x1f\x8b"


def open_text(path: str | Path) -> io.TextIOBase:
    """Open a UTF-8 text file, transparently gunzipping (by content, not by name)."""
    path = Path(path)
    raw = gzip.open(path, "rb") if _is_gzip(path) else open(path, "rb")
    return io.TextIOWrapper(raw, encoding="utf-8", newline=None)


def iter_lines(path: str | Path) -> Iterator[tuple[int, str]]:
    """Yield (1-based line number, line without newline); bad UTF-8 names its line."""
    path = Path(path)
    line_no = 0
    try:
        with open_text(path) as fh:
            for line_no, line in enumerate(fh, start=1):
                yield line_no, line.rstrip("\n")
    except UnicodeDecodeError as exc:
        raise DataFormatError(
            f"{path}: line {line_no + 1}: not valid UTF-8 ({exc.reason} at byte {exc.start} of a read "
            f"block); convert the file to UTF-8, e.g. `iconv -f latin1 -t utf-8`"
        ) from None
    except (OSError, EOFError) as exc:
        raise DataFormatError(f"{path}: cannot be read after line {line_no}: {exc}") from None


def read_json(path: str | Path) -> Any:
    path = Path(path)
    try:
        with open_text(path) as fh:
            text = fh.read()
    except UnicodeDecodeError as exc:
        raise DataFormatError(
            f"{path}: not valid UTF-8 at byte {exc.start} ({exc.reason}); JSON files must be UTF-8"
        ) from None
    except (OSError, EOFError) as exc:
        raise DataFormatError(f"{path}: cannot be read: {exc}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        hint = " (the file looks truncated)" if exc.pos >= len(text.rstrip()) - 1 else ""
        raise DataFormatError(
            f"{path}: invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}{hint}; "
            f"re-download or re-export the file"
        ) from None
