"""Generated land-cover layouts, and Sentinel-2 L1C-like scenes made from them by Dynamic World's backward network.

Real label maps rarely hold every class in realistic arrangements (the project's
WorldCover tiles are tropical islands: no snow, little built-up, almost no crops).
:func:`generate_layout` draws a landscape from random fields with the structure the
classes have on the ground, at 10 m:

* **relief and moisture**: smooth multi-scale noise fields (metres, 0–1);
* **snow and ice** above a snow line on the relief, **bare** rock and scree below it,
  then **shrub and scrub** on dry slopes;
* **water**: lakes in the wettest hollows and rivers (smooth random curves, 2–14 px
  wide), with **flooded vegetation** along their banks and in wet low ground, and
  partly flooded fields;
* **crops** in parcels (a rotated grid of fields, 15–60 px, cut by a jitter) inside an
  agricultural region, some parcels grass (pasture) or bare (fallow), with hedgerows;
* **trees** in forest patches and along rivers;
* **built**: towns of rotated street grids with built blocks interleaved with gardens,
  roads (1–2 px) joining them, scattered farm buildings;
* **grass** wherever nothing else was placed.

:func:`layout_probabilities` softens a layout into class probabilities (mixed pixels at
boundaries, built mixed per pixel with gardens and streets, per-parcel variation), and
:func:`synthesize` turns probabilities into top-of-atmosphere reflectance with Dynamic
World's **backward** network (the synthesis path published with the model) and inverts
its band normalisation.  The teacher's own labels on such a scene (forward network)
are the training targets: they say how Dynamic World reads these spectra.

Hand-written: a procedural generator specific to the nine Dynamic World classes.

Examples
--------
>>> lab = generate_layout(64, np.random.default_rng(0))
>>> lab.shape, lab.dtype, int(lab.max()) < 9
((64, 64), dtype('uint8'), True)
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from scipy import ndimage

from ..classes import CLASSES

__all__ = ["denormalise", "generate_layout", "layout_probabilities", "synthesize"]

K = len(CLASSES)
WATER, TREES, GRASS, FLOODED, CROPS, SHRUB, BUILT, BARE, SNOW = range(K)


def _field(shape: tuple[int, int], rng: np.random.Generator, scales: tuple[float, ...] = (48, 16, 6),
           weights: tuple[float, ...] = (1.0, 0.45, 0.2)) -> np.ndarray:
    """Smooth multi-scale noise, standardised to mean 0 and standard deviation 1."""
    out = np.zeros(shape, np.float64)
    for s, w in zip(scales, weights, strict=True):
        f = ndimage.gaussian_filter(rng.standard_normal(shape), s, mode="wrap")
        out += w * f / (f.std() + 1e-12)
    return ((out - out.mean()) / (out.std() + 1e-12)).astype(np.float32)


def _rotated_grid(shape: tuple[int, int], rng: np.random.Generator, cell: tuple[float, float],
                  angle: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Cell indices and fractional positions of a rotated grid (rows of ``cell[0]``, columns of ``cell[1]`` px)."""
    h, w = shape
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    c, s = np.cos(angle), np.sin(angle)
    u = (c * xx + s * yy + rng.uniform(0, cell[1])) / cell[1]
    v = (-s * xx + c * yy + rng.uniform(0, cell[0])) / cell[0]
    return np.floor(u).astype(np.int64), np.floor(v).astype(np.int64), u % 1, v % 1


