"""What a user notices across commands: one option name for rows that cannot be used, one
way to save a plot, messages in the command line's words (never Python's), a readable
`zoo show`, the channel mapping on screen, and examples in `--help`."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import click
import numpy as np
import pandas as pd
import pytest
import torch
from click.testing import CliRunner
from conftest import nci_smiles
from test_images import tiny_config, write_rxrx_plate
from test_retrieval import COLUMNS, make_model, profiles

from embedkit.cli import main
from embedkit.errors import InputError
from embedkit.images.model import ImageModel


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.fixture(scope="module")
def setup(tmp_path_factory) -> dict:
    """A tiny model with decoders, its index, molecules with keys, profiles with a NaN."""
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("consistency")
    model = f"local-dir:{make_model(root / 'model', seed=3)}"
    profiles(6).to_parquet(root / "profiles.parquet")
    with_nan = profiles(6)
    with_nan.loc[2, COLUMNS[3]] = np.nan
    with_nan.to_parquet(root / "with_nan.parquet")
    molecules = pd.DataFrame({"smiles": nci_smiles(6), "Key": [f"p{i}" for i in range(6)]})
    molecules.to_csv(root / "molecules.csv", index=False)
    built = run("index", "build", root / "profiles.parquet", "-o", root / "index", "-m", model)
    assert built.exit_code == 0, built.output
    return {"root": root, "model": model, "index": root / "index"}


# -- one option for rows that cannot be used ----------------------------------------------


@pytest.mark.parametrize(
    ("command", "choices"),
    [
        (["embed-smiles"], "[nan|raise|drop]"),
        (["retrieve"], "[nan|raise|drop]"),
        (["index", "build"], "[raise|drop]"),
        (["index", "add"], "[raise|drop]"),
    ],
)
def test_every_command_names_invalid_rows_with_on_error(command, choices):
    """`--on-error` for molecules but `--on-nan` for profiles: one name, one vocabulary."""
    shown = run(*command, "--help").output
    assert f"--on-error {choices}" in shown
    assert "--on-nan" not in shown  # the old name is hidden


def test_index_build_on_error_drop_and_the_deprecated_on_nan_alias(setup, tmp_path):
    root, model = setup["root"], setup["model"]
    args = ["index", "build", root / "with_nan.parquet", "-m", model]
    refused = run(*args, "-o", tmp_path / "a")
    assert refused.exit_code == 2
    assert "pass --on-error drop to leave those rows out" in refused.output
    dropped = run(*args, "-o", tmp_path / "b", "--on-error", "drop")
    assert dropped.exit_code == 0, dropped.output
    assert "indexed 5 of 6 profiles" in dropped.stdout
    assert dropped.stderr == ""
    old = run(*args, "-o", tmp_path / "c", "--on-nan", "drop")
    assert old.exit_code == 0, old.output
    assert "indexed 5 of 6 profiles" in old.stdout
    assert old.stderr == "warning: --on-nan is deprecated; use --on-error drop\n"
    old_error = run(*args, "-o", tmp_path / "d", "--on-nan", "error")
    assert old_error.exit_code == 2 and "--on-error raise" in old_error.stderr
    both = run(*args, "-o", tmp_path / "e", "--on-nan", "error", "--on-error", "drop")
    assert both.exit_code == 2 and not (tmp_path / "e").exists()
    assert both.output.startswith("error: --on-nan error (deprecated) contradicts --on-error drop")
    added = run("index", "add", root / "with_nan.parquet", "-i", tmp_path / "b")
    assert added.exit_code == 2 and "--on-error drop" in added.output


def test_the_profile_on_error_choices_equal_the_library_list():
    from embedkit.cli.options import PROFILE_ON_ERROR_CHOICES
    from embedkit.retrieval.index import ON_ERROR_CHOICES

    assert PROFILE_ON_ERROR_CHOICES == ON_ERROR_CHOICES


def test_the_python_api_takes_raise_and_still_takes_error(setup):
    from embedkit.api import load
    from embedkit.retrieval.index import build_index

    embedder = load(setup["model"], device="cpu", with_heads=True)
    table = pd.read_parquet(setup["root"] / "with_nan.parquet")
    spaces, run_info = embedder.model.extra["feature_spaces"], embedder.run_info
    for value in ("raise", "error"):
        with pytest.raises(InputError, match="--on-error drop"):
            build_index(table, spaces, run_info, "t", metric="likelihood", on_nan=value)
    index, _ = build_index(table, spaces, run_info, "t", metric="likelihood", on_nan="drop")
    assert index.count == 5


# -- plots ------------------------------------------------------------------------------


def test_a_plot_is_written_in_the_format_of_its_suffix_and_others_are_refused(setup, tmp_path):
    """`--plot r.xlsx` wrote a PNG named .xlsx."""
    root = setup["root"]
    args = ["evaluate", "retrieval", root / "molecules.csv", "-i", setup["index"]]
    args += ["--key", "Metadata_Key", "--query-key", "Key"]
    refused = run(*args, "--plot", tmp_path / "r.xlsx", "-o", tmp_path / "m.json")
    assert refused.exit_code == 2
    assert refused.output.count("\n") == 1 and refused.output.startswith("error: ")
    assert ".png, .pdf or .svg" in refused.output and "not .xlsx" in refused.output
    assert not any(tmp_path.iterdir())  # refused before anything ran
    magic = {"svg": b"<svg", "pdf": b"%PDF", "png": b"\x89PNG"}
    for suffix, start in magic.items():
        plot = tmp_path / f"ranks.{suffix.upper() if suffix == 'pdf' else suffix}"
        done = run(*args, "--plot", plot)
        assert done.exit_code == 0, done.output
        head = plot.read_bytes()[:400]
        assert start in head, (suffix, head[:40])


def test_plot_saving_has_one_home(tmp_path):
    from embedkit.plots import PLOT_FORMATS, plot_format
    from embedkit.retrieval.metrics import plot_rank_histogram

    assert PLOT_FORMATS == ("png", "pdf", "svg")
    assert plot_format("a/b.SVG") == "svg"
    for bad in ("r.xlsx", "r", "r.jpg"):
        with pytest.raises(InputError, match=r"\.png, \.pdf or \.svg"):
            plot_rank_histogram({"m": np.array([1, 2])}, 4, tmp_path / bad)
    assert not any(tmp_path.iterdir())
    for path in (Path(__file__).parents[1] / "embedkit").rglob("*.py"):
        if path.name != "plots.py":
            assert ".savefig(" not in path.read_text(), f"{path} saves a figure itself"


# -- messages in the command line's words ---------------------------------------------------

# Python leaking into a message: a numpy repr, a keyword argument, None, a list or tuple repr.
PYTHON_ISMS = re.compile(
    r"\bnp\.[a-z]+\d*\(|\b[a-z]+(?:_[a-z]+)+=|=(?:True|False)\b|\bNone\b|\bonly none\b"
    r"|\(known: none\)|\[['\"]|\(['\"][^)]*['\"], ['\"]"
)


def assert_words(output: str) -> None:
    assert output.startswith("error: ") and output.count("\n") == 1, output
    assert not PYTHON_ISMS.search(output), output


def test_the_pattern_catches_what_users_saw():
    for leaked in (
        "error: B02 exists; pass overwrite=True to replace it",
        "error: group ['Metadata_Plate']=np.int64(1) has 1 control rows",
        "error: the plate has only none; map them",
        "error: n_components=50 but the 12 control rows span only 3 dimensions",
        "error: columns are missing: ['Cells_A', 'Cells_B']",
        "error: group Metadata_Plate,Metadata_Well=('1', 'B03') has 0 control rows",
        "error: cell line None, not 'RPE'",
    ):
        assert PYTHON_ISMS.search(leaked), leaked


def test_common_error_paths_speak_the_command_lines_words(setup, tmp_path):
    root, model, index = setup["root"], setup["model"], setup["index"]
    wells = pd.DataFrame(
        {
            "Metadata_Plate": [1] * 4 + [2] * 4,  # numbers: group keys are numpy scalars
            "Metadata_Well": ["B02", "B03"] * 4,
            "Metadata_PertType": ["negcon", "negcon", "trt", "trt", "negcon", "trt", "trt", "trt"],
            **{f"Cells_F{i}": np.arange(8.0) * (i + 1) % 5 for i in range(3)},
        }
    )
    wells.to_parquet(root / "wells.parquet")
    profiles(4).drop(columns=COLUMNS[2:]).to_parquet(root / "few_columns.parquet")
    negcon = "Metadata_PertType == 'negcon'"
    out = iter(tmp_path / f"out{i}.parquet" for i in range(100))
    cases = [
        ["normalize", root / "wells.parquet", "-o", next(out), "--method", "standardize",
         "--controls", negcon, "--by", "Metadata_Plate"],
        ["normalize", root / "wells.parquet", "-o", next(out), "--method", "standardize",
         "--controls", negcon, "--by", "Metadata_Plate,Metadata_Well"],
        ["normalize", root / "wells.parquet", "-o", next(out), "--method", "tvn",
         "--n-components", 50],
        ["normalize", root / "wells.parquet", "-o", next(out), "--method", "standardize",
         "--by", "Metadata_Nope"],
        ["aggregate", root / "wells.parquet", "-o", next(out), "--strata", "Metadata_Nope"],
        ["index", "add", root / "few_columns.parquet", "-i", index],
        ["embed-smiles", root / "wells.parquet", "-o", next(out), "-m", model, "-s", "Nope"],
        ["embed-smiles", root / "molecules.csv", "-o", next(out), "-m", "no-such-model"],
        ["retrieve", root / "molecules.csv", "-i", index, "-k", 100, "-o", next(out)],
        ["evaluate", "retrieval", root / "molecules.csv", "-i", index, "--key", "Metadata_No"],
        ["zoo", "show", "no-such-model"],
        ["graph", "info", root / "molecules.csv"],  # numpy said: pass allow_pickle=
    ]  # fmt: skip
    existing = next(out)
    existing.write_text("mine")
    cases.append(["aggregate", root / "wells.parquet", "-o", existing])
    for args in cases:
        result = run(*args)
        assert result.exit_code == 2, (args, result.output)
        assert_words(result.output)
    assert "pass --overwrite to replace it" in result.output


def test_image_errors_speak_the_command_lines_words(tmp_path):
    from embedkit.images.channels import plan_channels

    with pytest.raises(InputError) as refused:
        plan_channels(["DNA", "RNA"], [])
    assert_words(f"error: {refused.value}\n")
    assert "the plate has no channel at all" in str(refused.value)
    torch.manual_seed(0)
    tokens = ImageModel(tiny_config(cell_line_tokens=1, cell_line_dim=8))
    folder = tokens.save_pretrained(tmp_path / "m")
    write_rxrx_plate(tmp_path / "exp", "Plate1", ["B02"], sites=1, size=32)
    result = run(
        "embed-images", tmp_path / "exp", "-o", tmp_path / "emb", "-m", f"local-dir:{folder}"
    )
    assert result.exit_code == 2
    assert_words(result.output)
    assert "--cell-line NAME or --cell-line-embeddings FILE" in result.output


def test_a_resume_refusal_names_settings_without_python_reprs(tmp_path):
    """`--resume` with another cell line said `cell_line None, not 'RPE'`."""
    torch.manual_seed(0)
    folder = ImageModel(tiny_config()).save_pretrained(tmp_path / "m")
    write_rxrx_plate(tmp_path / "exp", "Plate1", ["B02"], sites=1, size=32)
    args = ["embed-images", tmp_path / "exp", "-o", tmp_path / "emb", "-m", f"local-dir:{folder}"]
    assert run(*args, "-n", 0).exit_code == 0
    refused = run(*args, "-n", 0, "--resume", "--cell-line", "RPE")
    assert refused.exit_code == 2
    assert_words(refused.output)
    assert "cell_line unset, not 'RPE'" in refused.output


def test_converters_name_the_keys_not_a_python_list():
    from embedkit.checkpoints import key_problems

    assert key_problems(["a.w", "a.b"], []) == "missing a.w, a.b"
    text = key_problems([], ["x", "y", "z", "u"], ["k"])
    assert text == "unexpected x, y, z and 1 more; wrong shape k"


# -- zoo show -------------------------------------------------------------------------------


def test_zoo_show_prints_a_card_and_json_for_scripts():
    from embedkit.zoo import get_card

    name = "infoalign-gin-lincs-small"
    shown = run("zoo", "show", name)
    assert shown.exit_code == 0, shown.output
    text = shown.output
    assert not text.lstrip().startswith("{") and '"architecture":' not in text
    lines = text.splitlines()
    assert lines[0] == name
    for label in ("task: molecules", "architecture: infoalign-gin (300-d", "licence: "):
        assert any(line.strip().startswith(label) for line in lines), label
    for section in ("Input:", "Provenance:", "Metrics:", "Usage:"):
        assert section in lines, section
    assert "  type: SMILES" in lines
    assert any(line.startswith("embedkit embed-smiles") for line in lines)
    raw = run("zoo", "show", name, "--json")
    assert raw.exit_code == 0
    assert json.loads(raw.output) == get_card(name).to_dict()


def test_zoo_show_shortens_long_lists():
    shown = run("zoo", "show", "vit-s16-cellpaint-demo")
    assert shown.exit_code == 0, shown.output
    assert "  channels: DNA, ER, RNA, AGP, Mito" in shown.output.splitlines()
    assert "[" not in shown.output.split("\nUsage:")[0]  # no Python lists before the snippet


# -- the channel mapping on screen ---------------------------------------------------------


def test_embed_images_prints_the_channel_mapping_it_chose(tmp_path):
    torch.manual_seed(0)
    folder = ImageModel(tiny_config()).save_pretrained(tmp_path / "m")
    write_rxrx_plate(tmp_path / "exp", "Plate1", ["B02"], sites=1, size=32)
    args = ["embed-images", tmp_path / "exp", "-o", tmp_path / "emb", "-m", f"local-dir:{folder}"]
    result = run(*args, "-n", 0)
    assert result.exit_code == 0, result.output
    mapping = "channels: DNA←w1, ER←w2, RNA←w4, AGP←w3, Mito←w5"
    assert mapping in result.stderr
    assert mapping not in result.stdout  # stdout keeps only the summary line
    mapped = run(*args, "-n", 0, "--overwrite", "--channel-map", "DNA=w2,ER=w1")
    assert "channels: DNA←w2, ER←w1, RNA←w4, AGP←w3, Mito←w5" in mapped.stderr


# -- examples in --help -----------------------------------------------------------------------


def _subcommand(args: list[str]) -> click.Command:
    command: click.Command = main
    for word in args:
        if not isinstance(command, click.Group) or word not in command.commands:
            break
        command = command.commands[word]
    return command


@pytest.mark.parametrize("command", ["embed-smiles", "retrieve", "evaluate", "zoo"])
def test_help_shows_examples_that_parse(command):
    shown = run(command, "--help")
    assert shown.exit_code == 0
    examples = [
        line.strip().rstrip("\\").strip()
        for line in shown.output.splitlines()
        if line.strip().startswith(f"embedkit {command}")
    ]
    assert examples, shown.output
    for example in examples:  # every option an example uses exists
        words = shlex.split(example)[1:]
        target = _subcommand(words)
        known = {name for p in target.params for name in getattr(p, "opts", [])}
        used = [w for w in words if w.startswith("-")]
        assert set(used) <= known, (example, set(used) - known)
