"""Few-shot splits as the seed paper makes them: k shots per perturbation for training, a
validation set for model selection (the reference code uses 2 per perturbation), the rest
for testing, once per seed.

Rows are sites (or profiles). Every row has a label, a plate and a batch. Three ways to
draw the k training shots of a perturbation:

* ``random`` (the paper's main protocol, Table 1, and its released U2OS split): k sites
  drawn from all plates; validation and test are the remaining sites, drawn the same way.
* ``same-plate`` (the paper's split condition 1): the k shots come from ONE plate; the
  validation and test sites come from the perturbation's other plates.
* ``across-batches`` (split condition 2): the k shots are spread over as many batches as
  possible (one per batch in a random batch order, then round again); the validation and
  test sites come from the plates not used for training.

In the two plate-aware conditions, sites on a training plate that are not training shots
are left out (``unused``), so a perturbation is always tested on plates it was not
trained on. A perturbation with fewer sites than ``k + validation`` is excluded (counted
and listed), as is one the condition cannot serve (no plate holding k of its sites, or
too few sites off its training plates); exclusion is decided over all seeds at once, so
every seed classifies the same perturbations.

Each perturbation's draw depends only on (seed, its name): adding or removing another
perturbation does not change it. Splits are plain tables (`split_table`) and read back
(`read_split_file`), so a run can be reproduced from its `splits.csv`, and the paper's
released U2OS split (``u2os_data.csv``, column ``split1``) is read the same way.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from embedkit.errors import InputError

PAPER_SEEDS = (42, 229, 1234, 2025, 114514)
CONDITIONS = ("random", "same-plate", "across-batches")
ROLES = ("train", "val", "test", "unused", "excluded")
ROLE_SPELLINGS = {  # how split files write a role
    "train": "train",
    "training": "train",
    "val": "val",
    "valid": "val",
    "validation": "val",
    "test": "test",
    "testing": "test",
    "unused": "unused",
    "excluded": "excluded",
}
SPLIT_COLUMNS = ("Metadata_Split", "split", "split1")  # tried in order
SEED_COLUMN = "Metadata_Seed"
SPLIT_COLUMN = "Metadata_Split"
SHOW = 8  # names listed in a message


@dataclass
class Splits:
    """One assignment of roles per seed over the same rows, and what was left out."""

    seeds: list[int]
    roles: dict[int, np.ndarray]  # seed → (n_rows,) role per row (see ROLES)
    labels: list[str]  # the perturbations classified (sorted)
    excluded: dict[str, str] = field(default_factory=dict)  # perturbation → why
    shots: int | None = None
    validation: int | None = None
    condition: str = "random"
    source: str = "drawn"  # "drawn" or the split file's path
    notes: list[str] = field(default_factory=list)

    def indices(self, seed: int, role: str) -> np.ndarray:
        return np.flatnonzero(self.roles[seed] == role)

    def counts(self, seed: int) -> dict[str, int]:
        values, counts = np.unique(self.roles[seed], return_counts=True)
        return {str(v): int(c) for v, c in zip(values, counts, strict=True)}

    def summary(self) -> dict:
        """What report.json says about the splits."""
        excluded = sorted(self.excluded)
        return {
            "source": self.source,
            "condition": self.condition,
            "shots": self.shots,
            "validation": self.validation,
            "seeds": self.seeds,
            "classes": len(self.labels),
            "excluded_count": len(excluded),
            "excluded": {name: self.excluded[name] for name in excluded},
            "sites": {str(seed): self.counts(seed) for seed in self.seeds},
            "notes": self.notes,
        }


def check_seeds(n: int) -> list[int]:
    """The first `n` of the paper's seeds."""
    if not 1 <= n <= len(PAPER_SEEDS):
        raise InputError(
            f"--seeds {n}: choose 1 to {len(PAPER_SEEDS)} (the paper's seeds "
            f"{', '.join(map(str, PAPER_SEEDS))}, taken in order)"
        )
    return list(PAPER_SEEDS[:n])


def _rng(seed: int, label: str) -> np.random.Generator:
    return np.random.default_rng([seed, zlib.crc32(label.encode("utf-8"))])


