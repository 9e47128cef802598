"""A FAISS index of scaled profiles, with its metadata table and a manifest beside it.

Folder layout (what `embedkit index build` writes):

    index.faiss        the vectors (FAISS owns them; inner-product metric)
    metadata.parquet   one row per vector, keyed by `Profile_Row` (= FAISS id)
    reference.npz      the reference molecules (SMILES, decoded logits on the shared
                       columns) the calibrated scorings and the hubness diagnostics use
    manifest.json      format, model id/revision/weights sha256, feature space (columns,
                       min/max), metric and its calibration, index type, count, and the
                       sha256 of the data files

Exact search (`IndexFlatIP`) is the default up to a million profiles; IVF and HNSW are
there for larger sets (their recall against exact search is in benchmarks/).
The folder is written beside its destination and swapped in, so a crash never leaves a
half-written index; loading re-checks both files' sha256.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import re
from dataclasses import dataclass
from pathlib import Path

import faiss
import numpy as np
import pandas as pd

from embedkit import __version__
from embedkit.errors import ChecksumError, IndexMismatchError, InputError
from embedkit.io import atomic_dir, read_parquet, recover_dir
from embedkit.retrieval.activity import ACTIVITY_COLUMN, ActivityScale
from embedkit.retrieval.reference import (
    REFERENCE_FILE,
    ReferenceSet,
    load_reference,
    save_reference,
)
from embedkit.retrieval.scoring import (
    CALIBRATED,
    DEFAULT_METRIC,
    Calibration,
    candidate_vectors,
    check_metric,
)
from embedkit.retrieval.spaces import (
    METADATA_PREFIX,
    SpaceMatch,
    match_columns,
    match_feature_space,
    nan_rows,
    profile_feature_columns,
    scale_profiles,
)
from embedkit.zoo import sha256_of

FORMAT = "embedkit-profile-index/2"
# /1 had no reference set and only likelihood/cosine scoring; it is read as it was.
READABLE_FORMATS = ("embedkit-profile-index/1", FORMAT)
INDEX_FILE = "index.faiss"
METADATA_FILE = "metadata.parquet"
MANIFEST_FILE = "manifest.json"
ROW_COLUMN = "Profile_Row"
INDEX_TYPES = ("auto", "flat", "ivf", "hnsw")
EXACT_LIMIT = 1_000_000
# What to do with profiles missing features (`--on-error`); "error" is the old name of "raise".
ON_ERROR_CHOICES = ("raise", "drop")
MODEL_KEYS = ("model_id", "revision", "weights_sha256")
DATA_FILES = (INDEX_FILE, METADATA_FILE)  # what the manifest's "files" must list, exactly
# ... plus REFERENCE_FILE when the manifest records a reference set
_SHA256 = re.compile(r"[0-9a-f]{64}")


@dataclass
class PreparedProfiles:
    """Rows ready to index: metadata, stored vectors, and the rows left out (0-based)."""

    metadata: pd.DataFrame
    vectors: np.ndarray | None  # None until a calibrated scoring is fitted (build_index)
    dropped: list[int]
    duplicates: list[int] = dataclasses.field(default_factory=list)  # skipped by `add`
    scaled: np.ndarray | None = None  # the min-max scaled features of the kept rows
    activity: ActivityScale | None = None  # the scale that scored Profile_Activity


def prepare_profiles(
    table: pd.DataFrame,
    space: SpaceMatch,
    metric: str,
    on_nan: str,
    source: str,
    calibration: Calibration | None = None,
    activity: ActivityScale | str | None = "fit",
    controls: str | None = None,
) -> PreparedProfiles:
    """Scale the shared columns; rows with missing features are refused or dropped, by row.
    The stored vectors of a calibrated scoring need `calibration` (else `vectors` is None).
    Each kept row gets `Profile_Activity` on `activity`'s scale ("fit": fitted here, on the
    `controls` rows (a pandas query on the metadata) or on all rows; None: not scored)."""
    on_nan = "raise" if on_nan == "error" else on_nan
    if on_nan not in ON_ERROR_CHOICES:
        raise ValueError(f"on_nan must be one of {ON_ERROR_CHOICES}, got {on_nan!r}")
    if len(table) == 0:
        raise InputError(f"{source}: the profile table has no rows")
    found = match_columns(table.columns, space.columns)  # without case, as build matched
    missing = [c for c in space.columns if c not in found]
    if missing:
        raise InputError(
            f"{source}: the index's feature columns are missing: {', '.join(missing[:5])}"
            + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        )
    raw = table[[found[c] for c in space.columns]].to_numpy(dtype=np.float64)
    bad = nan_rows(raw)
    if len(bad) and on_nan == "raise":
        shown = ", ".join(str(r + 1) for r in bad[:10]) + (" …" if len(bad) > 10 else "")
        raise InputError(
            f"{source}: {len(bad)} of {len(table)} rows have missing or non-finite features "
            f"(data rows {shown}); nothing was indexed. Fill them, or pass --on-error drop to "
            "leave those rows out"
        )
    keep = np.ones(len(table), dtype=bool)
    keep[bad] = False
    if not keep.any():
        raise InputError(f"{source}: every row has missing features; nothing to index")
    meta_columns = [c for c in table.columns if str(c).startswith(METADATA_PREFIX)]
    metadata = table.loc[keep, meta_columns].reset_index(drop=True)
    scaled = scale_profiles(raw[keep], space)
    ready = metric not in CALIBRATED or calibration is not None
    vectors = candidate_vectors(scaled, metric, calibration) if ready else None
    if isinstance(activity, str):
        activity = ActivityScale.fit(raw[keep], control_rows(metadata, controls, source))
    if activity is not None:
        metadata[ACTIVITY_COLUMN] = activity.score(raw[keep])
    return PreparedProfiles(
        metadata, vectors, [int(r) for r in bad], scaled=scaled, activity=activity
    )


def control_rows(metadata: pd.DataFrame, controls: str | None, source: str) -> np.ndarray | None:
    """The rows a pandas query selects as controls (None without a query)."""
    if controls is None:
        return None
    try:
        selected = metadata.eval(controls)
    except Exception as err:  # pandas raises many kinds for a bad expression
        raise InputError(
            f"--controls {controls!r} is not a valid query on the profiles' metadata "
            f"({type(err).__name__}: {err}); columns: {', '.join(map(str, metadata.columns))}"
        ) from err
    mask = np.asarray(selected, dtype=bool) if np.ndim(selected) else None
    if mask is None or mask.shape != (len(metadata),):
        raise InputError(f"--controls {controls!r} does not select rows of {source}")
    if not mask.any():
        raise InputError(f"--controls {controls!r} matches none of the {len(metadata)} profiles")
    return mask


def choose_index_type(requested: str, count: int) -> str:
    if requested not in INDEX_TYPES:
        raise ValueError(f"index type must be one of {INDEX_TYPES}, got {requested!r}")
    if requested != "auto":
        return requested
    return "flat" if count <= EXACT_LIMIT else "hnsw"


def new_faiss_index(kind: str, dim: int, train_on: np.ndarray) -> tuple[faiss.Index, dict]:
    """An empty inner-product index of `kind` (trained when IVF) and its search settings."""
    if kind == "flat":
        return faiss.IndexFlatIP(dim), {}
    if kind == "hnsw":
        index = faiss.IndexHNSWFlat(dim, 32, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = 80
        return index, {"efSearch": 128}
    nlist = max(1, min(int(4 * math.sqrt(len(train_on))), len(train_on) // 39))
    index = faiss.IndexIVFFlat(faiss.IndexFlatIP(dim), dim, nlist, faiss.METRIC_INNER_PRODUCT)
    index.train(train_on)
    return index, {"nlist": nlist, "nprobe": min(nlist, max(8, nlist // 16))}


def apply_search_params(index: faiss.Index, params: dict) -> None:
    if "efSearch" in params:
        index.hnsw.efSearch = int(params["efSearch"])
    if "nprobe" in params:
        index.nprobe = int(params["nprobe"])


@dataclass
class ProfileIndex:
    """Vectors in FAISS, metadata keyed by FAISS id, and the manifest that produced them."""

    index: faiss.Index
    metadata: pd.DataFrame
    manifest: dict
    reference: tuple[list[str], np.ndarray] | None = None  # SMILES, logits (shared columns)

    @property
    def count(self) -> int:
        return int(self.index.ntotal)

    @property
    def space(self) -> SpaceMatch:
        return SpaceMatch.from_dict(self.manifest["feature_space"])

    @property
    def metric(self) -> str:
        return self.manifest["metric"]

    @property
    def model(self) -> dict:
        return self.manifest["model"]

    @property
    def activity_scale(self) -> ActivityScale | None:
        data = self.manifest.get("activity")
        return ActivityScale.from_manifest(data) if data else None

    @property
    def calibration(self) -> Calibration | None:
        """The reference statistics of a calibrated scoring (None for likelihood/cosine)."""
        if self.metric not in CALIBRATED:
            return None
        if self.reference is None or "calibration" not in self.manifest:
            raise ChecksumError(
                f"the index's {self.metric} scoring needs its reference set and calibration, "
                "and the manifest has none; rebuild the index"
            )
        return Calibration.from_manifest(self.manifest["calibration"], self.reference[1])

    def check_metric(self, requested: str | None) -> None:
        """Refuse a scoring other than the one the index was built for, naming both."""
        if requested is not None and requested != self.metric:
            raise IndexMismatchError(
                f"the index was built for {self.metric} scoring but {requested} scoring was "
                f"asked for; rebuild it with `embedkit index build --metric {requested}`, or "
                "leave --metric out to use the index's own"
            )

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-k inner products (scores, FAISS ids), best first."""
        check_k(k, self.count, "profiles in the index")
        return self.index.search(np.ascontiguousarray(queries, dtype=np.float32), k)

    def stored_vectors(self) -> np.ndarray:
        """Every stored vector, in id order (for profile → molecule search and evaluation)."""
        if isinstance(self.index, faiss.IndexIVF):
            self.index.make_direct_map()
        return self.index.reconstruct_n(0, self.count)

    def add(
        self,
        table: pd.DataFrame,
        source: str,
        on_nan: str = "raise",
        allow_duplicates: bool = False,
    ) -> PreparedProfiles:
        """Append profiles (same feature columns) without rebuilding; ids continue.

        A profile whose content (metadata and stored vector) is already in the index, or
        earlier in `table`, is skipped and counted in `prepared.duplicates` unless
        `allow_duplicates`: adding the same file twice does not double the rows.
        """
        prepared = prepare_profiles(
            table, self.space, self.metric, on_nan, source, self.calibration, self.activity_scale
        )
        if not allow_duplicates:
            prepared = self._skip_duplicates(prepared)
        start = self.count
        self.index.add(prepared.vectors)
        new = prepared.metadata.assign(**{ROW_COLUMN: np.arange(start, self.count)})
        self.metadata = pd.concat([self.metadata, new], ignore_index=True)
        self.manifest["count"] = self.count
        self.manifest.setdefault("sources", []).append(
            {
                "source": source,
                "rows": len(table),
                "indexed": len(new),
                "dropped": prepared.dropped,
                "duplicates": len(prepared.duplicates),
            }
        )
        return prepared

    def _skip_duplicates(self, prepared: PreparedProfiles) -> PreparedProfiles:
        stored = self.metadata.drop(columns=[ROW_COLUMN], errors="ignore")
        seen = set(profile_hashes(stored, self.stored_vectors()))
        keep = np.zeros(len(prepared.vectors), dtype=bool)
        for i, digest in enumerate(profile_hashes(prepared.metadata, prepared.vectors)):
            keep[i] = digest not in seen
            seen.add(digest)
        if keep.all():
            return prepared
        table_rows = np.arange(len(keep) + len(prepared.dropped))
        rows = table_rows[~np.isin(table_rows, prepared.dropped)]  # table row of each
        return PreparedProfiles(
            prepared.metadata[keep].reset_index(drop=True),
            prepared.vectors[keep],
            prepared.dropped,
            [int(r) for r in rows[~keep]],
        )

    def check_model(self, run_info: dict) -> None:
        """Refuse a model other than the one that built the index, naming both."""
        built = {k: self.model.get(k, "") for k in MODEL_KEYS}
        given = {k: run_info.get(k, "") for k in MODEL_KEYS}
        if built != given:
            raise IndexMismatchError(
                f"the index was built with model {describe_model(built)} but the model given "
                f"is {describe_model(given)}; rebuild the index with that model, or leave -m "
                "out to use the index's own"
            )

    def save(self, folder: str | Path) -> Path:
        """Write the three files into a fresh folder beside `folder`, then swap it in."""
        folder = Path(folder)
        if folder.exists() and not (folder / MANIFEST_FILE).exists() and any(folder.iterdir()):
            raise InputError(f"{folder} exists and is not an embedkit index; choose another -o")
        with atomic_dir(folder) as tmp:
            faiss.write_index(self.index, str(tmp / INDEX_FILE))
            self.metadata.to_parquet(tmp / METADATA_FILE, index=False)
            names = list(DATA_FILES)
            if self.reference is not None:
                save_reference(tmp / REFERENCE_FILE, *self.reference)
                names.append(REFERENCE_FILE)
            manifest = {
                **self.manifest,
                "format": FORMAT,
                "count": self.count,
                "embedkit_version": __version__,
                "files": {n: sha256_of(tmp / n) for n in names},
            }
            (tmp / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2) + "\n")
        self.manifest = manifest
        return folder

    @classmethod
    def load(cls, folder: str | Path) -> ProfileIndex:
        """Read and verify an index folder (format, both checksums, row counts)."""
        folder = Path(folder)
        manifest = read_manifest(folder)
        for name, expected in manifest["files"].items():
            file = folder / name  # a name of DATA_FILES (read_manifest checked)
            if not file.is_file():
                raise InputError(f"{file} is missing; rebuild the index")
            actual = sha256_of(file)
            if actual != expected:
                raise ChecksumError(
                    f"{file} is corrupted: sha256 {actual[:12]}… but the manifest says "
                    f"{expected[:12]}…; rebuild the index"
                )
        index = faiss.read_index(str(folder / INDEX_FILE))
        apply_search_params(index, manifest.get("search_params", {}))
        metadata = read_parquet(folder / METADATA_FILE)
        if index.ntotal != len(metadata) or index.ntotal != manifest["count"]:
            raise ChecksumError(
                f"{folder}: {index.ntotal} vectors, {len(metadata)} metadata rows and a "
                f"manifest count of {manifest['count']} disagree; rebuild the index"
            )
        reference = None
        if REFERENCE_FILE in manifest["files"]:
            reference = load_reference(folder / REFERENCE_FILE)
        return cls(index, metadata, manifest, reference)


