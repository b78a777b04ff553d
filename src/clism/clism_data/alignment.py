"""Word alignment for CLISM: tokenisation that suits each script, eflomal, symmetrisation.

Tokens keep their character offsets so projected spans can be sliced from the original
sentence. Words are runs of letters, marks and digits (so Devanagari vowel signs and
Thai tone marks stay inside their word); scripts written without spaces (Han, kana,
Thai, Lao, Khmer, Myanmar) are split into grapheme clusters, one token each.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Iterable, Iterator

import regex

from clism.errors import MissingDependencyError

_CHAR_SCRIPTS = r"\p{Han}\p{Hiragana}\p{Katakana}\p{Thai}\p{Lao}\p{Khmer}\p{Myanmar}"
_WORD = rf"[\p{{L}}\p{{M}}\p{{N}}_--[{_CHAR_SCRIPTS}]]"
# zero-width non-joiner and joiner, soft hyphen: inside a word they are part of it (Persian
# می‌خواهم, Devanagari conjuncts, hyphenation points)
_JOINERS = "\u200c\u200d\u00ad"
_TOKEN = regex.compile(
    rf"(?:(?=[{_CHAR_SCRIPTS}])\X)"  # one grapheme cluster of a script without spaces
    rf"|{_WORD}+(?:(?:['’\-]|[{_JOINERS}]+){_WORD}+)*"
    r"|(?=[^\s\p{L}\p{M}\p{N}_])\X",  # any other sign, with what joins it (an emoji ZWJ sequence)
    regex.V1,
)

Links = set[tuple[int, int]]


def tokenize(text: str) -> list[tuple[int, int]]:
    """Character spans of the alignment tokens of ``text``."""
    return [m.span() for m in _TOKEN.finditer(text)]


def token_strings(text: str, spans: list[tuple[int, int]]) -> list[str]:
    return [text[a:b].lower() for a, b in spans]


def is_char_tokenized(text: str) -> bool:
    """True when most letters of ``text`` belong to scripts without spaces."""
    letters = regex.findall(r"\p{L}", text)
    if not letters:
        return False
    return sum(bool(regex.match(f"[{_CHAR_SCRIPTS}]", c)) for c in letters) > len(letters) / 2


# --------------------------------------------------------------------------- eflomal


def run_eflomal(src_lines: Iterable[str], tgt_lines: Iterable[str], workdir: Path, n_samplers: int = 3,
                ) -> tuple[Path, Path]:
    """Align tokenised lines in both directions; return the forward and reverse link files.

    eflomal 2.0 seeds its sampler from /dev/urandom and has no seed option, so two cold
    runs give slightly different links; the build stores them and reuses them."""
    try:
        import eflomal
    except ImportError:
        raise MissingDependencyError("the word aligner eflomal is not installed: `pip install 'clism[data]'` "
                                     "(or eflomal==2.0.0)") from None
    workdir.mkdir(parents=True, exist_ok=True)
    fwd, rev = workdir / "links.fwd", workdir / "links.rev"
    aligner = eflomal.Aligner(n_samplers=n_samplers)
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        src_file, tgt_file = Path(tmp) / "src.txt", Path(tmp) / "tgt.txt"
        src_file.write_text("".join(line + "\n" for line in src_lines), encoding="utf-8")
        tgt_file.write_text("".join(line + "\n" for line in tgt_lines), encoding="utf-8")
        with open(src_file, encoding="utf-8") as s, open(tgt_file, encoding="utf-8") as t:
            aligner.align(s, t, links_filename_fwd=str(fwd) + ".part", links_filename_rev=str(rev) + ".part",
                          quiet=True)
    os.replace(str(fwd) + ".part", fwd)
    os.replace(str(rev) + ".part", rev)
    return fwd, rev


def read_links(path: Path) -> Iterator[Links]:
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            yield {tuple(map(int, pair.split("-"))) for pair in line.split()}  # type: ignore[misc]


# --------------------------------------------------------------------------- symmetrisation

SYMMETRISATIONS = ("intersection", "union", "grow-diag", "grow-diag-final", "grow-diag-final-and")
_NEIGHBOURS = [(-1, 0), (0, -1), (1, 0), (0, 1), (-1, -1), (-1, 1), (1, -1), (1, 1)]


def symmetrize(forward: Links, reverse: Links, method: str = "grow-diag-final-and") -> Links:
    """Combine source->target and target->source links (both given as (src, tgt) pairs).

    The heuristics of Koehn et al. (2003), as in Moses and fast_align's atools."""
    if method not in SYMMETRISATIONS:
        raise ValueError(f"unknown symmetrisation {method!r}; choose one of {SYMMETRISATIONS}")
    if method == "intersection":
        return forward & reverse
    union = forward | reverse
    if method == "union":
        return union
    links = set(forward & reverse)
    src_done = {i for i, _ in links}
    tgt_done = {j for _, j in links}
    added = True
    while added:
        added = False
        for i, j in sorted(links):
            for di, dj in _NEIGHBOURS:
                cand = (i + di, j + dj)
                if cand in union and cand not in links and (cand[0] not in src_done or cand[1] not in tgt_done):
                    links.add(cand)
                    src_done.add(cand[0])
                    tgt_done.add(cand[1])
                    added = True
    if method == "grow-diag":
        return links
    for i, j in sorted(union):
        if (i, j) in links:
            continue
        if method == "grow-diag-final-and":
            ok = i not in src_done and j not in tgt_done
        else:
            ok = i not in src_done or j not in tgt_done
        if ok:
            links.add((i, j))
            src_done.add(i)
            tgt_done.add(j)
    return links