def _draw(
    rows: np.ndarray,
    plates: np.ndarray,
    batches: np.ndarray,
    shots: int,
    validation: int,
    condition: str,
    rng: np.random.Generator,
) -> tuple[dict[str, np.ndarray], str]:
    """The rows of one perturbation split into roles, or ({}, why it cannot be)."""
    if condition == "random":
        order = rng.permutation(rows)
        return {
            "train": order[:shots],
            "val": order[shots : shots + validation],
            "test": order[shots + validation :],
        }, ""
    if condition == "same-plate":
        names, counts = np.unique(plates[rows], return_counts=True)
        candidates = [
            p
            for p, c in zip(names, counts, strict=True)
            if c >= shots and len(rows) - c >= validation
        ]
        if not candidates:
            return {}, (
                f"same-plate: no plate holds {shots} of its sites with {validation} more "
                "on other plates"
            )
        plate = candidates[int(rng.integers(len(candidates)))]
        on_plate = rows[plates[rows] == plate]
        train = rng.choice(on_plate, shots, replace=False)
        unused = np.setdiff1d(on_plate, train)
        off = rng.permutation(rows[plates[rows] != plate])
    else:  # across-batches
        by_batch = {
            b: list(rng.permutation(rows[batches[rows] == b])) for b in np.unique(batches[rows])
        }
        order = list(rng.permutation(sorted(by_batch)))
        train_list: list = []
        while len(train_list) < shots:
            for b in order:
                if by_batch[b] and len(train_list) < shots:
                    train_list.append(by_batch[b].pop())
        train = np.asarray(train_list, dtype=rows.dtype)
        used_plates = np.unique(plates[train])
        on_plates = rows[np.isin(plates[rows], used_plates)]
        unused = np.setdiff1d(on_plates, train)
        off = rng.permutation(rows[~np.isin(plates[rows], used_plates)])
        if len(off) < validation:
            return {}, (
                f"across-batches: {len(off)} of its sites lie off its {len(used_plates)} "
                f"training plate(s), {validation} needed for validation"
            )
    return {
        "train": train,
        "val": off[:validation],
        "test": off[validation:],
        "unused": unused,
    }, ""


def make_splits(
    labels: Sequence[str | None],
    plates: Sequence[str],
    batches: Sequence[str],
    shots: int,
    validation: int = 2,
    seeds: Sequence[int] = PAPER_SEEDS,
    condition: str = "random",
) -> Splits:
    """Draw one split per seed (see the module docstring). Rows without a label are
    `excluded`; so are the rows of excluded perturbations."""
    if condition not in CONDITIONS:
        raise InputError(f"split condition {condition!r}: choose one of {', '.join(CONDITIONS)}")
    if shots < 1:
        raise InputError(f"--shots must be at least 1, got {shots}")
    if validation < 0:
        raise InputError(f"--validation must be 0 or more, got {validation}")
    labels_arr = np.asarray([None if v is None else str(v) for v in labels], dtype=object)
    plates_arr = np.asarray([str(p) for p in plates], dtype=object)
    batches_arr = np.asarray([str(b) for b in batches], dtype=object)
    if not len(labels_arr) == len(plates_arr) == len(batches_arr):
        raise ValueError("labels, plates and batches must have one value per row")
    groups: dict[str, np.ndarray] = {}
    for name in sorted({v for v in labels_arr if v is not None}):
        groups[name] = np.flatnonzero(labels_arr == name)
    need = shots + validation
    excluded = {
        name: f"{len(rows)} site(s), fewer than --shots {shots} + --validation {validation}"
        for name, rows in groups.items()
        if len(rows) < need
    }
    drawn: dict[int, dict[str, dict[str, np.ndarray]]] = {seed: {} for seed in seeds}
    for name, rows in groups.items():
        if name in excluded:
            continue
        for seed in seeds:
            parts, why = _draw(
                rows, plates_arr, batches_arr, shots, validation, condition, _rng(seed, name)
            )
            if why:
                excluded[name] = why
                break
            drawn[seed][name] = parts
    roles = {}
    for seed in seeds:
        role = np.full(len(labels_arr), "excluded", dtype=object)
        for name, parts in drawn[seed].items():
            if name in excluded:
                continue
            for part, rows in parts.items():
                role[rows] = part
        roles[seed] = role.astype(str)
    kept = [name for name in groups if name not in excluded]
    if not kept:
        raise InputError(
            f"no perturbation can be split: all {len(groups)} are excluded "
            f"({_examples(excluded)}); lower --shots or --validation"
        )
    return Splits(
        list(seeds),
        roles,
        kept,
        excluded,
        shots=shots,
        validation=validation,
        condition=condition,
    )


