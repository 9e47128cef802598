"""Public datasets by name: each file's URL (pinned to an upstream commit), sha256, size and
licence, fetched once with pooch into a data folder and verified before use.

The data folder is `--data-dir`, else `$EMBEDKIT_DATA_DIR`, else pooch's user cache
(`~/.cache/embedkit` on Linux). Files keep their place in one layout (`kg/…`,
`benchmarks/<name>/…`, `cell_lines/…`, `rxrx1/…`), the layout the rest of embedkit reads
from a data folder (`embedkit evaluate property --data-dir`, `train` recipes), so a folder
filled by `embedkit datasets fetch` is a data folder, and an existing copy of the public
files in that layout is found as cached once its sha256 checks.

Rules:
* a cached file is used only when its sha256 matches; a mismatch is one sentence naming the
  path (nothing is replaced behind the user's back);
* a download goes to a temporary file and is moved into place only when its sha256 matches;
* offline and uncached: one sentence naming the file, the URL to download by hand and the
  path to save it as.

`EMBEDKIT_DATASETS` may name a JSON file of further entries (a mirror, a private dataset;
the same fields as `Dataset`); an entry there replaces a built-in one of the same name.

Every entry below comes from a public repository at a pinned commit; the sha256 are those
of the files as published there, except the scVI cell-line tables, which upstream ships as
one pickle (`data/scvi.pkl`, no published checksum): they are built here from it with an
unpickler that admits numpy arrays only, then checked value by value against the digest of
the tables the project was given (`content_sha256`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import pickle
import re
import shutil
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from embedkit.data_dir import DATA_DIR_ENV, default_cache_dir
from embedkit.errors import ChecksumError, InputError, UntrustedFormatError

REGISTRY_ENV = "EMBEDKIT_DATASETS"
TIMEOUT_S = 60


class DatasetUnavailableError(InputError):
    """A registered file is not cached and cannot be downloaded."""


@dataclass(frozen=True)
class DataFile:
    """One file of a dataset: where it goes in the data folder and where it comes from."""

    path: str  # relative to the data folder, in embedkit's layout
    url: str
    sha256: str | None
    size: int | None = None
    # files built here from `Dataset.raw` (not downloaded as they are): the sha256 of their
    # values (`embedkit.cell_lines.table_digest`), which does not depend on the writer
    content_sha256: str | None = None


@dataclass(frozen=True)
class Dataset:
    name: str
    description: str
    licence: str
    source: str  # upstream repository @ commit
    files: tuple[DataFile, ...]
    raw: tuple[DataFile, ...] = ()  # upstream files that `build` turns into `files`
    build: str | None = None  # a key of BUILDERS
    citation: str = ""

    @property
    def size(self) -> int | None:
        sizes = [f.size for f in self.files]
        return None if None in sizes else sum(sizes)


def _gh(repo: str, commit: str, path: str) -> str:
    return f"https://raw.githubusercontent.com/{repo}/{commit}/{path}"


_BMP = ("The-Real-JerryChen/BioMicroscopyProfiler", "a32f3047831d9722d1bf4d3b5ac7104ce502eb06")
_EFAAR = ("recursionpharma/EFAAR_benchmarking", "2248f400630abfb711bb442be7e29a34c70d4720")
_INFOALIGN = ("liugangcode/InfoAlign", "eed96f36503a8a427fac4f382ee2001f957dd42a")
_ADME = ("molecularinformatics/Computational-ADME", "b00df003de117ce9e5b381afd886095c5f2af2d5")
_LINCS = ("dhimmel/lincs", "726793b5ce36576f6f17a0e015a4196113da270c")
_LCP = ("broadinstitute/lincs-cell-painting", "061870127481dcd73c29df85ebcfddeac2ed0828")
_SEED_PAPER = (
    "Biological knowledge for de novo cell lines (the seed paper's code: "
    "github.com/The-Real-JerryChen/BioMicroscopyProfiler)"
)
_INFOALIGN_PAPER = "Liu et al., InfoAlign (github.com/liugangcode/InfoAlign)"


def _file(repo: tuple[str, str], upstream: str, path: str, sha256: str, size: int) -> DataFile:
    return DataFile(path, _gh(*repo, upstream), sha256, size)


def _source(repo: tuple[str, str]) -> str:
    return f"github.com/{repo[0]}@{repo[1][:12]}"


_SCVI_DIGESTS = {  # table_digest of the tables converted from the pinned upstream scvi.pkl
    64: "2008904b6bc97766967221f2f054f5418e99608f3569e80b3b39667d942e0854",
    128: "961f4338483721b7442c2aadbdc06a3f36ebfdbf78214d99d78093f745566bde",
    256: "9f208ed4709c245187ba9f277ff785c05434a22d2b534c13190a8685553a3006",
    512: "2b7288353580e9d66a93bce41aa3d8b403493d47e2d9921e0bb8574ccb471389",
}
_SCVI_FILES = {  # dimension: (sha256 of the Parquet file, bytes)
    64: ("86c45392d91f75dbbbb3b9d3638b42b7a012945911992825c55df40536cd7cf8", 51674),
    128: ("134fa968dc2ff1d2a903a25e089b49ce4708df78e62eefb9855d4aa21175fc40", 102086),
    256: ("300c260c05fba04f96ddb6d8d0e89e077cd5f70c2a8726c677d645311f4af0e5", 203759),
    512: ("bf2f0d4e240ab7f32754d20a1fa7f1f6a0bef5eadacf91866b8c12c18de731ac", 407111),
}
_SCVI_PICKLE = _gh(*_BMP, "data/scvi.pkl")

BUILTIN: tuple[Dataset, ...] = (
    Dataset(
        "rxrx1-u2os-split",
        "RxRx1 U2OS site metadata (12,256 sites, 1,138 siRNAs) with the seed paper's one-shot "
        "split (column split1: train/valid/test); no images",
        "none stated (no licence file upstream; RxRx1 metadata from rxrx.ai)",
        _source(_BMP),
        (
            _file(
                _BMP,
                "data/u2os_data.csv",
                "rxrx1/u2os_data.csv",
                "8eec951fa5a9ab3eb584999bc19ebba01a98647681fad2e337dc1f60ef137bca",
                1026601,
            ),
        ),
        citation=_SEED_PAPER,
    ),
    Dataset(
        "scvi-cell-line-embeddings",
        "The seed paper's scVI embeddings of 55 cell lines' basal RNA-seq (HUVEC, RPE, HEPG2, "
        "U2OS, HRCE, Vero, A549, …) at 64/128/256/512 dimensions, as cell-line tables "
        "(cell_line, scvi_0 …) for --cell-line-embeddings; built from upstream's scvi.pkl",
        "none stated (no licence file upstream; RNA-seq from GEO GSE288929, GSM7745109)",
        _source(_BMP),
        tuple(
            DataFile(
                f"cell_lines/scvi_cell_line_embeddings_{dim}.parquet",
                _SCVI_PICKLE,
                sha256,
                size,
                content_sha256=_SCVI_DIGESTS[dim],
            )
            for dim, (sha256, size) in _SCVI_FILES.items()
        ),
        raw=(DataFile("cell_lines/raw/scvi.pkl", _SCVI_PICKLE, None),),
        build="scvi-pickle",
        citation=_SEED_PAPER,
    ),
    Dataset(
        "string-gene-pairs",
        "STRING gene–gene pairs (entity1,entity2 gene symbols) as used by Recursion's EFAAR "
        "benchmarks; `embedkit graph build --string`",
        "CC-BY-4.0",
        _source(_EFAAR),
        (
            _file(
                _EFAAR,
                "efaar_benchmarking/benchmark_annotations/StringDB.txt",
                "kg/gene_gene_StringDB.txt",
                "7955c846a551530c07b1eb508404cf15ef0b77ea39ad2368ed40c5c099dedb8c",
                1412650,
            ),
        ),
    ),
    Dataset(
        "humap-gene-pairs",
        "hu.MAP protein-complex gene–gene pairs (entity1,entity2) from Recursion's EFAAR "
        "benchmarks; `embedkit graph build --string` (a pair list)",
        "CC-BY-4.0",
        _source(_EFAAR),
        (
            _file(
                _EFAAR,
                "efaar_benchmarking/benchmark_annotations/HuMAP.txt",
                "kg/gene_gene_HuMAP.txt",
                "6d08074df77f1a7274e754bc6e5e29aa438004bec0a13cbfb934c2c81328f3c4",
                1452420,
            ),
        ),
    ),
    Dataset(
        "reactome-gene-pairs",
        "Reactome gene–gene pairs (entity1,entity2) from Recursion's EFAAR benchmarks",
        "CC0",
        _source(_EFAAR),
        (
            _file(
                _EFAAR,
                "efaar_benchmarking/benchmark_annotations/Reactome.txt",
                "kg/gene_gene_Reactome.txt",
                "ed3cd0fc32d2fe3510f167e9df39668bc9637348d78787615d3f970b2b862e70",
                267969,
            ),
        ),
    ),
    Dataset(
        "hetionet-ppi",
        "98,187 human protein–protein interactions, the source of Hetionet's "
        "Gene–interacts–Gene edges; `embedkit graph build --hetionet`",
        "CC0",
        "github.com/dhimmel/ppi@9ae2ca12c20e",
        (
            DataFile(
                "kg/hetionet_protein_interactions.txt.gz",
                _gh(
                    "dhimmel/ppi",
                    "9ae2ca12c20e0566e6644dc05b908de7f37ce15a",
                    "download/hetio/protein-interactions.txt.gz",
                ),
                "e8bdeae04b35d56032836c85a94747dfab287a60787866213e68c10e3248e469",
                1346259,
            ),
        ),
    ),
    Dataset(
        "hetionet-nodes",
        "Hetionet v1.0 nodes (47,031: genes, compounds, …) with their identifiers",
        "CC0",
        "github.com/hetio/hetionet@8a6cc0c5604d",
        (
            DataFile(
                "kg/hetionet_v1.0_nodes.tsv",
                _gh(
                    "hetio/hetionet",
                    "8a6cc0c5604d0e2908786e4de38af67b8e46ee4a",
                    "hetnet/tsv/hetionet-v1.0-nodes.tsv",
                ),
                "3ad9eb86c031df8bc7d5efefa6edc93562182eb9a6a71e5129d3f18b9d42c50e",
                2509984,
            ),
        ),
    ),
    Dataset(
        "infoalign-benchmarks",
        "InfoAlign's downstream property tasks: ChEMBL2K, Broad6K and Biogen ADME labels "
        "(assays.csv.gz) with their id maps; `embedkit evaluate property --data-dir`",
        "none stated (no licence file upstream; labels from public Broad/ChEMBL/Biogen data)",
        _source(_INFOALIGN),
        tuple(
            _file(_INFOALIGN, f"raw_data/{task}/raw/{name}", f"benchmarks/{task}/{name}", h, n)
            for task, name, h, n in (
                (
                    "chembl2k",
                    "assays.csv.gz",
                    "9032bb122dcdea5f485d8a706316714538fbce344c56b6eafbc97c68b24dbe5a",
                    88429,
                ),
                (
                    "chembl2k",
                    "structure.csv.gz",
                    "01d9d51c8ee327e82f2f746d8c3fa187c257d3132f0dcdbd4e79632f00a36122",
                    84845,
                ),
                (
                    "chembl2k",
                    "CP-JUMP.csv.gz",
                    "22bb89ef6ca8dc04a088c7a09322437c64d90cb98994cc7b67010f145508345a",
                    70295,
                ),
                (
                    "chembl2k",
                    "GE.csv.gz",
                    "b873ae0745865b65162086756fe3f3eb3f70c946d5d23be27cd9f8d78a34bea3",
                    22028,
                ),
                (
                    "broad6k",
                    "assays.csv.gz",
                    "154734844dd2f9862033422754607120ead6d5ae85e7642f78c50afcc952c8e2",
                    180374,
                ),
                (
                    "broad6k",
                    "structure.csv.gz",
                    "28716949ea812aa6ff404ee98767c127a48f6ecb89616f731c7c6f9edb34cc79",
                    350744,
                ),
                (
                    "broad6k",
                    "CP-Bray.csv.gz",
                    "51ff1e1e529d7d105210d38e4323c72ab9d0e13e2f6b0cafe4d0e09a438be4d0",
                    296761,
                ),
                (
                    "broad6k",
                    "GE.csv.gz",
                    "55fa12b7c77c314ec62d8e0252eacf793f2b0344ce8496d76269be7f0e2df307",
                    179615,
                ),
                (
                    "biogenadme",
                    "assays.csv.gz",
                    "16efe8a9849e69e50e7c3536daf2c65e776d798a092e5d0b8677a92e0a26e7e8",
                    135544,
                ),
                (
                    "biogenadme",
                    "ADME_public_set_3521.csv",
                    "2cfabc2667740c224487876c33b23124159ef43294e0f9e4d926cb6276c95a3b",
                    388279,
                ),
            )
        ),
        citation=_INFOALIGN_PAPER,
    ),
    Dataset(
        "biogen-adme-splits",
        "Biogen's public ADME set (3,521 molecules × 6 endpoints) and the authors' official "
        "train/test splits per endpoint",
        "MIT",
        _source(_ADME),
        (
            _file(
                _ADME,
                "ADME_public_set_3521.csv",
                "benchmarks/biogen_official_splits/ADME_public_set_3521.csv",
                "2cfabc2667740c224487876c33b23124159ef43294e0f9e4d926cb6276c95a3b",
                388279,
            ),
            *(
                _file(
                    _ADME,
                    f"MPNN/{name}",
                    f"benchmarks/biogen_official_splits/{name}",
                    h,
                    n,
                )
                for name, h, n in (
                    (
                        "ADME_HLM_train.csv",
                        "00bad049ea72cda9fef62dd9f68411673b4de3cbf977efb948befd1ae3338819",
                        120678,
                    ),
                    (
                        "ADME_HLM_test.csv",
                        "b26b2a2199602b954d66b5daba4ca69c35916d5028b23091b229fc93efcd1dc1",
                        30098,
                    ),
                    (
                        "ADME_RLM_train.csv",
                        "38144705d2809b08ba548bf6660a37b9ee30bd09eeef208e67af13a9fac27c26",
                        118843,
                    ),
                    (
                        "ADME_RLM_test.csv",
                        "7467799c8727be5599b0a76b08f60fbeec92bf9533cc8213a511b9f0b977b1c1",
                        29735,
                    ),
                    (
                        "ADME_MDR1_ER_train.csv",
                        "5facb20d38628111469644db338a5351fa9e766adba4715292760f5a05ea07cc",
                        105265,
                    ),
                    (
                        "ADME_MDR1_ER_test.csv",
                        "c17a168d9e9d8ed0de67a1ab0191a795ae75181163b5d902db3a7f33ab42f303",
                        26146,
                    ),
                    (
                        "ADME_Sol_train.csv",
                        "61386580c8d74867c9d7bdcccc0fc59943f872e1afb8f541ba3a92d1af270e08",
                        84391,
                    ),
                    (
                        "ADME_Sol_test.csv",
                        "8f9efd2deef045ddcfbcd871d458d3b619fa80463094fd0ae9dec3a2fa69718f",
                        21482,
                    ),
                    (
                        "ADME_hPPB_train.csv",
                        "3f35823e1e8d156acef5d2a3e1ea506af4fc3b351ab804f6f5cadd5cba5ab77a",
                        96455,
                    ),
                    (
                        "ADME_hPPB_test.csv",
                        "191a89a583571977b34297a61b724797cbdd288a3e80175edc8c62814a7ed089",
                        24061,
                    ),
                    (
                        "ADME_rPPB_train.csv",
                        "546b6ccc0ef67702df367328e90f64266564c627d8ad59e7fe228c8344f77537",
                        47085,
                    ),
                    (
                        "ADME_rPPB_test.csv",
                        "9b3f624fe33c3979855cce4144b8c95d50b70de09b06d60448962170bfd952b4",
                        11826,
                    ),
                )
            ),
        ),
    ),
    Dataset(
        "lincs-compounds",
        "All LINCS L1000 perturbagens: 20,359 compounds with canonical SMILES and InChIKey, "
        "keyed by pert_id (BRD-…)",
        "CC0",
        _source(_LINCS),
        (
            _file(
                _LINCS,
                "data/pertinfo/pertinfo.tsv.gz",
                "molecules/lincs_pertinfo.tsv.gz",
                "0a14bd9228851c38a5233f8aa09302d4fdd357fdbb1adeaf2d745f69e24bbff8",
                2957269,
            ),
        ),
    ),
    Dataset(
        "lincs-orf-signatures",
        "LINCS L1000 consensus signatures of 2,088 over-expressed genes (significant genes, "
        "z-scores) and the consensus gene table",
        "CC0",
        _source(_LINCS),
        (
            _file(
                _LINCS,
                "data/consensi/signif/dysreg-overexpression.tsv",
                "profiles/lincs_orf_overexpression_signif.tsv",
                "5049fff8ea3ed3c61a1469a0d078f4b2a8cd2b377ff87089a83435edb0fa0b0b",
                1702904,
            ),
            _file(
                _LINCS,
                "data/consensi/genes.tsv",
                "profiles/lincs_consensi_genes.tsv",
                "4b79462a64302bbcc944762b7196441b5b11efae08019370b6564db366a7da0c",
                538465,
            ),
        ),
    ),
    Dataset(
        "lincs-a549-plate",
        "One LINCS Cell Painting plate (A549, SQ00015054): 384 wells × 454 normalized, "
        "feature-selected CellProfiler features; 58 compounds × up to 6 doses + DMSO",
        "BSD-3-Clause",
        "github.com/cytomining/cytominer-eval@643d3e7fc974",
        (
            DataFile(
                "profiles/lincs_a549_SQ00015054_normalized_feature_select.csv.gz",
                _gh(
                    "cytomining/cytominer-eval",
                    "643d3e7fc97464a1b45a4642fa921cc22269b118",
                    "cytominer_eval/example_data/compound/SQ00015054_normalized_feature_select.csv.gz",
                ),
                "0dab037c26926b143d3d64210bde3aa94943691edd226915dada9db85f5bd1c7",
                581296,
            ),
        ),
    ),
    Dataset(
        "l1000-a375-plate",
        "A real L1000 plate (LJP005_A375_24H): 978 landmark genes × 377 samples, GCT v1.3",
        "BSD-3-Clause",
        "github.com/cmap/cmapPy@d1652c3223e4",
        (
            DataFile(
                "profiles/l1000_LJP005_A375_24H.gct",
                _gh(
                    "cmap/cmapPy",
                    "d1652c3223e49e68e3a71634909342b4a6dbf361",
                    "cmapPy/pandasGEXpress/tests/functional_tests/test_l1000.gct",
                ),
                "efd7682a473e84f3bd76e79d83f99dcf35744fb0557322564468e80bf8d15a95",
                2879774,
            ),
        ),
    ),
    Dataset(
        "jump-target-compounds",
        "306 JUMP-Target-1 compounds with SMILES, InChIKey and target lists (compound–gene edges)",
        "MIT",
        "github.com/jump-cellpainting/JUMP-Target@2da0551610a2",
        (
            DataFile(
                "kg/jump_target1_compound_metadata.tsv",
                _gh(
                    "jump-cellpainting/JUMP-Target",
                    "2da0551610a26548a384537b28d05f6fc72ea33c",
                    "JUMP-Target-1_compound_metadata.tsv",
                ),
                "8a17b7c5136ca9c44097df581eca6d0ffa8fa8b6420a6429944a0091c30cbf77",
                91208,
            ),
        ),
    ),
    Dataset(
        "repurposing-hub",
        "Drug Repurposing Hub (2020-03-24): samples with SMILES/InChIKey, drugs with MoA, "
        "target and phase",
        "CC-BY-4.0",
        _source(_LCP),
        (
            _file(
                _LCP,
                "metadata/moa/clue/repurposing_samples_20200324.txt",
                "kg/repurposing_samples_20200324.txt",
                "3324dfac93d19ceaeafbe7d9e466127709328777cb2f6c5a465740cd327088e9",
                2459986,
            ),
            _file(
                _LCP,
                "metadata/moa/clue/repurposing_drugs_20200324.txt",
                "kg/repurposing_drugs_20200324.txt",
                "9c3a08b9d4369fe4257dc9aa763d682fc5ef6b7dd0615534bb44f92b48bc287b",
                530302,
            ),
            _file(
                _LCP,
                "metadata/moa/repurposing_simple.tsv",
                "kg/repurposing_simple.tsv",
                "5f0d46a69d73eea8d4da3b5e0b3abcc79d5d17d58d7151d6ed1ecbe9a12fffc3",
                431449,
            ),
        ),
    ),
    Dataset(
        "moleculenet-small",
        "Small MoleculeNet subsets (ESOL regression, Tox21 classification) from chemprop's "
        "tests, for quick runs",
        "MIT",
        "github.com/chemprop/chemprop@9a0b47ad19eb",
        tuple(
            DataFile(
                f"benchmarks/small/{name}",
                _gh("chemprop/chemprop", "9a0b47ad19ebf440c1557787e666d442728adaad", upstream),
                h,
                n,
            )
            for name, upstream, h, n in (
                (
                    "esol_subset.csv",
                    "tests/data/regression.csv",
                    "4218c6125407370c7bfb6256fdf16191c09caa699e26fccefd945b184aed463c",
                    14922,
                ),
                (
                    "tox21_subset.csv",
                    "tests/data/classification.csv",
                    "7ab6ba7f65c0c0acf8870d01ace0c65f5a64900f6ddf36abcf0f777230efdde3",
                    29404,
                ),
            )
        ),
    ),
)


# --- the registry: built-in entries plus $EMBEDKIT_DATASETS -----------------------------


def _from_json(name: str, entry: dict, source: Path) -> Dataset:
    def files(key: str) -> tuple[DataFile, ...]:
        out = []
        for item in entry.get(key, []):
            if not isinstance(item, dict) or not {"path", "url"} <= set(item):
                raise InputError(f"{source}: dataset {name!r}: each file needs a path and a url")
            if Path(item["path"]).is_absolute() or ".." in Path(item["path"]).parts:
                raise InputError(f"{source}: dataset {name!r}: {item['path']!r} leaves the folder")
            out.append(DataFile(**{k: item.get(k) for k in DataFile.__dataclass_fields__}))
        return tuple(out)

    if not isinstance(entry, dict) or not entry.get("files"):
        raise InputError(f"{source}: dataset {name!r} needs a list of files")
    return Dataset(
        name,
        str(entry.get("description", "")),
        str(entry.get("licence", entry.get("license", "not stated"))),
        str(entry.get("source", str(source))),
        files("files"),
        files("raw"),
        entry.get("build"),
        str(entry.get("citation", "")),
    )


def registry() -> dict[str, Dataset]:
    """Every dataset by name: the built-in entries, then those of $EMBEDKIT_DATASETS."""
    entries = {d.name: d for d in BUILTIN}
    extra = os.environ.get(REGISTRY_ENV)
    if extra:
        path = Path(extra)
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError) as err:
            raise InputError(f"${REGISTRY_ENV}={path}: not a readable JSON file ({err})") from err
        if not isinstance(data, dict):
            raise InputError(f"${REGISTRY_ENV}={path}: expected an object of name → dataset")
        entries.update({name: _from_json(name, e, path) for name, e in data.items()})
    return entries


def get_dataset(name: str) -> Dataset:
    import difflib

    entries = registry()
    if name not in entries:
        close = difflib.get_close_matches(name, list(entries), n=3, cutoff=0.4)
        hint = f"did you mean {', '.join(close)}? " if close else ""
        raise InputError(
            f"no dataset {name!r} in the registry; {hint}`embedkit datasets list` shows them all"
        )
    return entries[name]


def data_folder(data_dir: str | Path | None = None) -> Path:
    """Where datasets are cached: `data_dir`, else $EMBEDKIT_DATA_DIR, else pooch's cache."""
    value = data_dir or os.environ.get(DATA_DIR_ENV)
    return Path(value).expanduser() if value else default_cache_dir()


