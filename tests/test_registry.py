import hashlib
import http.server
import io
import threading
import zipfile
from pathlib import Path

import pytest

from clism.benchmarks import registry
from clism.benchmarks.load import english_qa_training_set, iter_parallel, load_ner, load_qa, remove_overlap
from clism.benchmarks.registry import (
    DATASETS, DataNotFoundError, Download, Resource, get_dataset, inventory, locate,
)
from conftest import XQUAD_CONTEXT


def test_registry_covers_every_benchmark_language():
    assert len(DATASETS["xquad"].languages) == 12
    assert len(DATASETS["mlqa"].languages) == 49
    assert len(DATASETS["tydiqa_goldp"].languages) == 9
    assert {"ar", "hi", "vi", "zh", "th", "ja"} <= set(DATASETS["wikiann"].languages)
    assert len([x for x in DATASETS["wikiann"].languages if x != "pl"]) == 40
    assert set(DATASETS["conll2002"].languages) == {"es", "nl"}
    assert set(DATASETS["conll2003"].languages) == {"en", "de"}
    assert len(DATASETS["flores200"].languages) == 203
    for spec in DATASETS.values():
        assert spec.homepage.startswith("https://")


def test_language_aliases():
    assert get_dataset("mlqa").get("de", "test").lang == "de-de"
    assert get_dataset("flores200").get("zh", "devtest").lang == "cmn_Hans"
    assert get_dataset("tatoeba_laser").get("ar", "test").lang == "ara"
    with pytest.raises(KeyError, match="has no language 'xx'"):
        get_dataset("xquad").get("xx", "test")


def test_partial_mirror_lists_what_is_there(mirror):
    assert inventory(DATASETS["xquad"], mirror) == {"de": {"test": "mirror"}, "en": {"test": "mirror"}}
    assert inventory(DATASETS["squad_v1.1"], mirror) == {"en": {"dev": "mirror"}}
    assert inventory(DATASETS["mlqa"], mirror) == {}


def test_offline_without_mirror_names_dataset_places_and_fix(monkeypatch):
    def no_network(*args, **kwargs):
        raise registry.urllib.error.URLError("no network")

    monkeypatch.setattr(registry.urllib.request, "urlopen", no_network)
    with pytest.raises(DataNotFoundError) as err:
        load_qa("xquad", "th", "test")
    message = str(err.value)
    assert "xquad/th/test" in message
    assert "no mirror directory set" in message and "CLISM_DATA_DIR" in message
    assert "https://raw.githubusercontent.com/google-deepmind/xquad/master/xquad.th.json" in message
    assert "To provide it" in message


def test_licensed_dataset_explains_manual_route(tmp_path):
    with pytest.raises(DataNotFoundError, match="may not be redistributed"):
        locate(get_dataset("conll2003").get("en", "train"), data_dir=tmp_path)


class _Server:
    def __init__(self, files: dict[str, bytes]):
        files_ = files

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                body = files_.get(self.path)
                if body is None:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()


def test_download_goes_to_cache_with_checksum(tmp_path):
    body = b"Hallo Welt.\n"
    server = _Server({"/x.deu": body, "/x.eng": b"Hello world.\n"})
    try:
        good = Resource("demo", "deu", "test", (("demo/x.eng", "demo/x.deu"),), (
            Download(server.url + "/x.eng"), Download(server.url + "/x.deu", sha256=hashlib.sha256(body).hexdigest()),
        ))
        located = locate(good, cache_dir=tmp_path / "c")
        assert located.source == "download" and [p.read_bytes() for p in located.paths][1] == body
        assert locate(good, cache_dir=tmp_path / "c").source == "cache"

        bad = Resource("demo2", "deu", "test", (("demo2/x.deu",),), (Download(server.url + "/x.deu", sha256="0" * 64),))
        with pytest.raises(DataNotFoundError, match="does not match the expected"):
            locate(bad, cache_dir=tmp_path / "c")
        assert not any((tmp_path / "c" / "demo2").glob("*")), "a failed download must leave nothing behind"
    finally:
        server.close()


def test_download_extracts_archive_member(tmp_path):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        zf.writestr("MLQA_V1/test/test-context-de-question-en.json", '{"data": []}')
    server = _Server({"/MLQA_V1.zip": buffer.getvalue()})
    try:
        resource = Resource("mlqa", "de-en", "test", (), (
            Download(server.url + "/MLQA_V1.zip", member="MLQA_V1/test/test-context-de-question-en.json"),))
        (path,) = locate(resource, cache_dir=tmp_path).paths
        assert path.read_text() == '{"data": []}'
    finally:
        server.close()


def test_mirror_readers_end_to_end(mirror):
    examples, _ = load_qa("xquad", "de", "test", mirror)
    assert examples[0].answers[0].text == "Frankreich"
    squad, _ = load_qa("squad_v1.1", "en", "dev", mirror)
    assert {e.id for e in squad} == {"s0", "s1", "s2"}  # both halves
    sentences = load_ner("conll2002", "es", "train", mirror)
    assert sentences[0].words == ["Melbourne", "(", "Australia", ")"]
    pairs = list(iter_parallel("flores200", "de", data_dir=mirror))
    assert [(p.src, p.tgt) for p in pairs] == [("Hello world.", "Hallo Welt."), ("Good morning.", "Guten Morgen.")]


def test_english_qa_set_removes_every_xquad_paragraph(mirror):
    examples, report = english_qa_training_set(mirror, download=False)
    contexts = {" ".join(e.context.split()) for e in examples}
    assert " ".join(XQUAD_CONTEXT.split()) not in contexts  # whitespace-changed copy removed too
    assert {e.id for e in examples} == {"s1", "s2", "english-1"}
    assert (report.xquad_paragraphs_removed, report.xquad_questions_removed, report.tydiqa_en_questions) == (1, 1, 1)


def test_overlap_removal_also_matches_question_ids(mirror):
    squad, _ = load_qa("squad_v1.1", "en", "dev", mirror)
    held_out = [e for e in squad if e.id == "s1"]
    held_out[0].context = "a different context"
    kept, _, removed = remove_overlap(squad, held_out)
    assert "s1" not in {e.id for e in kept} and removed == 1


def test_shared_mirror_if_present_has_the_reference_layout():
    shared = Path(__file__).resolve().parents[1].parent / "shared" / "data"
    if not shared.is_dir():
        pytest.skip("no ../shared/data beside this checkout")
    present = inventory(DATASETS["xquad"], shared)
    assert {"ar", "de", "en", "es", "hi", "vi"} <= set(present)
