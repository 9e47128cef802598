"""Every console, bash and Python block of README.md runs as written, in order, in a fresh
folder: a new user's first hour, replayed.

* A block runs in one temporary folder shared by all blocks (later blocks use what earlier
  ones wrote), beside links to the checkout's `embedkit/`, `train/`, ... so the README's
  relative paths resolve; the `embedkit` on PATH is this interpreter's.
* `$ command` lines of a console block run one by one; the lines under a command are its
  expected output: each must appear in what it prints, in order, `…` standing for any text
  (times, rates). A failure shows the block, the command, its stdout and stderr.
* The setup and test commands (`<!-- setup-command -->`, `<!-- test-command -->`) are
  skipped: CI runs them itself. `<!-- no-test: reason -->` skips a block that cannot run
  offline (an upload to the Hub, a download); the reason is the skip message.
* A block that uses `$EMBEDKIT_DATA_DIR` needs the real data (../shared/data or
  $EMBEDKIT_DATA_DIR) and is skipped without it. `<!-- slow-test: reason -->` marks one
  that takes minutes; it runs only with EMBEDKIT_README_SLOW=1.
* Nothing reaches the network: HF_HUB_OFFLINE=1 and an empty Hugging Face cache.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import REPO, shared_data_dir

README = REPO / "README.md"
LANGUAGES = ("console", "bash", "python")
SKIP_MARKERS = ("setup-command", "test-command")
LINKED = ("embedkit", "train", "benchmarks", "docs", "tests", "pyproject.toml", "README.md")
TIMEOUT_S = 900


@dataclass
class Block:
    number: int  # 1-based, in README order
    line: int  # README line of the opening fence
    language: str
    text: str
    marker: str  # the HTML comment just above the fence ("" if none)

    @property
    def name(self) -> str:
        first = next((ln for ln in self.text.splitlines() if ln.strip()), "")
        words = re.sub(r"^\$ ", "", first).split()[:3]
        return f"{self.number:02d}-" + "-".join(re.sub(r"\W+", "", w) for w in words)


def readme_blocks(text: str) -> list[Block]:
    """The fenced console/bash/python blocks, with the marker comment above each."""
    blocks, lines, i = [], text.splitlines(), 0
    while i < len(lines):
        fence = re.fullmatch(r"```(\w+)\s*", lines[i])
        if not fence:
            i += 1
            continue
        start, body = i, []
        i += 1
        while i < len(lines) and not lines[i].startswith("```"):
            body.append(lines[i])
            i += 1
        i += 1
        if fence[1] in LANGUAGES:
            above = next((ln.strip() for ln in reversed(lines[:start]) if ln.strip()), "")
            marker = above if above.startswith("<!--") else ""
            blocks.append(Block(len(blocks) + 1, start + 1, fence[1], "\n".join(body), marker))
    return blocks


def console_steps(text: str) -> list[tuple[str, list[str]]]:
    """(command, expected output lines) for each `$ ` command; `\\` continues a command."""
    steps: list[tuple[str, list[str]]] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        if not lines[i].startswith("$ "):
            if steps and lines[i].strip():
                steps[-1][1].append(lines[i].strip())
            i += 1
            continue
        command = lines[i][2:]
        while command.rstrip().endswith("\\") and i + 1 < len(lines):
            i += 1
            command = command.rstrip()[:-1] + " " + lines[i].strip()
        steps.append((command, []))
        i += 1
    return steps


def expected_pattern(line: str) -> re.Pattern:
    """A README output line as a pattern: `…` is any text, whitespace runs are flexible."""
    parts = [r"\s+".join(map(re.escape, p.split())) for p in line.split("…")]
    return re.compile(".*".join(parts))


def missing_output(expected: list[str], printed: str) -> str | None:
    """The first expected line not found (in order) in what the command printed."""
    actual = [ln.strip() for ln in printed.splitlines()]
    position = 0
    for line in expected:
        pattern = expected_pattern(line)
        hit = next((j for j in range(position, len(actual)) if pattern.fullmatch(actual[j])), None)
        if hit is None:
            return line
        position = hit + 1
    return None


BLOCKS = readme_blocks(README.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    """A fresh folder that looks like the checkout (links), where every block runs."""
    folder = tmp_path_factory.mktemp("readme")
    for name in LINKED:
        if (REPO / name).exists():
            (folder / name).symlink_to(REPO / name)
    (folder / "hf").mkdir()
    return folder


def environment(folder: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env.update(HF_HUB_OFFLINE="1", HF_HOME=str(folder / "hf"), PYTHONUNBUFFERED="1")
    env.update(OMP_NUM_THREADS="1", PYTHONPATH=str(folder))  # `python -m train` from here
    data = shared_data_dir()
    if data is not None:
        env["EMBEDKIT_DATA_DIR"] = str(data)
    else:
        env.pop("EMBEDKIT_DATA_DIR", None)
    return env


def run(command: list[str], folder: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        command,
        cwd=folder,
        env=environment(folder),
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
    )


def failure(block: Block, what: str, done: subprocess.CompletedProcess | None = None) -> str:
    text = [f"README.md block {block.number} (line {block.line}): {what}", block.text]
    if done is not None:
        text += [f"exit code {done.returncode}", "stdout:", done.stdout, "stderr:", done.stderr]
    return "\n".join(text)


def skip_reason(block: Block) -> str | None:
    marker = block.marker
    if any(f"<!-- {m} -->" == marker for m in SKIP_MARKERS):
        return f"{marker}: CI runs this command itself"
    found = re.fullmatch(r"<!--\s*no-test:\s*(.+?)\s*-->", marker)
    if found:
        return f"not run by the tests: {found[1]}"
    if "EMBEDKIT_DATA_DIR" in block.text and shared_data_dir() is None:
        return "needs the real data: set EMBEDKIT_DATA_DIR or place ../shared/data"
    found = re.fullmatch(r"<!--\s*slow-test:\s*(.+?)\s*-->", marker)
    if found and os.environ.get("EMBEDKIT_README_SLOW") != "1":
        return f"slow ({found[1]}): set EMBEDKIT_README_SLOW=1 to run it"
    return None


def test_the_readme_has_blocks_and_markers_are_known():
    assert len(BLOCKS) >= 10
    for block in BLOCKS:
        marker = block.marker
        known = (
            not marker
            or any(f"<!-- {m} -->" == marker for m in SKIP_MARKERS)
            or re.fullmatch(r"<!--\s*(no-test|slow-test):\s*\S.*-->", marker)
        )
        assert known, f"README.md line {block.line}: unknown marker {marker}"


@pytest.mark.parametrize("block", BLOCKS, ids=[b.name for b in BLOCKS])
def test_readme_block_runs_as_written(block: Block, workdir: Path):
    reason = skip_reason(block)
    if reason:
        pytest.skip(reason)
    if block.language == "python":
        done = run([sys.executable, "-c", block.text], workdir)
        assert done.returncode == 0, failure(block, "the Python block failed", done)
        return
    if block.language == "bash":
        done = run(["bash", "-euo", "pipefail", "-c", block.text], workdir)
        assert done.returncode == 0, failure(block, "the bash block failed", done)
        return
    for command, expected in console_steps(block.text):
        done = run(["bash", "-o", "pipefail", "-c", command], workdir)
        assert done.returncode == 0, failure(block, f"`{command}` failed", done)
        missing = missing_output(expected, done.stdout + "\n" + done.stderr)
        assert missing is None, failure(
            block, f"`{command}` did not print the README's line {missing!r}", done
        )


def test_console_steps_and_expected_output_matching():
    steps = console_steps("$ a \\\n   --b c   # note\nout 1; … s → x\n\n$ d\n")
    assert steps == [("a  --b c   # note", ["out 1; … s → x"]), ("d", [])]
    assert missing_output(["out 1; … s → x"], "noise\nout 1; 0.52 s, 9/s → x\n") is None
    assert missing_output(["out 1; … s → x"], "out 2; 0.5 s → x") == "out 1; … s → x"