def _examples(excluded: dict[str, str]) -> str:
    items = list(excluded.items())[:3]
    return "; ".join(f"{name}: {why}" for name, why in items)


def split_table(keys: pd.DataFrame, label_column: str, labels, splits: Splits) -> pd.DataFrame:
    """The long table written to RUN_DIR/splits.csv: `keys` (Metadata_ columns identifying
    each row), the label, then one row per (seed, row) with its role."""
    parts = []
    for seed in splits.seeds:
        part = keys.reset_index(drop=True).copy()
        part[label_column] = list(labels)
        part[SEED_COLUMN] = seed
        part[SPLIT_COLUMN] = splits.roles[seed]
        parts.append(part)
    return pd.concat(parts, ignore_index=True)


def split_column_of(table: pd.DataFrame, path: str | Path, column: str | None = None) -> str:
    """The column of a split file that holds the roles."""
    if column is not None:
        if column not in table.columns:
            raise InputError(
                f"{path} has no column {column!r} (--split-column); its columns: "
                f"{', '.join(map(str, table.columns))}"
            )
        return column
    for candidate in SPLIT_COLUMNS:
        if candidate in table.columns:
            return candidate
    raise InputError(
        f"{path}: no split column ({', '.join(SPLIT_COLUMNS)}); name it with --split-column"
    )


def parse_roles(values, path: str | Path, column: str) -> np.ndarray:
    """train/valid/test (any case, and the spellings in ROLE_SPELLINGS) → ROLES."""
    text = pd.Series(values).astype(str).str.strip().str.lower()
    bad = sorted(set(text) - set(ROLE_SPELLINGS))
    if bad:
        raise InputError(
            f"{path} column {column!r} holds {', '.join(map(repr, bad[:SHOW]))}; a split file "
            "says train, valid (or val) or test for every row"
        )
    return text.map(ROLE_SPELLINGS).to_numpy(dtype=str)


def splits_from_roles(
    labels: Sequence[str | None],
    roles_by_seed: dict[int | None, np.ndarray],
    seeds: Sequence[int],
    source: str,
) -> Splits:
    """Splits read from a file: one role per row (per seed when the file has seeds).

    A perturbation without a training row (in any seed) is excluded; a file without seeds
    gives every seed the same split (the seeds then differ only in the training's own
    randomness, as in the reference code with its released split)."""
    labels_arr = np.asarray([None if v is None else str(v) for v in labels], dtype=object)
    if None in roles_by_seed:
        roles_by_seed = {seed: roles_by_seed[None] for seed in seeds}
    missing = [s for s in seeds if s not in roles_by_seed]
    if missing:
        have = ", ".join(map(str, sorted(roles_by_seed)))
        raise InputError(
            f"{source} holds splits for seeds {have}, not {', '.join(map(str, missing))}; "
            "choose --seeds accordingly"
        )
    names = sorted({v for v in labels_arr if v is not None})
    code_of = {name: i for i, name in enumerate(names)}
    codes = np.array([code_of.get(v, -1) if v is not None else -1 for v in labels_arr])
    labelled = codes >= 0

    def per_class(role: np.ndarray, which: str) -> np.ndarray:
        chosen = labelled & (np.asarray(role) == which)
        return np.bincount(codes[chosen], minlength=len(names))

    excluded: dict[str, str] = {}
    for seed in seeds:
        for i in np.flatnonzero(per_class(roles_by_seed[seed], "train") == 0):
            excluded.setdefault(names[i], f"no training site in the split file (seed {seed})")
    drop = ~labelled | np.isin(codes, [code_of[n] for n in excluded])
    roles = {}
    for seed in seeds:
        role = np.asarray(roles_by_seed[seed], dtype=object).copy()
        role[drop] = "excluded"
        roles[seed] = role.astype(str)
    kept = [n for n in names if n not in excluded]
    if not kept:
        raise InputError(f"{source}: no perturbation has a training site in the split file")
    kept_codes = np.array([code_of[n] for n in kept])
    shots = {int(c) for s in seeds for c in per_class(roles[s], "train")[kept_codes]}
    validation = {int(c) for s in seeds for c in per_class(roles[s], "val")[kept_codes]}
    return Splits(
        list(seeds),
        roles,
        kept,
        excluded,
        shots=shots.pop() if len(shots) == 1 else None,
        validation=validation.pop() if len(validation) == 1 else None,
        condition="file",
        source=source,
    )
