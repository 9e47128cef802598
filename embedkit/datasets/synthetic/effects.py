"""Technical effects of a simulated screen: what batches, plates, wells and the camera add.

Each has a strength knob in `SynthConfig` (0 disables): per batch and channel gain / offset
and contrast, a gamma that survives instance normalization (`batch_effect`), per plate
vignetting and gradient (`illumination`), per well intensity drift with dimmer edge wells
(`well_drift`), shot + read noise (`noise`).
"""

from __future__ import annotations

import numpy as np

from embedkit.datasets.synthetic.config import COLUMNS, ROWS, SynthConfig
from embedkit.datasets.synthetic.rendering import CHANNELS
from embedkit.datasets.synthetic.seeds import T_BATCH, T_PLATE, T_WELL, name_key, stream


class TechnicalEffects:
    """The technical effects a config fixes, per (cell line, batch, plate, well)."""

    def __init__(self, config: SynthConfig) -> None:
        self.config = config
        self._illumination_cache: dict[tuple, np.ndarray] = {}

    def batch_effect(self, cell_line: str, batch: int) -> tuple[np.ndarray, np.ndarray]:
        """(gain, offset) per channel for a batch; (1, 0) when batch_effect is 0."""
        b = self.config.batch_effect
        rng = stream(self.config.seed, T_BATCH, name_key(cell_line.upper()), batch)
        gain = np.exp(b * 0.15 * rng.standard_normal(len(CHANNELS)))
        offset = b * 4.0 * rng.random(len(CHANNELS))
        return gain, offset

    def batch_contrast(self, cell_line: str, batch: int) -> np.ndarray:
        """Per-channel gamma of a batch (staining / exposure non-linearity); 1 when off.

        Gain and offset alone vanish under per-crop instance normalization; a contrast
        change does not, as in real screens where stains saturate differently per batch.
        """
        b = self.config.batch_effect
        rng = stream(self.config.seed, T_BATCH, name_key(cell_line.upper()), batch, 7)
        return np.exp(b * 0.2 * rng.standard_normal(len(CHANNELS)))

    def illumination(self, cell_line: str, batch: int, plate: int) -> np.ndarray:
        """(6, H, W) float32 vignetting x linear gradient for a plate (cached, read-only)."""
        key = (cell_line.upper(), batch, plate)
        if key not in self._illumination_cache:
            if len(self._illumination_cache) > 32:
                self._illumination_cache.clear()
            self._illumination_cache[key] = self._make_illumination(cell_line, batch, plate)
        return self._illumination_cache[key]

    def _make_illumination(self, cell_line: str, batch: int, plate: int) -> np.ndarray:
        size, ill = self.config.size, self.config.illumination
        rng = stream(self.config.seed, T_PLATE, name_key(cell_line.upper()), batch, plate)
        k = ill * rng.uniform(0.12, 0.28) * rng.uniform(0.8, 1.2, len(CHANNELS))
        cy, cx = ill * 0.15 * rng.standard_normal(2)
        gy, gx = ill * 0.06 * rng.standard_normal(2)
        t = (np.arange(size, dtype=np.float32) + 0.5) / size * 2 - 1
        yy, xx = t[:, None], t[None, :]
        r2 = ((yy - cy) ** 2 + (xx - cx) ** 2) / 2
        field_ = np.clip(1 + gy * yy + gx * xx, 0.2, None)
        out = (np.clip(1 - k[:, None, None] * r2[None], 0.2, None) * field_[None]).astype(
            np.float32
        )
        out.flags.writeable = False
        return out

    def well_gain(self, cell_line: str, batch: int, plate: int, well: str) -> np.ndarray:
        """Per-channel intensity drift of a well; edge wells are dimmer; 1 when off."""
        wd = self.config.well_drift
        rng = stream(
            self.config.seed, T_WELL, name_key(cell_line.upper()), batch, plate, name_key(well)
        )
        edge = well[0] in (ROWS[0], ROWS[-1]) or int(well[1:]) in (COLUMNS[0], COLUMNS[-1])
        return np.exp(wd * 0.05 * rng.standard_normal(len(CHANNELS))) * (1 - wd * 0.06 * edge)

    def apply(
        self,
        signal: np.ndarray,
        rng: np.random.Generator,
        cell_line: str,
        batch: int,
        plate: int,
        well: str,
    ) -> np.ndarray:
        """A site's float32 (6, H, W) signal as the camera sees it (float32, not yet rounded).

        Gain (batch x well), contrast, illumination, offset, then noise drawn from the
        site's own `rng` (the one that drew its cells). `signal` may be changed in place.
        """
        cfg = self.config
        gain, offset = self.batch_effect(cell_line, batch)
        gain = gain * self.well_gain(cell_line, batch, plate, well)
        signal *= gain.astype(np.float32)[:, None, None]
        if cfg.batch_effect > 0:
            gamma = self.batch_contrast(cell_line, batch).astype(np.float32)[:, None, None]
            np.clip(signal, 0, None, out=signal)
            signal = np.float32(255) * (signal / np.float32(255)) ** gamma
        if cfg.illumination > 0:
            signal *= self.illumination(cell_line, batch, plate)
        signal += offset.astype(np.float32)[:, None, None]
        if cfg.noise > 0:
            noise = rng.standard_normal(signal.shape, dtype=np.float32)
            var = np.maximum(signal, 0)
            var *= 0.6
            var += 2.0
            noise *= np.sqrt(var, out=var)
            noise *= np.float32(cfg.noise)
            signal += noise
        return signal
