"""Drawing one site's cells, channel by channel, with numpy only (no technical effects).

Soft-edged irregular ellipse cells with a nucleus, ER (perinuclear, reticular, nuclear
envelope), actin (cortex + stress fibers along the long axis), RNA (nucleoli puncta),
mitochondria (tubules that fragment), Golgi (a cluster beside the nucleus) and a WGA
membrane rim, in RxRx channel order (w1 DNA ... w6 Golgi/membrane). Cell size, shape,
intensities, textures and organelle counts follow the knock-down's phenotype vector.

The field of view is fixed: `size` sets the resolution, so a 64 px site shows the same
cells as a 256 px one, smaller.
"""

from __future__ import annotations

import functools
import math

import numpy as np

from embedkit.datasets.synthetic.biology import FEATURE_INDEX, PHENOTYPE_FEATURES, CellLineProfile

CHANNELS: tuple[tuple[str, str], ...] = (
    ("DNA", "Hoechst 33342"),
    ("ER", "Concanavalin A"),
    ("Actin", "Phalloidin"),
    ("RNA", "SYTO 14"),
    ("Mito", "MitoTracker"),
    ("GolgiMembrane", "WGA"),
)
REFERENCE_SIZE = 256  # pixel sizes in the cell-line table are for a 256 px field

_F = FEATURE_INDEX
_INTENSITY = [_F[f"{c}_intensity"] for c in ("dna", "er", "actin", "rna", "mito", "wga")]
_BACKGROUND = np.array([5.0, 6.0, 4.0, 5.0, 4.0, 5.0], dtype=np.float32)


@functools.lru_cache(maxsize=8)
def _noise_filter(size: int) -> np.ndarray:
    """Gaussian transfer functions of the three texture fields, scaled to unit output std."""
    scale = size / REFERENCE_SIZE
    fy = np.fft.fftfreq(size)[:, None]
    fx = np.fft.rfftfreq(size)[None, :]
    sigmas = np.array([0.8, 1.0, 3.0]) * max(scale, 0.35)
    transfer = np.exp(-2 * np.pi**2 * sigmas[:, None, None] ** 2 * (fy**2 + fx**2)[None])
    # std of white noise filtered by `transfer` (Parseval, counting the rfft half-plane twice)
    weight = np.full(transfer.shape[-1], 2.0)
    weight[0] = 1.0
    if size % 2 == 0:
        weight[-1] = 1.0
    std = np.sqrt((transfer**2 * weight).sum(axis=(1, 2)) / size**2)
    transfer = (transfer / std[:, None, None]).astype(np.complex64)
    transfer.flags.writeable = False
    return transfer


def _noise_fields(rng: np.random.Generator, size: int) -> np.ndarray:
    """Three unit-variance smooth noise fields: fine (chromatin), fine (ER), coarse (actin)."""
    white = rng.standard_normal((3, size, size), dtype=np.float32)
    spectrum = np.fft.rfft2(white)
    spectrum *= _noise_filter(size)
    return np.fft.irfft2(spectrum, s=(size, size)).astype(np.float32, copy=False)


def _gauss_blur(img: np.ndarray, sigma: float) -> np.ndarray:
    """Separable Gaussian blur with zero padding (no wrap-around), for small sigmas."""
    radius = max(1, int(math.ceil(3 * sigma)))
    taps = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2).astype(np.float32)
    taps /= taps.sum()
    h, w = img.shape
    pad = np.pad(img, radius)
    rows = np.zeros((h + 2 * radius, w), dtype=np.float32)
    for i, t in enumerate(taps):
        rows += t * pad[:, i : i + w]
    out = np.zeros((h, w), dtype=np.float32)
    for i, t in enumerate(taps):
        out += t * rows[i : i + h]
    return out