# --- verification ---------------------------------------------------------------------------


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _content_matches(path: Path, expected: str) -> bool:
    from embedkit.cell_lines import read_cell_line_table, table_digest

    try:
        return table_digest(read_cell_line_table(path)) == expected
    except (InputError, OSError, ValueError):
        return False


def verify(path: Path, file: DataFile, dataset: str) -> None:
    """A cached copy is used only when it is the registered file."""
    if file.sha256 is None:
        return
    actual = file_sha256(path)
    if actual == file.sha256:
        return
    if file.content_sha256 and _content_matches(path, file.content_sha256):
        return
    raise ChecksumError(
        f"{path}: sha256 {actual[:12]}… is not the registered {file.sha256[:12]}… of "
        f"{dataset} (a corrupted or changed copy); delete it and run `embedkit datasets fetch "
        f"{dataset}` again"
    )


def is_cached(folder: Path, file: DataFile) -> bool:
    """Present, and of the registered size where a size is known (a cheap check; fetch
    verifies the sha256)."""
    path = folder / file.path
    if not path.is_file():
        return False
    return file.size is None or file.content_sha256 is not None or path.stat().st_size == file.size


# --- downloading ----------------------------------------------------------------------------


def _file_url_downloader(progress: bool) -> Callable:
    """pooch's HTTP(S)/FTP downloaders, and file:// URLs (mirrors on a shared disk, tests)."""
    import pooch

    def download(url: str, output_file, pooch_obj=None, check_only: bool = False):
        if url.startswith("file:"):
            source = Path(urllib.request.url2pathname(urllib.parse.urlparse(url).path))
            if check_only:
                return source.is_file()
            if not source.is_file():
                raise FileNotFoundError(f"no such file {source}")
            shutil.copyfile(source, output_file)
            return None
        if url.startswith(("http:", "https:")):
            downloader = pooch.HTTPDownloader(progressbar=progress, timeout=TIMEOUT_S)
        else:
            downloader = pooch.downloaders.choose_downloader(url, progressbar=progress)
        return downloader(url, output_file, pooch_obj, check_only=check_only)

    return download


