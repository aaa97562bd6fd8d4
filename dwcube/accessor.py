"""The ``.lulc`` accessors on xarray Datasets and DataArrays. They only delegate to module functions.

On a reflectance cube (Dataset): ``indices``, ``elevation``, ``model_inputs``,
``cloud_probability``, ``cloud_mask`` and ``classify``.  On a probability cube
(DataArray, or a Dataset holding ``probability`` such as an archive): ``label``,
``confidence``, ``composite`` and ``area``; on the DataArray also ``smooth``,
``filter_update``, ``flicker``, ``changes``, ``to_archive`` and ``to_cog``.

Examples
--------
>>> import dwcube
>>> cube = dwcube.load(...)  # doctest: +SKIP
>>> cube.lulc.indices(["ndvi", "ndmi"])  # doctest: +SKIP
>>> prob = cube.lulc.classify()  # doctest: +SKIP
>>> prob.lulc.label()  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import xarray as xr

__all__ = ["LulcAccessor", "LulcArrayAccessor"]


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

    def classify(self, model: Any = "dynamic-world", **kwargs: Any) -> xr.DataArray:
        """The lazy probability cube ``(time, class, y, x)``; see :func:`dwcube.inference.classify`.

        Examples
        --------
        >>> prob = cube.lulc.classify("dynamic-world", device="auto", batch_size=4)  # doctest: +SKIP
        """
        from .inference import classify

        return classify(self._ds, model, **kwargs)

    def _probability(self) -> xr.DataArray:
        if "probability" not in self._ds.data_vars:
            raise KeyError("this Dataset has no 'probability' variable (classify() or open_archive() make one)")
        return self._ds["probability"]

    def label(self) -> xr.DataArray:
        """The label of the ``probability`` variable; see :func:`dwcube.probability.label`.

        Examples
        --------
        >>> dwcube.open_archive("lulc.zarr").lulc.label()  # doctest: +SKIP
        """
        from .probability import label

        return label(self._probability())

    def confidence(self) -> xr.Dataset:
        """Confidence layers of the ``probability`` variable; see :func:`dwcube.probability.confidence`.

        Examples
        --------
        >>> dwcube.open_archive("lulc.zarr").lulc.confidence().margin  # doctest: +SKIP
        """
        from .probability import confidence

        return confidence(self._probability())

    def composite(self, period: str = "month", **kwargs: Any) -> xr.Dataset:
        """Monthly/seasonal/annual composites of the archive's probabilities; see
        :func:`dwcube.composite.composite`.

        Examples
        --------
        >>> dwcube.open_archive("lulc.zarr").lulc.composite("season").label  # doctest: +SKIP
        """
        from .composite import composite

        return composite(self._probability(), period, **kwargs)

    def area(self, unit: str = "km2", **kwargs: Any) -> xr.DataArray:
        """Area of each class per date (and polygon); see :func:`dwcube.stats.class_area`.

        Examples
        --------
        >>> dwcube.open_archive("lulc.zarr").lulc.area("ha")  # doctest: +SKIP
        """
        from .stats import class_area

        return class_area(self._ds, unit=unit, **kwargs)


@xr.register_dataarray_accessor("lulc")
class LulcArrayAccessor:
    """Helpers on a probability cube ``(time, class, y, x)`` (``prob.lulc``)."""

    def __init__(self, da: xr.DataArray) -> None:
        self._da = da

    def label(self) -> xr.DataArray:
        """Most probable class (uint8, 255 = no data); see :func:`dwcube.probability.label`.

        Examples
        --------
        >>> prob.lulc.label()  # doctest: +SKIP
        """
        from .probability import label

        return label(self._da)

    def confidence(self) -> xr.Dataset:
        """Top-1 probability, margin and entropy; see :func:`dwcube.probability.confidence`.

        Examples
        --------
        >>> prob.lulc.confidence().entropy  # doctest: +SKIP
        """
        from .probability import confidence

        return confidence(self._da)

    def composite(self, period: str = "month", **kwargs: Any) -> xr.Dataset:
        """Mean probability, label, mode label and margin per period; see
        :func:`dwcube.composite.composite`.

        Examples
        --------
        >>> prob.lulc.composite("year").mode  # doctest: +SKIP
        """
        from .composite import composite

        return composite(self._da, period, **kwargs)

    def area(self, unit: str = "km2", **kwargs: Any) -> xr.DataArray:
        """Area of each class per date (and polygon) of a probability or label cube: the labelled
        area by default, ``method="expected"`` for probability × area; see :func:`dwcube.stats.class_area`.

        Examples
        --------
        >>> prob.lulc.area("ha", method="expected")  # doctest: +SKIP
        """
        from .stats import class_area

        return class_area(self._da, unit=unit, **kwargs)

    def smooth(self, transitions: Any = None, **kwargs: Any) -> xr.DataArray:
        """Temporally consistent probabilities (hidden-Markov smoothing or filtering); see
        :func:`dwcube.temporal.smooth`.

        Examples
        --------
        >>> prob.lulc.smooth().lulc.label()  # doctest: +SKIP
        """
        from .temporal import smooth

        return smooth(self._da, transitions, **kwargs)

    def filter_update(self, state: xr.Dataset | None = None, **kwargs: Any) -> tuple[xr.DataArray, xr.Dataset]:
        """Forward-only update of a filter state with this cube's (new) dates; see
        :func:`dwcube.temporal.filter_update`.

        Examples
        --------
        >>> filtered, state = new_dates.lulc.filter_update(state)  # doctest: +SKIP
        """
        from .temporal import filter_update

        return filter_update(self._da, state, **kwargs)

    def flicker(self, **kwargs: Any) -> xr.Dataset:
        """Share of label changes between consecutive valid observations; see
        :func:`dwcube.temporal.flicker`.

        Examples
        --------
        >>> prob.lulc.flicker().overall.item()  # doctest: +SKIP
        """
        from .temporal import flicker

        return flicker(self._da, **kwargs)

    def changes(self, **kwargs: Any) -> xr.Dataset:
        """Date of the lasting class change per pixel, with classes before/after and confidence;
        see :func:`dwcube.change.changes`.

        Examples
        --------
        >>> prob.lulc.changes(from_classes="trees").change_date  # doctest: +SKIP
        """
        from .change import changes

        return changes(self._da, **kwargs)

    def to_archive(self, store: Any, **kwargs: Any) -> Any:
        """Store the cube in a Zarr archive; see :func:`dwcube.archive.write_archive`.

        Examples
        --------
        >>> prob.lulc.to_archive("lulc.zarr")  # doctest: +SKIP
        """
        from .archive import write_archive

        return write_archive(self._da, store, **kwargs)

    def to_cog(self, path: Any, **kwargs: Any) -> Any:
        """One date of a label or of the probabilities as a Cloud-Optimised GeoTIFF (colour table
        and class names for a label); see :func:`dwcube.export.to_cog`.

        Examples
        --------
        >>> ds.label.sel(time="2024-05-17").lulc.to_cog("label.tif")  # doctest: +SKIP
        """
        from .export import to_cog

        return to_cog(self._da, path, **kwargs)
