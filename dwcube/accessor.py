"""The ``.lulc`` accessors on xarray Datasets and DataArrays. They only delegate to module functions.

On a reflectance cube (Dataset): ``indices``, ``elevation``, ``model_inputs``,
``cloud_probability``, ``cloud_mask`` and ``classify``.  On a probability cube
(DataArray, or a Dataset holding ``probability`` such as an archive): ``label``,
``confidence``, ``composite`` and ``area``; on the DataArray also ``smooth``,
``filter_update``, ``flicker``, ``changes``, ``to_archive`` and ``to_cog``.  On a label or
strata map (DataArray, or a Dataset holding ``label``): ``stratified_sample`` and
``stratum_table`` (:mod:`dwcube.accuracy`).

Examples
--------
A reflectance cube made by code (what :func:`dwcube.load` returns) and the small test
network of :mod:`dwcube.testing` in place of Dynamic World (``cube.lulc.classify()``):

>>> from dwcube.testing import TINY_MODEL, synthetic_cube
>>> cube = synthetic_cube(32, 2)
>>> sorted(cube.lulc.indices(["ndvi", "ndmi"]).data_vars)
['ndmi', 'ndvi']
>>> prob = cube.lulc.classify(TINY_MODEL, device="cpu")
>>> prob.dims, prob.lulc.label().dtype.name
(('time', 'class', 'y', 'x'), 'uint8')
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
        >>> from dwcube.testing import synthetic_cube
        >>> ndvi = synthetic_cube(16, 1).lulc.indices(["ndvi", "ndmi"]).ndvi
        >>> ndvi.attrs["formula"], bool((abs(ndvi) <= 1).all())
        ('(nir - red) / (nir + red)', True)
        """
        from .indices import compute

        return compute(self._ds, names, nir=nir)

    def elevation(self, source: Any, **kwargs: Any) -> xr.Dataset:
        """A DEM on the cube's grid; see :func:`dwcube.elevation.load_dem`.

        Examples
        --------
        A DEM file that rises 1 m per 10 m eastwards, put on the cube's grid:

        >>> import tempfile
        >>> import numpy as np
        >>> from dwcube.testing import synthetic_cube, write_cog
        >>> cube = synthetic_cube(16, 1)
        >>> with tempfile.TemporaryDirectory() as d:
        ...     info = write_cog(d + "/dem.tif", np.tile(np.arange(20, dtype=np.float32) * 3, (20, 1)),
        ...                      epsg=32633, transform=(30, 0, 465150, 0, -30, 5080290), nodata=None)
        ...     dem = cube.lulc.elevation(info.path, with_slope=True).compute()
        >>> sorted(dem.data_vars), round(float(dem.slope.median()), 2)     # atan(0.1) = 5.71°
        (['elevation', 'slope'], 5.71)
        """
        from .elevation import load_dem

        return load_dem(source, self._ds, **kwargs)

    def model_inputs(self, spec: Any, *, dem: xr.Dataset | None = None) -> xr.DataArray:
        """The normalised ``(time, feature, y, x)`` input stack; see :func:`dwcube.inputs.model_inputs`.

        Examples
        --------
        >>> from dwcube.testing import TINY_MODEL, synthetic_cube
        >>> x = synthetic_cube(16, 2).lulc.model_inputs(TINY_MODEL.inputs)
        >>> x.dims, x.feature.values.tolist()
        (('time', 'feature', 'y', 'x'), ['blue', 'green', 'red', 'nir', 'swir16', 'ndvi'])
        """
        from .inputs import model_inputs

        return model_inputs(self._ds, spec, dem=dem)

    def cloud_probability(self) -> xr.DataArray:
        """Cloud probability (0–1) per pixel and date; see :func:`dwcube.clouds.cloud_probability`.

        Examples
        --------
        >>> from dwcube.testing import synthetic_cloudy_cube
        >>> cube, truth = synthetic_cloudy_cube(32)
        >>> p = cube.lulc.cloud_probability()
        >>> bool(p.where(truth.cloud).mean() > 0.9), bool(p.where(~truth.cloud & ~truth.shadow).mean() < 0.1)
        (True, True)
        """
        from .clouds import cloud_probability

        return cloud_probability(self._ds)

    def cloud_mask(self, params: Any = None, **kwargs: Any) -> xr.Dataset:
        """Dynamic World's cloud and shadow mask; see :func:`dwcube.clouds.cloud_mask`.

        Keyword arguments build :class:`~dwcube.clouds.CloudMaskParams` (``probability_threshold=0.5``).

        Examples
        --------
        >>> from dwcube.testing import synthetic_cloudy_cube
        >>> cube, truth = synthetic_cloudy_cube(32)
        >>> m = cube.lulc.cloud_mask()
        >>> clear = cube.where(~m.mask)
        >>> bool(m.cloud.values[truth.cloud.values].all()), bool(clear.red.isnull().values[truth.cloud.values].all())
        (True, True)
        """
        from .clouds import CloudMaskParams, cloud_mask

        if params is not None and kwargs:
            raise TypeError("pass either params or keyword arguments, not both")
        return cloud_mask(self._ds, params if params is not None else CloudMaskParams(**kwargs))

    def classify(self, model: Any = "dynamic-world", **kwargs: Any) -> xr.DataArray:
        """The lazy probability cube ``(time, class, y, x)``; see :func:`dwcube.inference.classify`.

        Examples
        --------
        ``cube.lulc.classify("dynamic-world", device="auto", batch_size=4)`` runs Dynamic World
        (its weights fetched with ``dwcube weights fetch dynamic-world``); any registry entry
        works the same way, here the test network of :mod:`dwcube.testing`:

        >>> from dwcube.testing import TINY_MODEL, synthetic_cube
        >>> prob = synthetic_cube(32, 2).lulc.classify(TINY_MODEL, device="cpu", batch_size=4)
        >>> dict(prob.sizes), prob.attrs["model"]
        ({'time': 2, 'class': 9, 'y': 32, 'x': 32}, 'tiny-test')
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
        >>> import tempfile, dwcube
        >>> from dwcube.testing import TINY_MODEL, synthetic_cube
        >>> with tempfile.TemporaryDirectory() as d:
        ...     _ = synthetic_cube(32, 2).lulc.classify(TINY_MODEL, device="cpu").lulc.to_archive(d + "/lulc.zarr")
        ...     archive = dwcube.open_archive(d + "/lulc.zarr")
        ...     bool((archive.lulc.label() == archive.label).all())   # the stored label is this label
        True
        """
        from .probability import label

        return label(self._probability())

    def confidence(self) -> xr.Dataset:
        """Confidence layers of the ``probability`` variable; see :func:`dwcube.probability.confidence`.

        Examples
        --------
        >>> from dwcube.testing import synthetic_probability_series
        >>> ds = synthetic_probability_series(16, 6, cloud_fraction=0)[0].to_dataset()   # or an archive
        >>> conf = ds.lulc.confidence()
        >>> sorted(conf.data_vars), bool((conf.margin <= conf.top1_probability).all())
        (['entropy', 'margin', 'top1_probability'], True)
        """
        from .probability import confidence

        return confidence(self._probability())

    def composite(self, period: str = "month", **kwargs: Any) -> xr.Dataset:
        """Monthly/seasonal/annual composites of the archive's probabilities; see
        :func:`dwcube.composite.composite`.

        Examples
        --------
        >>> from dwcube.testing import synthetic_probability_series
        >>> ds = synthetic_probability_series(16, 12)[0].to_dataset()   # or dwcube.open_archive(...)
        >>> ds.lulc.composite("season").period.values.tolist()
        ['2021-DJF', '2021-MAM']
        """
        from .composite import composite

        return composite(self._probability(), period, **kwargs)

    def area(self, unit: str = "km2", **kwargs: Any) -> xr.DataArray:
        """Area of each class per date (and polygon); see :func:`dwcube.stats.class_area`.

        Examples
        --------
        >>> from dwcube.testing import synthetic_probability_series
        >>> ds = synthetic_probability_series(16, 5, cloud_fraction=0)[0].to_dataset()   # 16 × 16 px of 10 m
        >>> area = ds.lulc.area("ha")
        >>> area.dims, area.sum("class").values.round(4).tolist()
        (('time', 'class'), [2.56, 2.56, 2.56, 2.56, 2.56])
        """
        from .stats import class_area

        return class_area(self._ds, unit=unit, **kwargs)

    def stratified_sample(self, n: int | None = None, **kwargs: Any) -> Any:
        """A stratified random sample of the Dataset's ``label`` (or ``stratum``) map; see
        :func:`dwcube.accuracy.stratified_sample`.

        Examples
        --------
        >>> import numpy as np, xarray as xr
        >>> from odc.geo.geobox import GeoBox
        >>> from odc.geo.xr import xr_coords
        >>> g = GeoBox.from_bbox((0, 0, 200, 200), crs="EPSG:32633", resolution=10)
        >>> ds = xr.Dataset({"label": (("y", "x"), (np.arange(400).reshape(20, 20) % 2).astype(np.uint8))},
        ...                 coords=xr_coords(g))
        >>> ds.lulc.stratified_sample(10, allocation="proportional").stratum.value_counts().to_dict()
        {'0': 5, '1': 5}
        """
        from .accuracy import stratified_sample

        return stratified_sample(self._ds, n, **kwargs)


