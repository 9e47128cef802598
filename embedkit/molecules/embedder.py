"""Molecule embedding: the Python API behind `embedkit embed-smiles`.

One output row per input, in input order: an invalid SMILES gets a NaN vector,
`valid = False` and a readable error, never a crash or a silent drop.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from embedkit.embedder import BaseEmbedder, EmbedResult, mark_non_finite
from embedkit.errors import InputError
from embedkit.molecules.batch import collate
from embedkit.molecules.featurize import MolGraph
from embedkit.molecules.gin import FeatureEmbedding, apply_embedding_max_norm
from embedkit.molecules.inference import ExactEncoder, FrozenEncoder
from embedkit.molecules.model import InfoAlignModel
from embedkit.molecules.pipeline import (
    MIN_ROWS_FOR_WORKERS,
    default_num_workers,
    embed_stream,
    featurize_stream,
    fork_available,
)
from embedkit.molecules.symmetry import classes


def freeze_embedding_norms(module: nn.Module) -> None:
    """Apply `max_norm` renormalization once to every row, then switch it off.

    InfoAlign's embedding tables use max_norm=1, which rescales looked-up rows in place on
    every call (even in eval). Doing it once for all rows gives identical lookups and keeps
    inference free of in-place weight writes.
    """
    apply_embedding_max_norm(module)
    for emb in module.modules():
        if isinstance(emb, nn.Embedding):
            emb.max_norm = None
    fuse_embeddings(module)


def fuse_embeddings(module: nn.Module) -> None:
    """(Re)build the single-table lookups from the current weights (after any dtype change)."""
    for child in module.modules():
        if isinstance(child, FeatureEmbedding):
            child.fuse()


class MoleculeEmbedder(BaseEmbedder):
    """A loaded molecule model: `embed_smiles(smiles) -> (embeddings, valid_mask)`."""

    def __init__(
        self,
        model: InfoAlignModel,
        run_info: dict | None = None,
        device: str = "auto",
        precision: str = "fp32",
    ):
        super().__init__(model, run_info, device, precision)
        freeze_embedding_norms(self.model)
        # Inference computes each group of atoms the GIN cannot tell apart once
        # (symmetry.py). fp32 runs the module's own operations, equal to the training
        # forward (and InfoAlign's) to the last bits; bf16 runs a frozen copy built from the
        # fp32 weights (weights and activations in bf16, not autocast): BatchNorm folded in
        # fp32, ReLU fused into pre-packed oneDNN matmuls (inference.py). `self.model` (and
        # its decoders, which retrieval scores with) stays fp32.
        if self.precision == "bf16":
            self._encoder = FrozenEncoder(self.model.encoder, torch.bfloat16, self.device)
        else:
            self._encoder = ExactEncoder(self.model.encoder)

    def embed_smiles(
        self,
        smiles: Sequence[str] | str,
        batch_size: int = 256,
        num_workers: int | None = None,
        progress: bool = False,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Embed SMILES; returns (float32 array (n, d) with NaN rows for invalid, valid mask)."""
        result = self.embed(smiles, batch_size, progress, num_workers)
        return result.embeddings, result.valid

    def embed(
        self,
        smiles: Sequence[str] | str,
        batch_size: int = 256,
        progress: bool = False,
        num_workers: int | None = None,
    ) -> EmbedResult:
        """Like `embed_smiles`, plus one readable error string per row (the `Embedder`
        protocol's `embed`)."""
        if isinstance(smiles, str):
            smiles = [smiles]
        smiles = list(smiles)
        if batch_size < 1:
            raise InputError(f"batch size must be at least 1, got {batch_size}")
        # On a CPU, workers run featurization and the model (one thread each); elsewhere they
        # only featurize. Both need enough rows to pay for starting processes.
        data_parallel = self.device.type == "cpu" and fork_available()
        workers = default_num_workers(data_parallel) if num_workers is None else num_workers
        n = len(smiles)
        out = np.full((n, self.embedding_dim), np.nan, dtype=np.float32)
        valid = np.zeros(n, dtype=bool)
        errors = [""] * n
        bar = tqdm(total=n, unit="mol", disable=not progress, desc="embedding")
        if data_parallel and workers > 0 and n >= MIN_ROWS_FOR_WORKERS:
            for part in embed_stream(smiles, batch_size, workers, self._forward):
                errors[part.start : part.start + len(part.errors)] = part.errors
                if part.rows:
                    index = np.asarray(part.rows) + part.start
                    out[index] = part.vectors
                    valid[index] = True
                bar.update(len(part.errors))
            bar.close()
            return mark_non_finite(EmbedResult(out, valid, errors))
        for chunk in featurize_stream(smiles, batch_size, workers):
            rows = [i for i, g in enumerate(chunk.graphs) if g is not None]
            for i, err in enumerate(chunk.errors):
                errors[chunk.start + i] = err
            if rows:
                vectors = self._forward([chunk.graphs[i] for i in rows])
                index = np.asarray(rows) + chunk.start
                out[index] = vectors
                valid[index] = True
            bar.update(len(chunk.graphs))
        bar.close()
        return mark_non_finite(EmbedResult(out, valid, errors))

    @torch.inference_mode()
    def _forward(self, graphs: list[MolGraph]) -> np.ndarray:
        batch = classes(collate(graphs), self._encoder.num_layer).to(self.device)
        return self._encoder(batch).float().cpu().numpy()
