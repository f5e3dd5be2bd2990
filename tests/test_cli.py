"""The command line: explain writes an offline file; bad input exits 2 with a message, writing nothing."""

import shutil
import socket
import subprocess
import sys
import time
import types

import huggingface_hub
import pytest
from huggingface_hub import constants as hf
from huggingface_hub import errors as hf_errors

import llmasos_widgets as lw
from llmasos_widgets import __main__ as cli
from llmasos_widgets.__main__ import main
from tests._exported import read_export


@pytest.fixture
def no_network(monkeypatch):
    """A machine without network: every name lookup fails at once, as with no DNS, and is counted."""
    lookups = []

    def fail(host, *args, **kwargs):
        lookups.append(host)
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", fail)
    return lookups


@pytest.fixture
def waits(monkeypatch):
    """Every time.sleep, not slept: huggingface_hub waits 1, 2, 4, 8, 8 s before the retries of a failed request."""
    slept = []
    monkeypatch.setattr(time, "sleep", slept.append)
    return slept


@pytest.fixture
def hub_cache(tmp_path, monkeypatch, capsys):
    """A Hugging Face cache holding one model, test-org/tiny-llama (tiny-llama saved as the hub lays it out)."""
    root = tmp_path / "hf-cache"
    repo = root / "models--test-org--tiny-llama"
    snapshot = repo / "snapshots" / ("0" * 40)
    model = lw.load_model("tiny-llama")
    model.model.save_pretrained(snapshot)
    model.tokenizer.save_pretrained(snapshot)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0" * 40)
    monkeypatch.setattr(hf, "HF_HUB_CACHE", str(root))
    capsys.readouterr()  # the save's progress bar is no output of the command
    return root


def online(monkeypatch):
    """Downloads allowed, as on a user's machine (the tests run with HF_HUB_OFFLINE=1)."""
    monkeypatch.setattr(hf, "HF_HUB_OFFLINE", False)


def test_explain_writes_one_offline_file(tmp_path, capsys):
    out = tmp_path / "france.html"
    args = ["explain", "The capital of France is", "--model", "tiny-llama", "-o", str(out), "--panels", "tokens,lens"]
    assert main(args) == 0
    page = out.read_text()
    assert page.count('class="lw-export"') == 1 and "Explorer: tokens: " in capsys.readouterr().out
    (part,) = read_export(out)  # an Explorer of the two panels asked for, with their answers
    trace = lw.load_model("tiny-llama").trace("The capital of France is")
    assert part.state["panels"] == ["tokens", "lens"] and part.state["tokens"] == trace.tokens
    assert {r["panel"] for r in part.requests} == {"tokens", "lens"}
    content, got = part.answer(what="predictions", position=4, k=5, panel="tokens")
    assert got["ids"].tolist() == [p.id for p in trace.top_predictions(4, k=5)]  # the same function, same trace


def test_explain_skips_panels_a_model_cannot_show(tmp_path, capsys):
    out = tmp_path / "bert.html"
    assert main(["explain", "a cat sat", "--model", "tiny-bert", "-o", str(out), "--panels", "attention,saliency"]) == 0
    assert "skipped saliency: tiny-bert is an encoder" in capsys.readouterr().err and out.exists()
    assert main(["explain", "a cat sat", "--model", "tiny-bert", "-o", str(out), "--panels", "saliency"]) == 2
    assert "no panel applies to tiny-bert: saliency: " in capsys.readouterr().err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["explain", "   ", "--model", "tiny-llama"], "text is empty"),
        (["explain", "hi", "--model", "no/such-model-here"], "'no/such-model-here' is not bundled, a folder"),
        (["explain", "word " * 300, "--model", "tiny-llama"], "past tiny-llama's context"),
    ],
)
def test_bad_input_exits_2_with_a_message_and_writes_nothing(tmp_path, capsys, args, message):
    out = tmp_path / "x.html"
    assert main([*args, "-o", str(out)]) == 2
    assert message in capsys.readouterr().err
    assert not out.exists()


def test_an_output_folder_and_unknown_panels_are_refused(tmp_path, capsys):
    assert main(["explain", "hi", "--model", "tiny-llama", "-o", str(tmp_path)]) == 2
    assert "is a directory" in capsys.readouterr().err
    assert main(["explain", "hi", "-o", str(tmp_path / "x.html"), "--panels", "attention,colours"]) == 2
    assert "unknown panel(s) colours" in capsys.readouterr().err


def test_unknown_panels_are_one_line_saying_what_is_allowed_not_a_usage_text(tmp_path, capsys):
    assert main(["explain", "hi", "-o", str(tmp_path / "x.html"), "--panels", "attention,colours"]) == 2
    err = capsys.readouterr().err
    assert err == (
        "llmasos-widgets explain: unknown panel(s) colours: choose from "
        "tokens, attention, saliency, neurons, lens, concepts, features, evaluation\n"
    )