def read_manifest(folder: Path) -> dict:
    """The manifest alone (cheap: no checksums), after checking the index format."""
    recover_dir(folder)  # a writer killed mid-swap left the last good copy beside it
    path = Path(folder) / MANIFEST_FILE
    if not Path(folder).exists():
        raise InputError(f"{folder}: no such index folder")
    if not path.is_file():
        raise InputError(f"{folder} is not an embedkit index (no {MANIFEST_FILE})")
    try:
        manifest = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ChecksumError(f"{path}: not valid JSON ({err}); rebuild the index") from err
    if not isinstance(manifest, dict):
        raise ChecksumError(f"{path}: not a JSON object; rebuild the index")
    if manifest.get("format") not in READABLE_FORMATS:
        raise IndexMismatchError(
            f"{folder}: index format {manifest.get('format')!r} (written by embedkit "
            f"{manifest.get('embedkit_version', '?')}) is not one embedkit {__version__} "
            f"reads ({', '.join(READABLE_FORMATS)}); rebuild it with `embedkit index build`"
        )
    wanted = DATA_FILES + ((REFERENCE_FILE,) if manifest.get("reference") else ())
    check_manifest_files(manifest.get("files"), path, wanted)
    return manifest


def check_manifest_files(files: object, path: Path, wanted: tuple[str, ...] = DATA_FILES) -> None:
    """The manifest must pin exactly the index's own files, each by a sha256: an empty or
    partial list would turn verification off, and other names could point anywhere."""
    expected = ", ".join(wanted)
    if not isinstance(files, dict):
        raise ChecksumError(
            f'{path}: no "files" checksums (it must list {expected}); the manifest is '
            "damaged or tampered with, rebuild the index"
        )
    if set(files) != set(wanted):
        names = ", ".join(map(repr, sorted(files))) or "nothing"
        raise ChecksumError(
            f'{path}: "files" lists {names}, not exactly {expected}; the manifest is '
            "damaged or tampered with, rebuild the index"
        )
    for name, digest in files.items():
        if not isinstance(digest, str) or not _SHA256.fullmatch(digest):
            raise ChecksumError(
                f"{path}: the checksum of {name} is not a sha256 ({str(digest)[:20]!r}); the "
                "manifest is damaged or tampered with, rebuild the index"
            )


