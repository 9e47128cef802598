"""The command line's contract, the same for every command: the CLI parses and calls a job
that does the file work; one overwrite policy; one summary line; one error style."""

from __future__ import annotations

import importlib
import importlib.util
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from conftest import REPO, nci_smiles
from PIL import Image

from embedkit.cli import main

SUMMARY = re.compile(r"; \d+\.\d{1,2} s(, [\d,.]+ [a-z]+/s)? → (?P<output>.+)$")


def run(*args, **kwargs):
    return CliRunner().invoke(main, [str(a) for a in args], **kwargs)


def summary_output(result) -> str:
    """The output named by the command's summary line (its last line)."""
    last = result.stdout.strip().splitlines()[-1]
    match = SUMMARY.search(last)
    assert match, f"not a summary line: {last!r}"
    return match["output"]


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> dict:
    """Tiny inputs for every command that writes: profiles, molecules, a plate, a model."""
    from test_retrieval import make_model, profiles

    root = tmp_path_factory.mktemp("inputs")
    rng = np.random.default_rng(0)
    wells = pd.DataFrame(
        {
            "Metadata_Plate": ["P1"] * 6 + ["P2"] * 6,
            "Metadata_Well": [f"B0{i % 3 + 2}" for i in range(12)],
            "Metadata_PertType": ["negcon", "trt", "trt"] * 4,
            **{f"Cells_F{i}": rng.normal(size=12) for i in range(3)},
        }
    )
    wells.to_csv(root / "wells.csv", index=False)
    plate = root / "plate" / "Plate1"
    plate.mkdir(parents=True)
    for c in range(1, 6):
        image = rng.integers(0, 255, (32, 32), dtype=np.uint8)
        Image.fromarray(image).save(plate / f"B02_s1_w{c}.png")
    molecules = nci_smiles(6)
    pd.DataFrame({"smiles": molecules, "Key": [f"p{i}" for i in range(6)]}).to_csv(
        root / "mols.csv", index=False
    )
    model = make_model(root / "model", seed=3)
    profiles(6).to_parquet(root / "profiles.parquet")
    index = root / "index"
    result = run(
        "index", "build", root / "profiles.parquet", "-o", index, "-m", f"local-dir:{model}"
    )
    assert result.exit_code == 0, result.output
    return {"root": root, "model": f"local-dir:{model}", "index": index}


def command(name: str, inputs: dict, output: Path) -> list:
    root, model, index = inputs["root"], inputs["model"], inputs["index"]
    return {
        "aggregate": ["aggregate", root / "wells.csv", "-o", output],
        "normalize": ["normalize", root / "wells.csv", "-o", output, "--method", "standardize"],
        "plates inspect": ["plates", "inspect", root / "plate", "-o", output],
        "embed-smiles": ["embed-smiles", root / "mols.csv", "-o", output, "-m", model],
        "index build": ["index", "build", root / "profiles.parquet", "-o", output, "-m", model],
        "retrieve": ["retrieve", root / "mols.csv", "-i", index, "-k", 2, "-o", output],
        "evaluate retrieval": [
            "evaluate",
            "retrieval",
            root / "mols.csv",
            "-i",
            index,
            "--key",
            "Metadata_Key",
            "--query-key",
            "Key",
            "-o",
            output,
        ],  # fmt: skip
    }[name]


FILE_COMMANDS = {
    "aggregate": "out.parquet",
    "normalize": "out.csv",
    "plates inspect": "sites.csv",
    "embed-smiles": "emb.parquet",
    "retrieve": "hits.parquet",
    "evaluate retrieval": "metrics.json",
}
FOLDER_COMMANDS = {"index build": "idx"}


def snapshot(path: Path) -> dict:
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    return {str(p): p.read_bytes() for p in files}