@pytest.mark.parametrize(
    ("args", "output", "message"),
    [
        (["hi"], "{tmp}", "is a directory: give a file name"),
        (["hi"], "{tmp}/view.txt", "view.txt does not end in .html or .htm"),
        (["hi"], "{tmp}/missing/view.html", "the folder {tmp}/missing does not exist"),
        (["hi"], "/proc/view.html", "cannot write /proc/view.html"),
        (["hi", "--panels", "lens,colours"], "{tmp}/view.html", "unknown panel(s) colours"),
        (["   "], "{tmp}/view.html", "text is empty"),
    ],
)
def test_every_argument_is_checked_before_the_model_is_loaded(tmp_path, capsys, monkeypatch, args, output, message):
    def load(name, **kwargs):
        raise AssertionError(f"{name} was loaded before the arguments were checked")

    monkeypatch.setattr(cli, "load_model", load)
    out = output.format(tmp=tmp_path)
    assert main(["explain", *args, "--model", "smollm2-135m", "-o", out]) == 2
    assert message.format(tmp=tmp_path) in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_an_unknown_model_offline_says_at_once_what_is_here(tmp_path, capsys, hub_cache, no_network):
    assert hf.HF_HUB_OFFLINE  # the tests' own setting (conftest)
    assert main(["explain", "hi", "--model", "no/such-model-here", "-o", str(tmp_path / "x.html")]) == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert "'no/such-model-here' is not bundled, a folder, a .gguf file or in the Hugging Face cache" in line
    assert "HF_HUB_OFFLINE is set, so nothing is downloaded" in line
    assert "bundled: smollm2-135m, minilm-l6, tiny-llama, tiny-gpt2, tiny-bert" in line
    assert f"in the Hugging Face cache ({hub_cache}): test-org/tiny-llama" in line
    assert no_network == []  # not one request


def test_an_unknown_model_with_the_hub_unreachable_fails_after_one_request_not_eleven(
    tmp_path, capsys, monkeypatch, hub_cache, no_network, waits
):
    online(monkeypatch)
    assert main(["explain", "hi", "--model", "no/such-model-here", "-o", str(tmp_path / "x.html")]) == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert "'no/such-model-here' is not in the Hugging Face cache and the hub cannot be reached from here" in line
    assert "Name or service not known" in line and "test-org/tiny-llama" in line
    # One request and no retry: no back-off wait, and the name looked up once (the HTTP transport may
    # reconnect once at once; before, eleven requests looked it up 22 times and waited 27 s).
    assert waits == [] and 1 <= len(no_network) <= 2 and set(no_network) == {"huggingface.co"}


def test_a_model_in_the_hugging_face_cache_loads_from_it_without_a_request(
    tmp_path, capsys, monkeypatch, hub_cache, no_network, waits
):
    online(monkeypatch)  # downloads allowed, but the cache has it: the hub is not asked
    out = tmp_path / "cached.html"
    assert main(["explain", "The capital", "--model", "test-org/tiny-llama", "-o", str(out), "--panels", "tokens"]) == 0
    assert "test-org/tiny-llama" in out.read_text(encoding="utf-8") and no_network == [] and waits == []
    assert hf.HF_HUB_OFFLINE is False  # the offline mode of the load is undone


def test_a_model_on_the_hub_is_still_loaded_from_it(tmp_path, capsys, monkeypatch, hub_cache):
    online(monkeypatch)
    asked, loaded = [], []
    monkeypatch.setattr(huggingface_hub.HfApi, "model_info", lambda self, name, timeout=None: asked.append(name))

    def load(name, **kwargs):  # what load_model would download; here the tiny model stands in for it
        loaded.append((name, hf.HF_HUB_OFFLINE))
        return lw.load_model("tiny-llama")

    monkeypatch.setattr(cli, "load_model", load)
    out = tmp_path / "hub.html"
    assert main(["explain", "hi", "--model", "some-org/some-model", "-o", str(out), "--panels", "tokens"]) == 0
    assert asked == ["some-org/some-model"] and loaded == [("some-org/some-model", False)] and out.exists()
    response = types.SimpleNamespace(headers={}, request=None)

    def not_found(self, name, timeout=None):
        raise hf_errors.RepositoryNotFoundError("404", response=response)

    monkeypatch.setattr(huggingface_hub.HfApi, "model_info", not_found)
    assert main(["explain", "hi", "--model", "some-org/typo", "-o", str(out)]) == 2
    assert "no model 'some-org/typo' on the Hugging Face hub" in capsys.readouterr().err and len(loaded) == 1


def test_the_installed_command_answers_help():
    command = shutil.which("llmasos-widgets") or str(
        __import__("pathlib").Path(sys.executable).parent / "llmasos-widgets"
    )
    done = subprocess.run([command, "--help"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0
    for verb in ("explain", "lab", "fetch-models"):
        assert verb in done.stdout


def test_a_model_only_partly_in_the_cache_is_completed_from_the_hub(tmp_path, monkeypatch, hub_cache):
    online(monkeypatch)
    calls = []

    def load(name, **kwargs):  # the cache lacks a file: offline, the load fails; online it is fetched
        calls.append(hf.HF_HUB_OFFLINE)
        if hf.HF_HUB_OFFLINE:
            raise OSError("model.safetensors is not in the cache")
        return lw.load_model("tiny-llama")

    monkeypatch.setattr(cli, "load_model", load)
    out = tmp_path / "partial.html"
    assert main(["explain", "hi", "--model", "test-org/tiny-llama", "-o", str(out), "--panels", "tokens"]) == 0
    assert calls == [True, False] and out.exists()
    monkeypatch.setattr(hf, "HF_HUB_OFFLINE", True)  # offline, the missing file is the error
    assert main(["explain", "hi", "--model", "test-org/tiny-llama", "-o", str(out)]) == 2
