"""Every dataset clism supports: official source, files, languages, splits.

A *resource* is one (dataset, language, split): the file(s) a reader needs. Files are
looked for in this order:

1. a mirror directory (``--data-dir`` or ``CLISM_DATA_DIR``), laid out like
   ``../shared/data`` (see the README); plain or ``.gz`` files both count;
2. the local cache (``CLISM_CACHE_DIR``, default ``~/.cache/clism/datasets``);
3. a download from the official source, with a progress bar and, where the registry
   knows it, a SHA-256 check.

Nothing found and nothing downloadable gives one ``DataNotFoundError`` that names the
dataset, every place tried, and how to provide the files.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from clism.errors import ClismError, UnknownNameError

DATA_DIR_ENV = "CLISM_DATA_DIR"
CACHE_DIR_ENV = "CLISM_CACHE_DIR"


class DataNotFoundError(ClismError, FileNotFoundError):
    pass


@dataclass(frozen=True)
class Download:
    url: str
    member: str | None = None  # path inside a zip archive
    sha256: str | None = None  # of the file at ``url``; None where no official checksum is published

    @property
    def cache_name(self) -> str:
        return Path(self.member).name if self.member else self.url.rstrip("/").rsplit("/", 1)[-1]


@dataclass(frozen=True)
class Resource:
    dataset: str
    lang: str
    split: str
    # Alternative mirror layouts; each lists every file the resource needs.
    mirror_layouts: tuple[tuple[str, ...], ...]
    downloads: tuple[Download, ...] = ()
    id_prefix: str | None = None  # QA: keep only these question ids (combined TyDiQA file)
    id_prefix_layouts: tuple[int, ...] = ()  # which mirror layouts need the prefix filter
    manual: str | None = None  # how to get the files when there is no direct download

    @property
    def name(self) -> str:
        return f"{self.dataset}/{self.lang}/{self.split}"


@dataclass
class Located:
    resource: Resource
    paths: list[Path]
    source: str  # "mirror", "cache" or "download"
    id_prefix: str | None = None


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    task: str  # "qa", "ner" or "parallel"
    description: str
    homepage: str
    license: str
    languages: tuple[str, ...]
    splits: tuple[str, ...]
    resource: Callable[[str, str], Resource]
    notes: str = ""
    lang_aliases: dict[str, str] = field(default_factory=dict)

    def canonical_lang(self, lang: str) -> str:
        lang = self.lang_aliases.get(lang, lang)
        if lang not in self.languages and self.task != "parallel":
            raise UnknownNameError(f"{self.name} has no language {lang!r}; it has {', '.join(self.languages)}")
        return lang

    def get(self, lang: str, split: str) -> Resource:
        if split not in self.splits:
            raise UnknownNameError(f"{self.name} has no split {split!r}; it has {', '.join(self.splits)}")
        return self.resource(self.canonical_lang(lang), split)


# --------------------------------------------------------------------------- datasets

XQUAD_LANGS = ("ar", "de", "el", "en", "es", "hi", "ro", "ru", "th", "tr", "vi", "zh")
MLQA_LANGS = ("en", "ar", "de", "es", "hi", "vi", "zh")
TYDIQA_LANGS = {
    "ar": "arabic", "bn": "bengali", "en": "english", "fi": "finnish", "id": "indonesian",
    "ko": "korean", "ru": "russian", "sw": "swahili", "te": "telugu",
}
# The 40 XTREME PAN-X languages, plus Polish (the Rahimi splits cover 176 languages).
PANX_LANGS = (
    "af", "ar", "bg", "bn", "de", "el", "en", "es", "et", "eu", "fa", "fi", "fr", "he", "hi", "hu",
    "id", "it", "ja", "jv", "ka", "kk", "ko", "ml", "mr", "ms", "my", "nl", "pt", "ru", "sw", "ta",
    "te", "th", "tl", "tr", "ur", "vi", "yo", "zh", "pl",
)
BABELSCAPE_WIKIANN = ("de", "en", "es", "nl", "pl", "ru")
TATOEBA_LASER_LANGS = tuple(
    "afr amh ang ara arq arz ast awa aze bel ben ber bos bre bul cat cbk ceb ces cha cmn cor csb cym "
    "dan deu dsb dtp ell epo est eus fao fin fra fry gla gle glg gsw heb hin hrv hsb hun hye ido ile "
    "ina ind isl ita jav jpn kab kat kaz khm kor kur kzj lat lfn lit lvs mal mar max mhr mkd mon nds "
    "nld nno nob nov oci orv pam pes pms pol por ron rus slk slv spa sqi srp swe swg swh tam tat tel "
    "tgl tha tuk tur tzl uig ukr urd uzb vie war wuu xho yid yue zsm".split()
)
TATOEBA_CHALLENGE_LANGS = tuple(
    "ara ben deu ell fin fra hin ind ita jpn kor nld pol por ron rus spa swa tel tha tur vie zho".split()
)
FLORES200_LANGS = tuple(
    "ace_Arab ace_Latn acm acq aeb afr ajp aka als amh apc ara ara_Latn ars ary arz asm ast awa ayr "
    "azb azj bak bam ban bel bem ben bho bjn_Arab bjn_Latn bod bos bug bul cat ceb ces cjk ckb "
    "cmn_Hans cmn_Hant crh cym dan deu dik dyu dzo ell eng epo est eus ewe fao fij fin fon fra fur "
    "fuv gaz gla gle glg grn guj hat hau heb hin hne hrv hun hye ibo ilo ind isl ita jav jpn kab kac "
    "kam kan kas_Arab kas_Deva kat kaz kbp kea khk khm kik kin kir kmb kmr knc_Arab knc_Latn kon kor "
    "lao lij lim lin lit lmo ltg ltz lua lug luo lus lvs mag mai mal mar min_Arab min_Latn mkd mlt "
    "mni mos mri mya nld nno nob npi nso nus nya oci ory pag pan pap pbt pes plt pol por prs quy ron "
    "run rus sag san sat scn shn sin slk slv smo sna snd som sot spa srd srp_Cyrl ssw sun swe swh szl "
    "tam taq_Latn taq_Tfng tat tel tgk tgl tha tir tpi tsn tso tuk tum tur twi tzm uig ukr umb urd "
    "uzn vec vie war wol xho ydd yor yue zsm zul".split()
)

# ISO 639-1 codes users type, mapped to the three-letter codes of Tatoeba / FLORES.
ISO3 = {
    "af": "afr", "am": "amh", "ar": "ara", "bg": "bul", "bn": "ben", "ca": "cat", "cs": "ces",
    "da": "dan", "de": "deu", "el": "ell", "es": "spa", "et": "est", "eu": "eus", "fa": "pes",
    "fi": "fin", "fr": "fra", "he": "heb", "hi": "hin", "hu": "hun", "hy": "hye", "id": "ind",
    "it": "ita", "ja": "jpn", "jv": "jav", "ka": "kat", "kk": "kaz", "ko": "kor", "lt": "lit",
    "ml": "mal", "mr": "mar", "nl": "nld", "pl": "pol", "pt": "por", "ro": "ron", "ru": "rus",
    "sv": "swe", "sw": "swh", "ta": "tam", "te": "tel", "th": "tha", "tl": "tgl", "tr": "tur",
    "uk": "ukr", "ur": "urd", "vi": "vie", "zh": "cmn",
}
_FLORES_ALIASES = {**ISO3, "zh": "cmn_Hans", "ms": "zsm", "my": "mya", "ne": "npi"}
_TATOEBA_CHALLENGE_ALIASES = {**ISO3, "zh": "zho", "sw": "swa"}

_SQUAD_URL = "https://rajpurkar.github.io/SQuAD-explorer/dataset/"
_XQUAD_URL = "https://raw.githubusercontent.com/google-deepmind/xquad/master/"
_MLQA_ZIP = "https://dl.fbaipublicfiles.com/MLQA/MLQA_V1.zip"
_TYDIQA_URL = "https://storage.googleapis.com/tydiqa/v1.1/"
_WIKINEURAL_URL = "https://raw.githubusercontent.com/Babelscape/wikineural/master/data/"
_CONLL2002_ZIP = "https://raw.githubusercontent.com/nltk/nltk_data/gh-pages/packages/corpora/conll2002.zip"
_LASER_URL = "https://raw.githubusercontent.com/facebookresearch/LASER/main/data/tatoeba/v1/"
_OPUS_TESTSETS = "https://raw.githubusercontent.com/Helsinki-NLP/OPUS-MT-testsets/master/testsets/"

_NER_SPLIT = {"train": "train", "dev": "val", "test": "test"}
_CONLL2002_FILE = {"es": "esp", "nl": "ned"}
_CONLL2002_SPLIT = {"train": "train", "dev": "testa", "test": "testb"}


def _squad(lang: str, split: str) -> Resource:
    name = f"{split}-v1.1.json"
    layouts: tuple[tuple[str, ...], ...] = ((f"squad_v1.1/{name}",),)
    if split == "dev":  # the reference mirror stores dev as two article-disjoint halves
        layouts += (("squad_v1.1_dev/dev-v1.1.json", "squad_v1.1_dev/test-v1.1.json"),)
    return Resource("squad_v1.1", lang, split, layouts, (Download(_SQUAD_URL + name),))


def _xquad(lang: str, split: str) -> Resource:
    name = f"xquad.{lang}.json"
    return Resource("xquad", lang, split, ((f"xquad/{name}",),), (Download(_XQUAD_URL + name),))


def _mlqa(lang: str, split: str) -> Resource:
    context, question = lang.split("-")
    name = f"{split}-context-{context}-question-{question}.json"
    return Resource(
        "mlqa", lang, split,
        ((f"mlqa/{split}/{name}",), (f"MLQA_V1/{split}/{name}",)),
        (Download(_MLQA_ZIP, member=f"MLQA_V1/{split}/{name}"),),
    )


def _tydiqa(lang: str, split: str) -> Resource:
    full = TYDIQA_LANGS[lang]
    combined = f"tydiqa-goldp-v1.1-{split}.json"
    return Resource(
        "tydiqa_goldp", lang, split,
        ((f"tydiqa_goldp_v1.1/{full}_tydiqa_{split}.json",), (f"tydiqa_goldp_v1.1/{combined}",)),
        (Download(_TYDIQA_URL + combined),),
        id_prefix=f"{full}-",
        id_prefix_layouts=(1, -1),  # the combined file, in the mirror (1) or downloaded (-1)
    )


def _wikiann(lang: str, split: str) -> Resource:
    file = _NER_SPLIT[split]
    downloads = (Download(f"{_WIKINEURAL_URL}wikiann/{lang}/{file}.conllu"),) if lang in BABELSCAPE_WIKIANN else ()
    return Resource(
        "wikiann", lang, split,
        ((f"wikiann/{lang}.{file}.conllu",), (f"panx/{lang}/{split}",)),
        downloads,
        manual=None if downloads else (
            "PAN-X has no stable direct download for this language. Get `panx_dataset.tar` as the XTREME "
            "instructions say (https://github.com/google-research/xtreme#download-the-data), extract "
            f"`{lang}.tar.gz`, and place its files as <mirror>/panx/{lang}/{{train,dev,test}}"
        ),
    )


def _conll2002(lang: str, split: str) -> Resource:
    name = f"{_CONLL2002_FILE[lang]}.{_CONLL2002_SPLIT[split]}"
    return Resource(
        "conll2002", lang, split, ((f"conll2002/{name}",),),
        (Download(_CONLL2002_ZIP, member=f"conll2002/{name}"),),
    )


def _conll2003(lang: str, split: str) -> Resource:
    return Resource(
        "conll2003", lang, split, ((f"conll2003/{lang}.{_NER_SPLIT[split]}.conllu",),),
        manual=(
            "CoNLL-2003 text belongs to Reuters (en) and Frankfurter Rundschau (de) and may not be "
            "redistributed. Obtain it under its agreement (https://www.clips.uantwerpen.be/conll2003/ner/) "
            f"and place it as <mirror>/conll2003/{lang}.{{train,val,test}}.conllu (one 'word ... tag' per line)"
        ),
    )


def _tatoeba_laser(lang: str, split: str) -> Resource:
    names = (f"tatoeba.{lang}-eng.eng", f"tatoeba.{lang}-eng.{lang}")
    return Resource(
        "tatoeba_laser", lang, split, (tuple(f"tatoeba_laser_v1/{n}" for n in names),),
        tuple(Download(_LASER_URL + n) for n in names),
    )


def _tatoeba_challenge(lang: str, split: str) -> Resource:
    pair = "-".join(sorted([lang, "eng"]))
    names = [f"tatoeba-test-v2021-08-07.{side}" for side in ("eng", lang)]
    return Resource(
        "tatoeba_challenge", lang, split,
        (tuple(f"tatoeba_challenge_v2021-08-07/{pair}.{n}" for n in names),),
        tuple(Download(f"{_OPUS_TESTSETS}{pair}/{n}") for n in names),
    )


def _flores200(lang: str, split: str) -> Resource:
    names = ("eng.devtest", f"{lang}.devtest")
    return Resource(
        "flores200", lang, split, (tuple(f"flores200_devtest/{n}" for n in names),),
        tuple(Download(f"{_OPUS_TESTSETS}flores200_dataset/devtest/{n}") for n in names),
    )


DATASETS: dict[str, DatasetSpec] = {
    spec.name: spec
    for spec in [
        DatasetSpec(
            "squad_v1.1", "qa", "SQuAD v1.1 English extractive QA",
            "https://rajpurkar.github.io/SQuAD-explorer/", "CC BY-SA 4.0", ("en",), ("train", "dev"), _squad,
            notes="The English XQuAD paragraphs are a subset of dev: never train on dev without removing them "
                  "(`clism data english-qa` does).",
        ),
        DatasetSpec(
            "xquad", "qa", "XQuAD: 240 SQuAD dev paragraphs, 1,190 questions, professionally translated",
            "https://github.com/google-deepmind/xquad", "CC BY-SA 4.0", XQUAD_LANGS, ("test",), _xquad,
        ),
        DatasetSpec(
            "mlqa", "qa", "MLQA v1: language is '<context>-<question>', e.g. 'de-en'; 'de' means 'de-de'",
            "https://github.com/facebookresearch/MLQA", "CC BY-SA 3.0",
            tuple(f"{c}-{q}" for c in MLQA_LANGS for q in MLQA_LANGS), ("dev", "test"), _mlqa,
            lang_aliases={lang: f"{lang}-{lang}" for lang in MLQA_LANGS},
        ),
        DatasetSpec(
            "tydiqa_goldp", "qa", "TyDiQA-GoldP v1.1: gold passage task, typologically diverse languages",
            "https://github.com/google-research-datasets/tydiqa", "Apache 2.0", tuple(TYDIQA_LANGS),
            ("train", "dev"), _tydiqa,
        ),
        DatasetSpec(
            "wikiann", "ner", "WikiAnn / PAN-X with the Rahimi et al. (2019) splits, PER/ORG/LOC",
            "https://github.com/afshinrahimi/mmner", "unknown (Wikipedia-derived)", PANX_LANGS,
            ("train", "dev", "test"), _wikiann,
            notes=f"Direct download only for {', '.join(BABELSCAPE_WIKIANN)} (Babelscape's copy); "
                  "other languages come from a mirror.",
        ),
        DatasetSpec(
            "conll2002", "ner", "CoNLL-2002 NER, Spanish and Dutch, PER/ORG/LOC/MISC",
            "https://www.clips.uantwerpen.be/conll2002/ner/", "research use within the shared task",
            ("es", "nl"), ("train", "dev", "test"), _conll2002,
        ),
        DatasetSpec(
            "conll2003", "ner", "CoNLL-2003 NER, English and German, PER/ORG/LOC/MISC",
            "https://www.clips.uantwerpen.be/conll2003/ner/", "research use; text under Reuters/FR agreements",
            ("en", "de"), ("train", "dev", "test"), _conll2003,
        ),
        DatasetSpec(
            "tatoeba_laser", "parallel", "LASER Tatoeba similarity-search test set, 112 languages with English",
            "https://github.com/facebookresearch/LASER/tree/main/data/tatoeba/v1", "CC BY 2.0 FR",
            TATOEBA_LASER_LANGS, ("test",), _tatoeba_laser, lang_aliases=ISO3,
        ),
        DatasetSpec(
            "tatoeba_challenge", "parallel", "Tatoeba-Challenge test sets v2021-08-07, paired with English",
            "https://github.com/Helsinki-NLP/Tatoeba-Challenge", "CC BY 2.0 FR", TATOEBA_CHALLENGE_LANGS,
            ("test",), _tatoeba_challenge, lang_aliases=_TATOEBA_CHALLENGE_ALIASES,
        ),
        DatasetSpec(
            "flores200", "parallel", "FLORES-200 devtest, 1,012 sentences, multi-way parallel (paired with eng)",
            "https://github.com/facebookresearch/flores/tree/main/flores200", "CC BY-SA 4.0",
            tuple(x for x in FLORES200_LANGS if x != "eng"), ("devtest",), _flores200,
            lang_aliases=_FLORES_ALIASES,
        ),
    ]
}


def get_dataset(name: str) -> DatasetSpec:
    try:
        return DATASETS[name]
    except KeyError:
        raise UnknownNameError(f"unknown dataset {name!r}; known: {', '.join(DATASETS)}") from None


# --------------------------------------------------------------------------- locating


def default_cache_dir() -> Path:
    env = os.environ.get(CACHE_DIR_ENV)
    return Path(env) if env else Path.home() / ".cache" / "clism" / "datasets"


def mirror_dir(data_dir: str | Path | None = None) -> Path | None:
    value = data_dir or os.environ.get(DATA_DIR_ENV)
    return Path(value) if value else None


def _existing(base: Path, rel: str) -> Path | None:
    for candidate in (base / rel, base / (rel + ".gz")):
        if candidate.is_file():
            return candidate
    return None


def find_in_mirror(resource: Resource, mirror: Path | None) -> tuple[list[Path], int] | None:
    if mirror is None:
        return None
    for index, layout in enumerate(resource.mirror_layouts):
        found = [_existing(mirror, rel) for rel in layout]
        if all(found):
            return [p for p in found if p is not None], index
    return None


def _cache_paths(resource: Resource, cache: Path) -> list[Path]:
    return [cache / resource.dataset / d.cache_name for d in resource.downloads]


def find_in_cache(resource: Resource, cache: Path) -> list[Path] | None:
    if not resource.downloads:
        return None
    paths = _cache_paths(resource, cache)
    return paths if all(p.is_file() for p in paths) else None


def _prefix_for(resource: Resource, layout_index: int) -> str | None:
    return resource.id_prefix if layout_index in resource.id_prefix_layouts else None


def locate(resource: Resource, data_dir: str | Path | None = None, cache_dir: str | Path | None = None,
           download: bool = True) -> Located:
    """Find (or fetch) the files of ``resource``; raise ``DataNotFoundError`` with what was tried."""
    mirror = mirror_dir(data_dir)
    cache = Path(cache_dir) if cache_dir else default_cache_dir()
    hit = find_in_mirror(resource, mirror)
    if hit:
        paths, layout = hit
        return Located(resource, paths, "mirror", _prefix_for(resource, layout))
    cached = find_in_cache(resource, cache)
    if cached:
        return Located(resource, cached, "cache", _prefix_for(resource, -1))

    tried = []
    if mirror is None:
        tried.append(f"no mirror directory set (--data-dir or ${DATA_DIR_ENV})")
    else:
        layouts = " or ".join("+".join(layout) for layout in resource.mirror_layouts)
        tried.append(f"mirror {mirror}: no {layouts} (plain or .gz)")
    if resource.downloads:
        tried.append(f"cache {cache / resource.dataset}: not there")
        if download:
            try:
                paths = [fetch(d, cache / resource.dataset) for d in resource.downloads]
                return Located(resource, paths, "download", _prefix_for(resource, -1))
            except DownloadError as exc:
                tried.append(str(exc))
        else:
            tried.append("download not attempted (disabled)")
    else:
        tried.append("no direct download exists")
    how = resource.manual or (
        f"copy the files into a mirror directory laid out like ../shared/data and set ${DATA_DIR_ENV} "
        f"(or pass --data-dir), or put the downloaded files in {cache / resource.dataset}"
    )
    raise DataNotFoundError(
        f"dataset {resource.name} not found. Tried: " + "; ".join(tried) + f". To provide it: {how}."
    )


# --------------------------------------------------------------------------- download


class DownloadError(ClismError, OSError):
    pass


def sha256_of(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


def _download_to(url: str, dest: Path, sha256: str | None, timeout: float) -> None:
    from tqdm.auto import tqdm

    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=dest.name + ".", suffix=".part", dir=dest.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as response:
            total = int(response.headers.get("Content-Length") or 0) or None
            with tqdm(total=total, unit="B", unit_scale=True, desc=f"download {dest.name}") as bar:
                for block in iter(lambda: response.read(1 << 16), b""):
                    out.write(block)
                    bar.update(len(block))
        if sha256:
            got = sha256_of(tmp)
            if got != sha256:
                raise DownloadError(f"download {url}: SHA-256 {got} does not match the expected {sha256}")
        os.replace(tmp, dest)
    except (urllib.error.URLError, TimeoutError, OSError) as exc:
        if isinstance(exc, DownloadError):
            raise
        raise DownloadError(f"download {url} failed: {getattr(exc, 'reason', exc)}") from None
    finally:
        tmp.unlink(missing_ok=True)


def fetch(download: Download, dest_dir: Path, timeout: float = 30.0) -> Path:
    """Download one file (or one archive member) into ``dest_dir``; atomic, checksum-checked."""
    target = dest_dir / download.cache_name
    if target.is_file():
        return target
    if download.member is None:
        _download_to(download.url, target, download.sha256, timeout)
        return target
    archive = dest_dir / ("_archives/" + download.url.rstrip("/").rsplit("/", 1)[-1])
    if not archive.is_file():
        _download_to(download.url, archive, download.sha256, timeout)
    try:
        with zipfile.ZipFile(archive) as zf, zf.open(download.member) as src:
            fd, tmp = tempfile.mkstemp(dir=dest_dir, suffix=".part")
            with os.fdopen(fd, "wb") as out:
                shutil.copyfileobj(src, out)
            os.replace(tmp, target)
    except (KeyError, zipfile.BadZipFile) as exc:
        raise DownloadError(f"{archive}: cannot extract {download.member}: {exc}") from None
    return target


# --------------------------------------------------------------------------- inventory


def inventory(spec: DatasetSpec, data_dir: str | Path | None = None, cache_dir: str | Path | None = None
              ) -> dict[str, dict[str, str]]:
    """{lang: {split: "mirror" | "cache"}} for the files present locally (nothing is downloaded)."""
    mirror = mirror_dir(data_dir)
    cache = Path(cache_dir) if cache_dir else default_cache_dir()
    present: dict[str, dict[str, str]] = {}
    for lang in spec.languages:
        for split in spec.splits:
            resource = spec.resource(lang, split)
            if find_in_mirror(resource, mirror):
                present.setdefault(lang, {})[split] = "mirror"
            elif find_in_cache(resource, cache):
                present.setdefault(lang, {})[split] = "cache"
    return present
