"""`clism model push` and `--push-to-hub`, against a local fake of the Hub's HTTP API (never
the network): the repository is created, one commit carries every file of the model folder
byte for byte, the model card names the repository, and failures are one-line errors."""
import base64
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

import tiny_models
from clism.cli import main


class FakeHub:
    """The three calls huggingface_hub makes for a small commit: create the repo, ask how to
    upload each file (we say "regular": inline), then commit (NDJSON, contents in base64)."""

    def __init__(self, refuse_with: int | None = None):
        self.repos: dict[str, dict] = {}
        self.commits: list[dict] = []
        self.refused_cards: list[str] = []
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def reply(self, obj, status=200):
                data = json.dumps(obj).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if refuse_with:
                    return self.reply({"error": "Invalid credentials in Authorization header"}, refuse_with)
                base_url = f"http://127.0.0.1:{self.server.server_port}"
                if self.path == "/api/repos/create":
                    request = json.loads(body)
                    repo = f"{request.get('organization')}/{request['name']}"
                    hub.repos[repo] = request
                    return self.reply({"url": f"{base_url}/{repo}", "name": request["name"]})
                if self.path == "/api/validate-yaml":  # the Hub checks a model card's metadata before a commit
                    import re

                    import yaml

                    card = json.loads(body)["content"]
                    meta = yaml.safe_load(card.split("---\n")[1]) if card.startswith("---\n") else {}
                    base = (meta or {}).get("base_model")
                    if base is not None and not re.fullmatch(r"[\w.-]+/[\w.-]+", str(base)):
                        hub.refused_cards.append(card)
                        return self.reply({"errors": [{"message": f'"base_model" with value "{base}" is not valid'}]},
                                          400)
                    return self.reply({"errors": [], "warnings": []})
                if "/preupload/" in self.path:
                    files = json.loads(body)["files"]
                    return self.reply({"files": [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False}
                                                 for f in files]})
                if "/commit/" in self.path:
                    lines = [json.loads(line) for line in body.decode().splitlines() if line.strip()]
                    header = next(x["value"] for x in lines if x["key"] == "header")
                    files = {x["value"]["path"]: base64.b64decode(x["value"]["content"])
                             for x in lines if x["key"] == "file"}
                    repo = self.path.split("/api/models/")[1].split("/commit/")[0]
                    hub.commits.append({"repo": repo, "message": header["summary"], "files": files,
                                        "authorization": self.headers.get("Authorization")})
                    return self.reply({"commitUrl": f"{base_url}/{repo}/commit/{'a' * 40}", "commitOid": "a" * 40})
                return self.reply({"error": "not found"}, 404)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def hub(monkeypatch):
    fake = FakeHub()
    monkeypatch.setenv("HF_ENDPOINT", fake.url)
    monkeypatch.setenv("HF_TOKEN", "hf_test_token")
    yield fake
    fake.close()


def saved_model(folder):
    from clism.models.card import write_model_card

    model, tokenizer = tiny_models.tiny_model()
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    write_model_card(folder, "pretrain", {"model": "multilingual-e5-small-q4", "lr": 1e-5})
    return folder


def test_model_push_commits_every_file_and_a_card_that_names_the_repository(tmp_path, hub, capsys):
    folder = saved_model(tmp_path / "runs" / "pretrain" / "model")
    assert main(["model", "push", str(folder), "me/clism-tiny", "--private"]) == 0
    assert hub.repos["me/clism-tiny"]["visibility"] == "private"
    (commit,) = hub.commits
    assert commit["repo"] == "me/clism-tiny" and commit["authorization"] == "Bearer hf_test_token"
    on_disk = {p.name: p.read_bytes() for p in folder.iterdir()}
    assert set(commit["files"]) == set(on_disk)
    assert all(commit["files"][name] == data for name, data in on_disk.items() if name != "README.md")
    card = commit["files"]["README.md"].decode()
    assert str(folder) not in card and "--model me/clism-tiny" in card
    assert "base_model: intfloat/multilingual-e5-small\n" in card  # the built-in name, as the Hub can link it
    assert "pushed" in capsys.readouterr().out