def download(file: DataFile, target: Path, dataset: str, progress: bool = False) -> Path:
    """Download `file` to `target` with pooch, checking its sha256 before it is moved into
    place; every failure is one sentence."""
    import pooch

    _check_writable(target.parent)
    logger = pooch.get_logger()
    level = logger.level
    logger.setLevel(logging.WARNING)  # pooch logs every download (and every unknown hash)
    try:
        pooch.retrieve(
            file.url,
            known_hash=f"sha256:{file.sha256}" if file.sha256 and not file.content_sha256 else None,
            fname=target.name,
            path=target.parent,
            downloader=_file_url_downloader(progress),
            progressbar=progress,
        )
    except ValueError as err:
        if "hash" not in str(err).lower():
            raise
        raise ChecksumError(
            f"downloaded {file.url} but its sha256 is not the registered {file.sha256[:12]}… "
            f"of {dataset} (the upstream file changed or the download was altered); nothing "
            "was kept"
        ) from err
    except OSError as err:  # requests' errors are OSErrors too
        raise DatasetUnavailableError(
            f"{target} is not cached and {file.url} cannot be downloaded "
            f"({_reason(err, file.url)}); "
            f"download it by hand from that URL and save it as {target}"
        ) from err
    finally:
        logger.setLevel(level)
    return target


