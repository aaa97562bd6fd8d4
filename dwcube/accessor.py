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

    def cloud_probability(self) -> xr.DataArray:
        """Cloud probability (0–1) per pixel and date; see :func:`dwcube.clouds.cloud_probability`.

        Examples
        --------
        >>> cube.lulc.cloud_probability()  # doctest: +SKIP
        """
        from .clouds import cloud_probability

        return cloud_probability(self._ds)

    def cloud_mask(self, params: Any = None, **kwargs: Any) -> xr.Dataset:
        """Dynamic World's cloud and shadow mask; see :func:`dwcube.clouds.cloud_mask`.

        Keyword arguments build :class:`~dwcube.clouds.CloudMaskParams` (``probability_threshold=0.5``).

        Examples
        --------
        >>> clear = cube.where(~cube.lulc.cloud_mask().mask)  # doctest: +SKIP
        """
        from .clouds import CloudMaskParams, cloud_mask

        if params is not None and kwargs:
            raise TypeError("pass either params or keyword arguments, not both")
        return cloud_mask(self._ds, params if params is not None else CloudMaskParams(**kwargs))
