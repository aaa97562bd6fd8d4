"""The ``.lulc`` accessor on xarray Datasets. It only delegates to module functions.

Examples
--------
>>> import dwcube
>>> cube = dwcube.load(...)  # doctest: +SKIP
>>> cube.lulc.indices(["ndvi", "ndmi"])  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import xarray as xr

__all__ = ["LulcAccessor"]


@xr.register_dataset_accessor("lulc")
class LulcAccessor:
    """Land-cover helpers on a reflectance cube (``ds.lulc``)."""

    def __init__(self, ds: xr.Dataset) -> None:
        self._ds = ds

    def indices(self, names: str | Sequence[str], *, nir: str = "auto") -> xr.Dataset:
        """Spectral indices of the cube; see :func:`dwcube.indices.compute`.

        Examples
        --------
        >>> cube.lulc.indices(["ndvi", "ndmi"]).ndvi  # doctest: +SKIP
        """
        from .indices import compute

        return compute(self._ds, names, nir=nir)

    def elevation(self, source: Any, **kwargs: Any) -> xr.Dataset:
        """A DEM on the cube's grid; see :func:`dwcube.elevation.load_dem`.

        Examples
        --------
        >>> cube.lulc.elevation("dem.tif", with_slope=True)  # doctest: +SKIP
        """
        from .elevation import load_dem

        return load_dem(source, self._ds, **kwargs)

    def model_inputs(self, spec: Any, *, dem: xr.Dataset | None = None) -> xr.DataArray:
        """The normalised ``(time, feature, y, x)`` input stack; see :func:`dwcube.inputs.model_inputs`.

        Examples
        --------
        >>> cube.lulc.model_inputs(spec, dem=dem)  # doctest: +SKIP
        """
        from .inputs import model_inputs

        return model_inputs(self._ds, spec, dem=dem)