def _reason(err: OSError, url: str) -> str:
    """Why a download failed, in a few words (requests' messages run to several lines)."""
    host = urllib.parse.urlparse(url).netloc or url
    status = getattr(getattr(err, "response", None), "status_code", None)
    if status:
        return f"HTTP {status}"
    kind = type(err).__name__
    if "Timeout" in kind:
        return f"{host} did not answer within {TIMEOUT_S} s"
    if "Connection" in kind:
        return f"no connection to {host}"
    text = str(err).splitlines()[0] if str(err) else kind
    return text[:120]


def _check_writable(folder: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise InputError(
            f"cannot create the data folder {folder} ({err.strerror}); choose another with "
            f"--data-dir or ${DATA_DIR_ENV}"
        ) from err
    if not os.access(folder, os.W_OK):
        raise InputError(
            f"the data folder {folder} is not writable; choose another with --data-dir or "
            f"${DATA_DIR_ENV}"
        )


# --- building files from upstream's raw files -------------------------------------------------


class _ArraysOnly(pickle.Unpickler):
    """Admits containers, strings, numbers and numpy arrays; nothing that runs code."""

    ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("collections", "OrderedDict"),
    }

    def find_class(self, module: str, name: str):
        if (module, name) not in self.ALLOWED:
            raise UntrustedFormatError(
                f"the pickle holds {module}.{name}, not only numpy arrays; refused (embedkit "
                "reads numpy arrays from pickles and nothing else)"
            )
        if module.startswith("numpy.core") and np.lib.NumpyVersion(np.__version__) >= "2.0.0":
            module = module.replace("numpy.core", "numpy._core", 1)
        return super().find_class(module, name)

    def persistent_load(self, pid):
        raise UntrustedFormatError("the pickle refers to external storage (torch?); refused")


