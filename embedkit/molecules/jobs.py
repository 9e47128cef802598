"""The file-level molecule job behind `embedkit embed-smiles`: read a table of SMILES, embed
it, write one row per input row (atomically) and return a summary."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from embedkit import __version__
from embedkit.errors import InputError, NothingEmbeddedError
from embedkit.h5ad import INVALID_KEY
from embedkit.io import embeddings_frame, read_table, write_table
from embedkit.outputs import check_output_file, summary_line
from embedkit.provenance import input_fields, portable

if TYPE_CHECKING:  # torch is imported where a model runs, not to parse a command line
    from embedkit.molecules.embedder import MoleculeEmbedder

ON_ERROR_CHOICES = ("nan", "raise", "drop")


class InvalidMoleculeError(InputError):
    """Raised under `--on-error raise` at the first SMILES RDKit cannot use."""


@dataclass
class EmbedSummary:
    rows: int
    embedded: int
    invalid: int
    dropped: int
    seconds: float
    output: Path
    renamed: dict[str, str] = field(default_factory=dict)  # input columns kept under new names
    column: SmilesColumn | None = None

    @property
    def per_second(self) -> float:
        return self.rows / self.seconds if self.seconds > 0 else float("nan")

    def line(self) -> str:
        dropped = f", {self.dropped} dropped" if self.dropped else ""
        counts = f"{self.rows} rows in, {self.embedded} embedded, {self.invalid} invalid{dropped}"
        rate = f"{self.per_second:,.0f} molecules/s"
        kept = ", ".join(f"{a} as {b}" for a, b in self.renamed.items())
        details = [
            self.column.describe() if self.column else "",
            f"input columns kept under new names: {kept}" if kept else "",
            self._h5ad_note(),
        ]
        return summary_line(counts, self.seconds, self.output, details, rate=rate)

    def _h5ad_note(self) -> str:
        """Where the invalid rows of an .h5ad went (they are not in X: `embedkit.h5ad`)."""
        left_out = self.invalid - self.dropped
        if left_out <= 0 or Path(self.output).suffix.lower() != ".h5ad":
            return ""
        return f"invalid rows left out of X, listed in uns['{INVALID_KEY}']"

    def raise_if_nothing_embedded(self) -> None:
        """Every row invalid: NothingEmbeddedError (the CLI exits 2 after the summary)."""
        if not self.rows or self.embedded:
            return
        if self.dropped:
            raise NothingEmbeddedError(
                f"none of the {self.rows} rows could be embedded (all dropped)"
            )
        where = (
            f"uns['{INVALID_KEY}'] of {self.output}"
            if Path(self.output).suffix.lower() == ".h5ad"
            else f"the Metadata_Error column of {self.output}"
        )
        raise NothingEmbeddedError(
            f"none of the {self.rows} rows could be embedded; the reason for each is in {where}"
        )


# Column names taken for SMILES without looking at the values, best first (any case).
SMILES_NAMES = ("smiles", "metadata_smiles", "canonical_smiles", "isomeric_smiles")
SNIFF_ROWS = 200  # rows per column RDKit parses to find a SMILES column by its content


@dataclass
class SmilesColumn:
    """The column SMILES are read from, and how it was chosen (for the summary)."""

    name: str
    how: str  # "given", "by name" or "by content (N of M sampled rows parse)"

    def describe(self) -> str:
        return f"SMILES from column {self.name!r} ({self.how})"


def pick_smiles_column(table: pd.DataFrame, requested: str | None, source: str) -> SmilesColumn:
    """The requested column; else one named like SMILES (`smiles`, `canonical_smiles`,
    `*_smiles`… in any case); else the column where RDKit parses most of a sample of rows,
    if it parses at least half of them. Anything else is refused with the column list:
    embedding an ID or a name column as molecules (`B` as boron) is never silent."""
    columns = [str(c) for c in table.columns]
    shown = ", ".join(columns[:20]) + (f" … ({len(columns)} in all)" if len(columns) > 20 else "")
    if requested is not None:
        if requested not in columns:
            raise InputError(f"{source}: no column {requested!r}; columns are: {shown}")
        return SmilesColumn(requested, "given")
    lower = {c.lower(): c for c in reversed(columns)}  # the first of equal spellings
    for name in SMILES_NAMES:
        if name in lower:
            return SmilesColumn(lower[name], "by name")
    for column in columns:
        if column.lower().endswith("_smiles") or column.lower().startswith("smiles_"):
            return SmilesColumn(column, "by name")
    best, best_parsed, best_tried = None, 0, 0
    for column in columns:
        parsed, tried = _parse_rate(table[column])
        if parsed > best_parsed:
            best, best_parsed, best_tried = column, parsed, tried
    if best is None or 2 * best_parsed < best_tried:
        found = f"; the best, {best!r}, parses {best_parsed} of {best_tried} rows" if best else ""
        raise InputError(
            f"{source}: no column holds SMILES (none is named smiles, canonical_smiles or "
            f"*_smiles, and RDKit parses too few values of any{found}); columns are: {shown}. "
            "Name the column with --smiles-column"
        )
    return SmilesColumn(best, f"by content: {best_parsed} of {best_tried} sampled rows parse")


def _parse_rate(values: pd.Series) -> tuple[int, int]:
    """(rows RDKit parses, non-empty rows tried) among the first SNIFF_ROWS non-empty values."""
    from rdkit import Chem

    if values.dtype != object:
        return 0, 0
    sample = [v.strip() for v in values.head(10 * SNIFF_ROWS) if isinstance(v, str) and v.strip()]
    sample = sample[:SNIFF_ROWS]
    parsed = 0
    for text in sample:
        if text.replace(".", "", 1).replace("-", "", 1).isdigit():
            continue  # a number, never a molecule worth embedding
        if len(text) <= 1000 and "\0" not in text and Chem.MolFromSmiles(text) is not None:
            parsed += 1
    return parsed, len(sample)


def read_smiles_table(
    path: str | Path, smiles_column: str | None, id_column: str | None
) -> tuple[pd.DataFrame, SmilesColumn]:
    """A non-empty table, its SMILES column, and a checked id column (embed, retrieve)."""
    table = read_table(Path(path), keep_blank_rows=True)  # a blank line is an invalid row
    if len(table) == 0:
        raise InputError(f"{path}: the table has a header but no rows")
    column = pick_smiles_column(table, smiles_column, str(path))
    if id_column is not None and id_column not in table.columns:
        raise InputError(f"{path}: no id column {id_column!r}")
    return table, column


# The columns embedkit writes itself; an input column of the same name is kept, renamed.
OWN_COLUMNS = (
    "Metadata_ID",
    "Metadata_SMILES",
    "Metadata_Model",
    "Metadata_Valid",
    "Metadata_Error",
)


def metadata_frame(
    table: pd.DataFrame, smiles_column: str, id_column: str | None
) -> tuple[pd.DataFrame, dict[str, str]]:
    """Carry every input column, renamed into the pycytominer `Metadata_` namespace, and
    the renames that kept an input column from being overwritten by one of embedkit's own
    (`Valid` → `Metadata_Valid_input`, …): a user's column is never replaced nor dropped."""
    columns: dict[str, pd.Series] = {}
    if id_column is not None:
        columns["Metadata_ID"] = table[id_column].astype(str)
    columns["Metadata_SMILES"] = table[smiles_column]
    taken = set(OWN_COLUMNS) | {str(c) for c in table.columns if str(c).startswith("Metadata_")}
    renamed = {}
    for column in table.columns:
        if column in (smiles_column, id_column):
            continue
        name = column if str(column).startswith("Metadata_") else f"Metadata_{column}"
        if name in OWN_COLUMNS or name in columns:
            base, n = f"{name}_input", 1
            name = base
            while name in taken or name in columns:
                n += 1
                name = f"{base}{n}"
            renamed[str(column)] = name
        columns[name] = table[column]
    # one concat, not one insert per column (10,000 columns: 12.5 s and a flood of warnings)
    meta = pd.concat(columns, axis=1) if columns else pd.DataFrame(index=table.index)
    return meta, renamed