@pytest.mark.parametrize("name", [*FILE_COMMANDS, *FOLDER_COMMANDS])
def test_every_command_refuses_an_existing_output_unless_overwrite(inputs, tmp_path, name):
    """One policy: today synth-plate refuses while others replace silently (`index build -o
    EXISTING` throws an index away); missing parent folders are created everywhere."""
    output = tmp_path / "new" / "deeper" / {**FILE_COMMANDS, **FOLDER_COMMANDS}[name]
    first = run(*command(name, inputs, output))
    assert first.exit_code == 0, first.output
    assert output.exists() and summary_output(first) == str(output)
    before = snapshot(output)
    again = run(*command(name, inputs, output))
    assert again.exit_code == 2, again.output
    assert again.output.startswith(f"error: {output} exists") and "--overwrite" in again.output
    assert len(again.output.splitlines()) == 1
    assert snapshot(output) == before  # nothing replaced, nothing thrown away
    replaced = run(*command(name, inputs, output), "--overwrite")
    assert replaced.exit_code == 0, replaced.output
    assert summary_output(replaced) == str(output)


@pytest.mark.parametrize("name", list(FILE_COMMANDS))
def test_a_folder_given_where_a_file_is_expected_is_named(inputs, tmp_path, name):
    folder = tmp_path / "a_folder"
    folder.mkdir()
    for extra in ([], ["--overwrite"]):
        result = run(*command(name, inputs, folder), *extra)
        assert result.exit_code == 2, result.output
        assert result.output.startswith(f"error: {folder} is a folder; give a file name")
        assert not any(folder.iterdir())


def test_a_file_given_where_a_folder_is_expected_is_named(inputs, tmp_path):
    a_file = tmp_path / "a_file"
    a_file.write_text("mine")
    for args in (
        command("index build", inputs, a_file),
        ["datasets", "synth-plate", a_file, "--wells", 1, "--sites", 1, "--size", 32],
    ):
        result = run(*args, "--overwrite")
        assert result.exit_code == 2, result.output
        assert result.output.startswith(f"error: {a_file} is a file; give a folder name")
        assert a_file.read_text() == "mine"


def test_synth_plate_follows_the_same_policy(tmp_path):
    out = tmp_path / "synth"
    args = ["datasets", "synth-plate", out, "--cell-lines", "RPE", "--batches", 1]
    args += ["--wells", 1, "--sites", 1, "--size", 32]
    first = run(*args)
    assert first.exit_code == 0, first.output
    assert summary_output(first) == str(out)
    again = run(*args)
    assert again.exit_code == 2 and again.output.startswith(f"error: {out} exists")
    assert "--overwrite" in again.output
    assert run(*args, "--overwrite").exit_code == 0


def test_index_add_and_every_summary_line_end_with_seconds_and_the_output(inputs, tmp_path):
    index = tmp_path / "idx"
    assert run(*command("index build", inputs, index)).exit_code == 0
    added = run("index", "add", inputs["root"] / "profiles.parquet", "-i", index)
    assert added.exit_code == 0, added.output
    assert "added 0 of 6 profiles, 6 already in the index skipped" in added.output
    added = run(
        "index", "add", inputs["root"] / "profiles.parquet", "-i", index, "--allow-duplicates"
    )
    assert summary_output(added) == str(index)
    assert "added 6 of 6 profiles; the index now holds 12" in added.output
    wells = run("aggregate", inputs["root"] / "wells.csv", "-o", tmp_path / "w.parquet")
    assert wells.stdout.startswith("12 rows → 6 rows (12 objects), 3 features, median by ")


def test_the_cli_parses_and_calls_jobs_that_do_the_file_work(inputs, tmp_path):
    """One job layer, one name in every domain; no command module reads or writes files."""
    for module in ("molecules", "images", "profiles", "retrieval"):
        assert importlib.util.find_spec(f"embedkit.{module}.jobs") is not None
    assert importlib.util.find_spec("embedkit.molecules.embed_table") is None
    assert importlib.util.find_spec("embedkit.images.embed_plates") is None
    file_work = re.compile(
        r"embedkit\.io\b|read_table|write_table|read_parquet|to_parquet|to_csv|\bdiscover\(|"
        r"write_text|read_text|open\(|read_cell_line_table"
    )
    for source in sorted((REPO / "embedkit" / "cli").glob("*.py")):
        found = file_work.findall(source.read_text())
        assert not found, f"{source.name} does file work itself: {found}"

    from embedkit.images.jobs import inspect_plates
    from embedkit.profiles.jobs import aggregate_file, normalize_file

    out = tmp_path / "wells.parquet"
    summary = aggregate_file(inputs["root"] / "wells.csv", out, ["Metadata_Plate"])
    assert summary.line().endswith(f"→ {out}") and len(pd.read_parquet(out)) == 2
    normalized = normalize_file(out, tmp_path / "n.csv", "standardize")
    assert normalized.line().endswith(f"→ {tmp_path / 'n.csv'}")
    found = inspect_plates([inputs["root"] / "plate"], output=tmp_path / "sites.csv")
    assert len(found.index.sites()) == 1 and (tmp_path / "sites.csv").exists()