def read_array_pickle(path: Path):
    """A pickle of dicts/lists of numpy arrays, read without running any of its code."""
    with open(path, "rb") as handle:
        try:
            return _ArraysOnly(handle).load()
        except UntrustedFormatError as err:
            raise UntrustedFormatError(f"{path}: {err}") from err
        except (pickle.UnpicklingError, EOFError, AttributeError, ValueError) as err:
            raise InputError(f"{path}: not a readable pickle ({err})") from err


def _build_scvi_tables(dataset: Dataset, raw: Sequence[Path], folder: Path) -> None:
    """upstream's scvi.pkl ({dimension: {cell line: vector}}) → one table per dimension."""
    import pandas as pd

    from embedkit.cell_lines import NAME_COLUMN
    from embedkit.io import write_table

    (pickle_path,) = raw
    data = read_array_pickle(pickle_path)
    if not isinstance(data, dict):
        raise InputError(f"{pickle_path}: expected {{dimension: {{cell line: vector}}}}")
    for file in dataset.files:
        dim = int(re.search(r"_(\d+)\.parquet$", file.path).group(1))
        lines = data.get(dim, data.get(str(dim)))
        if not isinstance(lines, dict) or not lines:
            raise InputError(f"{pickle_path}: no {dim}-dimensional cell-line embeddings")
        names = sorted(map(str, lines))
        by_name = {str(k): v for k, v in lines.items()}
        values = np.stack([np.asarray(by_name[n], dtype=np.float32).reshape(-1) for n in names])
        if values.shape[1] != dim:
            raise InputError(f"{pickle_path}: the {dim}-d embeddings have {values.shape[1]} values")
        table = pd.DataFrame(values, columns=[f"scvi_{i}" for i in range(dim)])
        table.insert(0, NAME_COLUMN, names)
        write_table(
            table,
            folder / file.path,
            {"dataset": dataset.name, "built_from": dataset.raw[0].url, "source": dataset.source},
        )


