"""Opening data files: gzip or plain, UTF-8, with errors that name the file and line."""
from __future__ import annotations

import gzip
import json
import zlib
from pathlib import Path
from typing import Any, Iterator

from clism.errors import ClismError


class DataFormatError(ClismError, ValueError):
    """A data file is malformed. The message names the file, the place and the fix."""


def _is_gzip(path: Path) -> bool:
    with open(path, "rb") as fh:
        return fh.read(2) == b"\x1f\x8b"


def open_binary(path: Path):
    """The file's bytes, gunzipped when it is gzip (by content, not by name)."""
    return gzip.open(path, "rb") if _is_gzip(path) else open(path, "rb")


_UNREADABLE = (OSError, EOFError, zlib.error)  # a truncated or corrupt gzip raises all three kinds


def _not_utf8(path: Path, line_no: int, exc: UnicodeDecodeError) -> DataFormatError:
    return DataFormatError(f"{path}: line {line_no}: not valid UTF-8 ({exc.reason} at byte {exc.start + 1} of the "
                           f"line); convert the file to UTF-8, e.g. `iconv -f latin1 -t utf-8`")


def iter_lines(path: str | Path) -> Iterator[tuple[int, str]]:
    """Yield (1-based line number, line without its line break). Lines are decoded one at a
    time, so bad UTF-8 is reported at its own line (a text stream decodes blocks ahead)."""
    path = Path(path)
    line_no = 0
    try:
        with open_binary(path) as fh:
            for line_no, raw in enumerate(fh, start=1):
                try:
                    line = raw.decode("utf-8-sig" if line_no == 1 else "utf-8")
                except UnicodeDecodeError as exc:
                    raise _not_utf8(path, line_no, exc) from None
                yield line_no, line.rstrip("\r\n")
    except _UNREADABLE as exc:
        raise DataFormatError(f"{path}: cannot be read after line {line_no} ({type(exc).__name__}: {exc}); the file "
                              "is damaged or truncated: fetch it again") from None


def read_json(path: str | Path) -> Any:
    path = Path(path)
    try:
        with open_binary(path) as fh:
            data = fh.read()
    except _UNREADABLE as exc:
        raise DataFormatError(f"{path}: cannot be read ({type(exc).__name__}: {exc}); the file is damaged or "
                              "truncated: fetch it again") from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line_no = data.count(b"\n", 0, exc.start) + 1
        line_start = data.rfind(b"\n", 0, exc.start) + 1
        raise DataFormatError(f"{path}: line {line_no}: not valid UTF-8 ({exc.reason} at byte "
                              f"{exc.start - line_start + 1} of the line); JSON files must be UTF-8") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        hint = " (the file looks truncated)" if exc.pos >= len(text.rstrip()) - 1 else ""
        raise DataFormatError(
            f"{path}: invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}{hint}; "
            f"re-download or re-export the file"
        ) from None