def test_bad_folders_ids_and_refusals_are_one_line_errors(tmp_path, hub, monkeypatch, capsys):
    folder = saved_model(tmp_path / "model")
    assert main(["model", "push", str(tmp_path / "nothing"), "me/x"]) == 2
    assert "no such model folder" in capsys.readouterr().err
    (tmp_path / "half").mkdir()
    (tmp_path / "half" / "config.json").write_text("{}")  # a save killed half way
    assert main(["model", "push", str(tmp_path / "half"), "me/x"]) == 2
    assert "not a complete model folder" in capsys.readouterr().err
    assert main(["model", "push", str(folder), "me/x/y"]) == 2
    assert "write a repository id" in capsys.readouterr().err
    assert hub.commits == []

    refusing = FakeHub(refuse_with=401)
    monkeypatch.setenv("HF_ENDPOINT", refusing.url)
    try:
        assert main(["model", "push", str(folder), "me/x"]) == 2
    finally:
        refusing.close()
    err = capsys.readouterr().err
    assert "HTTP 401" in err and "hf auth login" in err and "Traceback" not in err
    monkeypatch.setenv("HF_ENDPOINT", refusing.url)  # now closed: nobody listens there
    assert main(["model", "push", str(folder), "me/x"]) == 2
    assert "cannot be reached" in capsys.readouterr().err


def test_push_to_hub_after_pretraining_and_refused_up_front_for_several_seeds(tmp_path, hub, capsys):
    from test_pretrain import data_dir as _unused  # noqa: F401  (the fixtures live there)
    from test_pretrain import opts, records

    from clism.pretraining.train import pretrain

    base = saved_model(tmp_path / "base")
    data = tmp_path / "data" / "instances"
    data.mkdir(parents=True)
    (data / "de-00000.jsonl").write_text("".join(json.dumps(x) + "\n" for x in records()))
    summary = pretrain(opts(base, data.parent, tmp_path / "run", max_steps=2, push_to_hub="me/pre"))
    assert summary["pushed"].endswith("/me/pre/commit/" + "a" * 40)
    assert {"model.safetensors", "span_head.safetensors", "README.md"} <= set(hub.commits[0]["files"])
    # a second call finds the run finished and pushes again (say, after a failed push)
    assert pretrain(opts(base, data.parent, tmp_path / "run", max_steps=2, push_to_hub="me/pre"))["pushed"]
    assert len(hub.commits) == 2

    assert main(["finetune", "qa", "--model", str(base), "--seeds", "1", "--seeds", "2", "--push-to-hub", "me/qa",
                 "--out", str(tmp_path / "qa")]) == 2
    assert "pushes one model" in capsys.readouterr().err and not (tmp_path / "qa").exists()


def test_a_local_base_model_is_left_out_of_the_card_the_hub_sees(tmp_path, hub, monkeypatch):
    """A model fine-tuned from `runs/pretrain/model` names that folder as its base; the Hub
    refuses a base_model that is not a model id, so the pushed card leaves it out. The card was
    written with a relative path and is pushed by its absolute one: its usage lines still name
    the repository."""
    from pathlib import Path

    from clism.models.card import write_model_card
    from clism.models.hub import push_folder

    monkeypatch.chdir(tmp_path)
    folder = saved_model(Path("qa") / "seed-1" / "model")
    write_model_card(folder, "qa-qass", {"model": "runs/pretrain/model"})
    push_folder(folder.resolve(), "me/qa")
    card = hub.commits[0]["files"]["README.md"].decode()
    assert "base_model" not in card.split("\n---\n")[0] and hub.refused_cards == []
    assert 'from_pretrained("me/qa"' in card and "qa/seed-1/model" not in card
