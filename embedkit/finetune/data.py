"""What a fine-tuning run reads: labelled sites of plates (images) or labelled rows of a
profile table, as the `task` objects `embedkit.finetune.training.fit` trains on.

* `ImageTask`: training batches are read and augmented by
  `embedkit.images.training_data.SiteDataset` (the pretraining augmentations, with the
  fine-tuning settings of `Augmentation`); evaluation reads each site the way `embed-images`
  and `predict` do (`embedkit.images.jobs.SiteDataset`: crops by `crop_mode`, normalized),
  and a site's features are the mean of its crops' embeddings. Evaluation crops are kept in
  memory up to `cache_bytes` (they are the same every epoch), the rest re-read.
* `ProfileTask`: rows standardized once; training rows get Gaussian noise and feature
  dropout (the profile counterpart of image augmentation).
"""

from __future__ import annotations

import dataclasses
from types import SimpleNamespace

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader

from embedkit.errors import InputError
from embedkit.finetune.training import autocast
from embedkit.images.training_data import Augmentation, SiteDataset, TrainingSites


class _Chunks:
    """A DataLoader's batch sampler whose batches are set before each epoch, so one loader
    (and its worker processes) serves a whole run."""

    def __init__(self):
        self.chunks: list[list] = []

    def __iter__(self):
        return iter(self.chunks)

    def __len__(self) -> int:
        return len(self.chunks)


def _identity(items):
    return items


class ImageTask:
    """Labelled sites of plates (see the module docstring)."""

    def __init__(
        self,
        sites: TrainingSites,
        labels: np.ndarray,
        augmentation: Augmentation,
        model_spec: dict,
        crop_mode: str = "full",
        cell_line: torch.Tensor | None = None,
        workers: int = 0,
        cache_bytes: int = 2 << 30,
        crop_batch: int = 64,
    ):
        self.sites = sites
        self.set_labels(labels)
        self.augmentation = augmentation
        self.crop_mode = crop_mode
        self.cell_line = cell_line
        self.workers = workers
        self.cache_bytes = cache_bytes
        self.crop_batch = crop_batch
        self._cache: dict[int, np.ndarray] = {}
        self._cached_bytes = 0
        self._reader = _crop_reader(sites, model_spec, crop_mode)
        self._loader_seed: int | None = None
        self._chunks = _Chunks()
        self._loader: DataLoader | None = None

    def set_labels(self, labels: np.ndarray) -> None:
        """The class index of every site (-1: not classified)."""
        self.sites = dataclasses.replace(self.sites, labels=np.asarray(labels, dtype=np.int64))
        self.labels = self.sites.labels
        self._loader = None

    # -- training
    def _train_loader(self, seed: int) -> DataLoader:
        if self._loader is None or self._loader_seed != seed:
            dataset = SiteDataset(self.sites, dataclasses.replace(self.augmentation, seed=seed), 1)
            self._loader = DataLoader(
                dataset,
                batch_sampler=self._chunks,
                num_workers=self.workers,
                persistent_workers=self.workers > 0,
            )
            self._loader_seed = seed
        return self._loader

    def batches(self, rows: np.ndarray, epoch: int, seed: int, batch_size: int):
        order = np.random.default_rng([seed, epoch]).permutation(rows)
        keys = [(epoch, 0, position, int(i)) for position, i in enumerate(order)]
        loader = self._train_loader(seed)
        self._chunks.chunks = [keys[i : i + batch_size] for i in range(0, len(keys), batch_size)]
        for views, labels, _ in loader:
            yield views[:, 0], labels

    def _line(self, batch: int, device) -> torch.Tensor | None:
        if self.cell_line is None:
            return None
        return self.cell_line.to(device).expand(batch, -1)

    def features(self, model, inputs: torch.Tensor, device) -> torch.Tensor:
        images = inputs.to(device, non_blocking=True)
        return model.encoder(images, self._line(len(images), device))

    # -- evaluation
    def _crops(self, rows: np.ndarray):
        """(row, crops (n, C, S, S) float32) for each row, from the cache or the disk."""
        todo = [int(r) for r in rows if int(r) not in self._cache]
        read: dict[int, np.ndarray] = {}
        if todo:
            loader = DataLoader(
                _Subset(self._reader, todo),
                batch_size=8,
                num_workers=self.workers,
                collate_fn=_identity,
            )
            for items in loader:
                for row, crops, _, error in items:
                    if crops is None:
                        where = " ".join(map(str, self.sites.keys[row]))
                        raise InputError(f"site {where} cannot be read for evaluation: {error}")
                    if self._cached_bytes + crops.nbytes <= self.cache_bytes:
                        self._cache[row] = crops
                        self._cached_bytes += crops.nbytes
                    read[row] = crops
        for r in rows:
            r = int(r)
            yield r, self._cache[r] if r in self._cache else read.pop(r)

    def embed(self, model, rows: np.ndarray, device, precision: str) -> torch.Tensor:
        dim = model.encoder.config.embed_dim
        out = torch.zeros(len(rows), dim)
        pending: list[tuple[int, np.ndarray]] = []

        def flush():
            crops = torch.from_numpy(np.concatenate([c for _, c in pending]))
            parts = []
            for start in range(0, len(crops), self.crop_batch):
                chunk = crops[start : start + self.crop_batch].to(device)
                with autocast(device, precision):
                    parts.append(model.encoder(chunk, self._line(len(chunk), device)).float())
            vectors = torch.cat(parts).cpu()
            start = 0
            for position, c in pending:
                out[position] = vectors[start : start + len(c)].mean(dim=0)
                start += len(c)
            pending.clear()

        count = 0
        for position, (_, crops) in enumerate(self._crops(rows)):
            pending.append((position, crops))
            count += len(crops)
            if count >= self.crop_batch:
                flush()
                count = 0
        if pending:
            flush()
        return out