@xr.register_dataarray_accessor("lulc")
class LulcArrayAccessor:
    """Helpers on a probability cube ``(time, class, y, x)`` (``prob.lulc``)."""

    def __init__(self, da: xr.DataArray) -> None:
        self._da = da

    def label(self) -> xr.DataArray:
        """Most probable class (uint8, 255 = no data); see :func:`dwcube.probability.label`.

        Examples
        --------
        >>> from dwcube.testing import synthetic_probability_series
        >>> prob, truth = synthetic_probability_series(16, 6, seed=1)
        >>> lab = prob.lulc.label()
        >>> lab.dims, bool(((lab == 255) == prob.isnull().all("class")).all())   # 255 where no data
        (('time', 'y', 'x'), True)
        """
        from .probability import label

        return label(self._da)

    def confidence(self) -> xr.Dataset:
        """Top-1 probability, margin and entropy; see :func:`dwcube.probability.confidence`.

        Examples
        --------
        >>> from dwcube.testing import synthetic_probability_series
        >>> entropy = synthetic_probability_series(16, 6, cloud_fraction=0)[0].lulc.confidence().entropy
        >>> entropy.dims, bool(((entropy >= 0) & (entropy <= 1)).all())
        (('time', 'y', 'x'), True)
        """
        from .probability import confidence

        return confidence(self._da)

    def composite(self, period: str = "month", **kwargs: Any) -> xr.Dataset:
        """Mean probability, label, mode label and margin per period; see
        :func:`dwcube.composite.composite`.

        Examples
        --------
        >>> from dwcube.testing import synthetic_probability_series
        >>> c = synthetic_probability_series(16, 12)[0].lulc.composite("year")
        >>> c.period.values.tolist(), c.mode.dims, c.mode.dtype.name
        (['2021'], ('time', 'y', 'x'), 'uint8')
        """
        from .composite import composite

        return composite(self._da, period, **kwargs)

    def area(self, unit: str = "km2", **kwargs: Any) -> xr.DataArray:
        """Area of each class per date (and polygon) of a probability or label cube: the labelled
        area by default, ``method="expected"`` for probability × area; see :func:`dwcube.stats.class_area`.

        Examples
        --------
        >>> from dwcube.testing import synthetic_probability_series
        >>> prob = synthetic_probability_series(16, 5, cloud_fraction=0)[0]     # 16 × 16 px of 10 m
        >>> prob.lulc.area("ha", method="expected").sum("class").values.round(4).tolist()
        [2.56, 2.56, 2.56, 2.56, 2.56]
        """
        from .stats import class_area

        return class_area(self._da, unit=unit, **kwargs)

    def smooth(self, transitions: Any = None, **kwargs: Any) -> xr.DataArray:
        """Temporally consistent probabilities (hidden-Markov smoothing or filtering); see
        :func:`dwcube.temporal.smooth`.

        Examples
        --------
        >>> from dwcube.testing import synthetic_probability_series
        >>> prob, truth = synthetic_probability_series(16, 30, seed=3)
        >>> raw, smoothed = prob.lulc.label(), prob.lulc.smooth().lulc.label()
        >>> seen = truth.observed
        >>> bool((smoothed == truth.true_class).where(seen).mean() > (raw == truth.true_class).where(seen).mean())
        True
        """
        from .temporal import smooth

        return smooth(self._da, transitions, **kwargs)

    def filter_update(self, state: xr.Dataset | None = None, **kwargs: Any) -> tuple[xr.DataArray, xr.Dataset]:
        """Forward-only update of a filter state with this cube's (new) dates; see
        :func:`dwcube.temporal.filter_update`.

        Examples
        --------
        >>> from dwcube.testing import synthetic_probability_series
        >>> prob, _ = synthetic_probability_series(8, 10, seed=2)
        >>> _, state = prob.isel(time=slice(0, 6)).lulc.filter_update()        # the dates so far
        >>> filtered, state = prob.isel(time=slice(6, 10)).lulc.filter_update(state)   # new dates
        >>> filtered.sizes["time"], state.attrs["last_date"][:10]
        (4, '2021-03-26')
        """
        from .temporal import filter_update

        return filter_update(self._da, state, **kwargs)

    def flicker(self, **kwargs: Any) -> xr.Dataset:
        """Share of label changes between consecutive valid observations; see
        :func:`dwcube.temporal.flicker`.

        Examples
        --------
        >>> from dwcube.testing import synthetic_probability_series
        >>> prob, _ = synthetic_probability_series(16, 30, seed=3)
        >>> bool(prob.lulc.smooth().lulc.flicker().overall < prob.lulc.flicker().overall)
        True
        """
        from .temporal import flicker

        return flicker(self._da, **kwargs)

    def changes(self, **kwargs: Any) -> xr.Dataset:
        """Date of the lasting class change per pixel, with classes before/after and confidence;
        see :func:`dwcube.change.changes`.

        Examples
        --------
        >>> from dwcube.testing import synthetic_probability_series
        >>> prob, truth = synthetic_probability_series(16, 60, seed=11)
        >>> loss = prob.lulc.changes(from_classes="trees")          # forest loss
        >>> found = loss.change_date.notnull().values
        >>> set(loss.from_class.values[found].tolist()), bool(found.any())
        ({1}, True)
        """
        from .change import changes

        return changes(self._da, **kwargs)

    def stratified_sample(self, n: int | None = None, **kwargs: Any) -> Any:
        """A stratified random sample of this label or strata map (one date); see
        :func:`dwcube.accuracy.stratified_sample`.

        Examples
        --------
        >>> import numpy as np, xarray as xr
        >>> from odc.geo.geobox import GeoBox
        >>> from odc.geo.xr import xr_coords
        >>> g = GeoBox.from_bbox((0, 0, 200, 200), crs="EPSG:32633", resolution=10)
        >>> lab = xr.DataArray(np.arange(400).reshape(20, 20) % 2, dims=("y", "x"), coords=xr_coords(g))
        >>> len(lab.lulc.stratified_sample(20, allocation="equal"))
        20
        """
        from .accuracy import stratified_sample

        return stratified_sample(self._da, n, **kwargs)

    def stratum_table(self, **kwargs: Any) -> xr.Dataset:
        """Pixels, area and weight of every stratum of this map; see :func:`dwcube.accuracy.stratum_table`.

        Examples
        --------
        >>> import numpy as np, xarray as xr
        >>> from odc.geo.geobox import GeoBox
        >>> from odc.geo.xr import xr_coords
        >>> g = GeoBox.from_bbox((0, 0, 200, 200), crs="EPSG:32633", resolution=10)
        >>> lab = xr.DataArray(np.zeros((20, 20), np.uint8), dims=("y", "x"), coords=xr_coords(g),
        ...                    attrs={"flag_meanings": "water trees"})
        >>> lab.lulc.stratum_table(unit="ha").area.values.tolist()
        [4.0]
        """
        from .accuracy import stratum_table

        return stratum_table(self._da, **kwargs)

    def to_archive(self, store: Any, **kwargs: Any) -> Any:
        """Store the cube in a Zarr archive; see :func:`dwcube.archive.write_archive`.

        Examples
        --------
        >>> import tempfile, dwcube
        >>> from dwcube.testing import TINY_MODEL, synthetic_cube
        >>> prob = synthetic_cube(32, 2).lulc.classify(TINY_MODEL, device="cpu")
        >>> with tempfile.TemporaryDirectory() as d:
        ...     report = prob.lulc.to_archive(d + "/lulc.zarr")
        ...     report.written, dwcube.open_archive(d + "/lulc.zarr").sizes["time"]
        (['2023-04-06T00:00:00.000000', '2023-04-18T00:00:00.000000'], 2)
        """
        from .archive import write_archive

        return write_archive(self._da, store, **kwargs)

    def to_cog(self, path: Any, **kwargs: Any) -> Any:
        """One date of a label or of the probabilities as a Cloud-Optimised GeoTIFF (colour table
        and class names for a label); see :func:`dwcube.export.to_cog`.

        Examples
        --------
        >>> import tempfile, rasterio
        >>> from dwcube.testing import TINY_MODEL, synthetic_cube
        >>> prob = synthetic_cube(32, 2).lulc.classify(TINY_MODEL, device="cpu")
        >>> with tempfile.TemporaryDirectory() as d:
        ...     path = prob.lulc.label().sel(time="2023-04-18").lulc.to_cog(d + "/label.tif")
        ...     with rasterio.open(path) as src:
        ...         src.dtypes[0], src.shape, src.colormap(1)[1][:3]   # trees in #397D49
        ('uint8', (32, 32), (57, 125, 73))
        """
        from .export import to_cog

        return to_cog(self._da, path, **kwargs)
