"""The ``flowlab`` command: help, one-line errors with exit code 2, train -> checkpoint -> sample,
the quick demo, the registry, and the installed console script in a real subprocess."""
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from flowlab import checkpoints, cli, pretrained
from flowlab.demo import render_demo

CONSOLE_SCRIPT = Path(sys.executable).with_name("flowlab")


@pytest.fixture(scope="module")
def trained_checkpoint(tmp_path_factory) -> Path:
    """A moons MLP trained for a few steps by ``flowlab train toy``."""
    out = tmp_path_factory.mktemp("train") / "tiny_moons"
    assert cli.main(["train", "toy", "--data", "moons", "--steps", "20", "--seed", "3", "--out", str(out)]) == 0
    return out


def _one_line_error(capsys) -> str:
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert "error" in lines[0] and "Traceback" not in captured.err
    return lines[0]


def test_help_lists_the_commands(capsys):
    assert cli.main(["--help"]) == 0
    out = capsys.readouterr().out
    for word in ("demo", "train", "sample", "bench"):
        assert word in out


@pytest.mark.parametrize("words", sorted(cli.COMMANDS))
def test_every_command_has_help(words, capsys):
    assert cli.main([*words, "--help"]) == 0
    assert cli.COMMANDS[words].help.split()[0] in capsys.readouterr().out


@pytest.mark.parametrize("argv, message", [
    (["frobnicate"], "invalid choice"),
    (["train"], "required"),
    (["train", "toy"], "--out"),
    (["train", "toy", "--data", "bogus", "--out", "x"], "bogus"),
    (["train", "toy", "--steps", "-3", "--out", "x"], "positive integer"),
    (["train", "toy", "--steps", "many", "--out", "x"], "--steps"),
    (["train", "toy", "--device", "nonsense", "--out", "x"], "--device"),
    (["sample", "--n", "0"], "--n"),
    (["sample", "--eta", "-0.5"], "--eta"),
    (["sample", "--eta", "0.5", "--method", "heun"], "Euler-Maruyama"),
    (["sample", "--nfe", "7", "--method", "heun"], "multiple of 2"),
    (["sample", "--nfe", "8", "--steps", "4"], "not both"),
    (["sample", "--checkpoint", "no/such/checkpoint"], "no checkpoint"),
    (["sample", "--schedule", "linear"], "--schedule"),
])
def test_bad_arguments_exit_2_with_one_line(argv, message, capsys):
    assert cli.main(argv) == 2
    assert message in _one_line_error(capsys)


def test_library_errors_become_one_line_exit_2(monkeypatch, capsys):
    def broken(args):
        raise ValueError("n must be a positive int, got -1")
    monkeypatch.setattr(cli, "COMMANDS", {("demo",): cli.Command(("demo",), "demo", (), broken)})
    assert cli.main(["demo"]) == 2
    assert _one_line_error(capsys) == "flowlab demo: error: n must be a positive int, got -1"


def test_a_new_command_is_one_registered_function(monkeypatch, capsys):
    monkeypatch.setattr(cli, "COMMANDS", dict(cli.COMMANDS))

    @cli.command("train", "echo", help="repeat a word", arguments=[cli.argument("--word", default="hi")])
    def run_echo(args):
        print(args.word * 2)
        return 0

    assert cli.main(["train", "echo", "--word", "ab"]) == 0
    assert capsys.readouterr().out == "abab\n"
    assert cli.main(["train", "toy", "--help"]) == 0                     # the old ones still work
    with pytest.raises(ValueError, match="twice"):
        cli.command("train", "echo", help="again")(run_echo)


@pytest.mark.parametrize("name", cli.INSTRUCTOR_COMMANDS)
def test_instructor_commands_come_from_the_grader_entry_point(name, capsys):
    assert (name,) in cli.plugin_commands(), "the grader (autograder/, installed editable) registers it"
    assert cli.main([name, "--help"]) == 0
    assert cli.plugin_commands()[(name,)].help.split()[0] in capsys.readouterr().out


@pytest.mark.parametrize("argv", [["grade", "submitted", "--out", "results"], ["release", "--notebooks"]])
def test_without_the_grader_an_instructor_command_says_where_it_is(argv, monkeypatch, capsys):
    monkeypatch.setattr(cli, "plugin_commands", dict)          # a student's flowlab: no grader installed
    assert cli.main(argv) == 2
    assert "an instructor command; install the grader from autograder/" in _one_line_error(capsys)


def test_a_broken_command_plugin_warns_and_the_library_commands_still_work(monkeypatch, capsys):
    class BrokenEntry:                      # e.g. the grader's metadata left behind, its package gone
        value = "flowlab_grader.commands:plugin"

        def load(self):
            raise ModuleNotFoundError("No module named 'flowlab_grader'")

    import importlib.metadata

    monkeypatch.setattr(importlib.metadata, "entry_points", lambda group: [BrokenEntry()])
    assert cli.plugin_commands() == {}
    assert "warning: commands from 'flowlab_grader.commands:plugin' not loaded" in capsys.readouterr().err
    assert cli.main(["demo", "--help"]) == 0


