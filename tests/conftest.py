"""Fixtures: real data from ../shared (skipped when absent) and small synthetic tiles made by code."""

from __future__ import annotations

import datetime as dt
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

from dwcube import testing as T

REPO = Path(__file__).resolve().parent.parent
SHARED = T.shared_dir(REPO)
SKIP_SHARED = "needs ../shared/data (the project's real test data; set DWCUBE_SHARED to point at it)"

warnings.filterwarnings("ignore", message="Dataset has no geotransform")


def nan_equal(a: np.ndarray, b: np.ndarray) -> bool:
    """Arrays equal, NaN where both are NaN."""
    return bool(np.array_equal(np.asarray(a), np.asarray(b), equal_nan=True))


@pytest.fixture(scope="session")
def shared() -> Path:
    if SHARED is None:
        pytest.skip(SKIP_SHARED)
    return SHARED


# -- the real T29UNU tile ---------------------------------------------------------------------


@pytest.fixture(scope="session")
def t29unu_dir(shared: Path) -> Path:
    return shared / "data" / "s2l2a-T29UNU-20221005-60m"


@pytest.fixture(scope="session")
def t29unu_root(t29unu_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """COGs of the real tile (bands at 60 m, SCL at 20 m and 60 m), served from this folder."""
    root = tmp_path_factory.mktemp("t29unu")
    T.t29unu_cogs(t29unu_dir, root / "cogs", ["blue", "red", "nir08", "swir16"], scl_resolution=20)
    T.t29unu_cogs(t29unu_dir, root / "cogs", ["blue", "red", "nir08", "swir16"], scl_resolution=60)
    return root


@pytest.fixture()
def t29unu_server(t29unu_root: Path) -> Iterator[tuple[str, T.ServerStats]]:
    with T.serve_directory(t29unu_root) as served:
        yield served


def t29unu_item(t29unu_dir: Path, root: Path, url: str, *, layout: str = "earth-search",
                baseline: str | None = None, scl_resolution: int = 20, item_id: str | None = None):
    return T.t29unu_items(t29unu_dir, root / "cogs", base_url=url, root=root, layout=layout,
                          processing_baseline=baseline, bands=["blue", "red", "nir08", "swir16"],
                          item_id=item_id, scl_resolution=scl_resolution)


# -- synthetic tiles ----------------------------------------------------------------------------


@pytest.fixture()
def make_s2_tile(tmp_path: Path) -> Callable[..., tuple[object, dict[str, np.ndarray]]]:
    """Write a small Sentinel-2 L2A tile (DN bands + SCL, same grid) and return (item, arrays)."""

    def make(
        name: str,
        when: dt.datetime,
        *,
        epsg: int = 32633,
        x0: float = 500000.0,
        y0: float = 5000000.0,
        shape: tuple[int, int] = (64, 80),
        res: float = 10.0,
        bands: tuple[str, ...] = ("blue", "red", "nir"),
        scl: np.ndarray | None = None,
        seed: int = 0,
        base_url: str | None = None,
        layout: str = "earth-search",
        baseline: str | None = "04.00",
        platform: str = "sentinel-2a",
        extra_properties: dict | None = None,
    ):
        rng = np.random.default_rng(seed)
        arrays: dict[str, np.ndarray] = {}
        infos = {}
        for b in bands:
            dn = rng.integers(1001, 6000, size=shape).astype(np.uint16)
            arrays[b] = dn
            infos[b] = T.write_cog(tmp_path / name / f"{b}.tif", dn, epsg=epsg,
                                   transform=(res, 0, x0, 0, -res, y0), blocksize=256)
        if scl is None:
            scl = np.full(shape, 4, np.uint8)
        arrays["scl"] = scl
        infos["scl"] = T.write_cog(tmp_path / name / "scl.tif", scl, epsg=epsg,
                                   transform=(res, 0, x0, 0, -res, y0))
        item = T.sentinel2_item(
            name, when, infos, base_url=base_url or tmp_path.resolve().as_uri(), root=tmp_path,
            layout=layout, processing_baseline=baseline, platform=platform, cloud_cover=10.0,
            extra_properties=extra_properties,
        )
        return item, arrays

    return make