class _Subset(torch.utils.data.Dataset):
    """Items of `reader` at `rows`, returned with the row number instead of the position."""

    def __init__(self, reader, rows: list[int]):
        self.reader, self.rows = reader, rows

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int):
        row = self.rows[i]
        _, crops, positions, error = self.reader[row]
        return row, crops, positions, error


def _crop_reader(sites: TrainingSites, model_spec: dict, crop_mode: str):
    """embed-images' site reader (`embedkit.images.jobs.SiteDataset`) over `sites`: the
    same crops and normalization `predict` will use."""
    from embedkit.images.channels import ChannelPlan
    from embedkit.images.jobs import SiteDataset as CropReader

    channels = len(sites.paths[0]) if sites.paths else 0
    sources = [f"channel_{j}" for j in range(channels)]
    frame = pd.DataFrame(
        {
            "plate": [k[0] for k in sites.keys],
            "well": [k[1] for k in sites.keys],
            "site": [k[2] for k in sites.keys],
            **{name: [p[j] for p in sites.paths] for j, name in enumerate(sources)},
        }
    )
    plan = ChannelPlan(sources, list(range(channels)), sources)
    options = SimpleNamespace(seed=0, crop_mode=crop_mode, n_random=4)
    return CropReader(frame, plan, model_spec, options)


class ProfileTask:
    """Labelled rows of a profile table, standardized by the model's statistics."""

    def __init__(
        self,
        x: np.ndarray,
        labels: np.ndarray,
        noise: float = 0.1,
        feature_dropout: float = 0.1,
    ):
        self.x = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
        self.set_labels(labels)
        self.noise = noise
        self.feature_dropout = feature_dropout

    def set_labels(self, labels: np.ndarray) -> None:
        """The class index of every row (-1: not classified)."""
        self.labels = np.asarray(labels, dtype=np.int64)

    def batches(self, rows: np.ndarray, epoch: int, seed: int, batch_size: int):
        rng = np.random.default_rng([seed, epoch])
        order = rng.permutation(rows)
        gen = torch.Generator().manual_seed(int(rng.integers(2**62)))
        for start in range(0, len(order), batch_size):
            chunk = order[start : start + batch_size]
            x = self.x[chunk]
            if self.noise:
                x = x + self.noise * torch.randn(x.shape, generator=gen)
            if self.feature_dropout:
                keep = torch.rand(x.shape, generator=gen) >= self.feature_dropout
                x = x * keep / (1 - self.feature_dropout)
            yield x, torch.as_tensor(self.labels[chunk], dtype=torch.long)

    def features(self, model, inputs: torch.Tensor, device) -> torch.Tensor:
        return model.encoder(inputs.to(device))

    def embed(self, model, rows: np.ndarray, device, precision: str) -> torch.Tensor:
        parts = []
        for start in range(0, len(rows), 4096):
            x = self.x[rows[start : start + 4096]].to(device)
            with autocast(device, precision):
                parts.append(model.encoder(x).float().cpu())
        if not parts:
            return torch.zeros(0, model.embedding_dim)
        return torch.cat(parts)