def test_bench_samplers_delegates_to_the_bench(monkeypatch):
    from flowlab import bench

    calls = []
    monkeypatch.setattr(bench, "main_samplers", lambda **options: calls.append(options))
    assert cli.main(["bench", "samplers", "--quick", "--n-points", "100", "--seed", "4"]) == 0
    assert calls == [{"quick": True, "n_points": 100, "seed": 4}]


def test_train_toy_writes_a_checkpoint_that_loads(trained_checkpoint):
    model, meta = checkpoints.load(trained_checkpoint)
    assert meta["data"] == "moons" and meta["steps"] == 20 and meta["seed"] == 3
    assert {"sliced_w2", "sliced_w2_floor"} <= set(meta["metrics"])
    with torch.no_grad():
        assert model(torch.zeros(5, 2), 0.5).shape == (5, 2)


@pytest.mark.parametrize("options, expected_nfe", [
    (["--nfe", "8", "--method", "rk4"], 8),
    (["--steps", "6", "--method", "midpoint", "--schedule", "karras"], 12),
    (["--steps", "5", "--eta", "0.5"], 5),
])
def test_sample_writes_a_png(trained_checkpoint, options, expected_nfe, tmp_path, capsys):
    out = tmp_path / "samples.png"
    code = cli.main(["sample", "--checkpoint", str(trained_checkpoint), "--n", "300", *options, "--out", str(out)])
    assert code == 0
    assert out.read_bytes()[:4] == b"\x89PNG"
    printed = capsys.readouterr().out
    assert f"{expected_nfe} NFE" in printed and "sliced W2 to moons data" in printed


@pytest.mark.skipif("moons" not in pretrained.available(), reason="no pretrained moons checkpoint yet")
def test_sample_accepts_a_pretrained_name(tmp_path):
    assert cli.main(["sample", "--checkpoint", "moons", "--n", "200", "--steps", "4",
                     "--out", str(tmp_path / "moons.png")]) == 0


@pytest.mark.skipif("moons" not in pretrained.available(), reason="no pretrained moons checkpoint yet")
def test_quick_demo_writes_index_and_every_figure_it_references(tmp_path, capsys):
    assert cli.main(["demo", "--quick", "--out", str(tmp_path)]) == 0
    page = (tmp_path / "index.html").read_text()
    images = re.findall(r'<img src="([^"]+)"', page)
    assert len(images) >= 6
    for name in images:
        assert (tmp_path / name).read_bytes()[:4] in (b"\x89PNG", b"GIF8")   # the figures, the animation
    assert "t = 0 is noise" in page and page.count('class="caption"') == len(images)
    # Offline, the page must be complete: nothing it loads may come from the network.
    for name, body in [("index.html", page.encode()), *((name, (tmp_path / name).read_bytes()) for name in images)]:
        assert not re.search(rb"(src|href)\s*=\s*[\"']?(https?:)?//|url\(\s*[\"']?(https?:)?//|@import", body), name
    assert "<script" not in page and "http" not in page
    assert "index.html" in capsys.readouterr().out


@pytest.mark.slow
@pytest.mark.skipif("moons" not in pretrained.available(), reason="no pretrained moons checkpoint yet")
def test_full_demo_renders_every_figure(tmp_path):
    written = render_demo(tmp_path)
    assert written[-1] == tmp_path / "index.html" and all(path.exists() for path in written)


@pytest.mark.slow                      # two fresh interpreters importing torch: ~5 s each
@pytest.mark.skipif(not CONSOLE_SCRIPT.exists(), reason="the flowlab console script is not installed")
def test_console_script_in_a_subprocess():
    help_run = subprocess.run([str(CONSOLE_SCRIPT), "--help"], capture_output=True, text=True, timeout=120)
    assert help_run.returncode == 0 and "sample" in help_run.stdout
    bad_run = subprocess.run([str(CONSOLE_SCRIPT), "train", "toy", "--steps", "0", "--out", "x"],
                             capture_output=True, text=True, timeout=120)
    assert bad_run.returncode == 2
    assert bad_run.stderr.count("\n") == 1 and "positive integer" in bad_run.stderr
    assert "Traceback" not in bad_run.stderr


def test_bench_moons_delegates_to_the_bench(monkeypatch):
    from flowlab import bench

    calls = []
    monkeypatch.setattr(bench, "main_moons", lambda **options: calls.append(options))
    assert cli.main(["bench", "moons", "--n-points", "300", "--n-proj", "8", "--seed", "2"]) == 0
    assert calls == [{"n_points": 300, "n_proj": 8, "seed": 2}]
