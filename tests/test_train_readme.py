"""The README's first hour prints what it shows (issue 29): the Start-here gradient check, the toy run of
Setup, the shipped text's header, the gradient-check header and the error examples, each run here and
compared line by line; only speeds and times are masked (they depend on the machine)."""

from __future__ import annotations

import contextlib
import io
import re
import shlex
from pathlib import Path

import pytest

from grusym.cli import main
from grusym.train import plots

README = Path(__file__).resolve().parent.parent / "README.md"
TEXT = README.read_text(encoding="utf-8")
SPEED = re.compile(r"[\d,]+ (tok/s|tokens/s)|[\d.]+ s\)")  # measured, so masked on both sides


def block_after(marker: str) -> str:
    """The ```text block whose first line is ``marker`` (a command line), or that follows the
    ```python block starting with ``marker``."""
    if marker.startswith("$ "):
        found = re.search(r"```text\n(" + re.escape(marker) + r"\n.*?)```", TEXT, re.S)
    else:
        found = re.search(re.escape(marker) + r".*?```\n\n```text\n(.*?)```", TEXT, re.S)
    assert found, f"README has no block for {marker!r}"
    return found.group(1)


def cli(argv: list[str]) -> str:
    """stdout and stderr of ``grusym argv``, interleaved as a terminal shows them."""
    both = io.StringIO()
    with contextlib.redirect_stdout(both), contextlib.redirect_stderr(both):
        main(argv)
    return both.getvalue()


def mask(text: str) -> str:
    return SPEED.sub(lambda m: "<measured>" + (")" if m.group(0).endswith(")") else ""), text)


def test_the_start_here_gradient_check_prints_its_block():
    opening = "import numpy as np\nfrom grusym import check_gradients\n\nA, y"
    source = re.search(r"```python\n(" + re.escape(opening) + r".*?)```", TEXT, re.S).group(1)
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        exec(compile(source, "start_here.py", "exec"), {})
    assert printed.getvalue() == block_after(opening)


@pytest.fixture(scope="module")
def toy(tmp_path_factory) -> Path:
    """A folder in which the README's `grusym train --out runs/toy` has run (the Setup block's run)."""
    return tmp_path_factory.mktemp("readme")


def test_the_setup_toy_run_prints_its_block(toy, monkeypatch):
    """Regression: the printed header and last line differed from the README ("vocabulary of ...")."""
    monkeypatch.chdir(toy)
    shown = block_after("$ grusym train --out runs/toy")
    printed = f"$ grusym train --out runs/toy\n{cli(['train', '--out', 'runs/toy'])}"
    if plots.available():  # the README shows the core install: no curves, and a line saying so
        printed = printed.replace("loss.png, ", "").replace("perplexity.png, ", "")
        shown = shown.replace(
            "no curves drawn: matplotlib is not installed (pip install 'grusym[plots]')\n", ""
        )
    assert mask(printed) == mask(shown)


@pytest.mark.parametrize(
    "command",
    [line for line in block_after("$ grusym train --hidden 0").splitlines() if line.startswith("$ ")],
)
def test_each_error_example_prints_its_line(toy, monkeypatch, command):
    monkeypatch.chdir(toy)
    if not (toy / "runs" / "toy" / "checkpoint.npz").exists():
        cli(["train", "--out", "runs/toy"])
    lines = block_after("$ grusym train --hidden 0").splitlines()
    shown = lines[lines.index(command) + 1]
    assert cli(shlex.split(command)[2:]) == shown + "\n"


def test_the_shipped_texts_header_is_its_blocks(tmp_path, monkeypatch):
    command = "$ grusym train --text grusym/data/pride_and_prejudice_1-11.txt --epochs 10"
    shown = block_after(command).splitlines()[1:3]
    monkeypatch.chdir(README.parent)  # the README's relative path to the text
    out = tmp_path / "pride"
    printed = cli([*shlex.split(command)[2:], "--max-seconds", "0.001", "--out", str(out)]).splitlines()[:2]
    assert printed == [shown[0], shown[1].replace("runs/pride_and_prejudice_1-11-gru", str(out))]


def test_the_gradcheck_blocks_lines_are_printed_in_order():
    """Regression: the README's header lacked the atol the command prints."""
    command = "$ grusym gradcheck --variant gru --method fd,taylor"
    shown = [line for line in block_after(command).splitlines()[1:] if line != "..."]
    printed = cli(shlex.split(command)[2:]).splitlines()
    at = 0
    for line in shown:  # each shown line is printed, in the order shown
        assert line in printed[at:], line
        at = printed.index(line, at) + 1


@pytest.mark.slow
def test_the_shipped_text_run_and_its_samples_print_their_blocks(tmp_path, monkeypatch):
    """The ten-epoch run of the Training section (about a minute) and every `grusym sample` line after it;
    the numbers are the same bit for bit whatever the machine's load, only speeds are masked."""
    command = "$ grusym train --text grusym/data/pride_and_prejudice_1-11.txt --epochs 10"
    monkeypatch.chdir(tmp_path)
    (tmp_path / "grusym" / "data").mkdir(parents=True)
    (tmp_path / "grusym" / "data" / "pride_and_prejudice_1-11.txt").write_bytes(
        (README.parent / "grusym" / "data" / "pride_and_prejudice_1-11.txt").read_bytes()
    )
    shown = block_after(command)
    printed = f"{command}\n{cli(shlex.split(command)[2:])}"
    printed = re.sub(r"^  step \d+/\d+  loss .*\n", "", printed, flags=re.M)  # stderr's status lines
    if plots.available():
        printed = printed.replace("loss.png, ", "").replace("perplexity.png, ", "")
        shown = shown.replace(
            "no curves drawn: matplotlib is not installed (pip install 'grusym[plots]')\n", ""
        )
    assert mask(printed) == mask(shown)
    samples = block_after("$ grusym sample runs/pride_and_prejudice_1-11-gru --length 60")
    for part in re.split(r"^(?=\$ )", samples, flags=re.M):
        if part:
            line, _, expected = part.partition("\n")
            printed = cli(shlex.split(line)[2:])  # a trailing space is easily lost in a Markdown file
            assert [t.rstrip() for t in printed.splitlines()] == [t.rstrip() for t in expected.splitlines()]