def test_the_overwrite_policy_holds_for_the_python_jobs_too(inputs, tmp_path):
    from embedkit.outputs import OutputExistsError
    from embedkit.profiles.jobs import aggregate_file

    out = tmp_path / "wells.parquet"
    out.write_text("keep me")
    with pytest.raises(OutputExistsError, match="--overwrite"):
        aggregate_file(inputs["root"] / "wells.csv", out, ["Metadata_Plate"])
    assert out.read_text() == "keep me"
    aggregate_file(inputs["root"] / "wells.csv", out, ["Metadata_Plate"], overwrite=True)
    assert len(pd.read_parquet(out)) == 2


def test_evaluate_retrieval_reports_its_outputs_in_one_summary_line(inputs, tmp_path):
    out, plot = tmp_path / "m.json", tmp_path / "ranks.png"
    result = run(*command("evaluate retrieval", inputs, out), "--plot", plot)
    assert result.exit_code == 0, result.output
    assert summary_output(result) == f"{out}, {plot}"
    assert "6 queries, 6 scored, 0 skipped" in result.output
    assert json.loads(out.read_text())["queries"] == 6 and plot.exists()


def test_plates_inspect_from_a_subprocess_prints_its_summary_on_stdout(inputs, tmp_path):
    """The real entry point (not CliRunner): stdout carries the summary, stderr nothing."""
    out = tmp_path / "sites.parquet"
    proc = subprocess.run(
        [sys.executable, "-m", "embedkit.cli", "plates", "inspect", inputs["root"] / "plate"]
        + ["-o", out],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    assert proc.stdout.strip().splitlines()[-1].endswith(f"→ {out}")


# --- one error style --------------------------------------------------------------------------


def every_command(group=main, path=()) -> list[tuple[str, ...]]:
    """The path of every command and group under `embedkit`."""
    import click

    paths = []
    for name, cmd in sorted(group.commands.items()):
        paths.append((*path, name))
        if isinstance(cmd, click.Group):
            paths += every_command(cmd, (*path, name))
    return paths


@pytest.mark.parametrize("path", every_command(), ids=" ".join)
def test_a_bad_option_is_one_line_and_exit_2_in_every_command(path):
    """Today `embed-smiles` prints `error: …` and `index build` click's usage block."""
    result = run(*path, "--no-such-option")
    assert result.exit_code == 2
    assert result.stdout == ""
    assert result.stderr.startswith("error: No such option '--no-such-option'")
    assert result.stderr.endswith(f" (see 'main {' '.join(path)} --help')\n")
    assert len(result.stderr.splitlines()) == 1


def test_a_missing_argument_is_one_line_naming_it():
    result = run("index", "build")
    assert result.exit_code == 2 and "Usage:" not in result.output
    assert result.stderr == "error: Missing argument 'PROFILES' (see 'main index build --help')\n"


def test_the_installed_entry_point_prints_one_line_on_stderr(tmp_path):
    script = Path(sys.executable).with_name("embedkit")
    if not script.exists():
        pytest.skip("the embedkit console script is not installed beside this python")
    proc = subprocess.run([script, "index", "build"], capture_output=True, text=True)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr == "error: Missing argument 'PROFILES' (see 'embedkit index build --help')\n"
    missing = subprocess.run(
        [script, "aggregate", tmp_path / "nope.csv", "-o", tmp_path / "out.parquet"],
        capture_output=True,
        text=True,
    )
    assert (
        missing.returncode == 2
        and missing.stderr == f"error: {tmp_path / 'nope.csv'}: no such file\n"
    )


def test_only_embedkit_input_errors_are_one_line_a_bug_keeps_its_traceback(
    inputs, tmp_path, monkeypatch
):
    """friendly_errors turned every ValueError into a one-line exit 2, internal bugs too."""
    from embedkit.errors import InputError

    module = importlib.import_module("embedkit.profiles.aggregate")

    def bug(*args, **kwargs):
        raise ValueError("an internal bug")

    monkeypatch.setattr(module, "aggregate", bug)
    args = ["aggregate", inputs["root"] / "wells.csv", "-o", tmp_path / "out.parquet"]
    result = run(*args)
    assert result.exit_code == 1 and isinstance(result.exception, ValueError)
    assert "error: an internal bug" not in result.output

    def refused(*args, **kwargs):
        raise InputError("a sentence the user can act on")

    monkeypatch.setattr(module, "aggregate", refused)
    result = run(*args)
    assert result.exit_code == 2
    assert result.stderr == "error: a sentence the user can act on\n"


def test_debug_shows_the_traceback_of_input_errors_too(tmp_path, monkeypatch):
    args = ["aggregate", tmp_path / "nope.csv", "-o", tmp_path / "out.parquet"]
    plain = run(*args)
    assert plain.exit_code == 2 and "Traceback" not in plain.output
    for result in (
        run("--debug", *args),
        run(*args, env={"EMBEDKIT_DEBUG": "1"}),
    ):
        assert result.exit_code == 2
        assert "Traceback (most recent call last)" in result.stderr
        assert "InputError" in result.stderr
        assert result.stderr.endswith(f"error: {tmp_path / 'nope.csv'}: no such file\n")
    assert "--debug" in run("--help").output


# --- start-up: no torch, timm or faiss to parse a command line ------------------------------

HEAVY = ("torch", "timm", "faiss")

STARTUP = """
import json, sys
from click.testing import CliRunner
from embedkit.cli import main
runs = [sys.argv[1:3], ["--help"], ["zoo", "list"], ["normalize", "--help"]]
runs += [["aggregate", sys.argv[1], "-o", sys.argv[2] + "/w.parquet"]]
runs += [["normalize", sys.argv[2] + "/w.parquet", "-o", sys.argv[2] + "/n.csv",
          "--method", "mad_robustize", "--by", "Metadata_Plate"]]
codes = [CliRunner().invoke(main, args).exit_code for args in runs[1:]]
print(json.dumps({"codes": codes, "heavy": [m for m in %r if m in sys.modules]}))
"""


def test_help_zoo_list_and_the_profile_commands_import_no_torch_timm_or_faiss(inputs, tmp_path):
    """Today every command takes 5-8 s to start: `embedkit --help` imported torch."""
    proc = subprocess.run(
        [sys.executable, "-c", STARTUP % (HEAVY,), inputs["root"] / "wells.csv", tmp_path],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report == {"codes": [0, 0, 0, 0, 0], "heavy": []}
    assert len(pd.read_csv(tmp_path / "n.csv")) == 6  # 6 wells, normalized per plate


@pytest.mark.parametrize("module", ["embedkit", "embedkit.cli", "embedkit.profiles.normalize"])
def test_importing_embedkit_its_cli_or_normalize_imports_no_torch(module):
    code = f"import sys, {module}; print([m for m in {HEAVY!r} if m in sys.modules])"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


def test_embedkit_load_is_still_there_lazily():
    import embedkit
    from embedkit.api import load

    assert embedkit.load is load and "load" in embedkit.__all__
    with pytest.raises(AttributeError):
        embedkit.no_such_thing  # noqa: B018


def test_the_parser_choices_equal_the_library_lists():
    from embedkit import embedder
    from embedkit.cli import options
    from embedkit.images import discovery
    from embedkit.molecules import jobs
    from embedkit.profiles.normalize import NORMALIZERS

    assert options.LAYOUTS == discovery.LAYOUTS
    assert options.NORMALIZE_METHODS == tuple(NORMALIZERS)
    assert options.PRECISIONS == embedder.PRECISIONS
    assert options.ON_ERROR_CHOICES == jobs.ON_ERROR_CHOICES


def test_ctrl_c_during_start_up_is_aborted_not_a_traceback(monkeypatch, capsys):
    """The console script imports the CLI itself, so a Ctrl-C while importing is one line."""
    import importlib

    from embedkit import _entry

    def interrupted(name, *args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(importlib, "import_module", interrupted)
    with pytest.raises(SystemExit) as exit_info:
        _entry.main()
    assert exit_info.value.code == 130
    assert capsys.readouterr().err == "Aborted!\n"