def _splat(size: int, y: np.ndarray, x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Bilinear splatting of weighted points onto a (size, size) image."""
    y0, x0 = np.floor(y - 0.5), np.floor(x - 0.5)
    fy, fx = y - 0.5 - y0, x - 0.5 - x0
    y0, x0 = y0.astype(np.int64), x0.astype(np.int64)
    idx, wts = [], []
    for dy, dx, wt in ((0, 0, (1 - fy) * (1 - fx)), (0, 1, (1 - fy) * fx), (1, 0, fy * (1 - fx))):
        idx.append((y0 + dy, x0 + dx))
        wts.append(wt * w)
    idx.append((y0 + 1, x0 + 1))
    wts.append(fy * fx * w)
    yy = np.concatenate([i[0] for i in idx])
    xx = np.concatenate([i[1] for i in idx])
    ww = np.concatenate(wts)
    ok = (yy >= 0) & (yy < size) & (xx >= 0) & (xx < size)
    flat = np.bincount(yy[ok] * size + xx[ok], weights=ww[ok], minlength=size * size)
    return flat.reshape(size, size).astype(np.float32)


def _place(
    rng: np.random.Generator, n: int, radius: np.ndarray, size: int, clustering: float
) -> np.ndarray:
    """Cell centers: uniform or against a neighbor, rejecting heavy overlaps."""
    centers = np.empty((0, 2))
    placed_r = np.empty(0)
    for i in range(n):
        for _ in range(30):
            if len(centers) and rng.random() < clustering:
                j = rng.integers(len(centers))
                angle = rng.uniform(0, 2 * np.pi)
                dist = (placed_r[j] + radius[i]) * rng.uniform(0.85, 1.1)
                cand = centers[j] + dist * np.array([np.sin(angle), np.cos(angle)])
            else:
                cand = rng.uniform(0, size, 2)
            if len(centers) == 0:
                break
            d = np.sqrt(((centers - cand) ** 2).sum(1))
            if np.all(d > 0.8 * (placed_r + radius[i])):
                break
        else:
            continue
        centers = np.vstack([centers, cand])
        placed_r = np.append(placed_r, radius[i])
    return centers


def draw_cells(
    profile: CellLineProfile,
    effect: np.ndarray,
    rng: np.random.Generator,
    size: int,
    cells_per_site: tuple[int, int],
) -> np.ndarray:
    """Float32 (6, H, W) fluorescence of one site before technical effects (background incl.)."""
    s = size / REFERENCE_SIZE
    e = np.clip(effect, -3, 3)
    n_feat = len(PHENOTYPE_FEATURES)

    lo, hi = cells_per_site
    n_target = rng.integers(lo, hi + 1) * profile.density * math.exp(0.2 * e[_F["cell_count"]])
    n = max(1, int(round(n_target)))
    # per-cell phenotype: knock-down penetrance x effect + cell-to-cell variability
    penetrance = rng.uniform(0.6, 1.0, n)
    ec = penetrance[:, None] * e[None] + 0.7 * rng.standard_normal((n, n_feat))

    mitotic = rng.random(n) < 0.03 * np.exp(0.6 * ec[:, _F["mitotic_index"]])
    radius = profile.radius * s * np.exp(0.12 * ec[:, _F["cell_size"]])
    radius = np.where(mitotic, 0.65 * radius, radius)
    elong = 1 + (profile.elongation - 1) * np.exp(0.35 * ec[:, _F["elongation"]])
    elong = np.where(mitotic, 1.05, elong)
    a, b = radius * np.sqrt(elong), radius / np.sqrt(elong)
    nuc_ratio = np.clip(profile.nucleus_ratio * np.exp(0.12 * ec[:, _F["nucleus_size"]]), 0.2, 0.8)
    nuc_ratio = np.where(mitotic, 0.55, nuc_ratio)
    an = nuc_ratio * radius * elong**0.25
    bn = nuc_ratio * radius / elong**0.25
    nu = (a - an) * 0.3 * rng.standard_normal(n)
    nv = (b - bn) * 0.3 * rng.standard_normal(n)

    site_theta = rng.uniform(0, np.pi)
    aligned = rng.random(n) < profile.alignment
    theta = np.where(aligned, site_theta + 0.25 * rng.standard_normal(n), rng.uniform(0, np.pi, n))
    harm = profile.irregularity * rng.standard_normal((n, 4))

    intensity = np.asarray(profile.intensity, dtype=float)[None] * np.exp(
        0.2 * ec[:, _INTENSITY] + 0.1 * rng.standard_normal((n, 6))
    )
    intensity[:, 0] *= np.where(mitotic, 2.0, 1.0)
    chromatin = 0.2 * np.exp(0.4 * ec[:, _F["chromatin_texture"]]) * np.where(mitotic, 2.0, 1.0)
    er_tex = 0.45 * np.exp(0.4 * ec[:, _F["er_texture"]])
    fibers = profile.fibers * np.exp(0.5 * ec[:, _F["actin_fibres"]])
    fiber_period = 4.0 * max(s, 0.5) * rng.uniform(0.8, 1.25, n)
    fiber_phase = rng.uniform(0, 2 * np.pi, n)

    centers = _place(rng, n, np.sqrt(a * b), size, profile.clustering)
    n = len(centers)
    canvas = np.zeros((6, size, size), dtype=np.float32)
    fields = _noise_fields(rng, size)
    edge = max(0.7, 1.2 * s)
    rim_w = max(0.7, 1.6 * s)

    for i in range(n):
        cy, cx = centers[i]
        ct, st = math.cos(theta[i]), math.sin(theta[i])
        ext = 1.0 + 2 * np.abs(harm[i]).max() + 0.05
        hx = math.sqrt((a[i] * ct) ** 2 + (b[i] * st) ** 2) * ext + 2
        hy = math.sqrt((a[i] * st) ** 2 + (b[i] * ct) ** 2) * ext + 2
        y0, y1 = max(0, int(cy - hy)), min(size, int(math.ceil(cy + hy)) + 1)
        x0, x1 = max(0, int(cx - hx)), min(size, int(math.ceil(cx + hx)) + 1)
        if y0 >= y1 or x0 >= x1:
            continue
        dy = (np.arange(y0, y1, dtype=np.float32) + 0.5 - cy)[:, None]
        dx = (np.arange(x0, x1, dtype=np.float32) + 0.5 - cx)[None, :]
        u = dx * ct + dy * st
        v = dy * ct - dx * st
        un, vn = u / a[i], v / b[i]
        rr = np.sqrt(un * un + vn * vn) + 1e-6
        cp, sp = un / rr, vn / rr
        h = harm[i]
        bound = (
            1
            + h[0] * (cp * cp - sp * sp)
            + h[1] * (2 * cp * sp)
            + h[2] * cp * (4 * cp * cp - 3)
            + h[3] * sp * (3 - 4 * sp * sp)
        )
        rho = rr / bound
        r_px = math.sqrt(a[i] * b[i])
        depth = (1 - rho) * r_px  # px inside the outline
        cell = np.minimum(np.maximum(depth * (1 / edge), 0), 1)
        nx, ny = (u - nu[i]) / an[i], (v - nv[i]) / bn[i]
        rn = np.sqrt(nx * nx + ny * ny)
        rn_px = math.sqrt(an[i] * bn[i])
        nuc = np.minimum(np.maximum((1 - rn) * (rn_px / edge), 0), 1) * cell
        cyto = cell - nuc
        rim = cell * np.exp(-((depth / rim_w) ** 2))
        peri = np.exp(np.maximum(rn - 1, 0) * -1.2)
        f = fields[:, y0:y1, x0:x1]
        envelope = cell * np.exp(-(((rn - 1) * rn_px / rim_w) ** 2))
        fib = (
            0.5 + 0.5 * np.cos(v * (2 * np.pi / fiber_period[i]) + fiber_phase[i] + 1.5 * f[2])
        ) ** 6
        inten = intensity[i]
        patch = canvas[:, y0:y1, x0:x1]
        patch[0] += inten[0] * nuc * np.maximum(1 + chromatin[i] * f[0], 0)
        patch[1] += inten[1] * (
            cyto * (0.3 + 0.7 * peri) * np.maximum(1 + er_tex[i] * f[1], 0) + 0.4 * envelope
        )
        patch[2] += inten[2] * (
            0.2 * cell + 0.8 * rim + 0.6 * fibers[i] * cyto * fib * np.maximum(f[1] + 0.5, 0)
        )
        patch[3] += inten[3] * (0.25 * cyto * (0.5 + 0.5 * peri) + 0.2 * nuc)
        patch[4] += inten[4] * 0.12 * cyto * (0.5 + 0.5 * peri)
        patch[5] += inten[5] * (0.12 * cell + 0.7 * rim)

    cells = dict(a=a, b=b, an=an, bn=bn, nu=nu, nv=nv, theta=theta, nuc_ratio=nuc_ratio)
    cells.update(mitotic=mitotic, intensity=intensity, ec=ec)
    _draw_puncta(canvas, rng, centers, {k: v[:n] for k, v in cells.items()}, profile, s)
    fields_bg = 1 + 0.1 * fields[2]
    canvas += _BACKGROUND[:, None, None] * fields_bg[None]
    return canvas


def _draw_puncta(
    canvas: np.ndarray,
    rng: np.random.Generator,
    centers: np.ndarray,
    cells: dict[str, np.ndarray],
    profile: CellLineProfile,
    s: float,
) -> None:
    """Nucleoli (RNA), mitochondria (tubules / fragments) and Golgi puncta, all cells at once."""
    a, b, an, bn, nu, nv = (cells[k] for k in ("a", "b", "an", "bn", "nu", "nv"))
    theta, nuc_ratio, mitotic = cells["theta"], cells["nuc_ratio"], cells["mitotic"]
    intensity, ec = cells["intensity"], cells["ec"]
    size = canvas.shape[-1]
    n = len(centers)
    if n == 0:
        return
    ct, st = np.cos(theta), np.sin(theta)

    def to_image(ci: np.ndarray, u: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        x = centers[ci, 1] + u * ct[ci] - v * st[ci]
        y = centers[ci, 0] + u * st[ci] + v * ct[ci]
        return y, x

    def stamp(channel: int, y: np.ndarray, x: np.ndarray, w: np.ndarray, sigma: float) -> None:
        sigma = max(0.5, sigma)
        w = w * 2 * np.pi * sigma**2  # so that the peak is ~w whatever sigma is
        canvas[channel] += _gauss_blur(_splat(size, y, x, w), sigma)

    # nucleoli: 1 + Poisson inside the nucleus, none in mitotic cells
    lam = profile.nucleoli * np.exp(0.35 * ec[:, _F["nucleoli_count"]])
    k = np.where(mitotic, 0, 1 + rng.poisson(np.clip(lam - 1, 0, None)))
    ci = np.repeat(np.arange(n), k)
    t, ang = 0.6 * np.sqrt(rng.random(len(ci))), rng.uniform(0, 2 * np.pi, len(ci))
    y, x = to_image(ci, nu[ci] + an[ci] * t * np.cos(ang), nv[ci] + bn[ci] * t * np.sin(ang))
    stamp(3, y, x, 1.1 * intensity[ci, 3], 1.6 * s)

    # mitochondria: segments of `length` px, shorter and more numerous when fragmented
    frag = ec[:, _F["mito_fragmentation"]]
    count = (
        profile.mito
        * (np.sqrt(a * b) / (16 * s)) ** 2
        * np.exp(0.3 * ec[:, _F["mito_count"]] + 0.2 * frag)
    )
    k = rng.poisson(np.where(mitotic, 0.5, 1.0) * count)
    ci = np.repeat(np.arange(n), k)
    m = len(ci)
    lo = 1.1 * nuc_ratio[ci]
    t = lo + np.clip(0.85 - lo, 0.05, None) * rng.random(m) ** 1.5
    ang = rng.uniform(0, 2 * np.pi, m)
    y, x = to_image(ci, a[ci] * t * np.cos(ang), b[ci] * t * np.sin(ang))
    length = 4.0 * s * np.exp(-0.35 * frag[ci]) * rng.uniform(0.5, 1.5, m)
    npts = np.clip(np.rint(length / max(s, 0.5)), 1, 10).astype(np.int64)
    seg = np.repeat(np.arange(m), npts)
    pos = np.arange(len(seg)) - np.repeat(np.cumsum(npts) - npts, npts)
    step = (pos - (npts[seg] - 1) / 2) * max(s, 0.5)
    direction = rng.uniform(0, 2 * np.pi, m)[seg]
    ym, xm = y[seg] + step * np.sin(direction), x[seg] + step * np.cos(direction)
    stamp(4, ym, xm, 0.3 * intensity[ci[seg], 4], 0.8 * s)

    # Golgi: a cluster beside the nucleus, spread out when dispersed
    spread = 0.35 * np.exp(0.4 * ec[:, _F["golgi_dispersion"]])
    k = np.where(mitotic, 0, rng.poisson(14, n))
    ci = np.repeat(np.arange(n), k)
    gamma = rng.uniform(0, 2 * np.pi, n)[ci]
    rn_px = np.sqrt(an * bn)[ci]
    u = nu[ci] + an[ci] * 1.15 * np.cos(gamma) + spread[ci] * rn_px * rng.standard_normal(len(ci))
    v = nv[ci] + bn[ci] * 1.15 * np.sin(gamma) + spread[ci] * rn_px * rng.standard_normal(len(ci))
    y, x = to_image(ci, u, v)
    stamp(5, y, x, 0.5 * intensity[ci, 5], 1.0 * s)
