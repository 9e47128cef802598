"""Writing a simulated screen to disk in the RxRx layout, with the files that describe it.

`<CellLine>-<BB>/Plate<P>/<Well>_s<site>_w<c>.png`, metadata.csv, gene_graph.csv,
gene_phenotypes.csv, config.json and a README.txt saying the data are SIMULATED.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from embedkit.datasets.synthetic.config import SynthConfig
from embedkit.datasets.synthetic.rendering import CHANNELS
from embedkit.datasets.synthetic.screen import SyntheticScreen
from embedkit.errors import InputError


def _readme(config: SynthConfig, n_sites: int, n_files: int) -> str:
    from embedkit import __version__

    channels = "\n".join(
        f"  w{i + 1}  {name:<14} {stain}"
        for i, (name, stain) in enumerate(CHANNELS[: config.channels])
    )
    blank = "".join(f" --blank-channel {c}" for c in config.blank_channels)
    return f"""SIMULATED DATA - NOT REAL MICROSCOPY IMAGES
============================================

These Cell Painting / RxRx-style images were drawn by a computer program
(embedkit.datasets.synthetic, embedkit {__version__}). No cell was imaged. The genes
(SIMG..), their graph, the phenotypes and the cell-line differences are all simulated;
cell-line names only borrow the RxRx lines' typical morphology. Use these data to test
and benchmark software, never to draw biological conclusions.

Contents
  <CellLine>-<BB>/Plate<P>/<Well>_s<site>_w<channel>.png   8-bit PNG, {config.size}x{config.size}
  metadata.csv        one row per site ({n_sites} sites, {n_files} image files)
  gene_graph.csv      the simulated gene graph (source, target)
  gene_phenotypes.csv ground-truth phenotype vector per gene (before cell-line scaling)
  config.json         the exact configuration; same config (incl. seed) -> same bytes

Channels (RxRx order)
{channels}

How it was generated
  Genes sit in modules of a random graph (dense within, sparse across). Each gene's
  phenotype vector is random noise smoothed over the graph, (I + alpha L)^-1 Z with
  alpha = {config.graph_smoothing}, so linked genes look alike. Cells are drawn as
  irregular ellipses with nucleus, ER, actin, nucleoli, mitochondria, Golgi and membrane;
  knock-downs change their size, shape, intensities, textures and organelle counts
  (effect_strength {config.effect_strength}); each cell line has its own morphology and
  response scaling. Technical effects (0 = off): batch_effect {config.batch_effect}
  (per-batch channel gain/offset), illumination {config.illumination} (per-plate
  vignetting), well_drift {config.well_drift} (per-well intensity), noise {config.noise}.
  Blank (constant zero) channels: {list(config.blank_channels) or "none"}. Seed: {config.seed}.

Regenerate with:
  embedkit datasets synth-plate OUT --cell-lines {",".join(config.cell_lines)} \\
    --batches {config.batches} --plates {config.plates} --wells {config.wells} \\
    --sites {config.sites} --size {config.size} --seed {config.seed} \\
    --batch-effect {config.batch_effect}{blank}
  or, for any setting, in Python:
  write_synthetic_dataset(OUT, SynthConfig.from_dict(json.load(open("config.json"))))
"""


def write_synthetic_dataset(
    out_dir: str | Path, config: SynthConfig | None = None, *, overwrite: bool = False
) -> pd.DataFrame:
    """Write a simulated screen in the RxRx layout; return its metadata (one row per site).

    Writes `<CellLine>-<BB>/Plate<P>/<Well>_s<site>_w<c>.png`, metadata.csv,
    gene_graph.csv, gene_phenotypes.csv, config.json and a README.txt saying the data are
    SIMULATED. A non-empty `out_dir` is refused unless `overwrite` (files are then
    replaced, stray files from earlier runs are left alone).
    """
    from PIL import Image

    config = config or SynthConfig()
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise InputError(f"{out} is a file, not a folder")
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise InputError(f"{out} is not empty; choose a new folder or pass overwrite=True")
    out.mkdir(parents=True, exist_ok=True)
    screen = SyntheticScreen(config)
    meta = screen.layout()
    for row in meta.to_dict("records"):
        image = screen.render_meta(row)
        folder = out / row["Metadata_Plate"]
        folder.mkdir(parents=True, exist_ok=True)
        stem = f"{row['Metadata_Well']}_s{row['Metadata_Site']}"
        for c in range(image.shape[0]):
            Image.fromarray(image[c]).save(folder / f"{stem}_w{c + 1}.png", compress_level=1)
    meta.to_csv(out / "metadata.csv", index=False)
    screen.graph.edge_frame().to_csv(out / "gene_graph.csv", index=False)
    screen.phenotype_frame().to_csv(out / "gene_phenotypes.csv", index=False)
    (out / "config.json").write_text(json.dumps(config.to_dict(), indent=2) + "\n")
    (out / "README.txt").write_text(_readme(config, len(meta), len(meta) * config.channels))
    return meta