BUILDERS: dict[str, Callable[[Dataset, Sequence[Path], Path], None]] = {
    "scvi-pickle": _build_scvi_tables,
}


# --- fetch ------------------------------------------------------------------------------------


@dataclass
class FetchSummary:
    dataset: Dataset
    folder: Path
    paths: list[Path]
    downloaded: int  # files downloaded (upstream raw files included)
    built: int  # files built from upstream's raw files
    cached: int  # files found in the folder, verified
    seconds: float
    notes: list[str] = field(default_factory=list)

    def line(self) -> str:
        from embedkit.outputs import summary_line

        raw = ", ".join(Path(f.path).name for f in self.dataset.raw)
        built = f"built from {raw}" + (" (downloaded)" if self.downloaded else "")
        counts = (
            (self.built, built),
            (self.downloaded if not self.built else 0, "downloaded"),
            (self.cached, "cached"),
        )
        parts = [f"{n} {what}" for n, what in counts if n]
        return summary_line(
            f"{self.dataset.name}: {len(self.paths)} file{'s' * (len(self.paths) != 1)} "
            f"({', '.join(parts)})",
            self.seconds,
            self.folder,
            [
                "values verified" if self.built else "sha256 verified",
                f"licence: {self.dataset.licence}",
                *self.notes,
            ],
        )


