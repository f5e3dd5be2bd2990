"""The command line: explain writes an offline file; bad input exits 2 with a message, writing nothing."""

import shutil
import subprocess
import sys

import pytest

from llmasos_widgets.__main__ import main


def test_explain_writes_one_offline_file(tmp_path, capsys):
    out = tmp_path / "france.html"
    args = ["explain", "The capital of France is", "--model", "tiny-llama", "-o", str(out), "--panels", "tokens,lens"]
    assert main(args) == 0
    page = out.read_text()
    assert page.count('class="lw-export"') == 1 and "Explorer: tokens: " in capsys.readouterr().out


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
        (["explain", "hi", "--model", "no/such-model-here"], "could not load 'no/such-model-here'"),
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
    with pytest.raises(SystemExit) as exit_:
        main(["explain", "hi", "-o", str(tmp_path / "x.html"), "--panels", "attention,colours"])
    assert exit_.value.code == 2 and "unknown panel(s) colours" in capsys.readouterr().err


def test_the_installed_command_answers_help():
    command = shutil.which("llmasos-widgets") or str(
        __import__("pathlib").Path(sys.executable).parent / "llmasos-widgets"
    )
    done = subprocess.run([command, "--help"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0
    for verb in ("explain", "lab", "fetch-models"):
        assert verb in done.stdout