def profile_hashes(metadata: pd.DataFrame, vectors: np.ndarray) -> list[str]:
    """One content hash per profile: its metadata values (not its row id) and stored vector."""
    columns = sorted(str(c) for c in metadata.columns if c != ROW_COLUMN)
    values = metadata[columns].astype(str).to_numpy() if columns else None
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    out = []
    for i in range(len(vectors)):
        digest = hashlib.sha256(vectors[i].tobytes())
        if values is not None:
            digest.update(json.dumps([columns, values[i].tolist()]).encode())
        out.append(digest.hexdigest())
    return out


def model_spec(model: dict) -> str:
    """The `-m` value that loads the model an index was built with."""
    model_id, revision = model["model_id"], model.get("revision")
    if model_id.startswith("local-dir:") or not revision:
        return model_id
    if model_id.startswith("hf-hub:"):  # the commit it resolved to, not the branch again
        model_id = model_id.split("@", 1)[0]
    return f"{model_id}@{revision}"


def describe_model(info: dict) -> str:
    sha = info.get("weights_sha256") or "?"
    name, revision = info.get("model_id") or "?", info.get("revision") or "?"
    return f"{name} (revision {revision}, weights {sha[:12]})"


def check_k(k: int, available: int, what: str) -> None:
    if k < 1:
        raise InputError(f"-k must be at least 1, got {k}")
    if k > available:
        raise InputError(
            f"-k {k} is larger than the {available} {what}; use -k {available} or less"
        )