def _river(shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """Distance (px) to a smooth random river centre line crossing the image."""
    h, w = shape
    n = 4 * max(h, w)
    side = rng.integers(4)
    start = {0: (0.0, rng.uniform(0, w)), 1: (h - 1.0, rng.uniform(0, w)), 2: (rng.uniform(0, h), 0.0),
             3: (rng.uniform(0, h), w - 1.0)}[int(side)]
    heading = {0: np.pi / 2, 1: -np.pi / 2, 2: 0.0, 3: np.pi}[int(side)] + rng.uniform(-0.5, 0.5)
    turn = ndimage.gaussian_filter1d(rng.normal(0, 0.25, n), 12)
    ang = heading + np.cumsum(turn)
    ys = start[0] + np.cumsum(np.sin(ang) * 0.5)
    xs = start[1] + np.cumsum(np.cos(ang) * 0.5)
    line = np.zeros(shape, bool)
    keep = (ys >= 0) & (ys < h) & (xs >= 0) & (xs < w)
    line[ys[keep].astype(int), xs[keep].astype(int)] = True
    if not line.any():
        line[h // 2, :] = True
    return ndimage.distance_transform_edt(~line).astype(np.float32)


def generate_layout(size: int, rng: np.random.Generator, *, mountain: float | None = None,
                    urban: float | None = None, wet: float | None = None, farmland: float | None = None) -> np.ndarray:
    """A random landscape ``(size, size)`` uint8 of Dynamic World classes at 10 m.

    Parameters
    ----------
    size
        Side in pixels.
    rng
        Random generator (same seed, same layout).
    mountain, urban, wet, farmland
        0–1 strength of relief/snow, towns, water/wetland and cropland; drawn at
        random when ``None``.

    Examples
    --------
    >>> lab = generate_layout(96, np.random.default_rng(3), mountain=1.0, urban=0.0, wet=0.0, farmland=0.0)
    >>> bool((lab == SNOW).any()), bool((lab == BUILT).any())
    (True, False)
    """
    shape = (size, size)
    mountain = rng.uniform(0, 1) ** 2 if mountain is None else mountain
    urban = rng.uniform(0, 1) ** 1.5 if urban is None else urban
    wet = rng.uniform(0, 1) if wet is None else wet
    farmland = rng.uniform(0, 1) if farmland is None else farmland
    relief = _field(shape, rng, (size / 3, size / 10, 4), (1.0, 0.35, 0.1))
    moisture = _field(shape, rng)
    forest_f = _field(shape, rng, (size / 6, 8, 3), (1.0, 0.4, 0.2))
    dry_f = _field(shape, rng)
    lab = np.full(shape, GRASS, np.uint8)

    # vegetation base: forest patches, shrub on dry ground
    lab[forest_f > rng.uniform(-0.2, 1.0)] = TREES
    lab[(dry_f > rng.uniform(0.3, 1.6)) & (lab == GRASS)] = SHRUB
    lab[(dry_f > rng.uniform(1.2, 2.2))] = BARE

    # farmland: a rotated grid of parcels inside an agricultural region
    if farmland > 0.15:
        region = _field(shape, rng, (size / 4, 10), (1.0, 0.3)) > (1.0 - 2.0 * farmland)
        cell = (rng.uniform(15, 45), rng.uniform(20, 60))
        u, v, fu, fv = _rotated_grid(shape, rng, cell, rng.uniform(0, np.pi))
        pid = (u * 7919 + v * 104729) % 1_000_003
        kinds = np.random.default_rng(int(rng.integers(1 << 31))).choice(
            [CROPS, CROPS, CROPS, CROPS, GRASS, BARE, TREES], size=1_000_003).astype(np.uint8)
        parcel = kinds[pid]
        edge = (np.minimum(fu, 1 - fu) * cell[1] < 1.0) | (np.minimum(fv, 1 - fv) * cell[0] < 1.0)
        hedges = edge & (rng.random(shape) < 0.5 * rng.uniform(0, 1))
        lab = np.where(region, parcel, lab)
        lab[region & hedges] = TREES

    # relief: bare then snow at altitude
    if mountain > 0.05:
        snow_line = np.quantile(relief, 1.0 - 0.35 * mountain)
        bare_line = snow_line - rng.uniform(0.3, 0.9)
        lab[relief > bare_line] = np.where(rng.random() < 0.5, BARE, SHRUB)
        lab[relief > bare_line + 0.25] = BARE
        lab[relief > snow_line] = SNOW

    # water: lakes in hollows, a river, banks of flooded vegetation
    water = np.zeros(shape, bool)
    if wet > 0.1:
        low = moisture - 0.6 * relief
        water |= low > np.quantile(low, 1.0 - 0.12 * wet)
        if rng.random() < 0.7:
            water |= _river(shape, rng) < rng.uniform(1.0, 7.0)
        water[relief > np.quantile(relief, 0.97)] = False
        dist = ndimage.distance_transform_edt(~water)
        bank = (dist > 0) & (dist < rng.uniform(2, 12) * wet) & (moisture > rng.uniform(-1.0, 0.5))
        marsh = (moisture > np.quantile(moisture, 1.0 - 0.08 * wet)) & ~water
        flooded = bank | marsh
        lab[flooded & (lab != SNOW)] = FLOODED
        # partly flooded fields: a flood front over low farmland
        if farmland > 0.15 and rng.random() < 0.5:
            front = (low > np.quantile(low, 1.0 - 0.25 * wet)) & (lab == CROPS)
            lab[front] = np.where(rng.random(shape) < 0.5, FLOODED, WATER)[front]
        lab[water] = WATER
        riparian = (dist > 0) & (dist < 3) & (lab == GRASS) & (rng.random(shape) < 0.6)
        lab[riparian] = TREES

    # built: towns with street grids, roads between them, farm buildings
    if urban > 0.1:
        n_towns = 1 + int(rng.integers(0, 1 + int(3 * urban)))
        yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
        centres = []
        for _ in range(n_towns):
            cy, cx = rng.uniform(0, size, 2)
            centres.append((cy, cx))
            radius = rng.uniform(8, 20 + 60 * urban)
            r = np.hypot(yy - cy, xx - cx) / radius + 0.25 * _field(shape, rng, (12, 4), (1.0, 0.3))
            town = (r < 1.0) & (lab != WATER) & (lab != SNOW)
            block = (rng.uniform(6, 14), rng.uniform(6, 14))
            u, v, fu, fv = _rotated_grid(shape, rng, block, rng.uniform(0, np.pi))
            street = (np.minimum(fu, 1 - fu) * block[1] < 0.8) | (np.minimum(fv, 1 - fv) * block[0] < 0.8)
            garden = ((u * 31 + v * 17) % 5 == 0) & (r > 0.4)
            lab[town & ~garden] = BUILT
            lab[town & garden] = np.where(rng.random(shape) < 0.6, GRASS, TREES)[town & garden]
            lab[town & street] = BUILT
        for (y0, x0), (y1, x1) in zip(centres, centres[1:] + [tuple(rng.uniform(0, size, 2))], strict=True):
            t = np.linspace(0, 1, 4 * size)
            bend = rng.normal(0, size / 8) * np.sin(np.pi * t)
            ry = np.clip(y0 + (y1 - y0) * t + bend, 0, size - 1).astype(int)
            rx = np.clip(x0 + (x1 - x0) * t - bend * 0.5, 0, size - 1).astype(int)
            road = np.zeros(shape, bool)
            road[ry, rx] = True
            if rng.random() < 0.5:
                road = ndimage.binary_dilation(road)
            lab[road & (lab != WATER)] = BUILT
        farms = (rng.random(shape) < 0.002 * urban) & (lab != WATER) & (lab != SNOW)
        lab[ndimage.binary_dilation(farms, iterations=int(rng.integers(1, 3)))] = BUILT
    return lab


def layout_probabilities(lab: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Class probabilities ``(K, H, W)`` float32 of a layout: mixed boundaries, textured built-up, varied parcels.

    Examples
    --------
    >>> p = layout_probabilities(generate_layout(32, np.random.default_rng(1)), np.random.default_rng(2))
    >>> p.shape, bool(np.allclose(p.sum(0), 1, atol=1e-5))
    ((9, 32, 32), True)
    """
    onehot = np.stack([(lab == k).astype(np.float32) for k in range(K)])
    a = rng.uniform(0.15, 0.45)
    blur = np.stack([ndimage.gaussian_filter(o, rng.uniform(0.7, 2.0)) for o in onehot])
    p = (1 - a) * onehot + a * blur
    # per-region variety: each class's pixels borrow a random share of a "neighbour" class
    partner = {WATER: (FLOODED, BARE), TREES: (GRASS, SHRUB, FLOODED), GRASS: (CROPS, SHRUB, TREES),
               FLOODED: (WATER, GRASS, TREES), CROPS: (GRASS, BARE), SHRUB: (GRASS, BARE, TREES),
               BUILT: (BARE, GRASS, TREES), BARE: (SHRUB, BUILT, SNOW), SNOW: (BARE, WATER)}
    field = ndimage.gaussian_filter(rng.random(lab.shape), 6)
    field = (field - field.min()) / (np.ptp(field) + 1e-9)
    for k, others in partner.items():
        m = lab == k
        if not m.any():
            continue
        o = others[int(rng.integers(len(others)))]
        share = rng.uniform(0.0, 0.45) * field
        p[k] -= np.where(m, share * p[k], 0)
        p[o] += np.where(m, share * onehot[k], 0)
    # built-up is a per-pixel mixture of roofs, streets, gardens
    built = lab == BUILT
    if built.any():
        mix = rng.uniform(0, 0.5, lab.shape).astype(np.float32) * built
        other = rng.choice([GRASS, TREES, BARE], size=lab.shape)
        for k in (GRASS, TREES, BARE):
            p[k] += np.where(other == k, mix * p[BUILT], 0)
        p[BUILT] *= 1 - mix
    p += rng.uniform(0, 0.04) * rng.random((K, *lab.shape)).astype(np.float32)
    p = np.clip(p, 0, None)
    return (p / p.sum(0, keepdims=True)).astype(np.float32)


def denormalise(n: np.ndarray) -> np.ndarray:
    """Inverse of Dynamic World's band normalisation: normalised bands ``(9, …)`` → reflectance.

    Examples
    --------
    >>> from dwcube.models.dynamic_world import normalize_dn
    >>> dn = np.full((1, 1, 9), 1500.0)
    >>> round(float(denormalise(normalize_dn(dn)[0, 0][:, None])[0, 0]), 4)
    0.15
    """
    from ..models.dynamic_world import NORM_PERCENTILES as P

    n = np.clip(n.astype(np.float64), 1e-5, 1 - 1e-5)
    x = (np.log(n / (1 - n)) + 1.0) / 5.0
    shape = (-1,) + (1,) * (n.ndim - 1)
    dn = (np.exp(x * P[:, 1].reshape(shape) + P[:, 0].reshape(shape)) - 1.0) / 0.005
    return (dn / 10000.0).astype(np.float32)


def synthesize(prob: np.ndarray, weights: Path, *, batch: int = 8) -> np.ndarray:
    """TOA reflectance ``(N, 9, H, W)`` (Dynamic World's bands, B2…B12) from probabilities ``(N, 9, H, W)``."""
    import torch

    from ..models.registry import load_model

    back = load_model("dynamic-world", weights=weights, direction="backward").module
    out = []
    with torch.inference_mode():
        for s in range(0, len(prob), batch):
            out.append(denormalise(np.moveaxis(back(torch.from_numpy(prob[s:s + batch])).numpy(), 1, 0)))
    return np.concatenate([np.moveaxis(o, 0, 1) for o in out]).astype(np.float32)


# --- collages of real textures ---------------------------------------------------------------


def texture_bank(refl: np.ndarray, prob: np.ndarray, allowed: np.ndarray, *, size: int = 64,
                 min_share: dict[int, float] | None = None, per_class: int = 24,
                 rng: np.random.Generator | None = None) -> dict[int, list[np.ndarray]]:
    """Windows of real reflectance dominated by one class, to paint collages with.

    Parameters
    ----------
    refl
        ``(B, H, W)`` reflectance of one date (NaN = no data).
    prob
        ``(K, H, W)`` the teacher's probabilities on it.
    allowed
        ``(H, W)`` bool: pixels a window may use (the training side of the split only).
    size
        Window side (pixels).
    min_share
        Per class, the share of the window the teacher must give that class (default 0.7;
        built-up 0.35 and shrub 0.5, which are mixed by nature).
    per_class
        At most this many windows per class, spread over the scene.

    Returns
    -------
    dict
        Class index → list of ``(B, size, size)`` windows (no NaN).

    Examples
    --------
    >>> p = np.zeros((K, 96, 96), np.float32); p[1] = 1
    >>> bank = texture_bank(np.random.default_rng(0).random((3, 96, 96)), p, np.ones((96, 96), bool), size=32)
    >>> sorted(bank), bank[1][0].shape
    ([1], (3, 32, 32))
    """
    rng = rng or np.random.default_rng(0)
    thresholds = {k: 0.7 for k in range(K)} | {BUILT: 0.35, SHRUB: 0.5} | dict(min_share or {})
    lab = np.nan_to_num(prob, nan=-1).argmax(0)
    ok = allowed & np.isfinite(refl).all(0)
    ok_share = ndimage.uniform_filter(ok.astype(np.float32), size)
    h = size // 2
    inside = np.zeros(ok.shape, bool)
    inside[h:ok.shape[0] - h, h:ok.shape[1] - h] = True
    bank: dict[int, list[np.ndarray]] = {}
    for k in range(K):
        share = ndimage.uniform_filter((lab == k).astype(np.float32), size)
        ys, xs = np.nonzero((share >= thresholds[k]) & (ok_share > 0.999) & inside)
        if not len(ys):
            continue
        picks = rng.choice(len(ys), size=min(per_class, len(ys)), replace=False)
        wins = []
        for i in picks:
            y, x = ys[i] - h, xs[i] - h
            w = refl[:, y:y + size, x:x + size]
            if w.shape[1:] == (size, size) and np.isfinite(w).all():
                wins.append(w.astype(np.float32))
        if wins:
            bank[k] = wins
    return bank


def _tiled(window: np.ndarray, shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """A window mirror-tiled over ``shape`` at a random offset and orientation."""
    w = np.rot90(window, int(rng.integers(4)), axes=(1, 2))
    if rng.random() < 0.5:
        w = w[..., ::-1]
    s = w.shape[1]
    big = np.concatenate([w, w[:, ::-1]], 1)
    big = np.concatenate([big, big[..., ::-1]], 2)  # (B, 2s, 2s), seamless under wrap
    oy, ox = rng.integers(2 * s, size=2)
    iy = (np.arange(shape[0]) + oy) % (2 * s)
    ix = (np.arange(shape[1]) + ox) % (2 * s)
    return big[:, iy][:, :, ix]


def collage(lab: np.ndarray, bank: dict[int, list[np.ndarray]], rng: np.random.Generator) -> np.ndarray:
    """Reflectance ``(B, H, W)`` of a layout painted with real textures of each class.

    Each class present in the layout is painted with one window of its class from
    ``bank`` (mirror-tiled), regions blend over ~1 px at their boundaries; flooded
    vegetation (when the bank has none) is a mixture of a water and a vegetation
    texture with a smoothly varying water fraction (0.25–0.75), and classes missing
    from the bank fall back to grass.

    Examples
    --------
    >>> bank = {k: [np.full((3, 16, 16), 0.1 * (k + 1), np.float32)] for k in (WATER, GRASS)}
    >>> lab = np.zeros((32, 32), np.uint8); lab[:, 16:] = GRASS
    >>> out = collage(lab, bank, np.random.default_rng(0))
    >>> out.shape, round(float(out[0, 0, 0]), 3), round(float(out[0, 0, 31]), 3)
    ((3, 32, 32), 0.1, 0.3)
    """
    shape = lab.shape
    nb = next(iter(bank.values()))[0].shape[0]
    out = np.zeros((nb, *shape), np.float32)
    weight = np.zeros(shape, np.float32)
    sigma = rng.uniform(0.4, 1.2)
    for k in np.unique(lab):
        k = int(k)
        mask = (lab == k).astype(np.float32)
        if k in bank:
            tex = _tiled(bank[k][int(rng.integers(len(bank[k])))], shape, rng)
        elif k == FLOODED and WATER in bank:
            veg = [c for c in (GRASS, TREES, CROPS, SHRUB) if c in bank]
            tex_w = _tiled(bank[WATER][int(rng.integers(len(bank[WATER])))], shape, rng)
            c = veg[int(rng.integers(len(veg)))] if veg else WATER
            tex_v = _tiled(bank[c][int(rng.integers(len(bank[c])))], shape, rng)
            frac = ndimage.gaussian_filter(rng.random(shape), 4)
            frac = 0.25 + 0.5 * (frac - frac.min()) / (np.ptp(frac) + 1e-9)
            tex = frac * tex_w + (1 - frac) * tex_v
        else:
            c = GRASS if GRASS in bank else next(iter(bank))
            tex = _tiled(bank[c][int(rng.integers(len(bank[c])))], shape, rng)
        m = ndimage.gaussian_filter(mask, sigma) if sigma > 0 else mask
        out += m * tex
        weight += m
    return (out / np.maximum(weight, 1e-6)).astype(np.float32)