def fetch(name: str, data_dir: str | Path | None = None, progress: bool = False) -> FetchSummary:
    """Make every file of dataset `name` present and verified in the data folder:
    cached copies are checked, missing ones downloaded (or built from upstream's raw
    files) and checked. Returns where they are."""
    start = time.perf_counter()
    dataset = get_dataset(name)
    folder = data_folder(data_dir)
    missing = []
    for file in dataset.files:
        path = folder / file.path
        if path.is_file():
            verify(path, file, dataset.name)
        else:
            missing.append(file)
    downloaded = built = 0
    if missing and dataset.build:
        builder = BUILDERS.get(dataset.build)
        if builder is None:
            raise InputError(f"dataset {name!r}: unknown build step {dataset.build!r}")
        raw = []
        for file in dataset.raw:
            path = folder / file.path
            if not path.is_file():
                download(file, path, dataset.name, progress)
                downloaded += 1
            raw.append(path)
        builder(dataset, raw, folder)
        for file in missing:
            path = folder / file.path
            if not path.is_file() or not (
                file.content_sha256 and _content_matches(path, file.content_sha256)
            ):
                path.unlink(missing_ok=True)
                raise ChecksumError(
                    f"{path} built from {dataset.raw[0].url} does not hold the registered "
                    f"values of {dataset.name} (the upstream file changed); nothing was kept"
                )
        built = len(missing)
    else:
        for file in missing:
            download(file, folder / file.path, dataset.name, progress)
            downloaded += 1
    paths = [folder / f.path for f in dataset.files]
    cached = len(dataset.files) - len(missing)
    return FetchSummary(
        dataset, folder, paths, downloaded, built, cached, time.perf_counter() - start
    )