def embed_smiles_file(
    input_path: str | Path,
    output_path: str | Path,
    embedder: MoleculeEmbedder,
    smiles_column: str | None = None,
    id_column: str | None = None,
    batch_size: int = 256,
    num_workers: int | None = None,
    on_error: str = "nan",
    progress: bool = False,
    overwrite: bool = False,
) -> EmbedSummary:
    """Read, embed and write atomically; one output row per input row unless `drop`.
    An existing output is refused unless `overwrite`."""
    if on_error not in ON_ERROR_CHOICES:
        raise ValueError(f"on_error must be one of {ON_ERROR_CHOICES}, got {on_error!r}")
    start = time.perf_counter()
    input_path, output_path = Path(input_path), check_output_file(output_path, overwrite)
    table, chosen = read_smiles_table(input_path, smiles_column, id_column)
    column = chosen.name
    smiles = table[column].tolist()
    result = embedder.embed(
        smiles, batch_size=batch_size, num_workers=num_workers, progress=progress
    )
    invalid = np.flatnonzero(~result.valid)
    if on_error == "raise" and len(invalid):
        row = int(invalid[0])
        raise InvalidMoleculeError(
            f"{input_path}: row {row + 1} ({column}={str(smiles[row])[:60]!r}): "
            f"{result.errors[row]}; {len(invalid)} invalid rows in all; nothing was written"
        )
    meta, renamed = metadata_frame(table, column, id_column)
    own = pd.DataFrame(
        {
            "Metadata_Model": portable(embedder.run_info.get("model_id", "")),
            "Metadata_Valid": result.valid,
            "Metadata_Error": result.errors,
        },
        index=meta.index,
    )
    meta = pd.concat([meta, own], axis=1)
    out = embeddings_frame(meta, result.embeddings)
    dropped = 0
    if on_error == "drop":
        out = out[result.valid].reset_index(drop=True)
        dropped = len(invalid)
    run_info = {
        "embedkit_version": __version__,
        **embedder.run_info,
        **input_fields(input_path),
        "smiles_column": column,
        "smiles_column_chosen": chosen.how,
        "renamed_columns": renamed,
        "preprocessing": "RDKit parse; OGB 9 atom / 3 bond features; embedding = mu of q(z|x)",
        "precision": embedder.precision,
    }
    write_table(out, output_path, run_info)
    return EmbedSummary(
        rows=len(table),
        embedded=int(result.valid.sum()),
        invalid=len(invalid),
        dropped=dropped,
        seconds=time.perf_counter() - start,
        output=output_path,
        renamed=renamed,
        column=chosen,
    )