def build_index(
    table: pd.DataFrame,
    feature_spaces: dict,
    run_info: dict,
    source: str,
    feature_space: str | None = None,
    metric: str = DEFAULT_METRIC,
    index_type: str = "auto",
    on_nan: str = "raise",
    reference: ReferenceSet | None = None,
    controls: str | None = None,
) -> tuple[ProfileIndex, PreparedProfiles]:
    """Project a profile table into a model's decoder space and index it.

    `reference` (decoded reference molecules, `search.decode_reference`) is stored with the
    index; the calibrated scorings need it, likelihood and cosine only use it for the
    hubness diagnostics of `index info`."""
    check_metric(metric)
    if metric in CALIBRATED and reference is None:
        raise ValueError(f"{metric} scoring needs a reference set (search.decode_reference)")
    if not feature_spaces:
        raise InputError(
            f"model {run_info.get('model_id', '?')} records no feature spaces (columns, min, "
            "max), so it cannot score profiles; use a model trained by `train.infoalign`"
        )
    space = match_feature_space(profile_feature_columns(table), feature_spaces, feature_space)
    prepared = prepare_profiles(table, space, metric, on_nan, source, controls=controls)
    stored_reference, calibration = None, None
    if reference is not None:
        if space.name not in reference.logits:
            raise ValueError(f"the reference set was not decoded into {space.name!r}")
        logits = np.ascontiguousarray(reference.logits[space.name][:, space.decoder_index])
        stored_reference = (list(reference.smiles), logits.astype(np.float32))
        if metric in CALIBRATED:
            calibration = Calibration.fit(prepared.scaled, logits)
            prepared.vectors = candidate_vectors(prepared.scaled, metric, calibration)
    kind = choose_index_type(index_type, len(prepared.vectors))
    index, params = new_faiss_index(kind, prepared.vectors.shape[1], prepared.vectors)
    index.add(prepared.vectors)
    apply_search_params(index, params)
    metadata = prepared.metadata.assign(**{ROW_COLUMN: np.arange(index.ntotal)})
    manifest = {
        "format": FORMAT,
        "model": {k: run_info.get(k, "") for k in MODEL_KEYS},
        "feature_space": space.to_dict(),
        "metric": metric,
        "index_type": kind,
        "search_params": params,
        "normalization": "min-max with the model's training range, clipped to [0, 1]"
        + NORMALIZATION_NOTES.get(metric, ""),
        "reference": reference.describe() if reference is not None else None,
        "sources": [
            {
                "source": source,
                "rows": len(table),
                "indexed": index.ntotal,
                "dropped": prepared.dropped,
            }
        ],
    }
    manifest["activity"] = prepared.activity.to_manifest()
    if calibration is not None:
        manifest["calibration"] = calibration.to_manifest()
    return ProfileIndex(index, metadata, manifest, stored_reference), prepared


NORMALIZATION_NOTES = {
    "cosine": "; L2-normalized",
    "centered": "; centred on the index's mean profile (fixed at build); L2-normalized",
    "zscore": "; z-scored with the index's mean and std (fixed at build); L2-normalized",
    "csls": "; z-scored with the index's mean and std (fixed at build); L2-normalized; "
    "CSLS hub term from the reference molecules",
    "inverted-softmax": "; z-scored with the index's mean and std (fixed at build); "
    "L2-normalized; inverted-softmax normaliser over the reference molecules",
}