def dataset_path(name: str, path: str, data_dir: str | Path | None = None) -> Path:
    """One verified file of a dataset (fetched if needed), for code that needs it."""
    dataset = get_dataset(name)
    if path not in {f.path for f in dataset.files}:
        known = ", ".join(f.path for f in dataset.files)
        raise InputError(f"dataset {name!r} has no file {path!r}; it has {known}")
    return fetch(name, data_dir).folder / path


# --- list -----------------------------------------------------------------------------------


def human_size(size: int | None) -> str:
    if size is None:
        return "?"
    for unit in ("B", "kB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return "?"


def listing(data_dir: str | Path | None = None, files: bool = False) -> str:
    """`embedkit datasets list`: one row per dataset (name, files, size, licence, cached)."""
    folder = data_folder(data_dir)
    where = (
        "--data-dir"
        if data_dir
        else f"${DATA_DIR_ENV}"
        if os.environ.get(DATA_DIR_ENV)
        else "the user cache; set $EMBEDKIT_DATA_DIR or --data-dir to change it"
    )
    rows = [("NAME", "FILES", "SIZE", "CACHED", "LICENCE")]
    details = []
    for dataset in registry().values():
        present = sum(is_cached(folder, f) for f in dataset.files)
        total = len(dataset.files)
        cached = "yes" if present == total else "no" if present == 0 else f"{present}/{total}"
        licence = dataset.licence.split(" (")[0]
        rows.append((dataset.name, str(total), human_size(dataset.size), cached, licence))
        if files:
            details.append(f"{dataset.name}: {dataset.description} [{dataset.source}]")
            for file in dataset.files:
                sha = file.sha256 or "not published"
                details.append(f"  {file.path}  {human_size(file.size)}  sha256 {sha}")
                details.append(f"    {'built from ' if file.content_sha256 else ''}{file.url}")
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    lines = [
        "  ".join(
            [
                r[0].ljust(widths[0]),
                r[1].rjust(widths[1]),
                r[2].rjust(widths[2]),
                r[3].ljust(widths[3]),
                r[4],
            ]
        ).rstrip()
        for r in rows
    ]
    lines.append(f"data folder: {folder} ({where})")
    return "\n".join(lines + ([""] + details if details else []))
