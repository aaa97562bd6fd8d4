"""`import dwcube` and `dwcube --help` stay light: heavy parts (torch, Numba kernels, Zarr,
odc-stac) are imported where first used, and the public API behaves as when it was eager.
Checked in fresh processes (sys.modules), never by timing; the figures are in benchmarks/."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
HEAVY = ("torch", "numba", "zarr", "odc.stac", "dask.array", "lightgbm", "rasterio", "dwcube.indices",
         "dwcube.sensors.normalize", "dwcube.clouds", "dwcube.inference")


def _loaded_after(code: str) -> list[str]:
    """Heavy modules present in ``sys.modules`` after running ``code`` in a fresh interpreter."""
    probe = f"import sys, json\n{code}\nprint(json.dumps([m for m in {list(HEAVY)!r} if m in sys.modules]))"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env, cwd=REPO,
                         timeout=300, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def test_import_dwcube_loads_nothing_heavy_and_registers_the_accessor() -> None:
    # not even xarray (a second to import here): ds.lulc is registered when xarray arrives
    assert _loaded_after("import dwcube\nassert 'xarray' not in sys.modules") == []
    _loaded_after("import dwcube\nimport importlib.util\n"  # the asserts run in the child (check=True)
                  "assert importlib.util.find_spec('xarray')  # a look-up alone changes nothing\n"
                  "import xarray as xr\nassert hasattr(xr.Dataset, 'lulc') and hasattr(xr.DataArray, 'lulc')\n"
                  "assert type(xr.__loader__).__name__ == 'SourceFileLoader'  # xarray's own loader\n"
                  "assert not [f for f in sys.meta_path if 'Lulc' in type(f).__name__]  # the hook is gone\n"
                  "assert '<div' in xr.Dataset({'a': ('x', [1])})._repr_html_()  # xarray's resources")
    assert _loaded_after("import xarray as xr, dwcube\nassert hasattr(xr.Dataset, 'lulc')") == []  # other order


def test_help_and_archive_info_load_neither_torch_nor_numba(tmp_path: Path) -> None:
    assert _loaded_after("from dwcube.cli import build_parser\nbuild_parser().format_help()\n"
                         "assert 'xarray' not in sys.modules") == []
    heavy = _loaded_after(f"from dwcube.cli import main\nmain(['archive', 'info', {str(tmp_path / 'none.zarr')!r}])")
    assert "torch" not in heavy and "numba" not in heavy and "dwcube.inference" not in heavy


def test_the_public_api_is_unchanged_and_loads_on_first_use() -> None:
    import dwcube

    for name in dwcube.__all__:
        assert getattr(dwcube, name) is not None, name
    assert set(dwcube.__all__) <= set(dir(dwcube))
    # the submodules dwcube.load and dwcube.composite never hide the functions of the same name
    import dwcube.composite
    import dwcube.load  # noqa: F401

    assert callable(dwcube.load) and dwcube.load.__module__ == "dwcube.load"
    assert callable(dwcube.composite) and dwcube.composite.__module__ == "dwcube.composite"


def test_unknown_attribute_is_an_attribute_error() -> None:
    import dwcube

    try:
        dwcube.no_such_thing  # noqa: B018
    except AttributeError as exc:
        assert "no_such_thing" in str(exc)
    else:  # pragma: no cover
        raise AssertionError("expected AttributeError")


def test_indices_of_a_lazy_cube_compute_nothing() -> None:
    """Building the index graph must not compute the cube (it did, to find the result's dtype)."""
    import dask
    import dask.array as da
    import xarray as xr

    from dwcube.indices import compute

    def refuse(*_: object) -> np.ndarray:
        raise AssertionError("the cube was computed while only building the graph")

    bands = {b: (("time", "y", "x"), da.map_blocks(refuse, da.zeros((1, 8, 8), chunks=4), dtype=np.float32))
             for b in ("red", "nir", "swir16")}
    cube = xr.Dataset(bands, coords={"time": [np.datetime64("2024-05-01", "ns")], "y": np.arange(8.0),
                                     "x": np.arange(8.0)})
    with dask.config.set(scheduler="synchronous"):
        out = compute(cube, ["ndvi", "ndmi"])
    assert out.ndvi.dtype == np.float32 and isinstance(out.ndvi.data, da.Array)
