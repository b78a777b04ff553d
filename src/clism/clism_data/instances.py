"""``clism build-data``: English<->X parallel corpora into CLISM pre-training instances.

Stages, per target language, each kept on disk under ``<out>/work/<lang>/`` so a killed
build resumes where it stopped:

1. pairs     stream the corpora, drop duplicate pairs and over-long pairs (counted);
2. spans     spaCy NER on the English side, filtered (stop words, whole words, length);
3. links     eflomal in both directions over the whole corpus, symmetrised later;
4. shards    project each span to the target sentence, write instances in shards of
             ``shard_size`` input pairs (``instances/<lang>-<k>.jsonl``); finished shards are kept.

Then ``manifest.json``: counts per language, spans per instance, rejections by reason,
the configuration and the input checksums. Instances and manifest are byte-identical
for the same input and settings; timings go to ``timings.json``.

An instance is a ``clism.clism_data.instance.Instance``, one JSON object per line.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional

from clism.config import check_options, option
from clism.clism_data.alignment import is_char_tokenized, read_links, run_eflomal, symmetrize, token_strings, tokenize
from clism.benchmarks.parallel import ParallelReport, iter_line_aligned, iter_tsv
from clism.clism_data.projection import ProjectedSpan, ProjectionSettings, occurrences, project, verbatim_occurrence
from clism.clism_data.projection_gold import gold_pairs, gold_report, measure, parse_gold, write_gold_text
from clism.benchmarks.registry import get_dataset, locate, sha256_of
from clism.clism_data.spans import (DEFAULT_ENTITY_TYPES, DEFAULT_SPACY_MODEL, EnglishSpan, check_entity_types,
                                    english_spans, load_spacy)

log = logging.getLogger(__name__)

from clism.clism_data.instance import Instance, ProjectedAnswer, iter_instances  # noqa: F401 (re-exported)
from clism.constants import QUE_TOKEN
from clism.files import remove_stale_temporaries, write_atomic
from clism.errors import InputError
SPAN_REJECTIONS = ("stop_words_only", "too_many_words", "partial_word")



@dataclass
class BuildDataOptions:
    corpora: list[str] = option(["tatoeba_challenge", "flores200"], "registry corpora to read for every language")
    langs: list[str] = option(["ar", "hi", "vi"], "target languages (English is the source)")
    files: list[str] = option([], "more corpora: LANG=pairs.tsv (en<TAB>x) or LANG=en.txt+x.txt")
    projection_gold: list[str] = option([], "LANG=en.conll+x.conll: parallel sentences with gold entities on both "
                                            "sides (europarl_ner_gold/), built as one more corpus of LANG; the "
                                            "report gives how many answers land exactly on the gold entity")
    data_dir: Optional[str] = option(None, "offline data mirror (default: $CLISM_DATA_DIR)")
    out: str = option("runs/clism-data", "output directory")
    max_chars: int = option(400, "skip pairs with a side longer than this many characters", minimum=1)
    max_pairs: int = option(0, "keep at most this many pairs per language, in corpus order (0: all)")
    max_answer_repeats: int = option(0, "use one English answer string (case-folded) at most this many times per "
                                        "language, in corpus order (0: no cap); Tatoeba's stock names (Tom, Mary, "
                                        "Sami) are otherwise a sixth to a half of its answers")
    max_copied_share: float = option(1.0, "keep answers copied verbatim from the English (names in Latin script, "
                                          "digits) only while they stay within this share of a language's answers, "
                                          "in corpus order (1: no cap); finding a copy teaches little alignment")
    min_target_tokens: int = option(0, "skip pairs whose target sentence has fewer alignment tokens (0: none); "
                                       "they still help the aligner")
    distractors: int = option(0, "N > 0: the target side becomes a passage, the aligned sentence among up to N "
                                 "other target sentences of the language (drawn per instance, seeded), so that "
                                 "the answer is looked for in a passage rather than a lone sentence")
    max_passage_chars: int = option(500, "with --distractors: sentences are added only while the passage stays "
                                         "within this many characters", minimum=1)
    passage: str = option("random", "with --distractors, which sentences: random (drawn from the language's "
                                     "targets) or neighbours (the sentences around it in its own corpus file, in "
                                     "order: a passage of a document, for corpora kept in document order as FLORES)",
                          choices=("random", "neighbours"))
    trim_spans: bool = option(True, "trim a leading article and end punctuation from spaCy's English entities "
                                    "(\"the European Parliament\" -> \"European Parliament\") and end punctuation "
                                    "from projected answers; false: as builds made before these options")
    verbatim_names: bool = option(True, "when an English answer occurs verbatim, once, as whole tokens, in the "
                                        "target sentence, take that occurrence rather than the aligner's span (rare "
                                        "names are what aligners get wrong); false: the aligner's span always")
    spacy_model: str = option(DEFAULT_SPACY_MODEL, "spaCy English pipeline with NER")
    entity_types: list[str] = option(list(DEFAULT_ENTITY_TYPES), "spaCy entity types that make informative spans")
    max_span_words: int = option(10, "longest span, in words", minimum=1)
    symmetrization: str = option("grow-diag-final-and", "intersection, union, grow-diag, grow-diag-final(-and)")
    max_gap: int = option(1, "unaligned target tokens tolerated inside a projected span")
    max_ratio: float = option(3.0, "projected tokens per English token, at most (spaced scripts)")
    char_max_ratio: float = option(6.0, "the same for character-tokenised targets (zh, ja, th)")
    eflomal_samplers: int = option(3, "eflomal samplers (more: steadier links, slower)", minimum=1)
    alignment_run: int = option(0, "N > 0: a separate eflomal run N, stored apart (eflomal cannot be seeded, so "
                                   "this is how replicate builds differ); 0: the shared stored run")
    links_dir: str = option("", "a folder to take eflomal links from and keep them in (gzip): eflomal cannot be "
                                "seeded, so another machine given the same folder makes the same build byte for "
                                "byte; empty: this machine's alignment store only")
    shard_size: int = option(20000, "input pairs per output shard", minimum=1)
    n_process: int = option(1, "spaCy processes (on 2 cores one is as fast as two; raise it on bigger machines)", minimum=1)
    spacy_batch_size: int = option(512, "sentences per spaCy batch", minimum=1)
    report: bool = option(False, "only print the quality report of an existing build")


# --------------------------------------------------------------------------- helpers


def _dumps(obj) -> str:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))


def _settings_fingerprint(opts: BuildDataOptions, keys: tuple[str, ...]) -> str:
    payload = json.dumps({k: getattr(opts, k) for k in keys}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


@dataclass
class Source:
    name: str  # e.g. "flores200" or a file name
    paths: list[Path]
    kind: str  # "aligned" (two files) or "tsv"


def sources_for(lang: str, opts: BuildDataOptions) -> list[Source]:
    sources = []
    for corpus in opts.corpora:
        spec = get_dataset(corpus)
        try:
            resource = spec.get(lang, spec.splits[0])
        except KeyError:
            log.warning("%s has no language %s; skipped", corpus, lang)
            continue
        located = locate(resource, data_dir=opts.data_dir)
        sources.append(Source(corpus, located.paths, "aligned"))
    for file_lang, paths in parse_files(opts):
        if file_lang == lang:
            sources.append(Source(paths[0].name, paths, "tsv" if len(paths) == 1 else "aligned"))
    for gold_lang, en_file, x_file in parse_gold(opts.projection_gold, opts.langs):
        if gold_lang == lang:
            text = write_gold_text(gold_pairs(en_file, x_file), Path(opts.out) / "gold", lang)
            sources.append(Source("projection_gold", list(text), "aligned"))
    return sources


def parse_files(opts: BuildDataOptions) -> list[tuple[str, list[Path]]]:
    """``--files`` entries as (language, paths); an entry that would be skipped is an error."""
    parsed = []
    for item in opts.files:
        file_lang, sep, spec_paths = item.partition("=")
        if not sep or not file_lang or not spec_paths:
            raise InputError(f"--files {item!r}: write LANG=pairs.tsv (en<TAB>x per line) or LANG=en.txt+x.txt")
        if file_lang not in opts.langs:
            hint = f" (languages are lower case: {file_lang.lower()})" if file_lang.lower() in opts.langs else ""
            raise InputError(f"--files {item!r}: {file_lang} is not among --langs {','.join(opts.langs)}{hint}; "
                             f"add it to --langs, or drop the entry")
        paths = [Path(p) for p in spec_paths.split("+")]
        missing = [str(p) for p in paths if not p.is_file()]
        if missing or len(paths) > 2:
            raise InputError(f"--files {item!r}: " + (f"no such file {missing[0]}" if missing else
                                                      "give one TSV file or two line-aligned files (en+x)"))
        parsed.append((file_lang, paths))
    return parsed


# --------------------------------------------------------------------------- stage 1: pairs


def stage_pairs(lang: str, sources: list[Source], work: Path, opts: BuildDataOptions) -> dict:
    from tqdm.auto import tqdm

    done = work / "pairs.done.json"
    if done.is_file():
        return json.loads(done.read_text())
    seen: set[bytes] = set()  # 16-byte digests: memory grows ~100 bytes per unique pair
    counts = Counter()
    empty = 0
    out_path = work / "pairs.jsonl"
    with open(out_path.with_name("pairs.jsonl.part"), "w", encoding="utf-8") as out, \
            tqdm(desc=f"{lang} pairs", unit="pair") as bar:
        for source in sources:
            report = ParallelReport(source.name)
            pairs = (iter_line_aligned(*source.paths, report) if source.kind == "aligned"
                     else iter_tsv(source.paths[0], report))
            for pair in pairs:
                if opts.max_pairs and counts["kept"] >= opts.max_pairs:
                    break  # reading stops here: nothing after the cap is counted as read
                counts["read"] += 1
                bar.update(1)
                if len(pair.src) > opts.max_chars or len(pair.tgt) > opts.max_chars:
                    counts["too_long"] += 1
                    continue
                key = hashlib.blake2b(f"{pair.src}\t{pair.tgt}".encode(), digest_size=16).digest()
                if key in seen:
                    counts["duplicate"] += 1
                    continue
                seen.add(key)
                counts["kept"] += 1
                out.write(_dumps([pair.src, pair.tgt, f"{source.name}:{pair.line}"]) + "\n")
            empty += report.skipped
    os.replace(out_path.with_name("pairs.jsonl.part"), out_path)
    stats = {"read": counts["read"] + empty, "empty_side": empty, "too_long": counts["too_long"],
             "duplicate": counts["duplicate"], "kept": counts["kept"],
             "inputs": {str(p): sha256_of(p) for s in sources for p in s.paths}}
    write_atomic(done, json.dumps(stats, indent=1))
    return stats


def iter_pairs(work: Path) -> Iterator[tuple[str, str, str]]:
    with open(work / "pairs.jsonl", encoding="utf-8") as fh:
        for line in fh:
            yield tuple(json.loads(line))  # type: ignore[misc]


# --------------------------------------------------------------------------- stage 2: spans


def stage_spans(lang: str, work: Path, opts: BuildDataOptions, total: int) -> None:
    """spaCy over the English side; appends, so a killed run continues after the last full line."""
    from tqdm.auto import tqdm

    done, path = work / "spans.done", work / "spans.jsonl"
    if done.is_file():
        return
    finished = 0
    if path.is_file():  # keep complete lines only
        with open(path, "rb") as fh:
            data = fh.read()
        complete = data[: data.rfind(b"\n") + 1]
        finished = complete.count(b"\n")
        with open(path, "wb") as fh:
            fh.write(complete)
    nlp = load_spacy(opts.spacy_model)
    english = (en for i, (en, _, _) in enumerate(iter_pairs(work)) if i >= finished)
    with open(path, "a", encoding="utf-8") as out, \
            tqdm(total=total, initial=finished, desc=f"{lang} spaCy NER", unit="pair") as bar:
        for spans, rejected in english_spans(english, nlp, opts.entity_types, opts.max_span_words,
                                             opts.n_process, opts.spacy_batch_size, opts.trim_spans):
            out.write(_dumps([[[s.start, s.end, s.label] for s in spans], rejected]) + "\n")
            bar.update(1)
    done.write_text("")


# --------------------------------------------------------------------------- stage 3: links


def alignment_cache_dir() -> Path:
    from clism.benchmarks.registry import default_cache_dir

    return Path(os.environ.get("CLISM_ALIGNMENT_CACHE") or default_cache_dir().parent / "alignments")


LINK_FILES = ("links.fwd", "links.rev")


def keep_links(manifest: dict, dest: Path) -> list[Path]:
    """Copy a build's eflomal links from the alignment store into ``dest`` (gzip, no time stamp,
    so keeping them again changes no byte), named ``<lang>.<key>.<fwd|rev>.gz``.

    The store lives on one machine; links kept beside a build's results let another machine
    make the same build again (see :func:`restore_links`), which eflomal alone cannot."""
    import gzip

    dest.mkdir(parents=True, exist_ok=True)
    kept = []
    for lang, key in sorted(manifest.get("alignment_cache_keys", {}).items()):
        for name in LINK_FILES:
            source = alignment_cache_dir() / key / name
            target = dest / f"{lang}.{key}.{name.split('.')[1]}.gz"
            if target.is_file():
                continue
            if not source.is_file():
                raise InputError(f"the eflomal links of {lang} ({source}) are not in the alignment store, so they "
                                 f"cannot be kept in {dest}; build the data again on this machine")
            kept.append(write_atomic(target, gzip.compress(source.read_bytes(), mtime=0)))
    return kept


def restore_links(source: Path) -> list[str]:
    """Put links kept by :func:`keep_links` back into the alignment store, where a build with
    the same pairs and settings finds them by content hash and so reproduces the kept build
    byte for byte. Returns the keys restored. Other links already stored under the same key (an
    eflomal run of this machine's own) are an error, not overwritten: the build would not match."""
    import gzip

    restored = []
    for fwd_gz in sorted(source.glob("*.*.fwd.gz")):
        lang, key = fwd_gz.name.split(".")[:2]
        rev_gz = source / f"{lang}.{key}.rev.gz"
        if not rev_gz.is_file():
            raise InputError(f"{fwd_gz} has no reverse links beside it ({rev_gz.name}); copy both files, or delete "
                             f"{fwd_gz} to align {lang} again")
        store = alignment_cache_dir() / key
        kept = {name: gzip.decompress(gz_file.read_bytes()) for gz_file, name in ((fwd_gz, "links.fwd"),
                                                                                  (rev_gz, "links.rev"))}
        if all((store / name).is_file() for name in LINK_FILES):
            if any((store / name).read_bytes() != kept[name] for name in LINK_FILES):
                raise InputError(f"{lang}: the alignment store {store} holds other eflomal links than {fwd_gz} (an "
                                 f"eflomal run of this machine's own), so the build would not match the kept one; "
                                 f"move {store} aside to build from the kept links, or build without --links-dir")
            continue
        for name, data in kept.items():
            write_atomic(store / name, data)
        restored.append(key)
    return restored


def stage_links(lang: str, work: Path, opts: BuildDataOptions) -> tuple[Path, Path, str]:
    """eflomal links for the whole corpus of ``lang``, stored by content hash.

    eflomal 2.0 has no seed (it reads /dev/urandom), so the links of a cold run are not
    reproducible; keeping them per content hash makes every later build with the same
    input byte-identical."""
    src_lines, tgt_lines = [], []
    for en, tgt, _ in iter_pairs(work):
        src_lines.append(" ".join(token_strings(en, tokenize(en))))
        tgt_lines.append(" ".join(token_strings(tgt, tokenize(tgt))))
    digest = hashlib.sha256()
    for s, t in zip(src_lines, tgt_lines):
        digest.update(f"{s}\t{t}\n".encode())
    digest.update(f"samplers={opts.eflomal_samplers}".encode())
    if opts.alignment_run:
        digest.update(f"run={opts.alignment_run}".encode())
    key = digest.hexdigest()[:24]
    cached = alignment_cache_dir() / key
    fwd, rev = cached / "links.fwd", cached / "links.rev"
    if fwd.is_file() and rev.is_file():
        log.info("%s: reusing stored eflomal links %s", lang, cached)
        return fwd, rev, key
    started = time.perf_counter()
    log.info("%s: eflomal over %d pairs", lang, len(src_lines))
    run_eflomal(src_lines, tgt_lines, cached, opts.eflomal_samplers)
    log.info("%s: aligned in %.1f s", lang, time.perf_counter() - started)
    return fwd, rev, key


# --------------------------------------------------------------------------- stage 4: instances


def _answer_key(text: str) -> str:
    return " ".join(text.casefold().split())


@dataclass
class AnswerCaps:
    """A language's caps on answers, applied in corpus order, so the build stays deterministic
    and a resumed build replays its finished shards to the same state."""
    max_repeats: int = 0  # uses of one English answer string (case-folded); 0: no cap
    max_copied_share: float = 1.0  # answers copied verbatim from the English, as a share of those kept
    uses: Counter = dataclasses.field(default_factory=Counter)
    kept: int = 0
    copied: int = 0

    def repeated(self, en_text: str) -> bool:
        return bool(self.max_repeats) and self.uses[_answer_key(en_text)] >= self.max_repeats

    def too_many_copies(self, copied: bool) -> bool:
        return copied and self.copied + 1 > self.max_copied_share * (self.kept + 1)

    def take(self, en_text: str, copied: bool) -> None:
        self.uses[_answer_key(en_text)] += 1
        self.kept += 1
        self.copied += copied


def make_instance(index: int, lang: str, en: str, tgt: str, source: str, spans: list[EnglishSpan],
                  links: set[tuple[int, int]], settings: ProjectionSettings, stats: Counter,
                  caps: AnswerCaps, verbatim_names: bool = True, min_target_tokens: int = 0) -> Instance | None:
    """``caps`` carries, across the language, what the answer caps count."""
    src_tokens, tgt_tokens = tokenize(en), tokenize(tgt)
    if len(tgt_tokens) < min_target_tokens:
        stats["rejected_short_target"] += 1
        return None
    char_target = is_char_tokenized(tgt)
    answers, taken = [], []
    for span in sorted(spans, key=lambda s: s.start):
        en_text = span.text(en)
        if caps.repeated(en_text):
            stats["rejected_repeated_answer"] += 1
            continue
        result = project(span.start, span.end, src_tokens, tgt, tgt_tokens, links, char_target, settings, taken)
        eligible = en_text in tgt  # the precision proxy: the same string occurs in the target
        stats["proxy_eligible"] += eligible
        if eligible and not isinstance(result, str):  # the proxy measures the aligner, before any override
            stats["proxy_projected"] += 1
            stats["proxy_exact"] += (result.start, result.end) in occurrences(tgt, en_text)
        verbatim = verbatim_occurrence(en_text, tgt, tgt_tokens, taken) if verbatim_names and eligible else None
        if verbatim is not None:
            stats["verbatim_names"] += 1
            stats["verbatim_names_overriding"] += isinstance(result, str) or (result.start, result.end) != verbatim
            result = ProjectedSpan(*verbatim, 1.0)
        if isinstance(result, str):
            stats[f"rejected_{result}"] += 1
            continue
        if not tgt[result.start: result.end].strip():
            stats["rejected_blank"] += 1
            continue
        copied = tgt[result.start: result.end] == en_text
        if caps.too_many_copies(copied):
            stats["rejected_copied_answer"] += 1
            continue
        taken.append((result.start, result.end))
        answers.append((span, result))
        caps.take(en_text, copied)
    if not answers:
        return None
    answers.sort(key=lambda a: a[0].start)
    masked, cursor = [], 0
    for span, _ in answers:
        masked.append(en[cursor: span.start])
        masked.append(QUE_TOKEN)
        cursor = span.end
    masked.append(en[cursor:])
    stats["instances"] += 1
    stats["answers"] += len(answers)
    stats[f"spans_per_instance_{min(len(answers), 5)}{'+' if len(answers) >= 5 else ''}"] += 1
    return Instance(f"{lang}-{index:07d}", lang, source, "".join(masked), en, tgt, tuple(
        ProjectedAnswer(tgt[p.start: p.end], p.start, p.end, s.label, p.score, en[s.start: s.end], s.start, s.end)
        for s, p in answers))


def _corpus(source: str) -> str:
    return source.rpartition(":")[0]  # "flores200:43" -> "flores200"


def neighbours(pool: list[tuple[str, str]], index: int, n: int, max_chars: int,
               sep: str = " ") -> tuple[list[str], list[str]]:
    """Up to ``n`` sentences around ``pool[index]`` from the same corpus file, nearest first,
    alternating after and before, while the passage joined by ``sep`` stays within
    ``max_chars``: (before, after)."""
    target, source = pool[index]
    before, after, length = [], [], len(target)
    for step in range(1, n + 1):
        for j, side in ((index + step, after), (index - step, before)):
            if len(before) + len(after) < n and 0 <= j < len(pool) and _corpus(pool[j][1]) == _corpus(source) \
                    and length + len(sep) + len(pool[j][0]) <= max_chars:
                side.append(pool[j][0])
                length += len(sep) + len(pool[j][0])
    return before[::-1], after


def into_passage(inst: Instance, pool: list[tuple[str, str]], index: int, distractors: int, max_chars: int,
                 stats: Counter, kind: str = "random") -> Instance:
    """The target sentence placed among up to ``distractors`` other sentences, joined by a
    space (nothing for scripts written without spaces), while the passage stays within
    ``max_chars``; the answers' offsets move with their sentence. ``random``: drawn from
    ``pool`` (target, source) by a generator seeded from the instance id, the sentence itself
    never, in a random order; ``neighbours``: the sentences around ``pool[index]``, its own, in
    corpus order."""
    import random

    sep = "" if is_char_tokenized(inst.target) else " "
    if kind == "neighbours":
        chosen_before, chosen_after = neighbours(pool, index, distractors, max_chars, sep)
        chosen, at = chosen_before + chosen_after, len(chosen_before)
    else:
        rng = random.Random(inst.id)
        chosen, length = [], len(inst.target)
        for _ in range(distractors):
            other = pool[rng.randrange(len(pool))][0]
            if other != inst.target and length + len(sep) + len(other) <= max_chars:
                chosen.append(other)
                length += len(sep) + len(other)
        at = rng.randint(0, len(chosen))
    before, after = sep.join(chosen[:at]), sep.join(chosen[at:])
    prefix = before + sep if before else ""
    passage = prefix + inst.target + (sep + after if after else "")
    stats[f"passage_sentences_{len(chosen) + 1}"] += 1
    shifted = tuple(dataclasses.replace(a, start=a.start + len(prefix), end=a.end + len(prefix)) for a in inst.answers)
    return dataclasses.replace(inst, target=passage, answers=shifted)


def count_shape(inst: Instance, stats: Counter) -> None:
    """How hard an instance is to answer: target length in alignment tokens, where answers
    start (quarter of the target), and answers copied verbatim from the English."""
    n = len(tokenize(inst.target))
    bucket = next((f"le_{b}" for b in (8, 16, 32, 64, 128) if n <= b), "gt_128")
    stats[f"target_tokens_{bucket}"] += 1
    for a in inst.answers:
        stats[f"answer_in_quarter_{min(4, 1 + 4 * a.start // max(len(inst.target), 1))}"] += 1
        stats["answers_copied"] += a.text == a.en_text


def stage_shards(lang: str, work: Path, out: Path, fwd: Path, rev: Path, opts: BuildDataOptions, total: int) -> list:
    from tqdm.auto import tqdm

    settings = ProjectionSettings(opts.max_gap, opts.max_ratio, opts.char_max_ratio, trim_punctuation=opts.trim_spans)
    shard_dir = out / "instances"
    shard_dir.mkdir(parents=True, exist_ok=True)
    n_shards = max(1, -(-total // opts.shard_size))
    all_stats = []
    caps = AnswerCaps(opts.max_answer_repeats, opts.max_copied_share)  # carried across shards: caps are per language
    # the passages' other sentences, in corpus order: (target, source), at the pair's index
    pool = [(tgt, source) for _, tgt, source in iter_pairs(work)] if opts.distractors else []
    with open(work / "spans.jsonl", encoding="utf-8") as spans_fh, \
            tqdm(total=total, desc=f"{lang} project+write", unit="pair") as bar:
        rows = zip(iter_pairs(work), spans_fh, read_links(fwd), read_links(rev))
        for k in range(n_shards):
            path = shard_dir / f"{lang}-{k:05d}.jsonl"
            stats_path = shard_dir / f"{lang}-{k:05d}.stats.json"
            count = min(opts.shard_size, total - k * opts.shard_size)
            if path.is_file() and stats_path.is_file():  # finished before an interruption
                for _ in range(count):
                    next(rows)
                with open(path, encoding="utf-8") as done:
                    for line in done:
                        for a in json.loads(line)["answers"]:
                            caps.take(a["en_text"], a["text"] == a["en_text"])
                bar.update(count)
                all_stats.append(json.loads(stats_path.read_text()))
                continue
            stats: Counter = Counter()
            lines = []
            for offset in range(count):
                (en, tgt, source), spans_line, fwd_links, rev_links = next(rows)
                found, rejected = json.loads(spans_line)
                stats["pairs"] += 1
                stats["spans_kept_by_filters"] += len(found)
                for reason, n in rejected.items():
                    stats[f"span_filter_{reason}"] += n
                spans = [EnglishSpan(a, b, label) for a, b, label in found]
                links = symmetrize(fwd_links, rev_links, opts.symmetrization)
                instance = make_instance(k * opts.shard_size + offset, lang, en, tgt, source, spans, links,
                                         settings, stats, caps, opts.verbatim_names, opts.min_target_tokens)
                if instance is not None:
                    if opts.distractors:
                        instance = into_passage(instance, pool, k * opts.shard_size + offset, opts.distractors,
                                                opts.max_passage_chars, stats, opts.passage)
                    count_shape(instance, stats)
                    lines.append(_dumps(instance.to_json()) + "\n")
                bar.update(1)
            write_atomic(path, "".join(lines))
            write_atomic(stats_path, json.dumps(dict(sorted(stats.items())), indent=1))
            all_stats.append(dict(stats))
    return all_stats


# --------------------------------------------------------------------------- driver


# How a build runs, not what it writes: these may change between a run and its resumption.
_SPEED_ONLY = ("data_dir", "n_process", "spacy_batch_size")


def _refuse_other_settings(out: Path, config: dict) -> None:
    """Finished shards are reused on resume, so a folder must hold one build's settings only."""
    path = out / "settings.json"
    content = {k: v for k, v in config.items() if k not in _SPEED_ONLY}
    if path.is_file():
        before = json.loads(path.read_text(encoding="utf-8"))
        changed = sorted(k for k in set(before) | set(content) if before.get(k) != content.get(k))
        if changed:
            raise InputError(f"{path}: this folder holds a build made with other settings ({', '.join(changed)}: "
                             f"{', '.join(f'{before.get(k)!r} -> {content.get(k)!r}' for k in changed)}); "
                             f"pass another --out, or delete {out} to rebuild it")
    else:
        write_atomic(path, json.dumps(content, indent=1, ensure_ascii=False, sort_keys=True) + "\n")


def build(opts: BuildDataOptions) -> dict:
    check_options(opts)  # ranges and choices, for options built in Python as for flags
    if opts.max_copied_share > 1:
        raise InputError(f"--max-copied-share {opts.max_copied_share}: a share, between 0 and 1 (1: no cap)")
    if Path(opts.out).exists() and not Path(opts.out).is_dir():
        raise InputError(f"--out {opts.out} is a file, not a folder: choose another --out")
    parse_files(opts)  # a bad --files entry fails here, before hours of work, not silently later
    check_entity_types(load_spacy(opts.spacy_model), opts.entity_types, opts.spacy_model)
    gold = {lang: gold_pairs(en_file, x_file) for lang, en_file, x_file in parse_gold(opts.projection_gold, opts.langs)}
    out = Path(opts.out)
    out.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(out)  # what a killed build left of an atomic write
    timings: dict = {}
    manifest: dict = {"config": dataclasses.asdict(opts), "languages": {}, "alignment_cache_keys": {}}
    if opts.links_dir and (restored := restore_links(Path(opts.links_dir))):
        log.info("eflomal links of %d language(s) taken from %s", len(restored), opts.links_dir)
    for where_not_what in ("report", "out", "links_dir"):  # not settings of the build's content
        manifest["config"].pop(where_not_what)
    # Options added after the first builds are left out of the manifest while they hold the
    # behaviour from before them, so earlier builds' manifests stay byte-identical.
    as_before = {"alignment_run": 0, "projection_gold": [], "distractors": 0, "passage": "random",
                 "trim_spans": False, "verbatim_names": False, "max_copied_share": 1.0, "min_target_tokens": 0}
    for new_option, old_value in as_before.items():
        if manifest["config"][new_option] == old_value:
            manifest["config"].pop(new_option)
    if not opts.distractors:  # passage settings mean nothing without passages
        manifest["config"].pop("max_passage_chars")
        manifest["config"].pop("passage", None)
    _refuse_other_settings(out, manifest["config"])
    content_keys = ("max_chars", "spacy_model", "entity_types", "max_span_words")
    # a cap joins the fingerprint only when set, so uncapped builds keep resuming their work
    fingerprint = _settings_fingerprint(opts, content_keys + (("max_pairs",) if opts.max_pairs else ())
                                        + (("alignment_run",) if opts.alignment_run else ())
                                        + (("trim_spans",) if opts.trim_spans else ()))
    for lang in opts.langs:
        work = out / "work" / lang / fingerprint
        work.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        pair_stats = stage_pairs(lang, sources_for(lang, opts), work, opts)
        if not pair_stats["kept"]:  # the aligner cannot run on nothing (eflomal divides by zero)
            raise InputError(f"{lang}: none of the {pair_stats['read']} pairs read is usable (empty side "
                             f"{pair_stats['empty_side']}, longer than --max-chars {opts.max_chars}: "
                             f"{pair_stats['too_long']}, duplicate {pair_stats['duplicate']}); check its --files or "
                             "--corpora, or raise --max-chars")
        t1 = time.perf_counter()
        stage_spans(lang, work, opts, pair_stats["kept"])
        t2 = time.perf_counter()
        fwd, rev, key = stage_links(lang, work, opts)
        t3 = time.perf_counter()
        shard_stats = stage_shards(lang, work, out, fwd, rev, opts, pair_stats["kept"])
        t4 = time.perf_counter()
        timings[lang] = {"pairs_s": round(t1 - t0, 2), "spacy_s": round(t2 - t1, 2), "align_s": round(t3 - t2, 2),
                         "project_write_s": round(t4 - t3, 2), "pairs": pair_stats["kept"]}
        total: Counter = Counter()
        for s in shard_stats:
            total.update(s)
        manifest["languages"][lang] = {"input": pair_stats, "output": dict(sorted(total.items()))}
        if lang in gold:
            kept = english_spans([en.text for en, _ in gold[lang]], load_spacy(opts.spacy_model), opts.entity_types,
                                 opts.max_span_words, trim=opts.trim_spans)  # the build's own span rules, again
            manifest["languages"][lang]["projection_gold"] = measure(
                (i for i in iter_instances(out) if i.lang == lang), gold[lang], (spans for spans, _ in kept))
        manifest["alignment_cache_keys"][lang] = key
    write_atomic(out / "manifest.json", json.dumps(manifest, indent=1, ensure_ascii=False, sort_keys=True) + "\n")
    write_atomic(out / "timings.json", json.dumps(timings, indent=1) + "\n")
    if opts.links_dir:
        keep_links(manifest, Path(opts.links_dir))
    return manifest


def quality_report(manifest: dict) -> str:
    lines = ["| lang | pairs kept | with >=1 span | yield | answers | spans/instance | rejected (top reasons) "
             "| proxy eligible | proxy exact / projected |",
             "|---|---|---|---|---|---|---|---|---|"]
    for lang, info in manifest["languages"].items():
        o, kept = info["output"], info["input"]["kept"]
        instances = o.get("instances", 0)
        rejected = sorted(((k[len("rejected_"):], v) for k, v in o.items() if k.startswith("rejected_")),
                          key=lambda kv: -kv[1])[:3]
        projected = o.get("proxy_projected", 0)
        precision = f"{o.get('proxy_exact', 0)}/{projected} = {100 * o.get('proxy_exact', 0) / projected:.1f}%" \
            if projected else "n/a"
        lines.append(
            f"| {lang} | {kept} | {instances} | {100 * instances / kept if kept else 0:.1f}% | {o.get('answers', 0)} "
            f"| {o.get('answers', 0) / instances if instances else 0:.2f} | "
            + ", ".join(f"{k} {v}" for k, v in rejected) + f" | {o.get('proxy_eligible', 0)} | {precision} |")
    shape = shape_report(manifest)
    if shape:
        lines += ["", "Shape of the instances (target length in alignment tokens; where answers start; answers "
                      "copied verbatim from the English):", "", shape.rstrip("\n")]
    gold = {lang: info["projection_gold"] for lang, info in manifest["languages"].items() if "projection_gold" in info}
    if gold:
        lines += ["", "Gold projection (--projection-gold; answers on gold English entities, their target spans "
                      "against the gold target entities):", "", gold_report(gold).rstrip("\n")]
    return "\n".join(lines) + "\n"


def shape_report(manifest: dict) -> str:
    """Per language: the share of instances by target length, of answers by the quarter of the
    target they start in, of answers copied from the English, and sentences per passage."""
    buckets = ("le_8", "le_16", "le_32", "le_64", "le_128", "gt_128")
    lines = ["| lang | target tokens <=8 / <=16 / <=32 / <=64 / <=128 / >128 | answers in quarter 1 / 2 / 3 / 4 "
             "| copied | sentences per target |", "|---|---|---|---|---|"]
    for lang, info in manifest["languages"].items():
        o = info["output"]
        instances, answers = o.get("instances", 0), o.get("answers", 0)
        if not instances or not any(k.startswith("target_tokens_") for k in o):
            continue  # a build from before these counts
        lengths = " / ".join(f"{100 * o.get(f'target_tokens_{b}', 0) / instances:.0f}%" for b in buckets)
        quarters = " / ".join(f"{100 * o.get(f'answer_in_quarter_{q}', 0) / answers:.0f}%" for q in range(1, 5))
        sentences = sum(int(k.rsplit("_", 1)[1]) * v for k, v in o.items() if k.startswith("passage_sentences_"))
        lines.append(f"| {lang} | {lengths} | {quarters} | {100 * o.get('answers_copied', 0) / answers:.1f}% | "
                     f"{sentences / instances if sentences else 1:.2f} |")
    return "\n".join(lines) + "\n" if len(lines) > 2 else ""


def answer_concentration(directory: str | Path, top: int = 5) -> dict[str, dict]:
    """How much of each language's data a few English answers take: a corpus like Tatoeba repeats
    stock names (Tom, Mary), and a span model can learn them instead of learning to align."""
    by_lang: dict[str, Counter] = {}
    for inst in iter_instances(directory):
        by_lang.setdefault(inst.lang, Counter()).update(_answer_key(a.en_text) for a in inst.answers)
    return {lang: {"answers": sum(c.values()), "distinct": len(c), "top": c.most_common(top)}
            for lang, c in by_lang.items()}


def concentration_report(concentration: dict[str, dict]) -> str:
    top = max((len(c["top"]) for c in concentration.values()), default=0)
    lines = [f"| lang | answers | distinct English answers | share of the top {top} | top {top} (count) |",
             "|---|---|---|---|---|"]
    for lang, c in concentration.items():
        share = sum(n for _, n in c["top"]) / c["answers"] if c["answers"] else 0.0
        lines.append(f"| {lang} | {c['answers']} | {c['distinct']} | {100 * share:.1f}% | "
                     + ", ".join(f"{text} ({n})" for text, n in c["top"]) + " |")
    return "\n".join(lines) + "\n"


def check_instances(directory: str | Path) -> tuple[int, list[str]]:
    """Re-read a build: every [QUE] has an answer, and every answer equals its target slice."""
    n, problems = 0, []
    for inst in iter_instances(directory):
        n += 1
        problems += inst.problems()
    return n, problems
