"""Area of each land-cover class over time, for the whole grid or per polygon, in m², ha or km².

Pixel areas follow the cube's CRS (read from its ``spatial_ref`` coordinate):

Projected CRS (UTM, …)
    ``|det(affine)|`` × (linear unit in metres)², the same for every pixel: the area **in the
    projection's plane**.  For UTM that is the area on the ellipsoid times the areal scale
    factor k²: 0.9992 on the central meridian (k = 0.9996), 1 about 180 km east and west of
    it, ≈ 1.002 at the zone edge (3° away, at the equator) — so plane areas are off by
    −0.08 % … +0.2 %.  ``ellipsoidal=True`` divides each pixel's plane area by the
    projection's areal scale at its centre (:meth:`pyproj.Proj.get_factors`), which gives
    the area on the ellipsoid to ~10⁻⁹ (relative) for 10 m … 1 km pixels (checked against
    :meth:`pyproj.Geod.polygon_area_perimeter` in the tests).
Geographic CRS (EPSG:4326, …)
    The exact area on the CRS's ellipsoid of each latitude/longitude cell, bounded by two
    meridians and two parallels, from the closed form (authalic latitude)

    .. math:: A = \\frac{a^2 \\Delta\\lambda}{2}\\,\\left|q(\\varphi_1) - q(\\varphi_2)\\right|,\\quad
              q(\\varphi) = (1 - e^2)\\left[\\frac{\\sin\\varphi}{1 - e^2 \\sin^2\\varphi}
              + \\frac{\\operatorname{artanh}(e \\sin\\varphi)}{e}\\right]

    evaluated per row (the area depends on latitude only).  It agrees with
    :meth:`pyproj.Geod.polygon_area_perimeter` (Karney's geodesic algorithm) to ~10⁻⁹.

A probability cube gives by default the **label area** (``method="label"``: pixel area
summed over the pixels whose most probable class it is — what a map shows and what users
count: a forest gets no snow), or on request the **expected area** (``method="expected"``:
the sum over valid pixels of the class probability × pixel area, every class getting its
share of every pixel; a July forest where each pixel gives ``snow_and_ice`` 4 % has 4 % of
its area as expected snow).  Both add up to the valid area over the classes.  A label
raster gives the label area.  Pixels with no data (NaN probability, label 255) count in
``nodata_area`` and in no class.

Polygons (shapely geometries with a CRS, odc-geo geometries, a ``{name: geometry}``
mapping, or a GeoDataFrame/GeoSeries) are reprojected to the cube's CRS with odc-geo and
rasterised with :func:`rasterio.features.rasterize` using the pixel-centre rule (a pixel
belongs to a polygon when its centre lies inside); polygons may overlap.  Dask inputs stay
lazy: the masks are rasterised block by block on the cube's chunks and the sums are
:func:`xarray.dot` contractions.

Written here: only the glue and the per-row ellipsoidal area formula (which no maintained
library vectorises for raster rows).

Examples
--------
>>> import numpy as np, xarray as xr
>>> from odc.geo.geobox import GeoBox
>>> from odc.geo.xr import xr_coords
>>> gbox = GeoBox.from_bbox((500000, 4999980, 500030, 5000000), crs="EPSG:32633", resolution=10)
>>> lab = xr.DataArray(np.array([[0, 1, 1], [1, 255, 1]], np.uint8), dims=("y", "x"), coords=xr_coords(gbox))
>>> a = class_area(lab, unit="m2")
>>> a.sel({"class": ["water", "trees"]}).values.tolist(), float(a.nodata_area)
([100.0, 400.0], 100.0)
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import odc.geo.xr  # noqa: F401 - registers .odc (used here) now that `import dwcube` is lazy
import xarray as xr

from .classes import CLASSES

__all__ = ["UNITS", "class_area", "pixel_area"]

#: Area units and their size in m².
UNITS: dict[str, float] = {"m2": 1.0, "ha": 1e4, "km2": 1e6}


def _unit_factor(unit: str) -> float:
    if unit not in UNITS:
        raise ValueError(f"unknown unit {unit!r}: use one of {', '.join(repr(u) for u in UNITS)}")
    return UNITS[unit]


def _grid(obj: xr.DataArray | xr.Dataset) -> tuple[Any, str, str]:
    """The GeoBox and the (y, x) dimension names of a cube; clear errors when there is none."""
    dims = obj.odc.spatial_dims
    if dims is None:
        raise ValueError(f"no spatial dimensions (y/x or latitude/longitude) found among {tuple(obj.dims)}")
    gbox = obj.odc.geobox
    if gbox is None or gbox.crs is None:
        raise ValueError("the cube has no CRS: it needs a 'spatial_ref' coordinate (as dwcube.load, classify and "
                         "open_archive give) — set one with da.odc.assign_crs('EPSG:…') or da.rio.write_crs(…)")
    return gbox, dims[0], dims[1]


def _crs_name(crs: Any) -> str:
    return f"EPSG:{crs.epsg}" if crs.epsg is not None else str(crs.proj.name)


def _axis_factors(crs: Any) -> list[float]:
    return [float(ax.unit_conversion_factor) for ax in crs.proj.axis_info[:2]]


def _q(phi: np.ndarray, e2: float) -> np.ndarray:
    """Authalic q(φ): the ellipsoid zone from the equator to φ has area a²·Δλ·q/2."""
    s = np.sin(phi)
    if e2 == 0.0:
        return 2.0 * s
    e = np.sqrt(e2)
    return (1.0 - e2) * (s / (1.0 - e2 * s * s) + np.arctanh(e * s) / e)


def _geographic_row_area(gbox: Any) -> np.ndarray:
    """Exact ellipsoidal area (m²) of one cell in each row of a geographic grid, shape ``(ny,)``."""
    aff = gbox.affine
    if aff.b != 0 or aff.d != 0:
        raise ValueError("a rotated or sheared geographic grid is not supported for area statistics")
    crs = gbox.crs.proj
    ell = crs.ellipsoid
    if ell is None:  # pragma: no cover - every geographic CRS in PROJ has one
        raise ValueError(f"the CRS {gbox.crs} has no ellipsoid")
    to_rad = _axis_factors(gbox.crs)[0]
    a = ell.semi_major_metre
    b = ell.semi_minor_metre
    e2 = 1.0 - (b / a) ** 2
    ny = gbox.shape[0]
    edges = np.clip((aff.f + aff.e * np.arange(ny + 1)) * to_rad, -np.pi / 2, np.pi / 2)
    q = _q(edges, e2)
    dlon = abs(aff.a) * to_rad
    return 0.5 * a * a * dlon * np.abs(np.diff(q))


def _areal_scale_block(gbox: Any, ys: slice, xs: slice) -> np.ndarray:
    """Projection areal scale at the pixel centres of one block of the grid."""
    import pyproj

    crs = gbox.crs.proj
    aff = gbox.affine
    rows, cols = np.mgrid[ys, xs]
    x = aff.c + aff.a * (cols + 0.5) + aff.b * (rows + 0.5)
    y = aff.f + aff.d * (cols + 0.5) + aff.e * (rows + 0.5)
    tr = pyproj.Transformer.from_crs(crs, crs.geodetic_crs, always_xy=True)
    lon, lat = tr.transform(x, y)
    scale = pyproj.Proj(crs).get_factors(lon, lat).areal_scale
    return np.asarray(scale, dtype=np.float64).reshape(rows.shape)


def _pixel_area_m2(gbox: Any, ydim: str, xdim: str, *, ellipsoidal: bool,
                   chunks: tuple[tuple[int, ...], tuple[int, ...]] | None) -> tuple[xr.DataArray, str]:
    """Pixel area in m² in its most compact form — dims ``()``, ``(y,)`` or ``(y, x)`` — and how it was made."""
    crs = gbox.crs
    if crs.geographic:
        rows = _geographic_row_area(gbox)
        ell = crs.proj.ellipsoid
        how = (f"exact area of each latitude/longitude cell on the {ell.name} ellipsoid "
               "(authalic-latitude closed form, per row)")
        return xr.DataArray(rows, dims=(ydim,)), how
    if not crs.proj.is_projected:
        raise ValueError(f"area statistics need a projected or geographic CRS, got {_crs_name(crs)}")
    fx, fy = _axis_factors(crs)
    aff = gbox.affine
    plane = abs(aff.a * aff.e - aff.b * aff.d) * fx * fy
    if not ellipsoidal:
        how = (f"area in the plane of {_crs_name(crs)} (|det(affine)| = {plane:g} m² per pixel); differs from the "
               "ellipsoidal area by the projection's areal scale factor (for UTM k² = 0.9992 … ≈ 1.002)")
        return xr.DataArray(plane), how
    how = (f"area on the ellipsoid: plane area of {_crs_name(crs)} ({plane:g} m² per pixel) divided by the projection's "
           "areal scale at each pixel centre (pyproj get_factors)")
    ny, nx = gbox.shape
    if chunks is None:
        return xr.DataArray(plane / _areal_scale_block(gbox, slice(0, ny), slice(0, nx)), dims=(ydim, xdim)), how
    import dask.array as da

    def block(block_info: Any = None) -> np.ndarray:
        (y0, y1), (x0, x1) = block_info[None]["array-location"]
        return plane / _areal_scale_block(gbox, slice(y0, y1), slice(x0, x1))

    return xr.DataArray(da.map_blocks(block, dtype=np.float64, chunks=chunks), dims=(ydim, xdim)), how


def pixel_area(grid: xr.DataArray | xr.Dataset, *, unit: str = "m2", ellipsoidal: bool = False) -> xr.DataArray:
    """The area of every pixel of a cube's grid.

    Parameters
    ----------
    grid
        Anything with a georeferenced grid (``spatial_ref`` coordinate): a probability
        cube, a label, a reflectance cube.
    unit
        ``"m2"``, ``"ha"`` or ``"km2"``.
    ellipsoidal
        Projected CRS only: correct the plane area by the projection's areal scale at each
        pixel centre, giving the area on the ellipsoid.  Geographic grids are always exact
        on the ellipsoid.

    Returns
    -------
    xarray.DataArray
        ``(y, x)`` float64 (a read-only broadcast view where the area is constant along a
        dimension), with the grid's coordinates; ``attrs["pixel_area_method"]`` says how.

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> from odc.geo.geobox import GeoBox
    >>> from odc.geo.xr import xr_coords
    >>> g = GeoBox.from_bbox((10, 59.98, 10.02, 60.0), crs="EPSG:4326", resolution=0.01)
    >>> a = pixel_area(xr.DataArray(np.zeros(g.shape), dims=("latitude", "longitude"), coords=xr_coords(g)),
    ...                unit="km2")
    >>> a.values.round(4).tolist()
    [[0.6218, 0.6218], [0.622, 0.622]]
    """
    factor = _unit_factor(unit)
    gbox, ydim, xdim = _grid(grid)
    area, how = _pixel_area_m2(gbox, ydim, xdim, ellipsoidal=ellipsoidal, chunks=None)
    full = np.broadcast_to(np.asarray(area.values if area.ndim != 1 else area.values[:, None]) / factor, gbox.shape)
    coords = {k: v for k, v in grid.coords.items() if set(v.dims) <= {ydim, xdim}}
    return xr.DataArray(full, dims=(ydim, xdim), coords=coords, name="pixel_area",
                        attrs={"units": unit, "long_name": "pixel area", "pixel_area_method": how})


# -- polygons -----------------------------------------------------------------------------------


def _polygon_list(polygons: Any, crs: Any) -> tuple[list[Any], list[Any]]:
    """``(names, odc Geometries)`` from the accepted polygon containers."""
    from odc.geo.geom import Geometry

    def one(g: Any, own_crs: Any) -> Geometry:
        if isinstance(g, Geometry):
            if g.crs is None and own_crs is None:
                raise ValueError("polygons have no CRS: pass crs='EPSG:…' or geometries that carry one")
            geom = g if g.crs is not None else Geometry(g.geom, own_crs)
        elif hasattr(g, "geom_type"):
            if own_crs is None:
                raise ValueError("polygons have no CRS: pass crs='EPSG:…' (the CRS of the polygon coordinates), "
                                 "a GeoDataFrame/GeoSeries with a .crs, or odc.geo geometries")
            geom = Geometry(g, own_crs)
        else:
            raise ValueError(f"not a geometry: {type(g).__name__} (expected shapely or odc.geo geometries)")
        if geom.geom_type not in ("Polygon", "MultiPolygon"):
            raise ValueError(f"area statistics need Polygon or MultiPolygon geometries, got a {geom.geom_type}")
        return geom

    container_crs = getattr(polygons, "crs", None) if not hasattr(polygons, "geom_type") else None
    own = crs if crs is not None else container_crs
    if hasattr(polygons, "geom_type") or type(polygons).__name__ == "Geometry":
        return [0], [one(polygons, own)]
    if isinstance(polygons, Mapping):
        return list(polygons.keys()), [one(g, own) for g in polygons.values()]
    if hasattr(polygons, "geometry") and hasattr(polygons, "index"):  # GeoDataFrame / GeoSeries
        return list(polygons.index), [one(g, own) for g in polygons.geometry]
    if isinstance(polygons, Iterable) and not isinstance(polygons, (str, bytes)):
        geoms = list(polygons)
        if not geoms:
            raise ValueError("polygons is empty")
        return list(range(len(geoms))), [one(g, own) for g in geoms]
    raise ValueError(f"polygons must be geometries, a list or mapping of them, or a GeoDataFrame; got "
                     f"{type(polygons).__name__}")


def _rasterise(shapes: list[Any], gbox: Any, ys: slice, xs: slice) -> np.ndarray:
    """Pixel-centre masks ``(polygon, y, x)`` of one block of the grid."""
    from rasterio.features import rasterize

    sub = gbox[ys, xs]
    out = np.zeros((len(shapes), *sub.shape), dtype=np.uint8)
    for i, shape in enumerate(shapes):
        if shape is not None and not shape.is_empty:
            out[i] = rasterize([(shape, 1)], out_shape=tuple(sub.shape), transform=sub.affine, fill=0,
                               all_touched=False, dtype="uint8")
    return out


def _polygon_masks(polygons: Any, crs: Any, gbox: Any, ydim: str, xdim: str,
                   chunks: tuple[tuple[int, ...], tuple[int, ...]] | None) -> xr.DataArray:
    names, geoms = _polygon_list(polygons, crs)
    shapes = [g.to_crs(gbox.crs, resolution="auto").geom for g in geoms]
    ny, nx = gbox.shape
    if chunks is None:
        data: Any = _rasterise(shapes, gbox, slice(0, ny), slice(0, nx))
    else:
        import dask.array as da

        def block(block_info: Any = None) -> np.ndarray:
            _, (y0, y1), (x0, x1) = block_info[None]["array-location"]
            return _rasterise(shapes, gbox, slice(y0, y1), slice(x0, x1))

        data = da.map_blocks(block, dtype=np.uint8, chunks=((len(shapes),), *chunks))
    return xr.DataArray(data, dims=("polygon", ydim, xdim), coords={"polygon": np.asarray(names)})


# -- class areas ----------------------------------------------------------------------------------


def _split_input(data: xr.DataArray | xr.Dataset) -> xr.DataArray:
    if isinstance(data, xr.Dataset):
        for name in ("probability", "label"):
            if name in data.data_vars:
                return data[name]
        raise ValueError("this Dataset has neither a 'probability' nor a 'label' variable")
    if not isinstance(data, xr.DataArray):
        raise TypeError(f"expected a label or probability DataArray, got {type(data).__name__}")
    return data


def _drop_scalar_coords(x: xr.DataArray) -> xr.DataArray:
    """Drop the scalar coordinates (``spatial_ref``: the grid is summed away), keep per-date ones."""
    return x.drop_vars([c for c in x.coords if c not in x.dims and not x.coords[c].dims])


def class_area(
    data: xr.DataArray | xr.Dataset,
    *,
    unit: str = "km2",
    method: str = "label",
    polygons: Any = None,
    crs: Any = None,
    ellipsoidal: bool = False,
) -> xr.DataArray:
    """Area of each class per date (and per polygon), with the no-data area alongside.

    Parameters
    ----------
    data
        A label raster (``(..., y, x)`` integer, 255 = no data; any value ≥ the number of
        classes counts as no data), a probability cube (``(..., class, y, x)``, NaN = no
        data), or a Dataset holding ``probability`` (used first) or ``label``.
    unit
        ``"km2"`` (default), ``"ha"`` or ``"m2"``.
    method
        ``"label"`` (the default, and the only choice for labels): pixel area summed over the
        pixels whose label (argmax, :func:`dwcube.probability.label`) is the class — the area
        the map shows.  ``"expected"`` (probabilities only): Σ probability × pixel area over
        valid pixels, the expected area under the model's probabilities; every class with a
        little probability everywhere gets a little area (see the module notes).
    polygons
        Optional regions: a shapely/odc-geo (Multi)Polygon, a list or ``{name: geometry}``
        mapping of them, or a GeoDataFrame/GeoSeries (its index names the polygons).
        Reprojected to the cube's CRS and rasterised with the pixel-centre rule.
    crs
        CRS of the polygon coordinates, when the polygons do not carry one.
    ellipsoidal
        Projected grids: correct the plane area to the ellipsoid (see the module notes).

    Returns
    -------
    xarray.DataArray
        ``area`` float64 over ``(..., class[, polygon])`` (e.g. ``(time, class)``), in
        ``unit``.  Coordinates: ``valid_area`` and ``nodata_area`` ``(...[, polygon])`` and
        ``total_area`` (``()`` or ``(polygon)``: the area of the grid, or of the pixels
        whose centre is in each polygon).  ``attrs``: ``units``, ``method``,
        ``pixel_area_method``, ``crs``, the input's ``model*`` attributes and a
        ``history`` line.  Lazy when the input is.

    Raises
    ------
    ValueError
        Unknown unit or method, ``"expected"`` asked of a label, no CRS on the cube,
        polygons without a CRS or that are not polygons.

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> from odc.geo.geobox import GeoBox
    >>> from odc.geo.xr import xr_coords
    >>> from shapely.geometry import box
    >>> gbox = GeoBox.from_bbox((0, 0, 40, 20), crs="EPSG:32633", resolution=10)
    >>> p = np.zeros((2, 2, 4), np.float32); p[0] = 0.75; p[1] = 0.25; p[:, 0, 0] = np.nan
    >>> prob = xr.DataArray(p, dims=("class", "y", "x"), coords={"class": ["water", "trees"], **xr_coords(gbox)})
    >>> class_area(prob, unit="m2").values.tolist()          # 7 valid pixels of 100 m², all labelled water
    [700.0, 0.0]
    >>> class_area(prob, unit="m2", method="expected").values.tolist()    # 75 % water, 25 % trees each
    [525.0, 175.0]
    >>> a = class_area(prob, unit="ha", polygons={"east": box(20, 0, 40, 20)}, crs="EPSG:32633")
    >>> a.sel(polygon="east").values.tolist(), float(a.total_area.sel(polygon="east"))
    ([0.04, 0.0], 0.04)
    """
    factor = _unit_factor(unit)
    da_ = _split_input(data)
    is_prob = "class" in da_.dims
    if method not in ("expected", "label"):
        raise ValueError(f"unknown method {method!r}: use 'expected' (probabilities) or 'label'")
    if method == "expected" and not is_prob:
        raise ValueError("method='expected' needs a probability cube with a 'class' dimension; got a label "
                         f"(dims {da_.dims})")
    if not is_prob and not np.issubdtype(da_.dtype, np.integer):
        raise ValueError(f"expected a label raster of integers (255 = no data) or a probability cube with a "
                         f"'class' dimension; got {da_.dtype} with dims {da_.dims}")
    gbox, ydim, xdim = _grid(da_)
    attrs_in = dict(da_.attrs)

    if is_prob:
        if da_.chunks is not None and len(da_.chunks[da_.get_axis_num("class")]) > 1:
            da_ = da_.chunk({"class": -1})
        classes = [str(c) for c in da_["class"].values]
        if method == "label":
            from .probability import label

            lab = label(da_)
    else:
        meanings = da_.attrs.get("flag_meanings")
        classes = str(meanings).split() if meanings else list(CLASSES)
        lab = da_
    n_classes = len(classes)
    class_index = xr.DataArray(np.arange(n_classes), dims="class", coords={"class": classes})

    ref = da_ if method == "expected" else lab
    chunks = None
    if ref.chunks is not None:
        chunks = (ref.chunks[ref.get_axis_num(ydim)], ref.chunks[ref.get_axis_num(xdim)])
    area_m2, how = _pixel_area_m2(gbox, ydim, xdim, ellipsoidal=ellipsoidal, chunks=chunks)

    if method == "expected":
        valid = da_.notnull().all("class")
        share = da_.astype(np.float64).where(valid, 0.0)
    else:
        valid = lab < n_classes
        share = (lab == class_index).astype(np.float64)
    weighted = share * area_m2
    valid_m2 = valid.astype(np.float64) * area_m2
    full_m2 = xr.ones_like(valid.isel({d: 0 for d in valid.dims if d not in (ydim, xdim)}, drop=True),
                           dtype=np.float64) * area_m2
    spatial = [ydim, xdim]

    if polygons is None:
        area = weighted.sum(spatial)
        valid_area = valid_m2.sum(spatial)
        total_area = full_m2.sum(spatial)
    else:
        masks = _polygon_masks(polygons, crs, gbox, ydim, xdim, chunks)
        area = xr.dot(weighted, masks, dim=spatial)
        valid_area = xr.dot(valid_m2, masks, dim=spatial)
        total_area = xr.dot(full_m2, masks, dim=spatial)

    lead = [d for d in da_.dims if d not in ("class", ydim, xdim)]
    area = area.transpose(*lead, "class", *(["polygon"] if polygons is not None else [])) / factor
    valid_area = valid_area / factor
    total_area = total_area / factor
    area = _drop_scalar_coords(area).assign_coords(
        valid_area=_drop_scalar_coords(valid_area),
        nodata_area=_drop_scalar_coords(total_area - valid_area),
        total_area=_drop_scalar_coords(total_area),
    )
    what = ("sum over valid pixels of class probability × pixel area" if method == "expected"
            else "pixel area summed over the pixels labelled with the class")
    line = (f"dwcube.stats.class_area(unit={unit!r}, method={method!r}, polygons="
            f"{'None' if polygons is None else area.sizes['polygon']}, ellipsoidal={ellipsoidal}): {what}")
    old = str(attrs_in.get("history", "")).strip()
    area.name = "area"
    area.attrs = {
        **{k: v for k, v in attrs_in.items() if k.startswith("model")},
        "long_name": f"{'expected' if method == 'expected' else 'labelled'} area of each class",
        "units": unit,
        "method": what,
        "pixel_area_method": how,
        "crs": _crs_name(gbox.crs),
        "history": f"{old}\n{line}" if old else line,
    }
    for name in ("valid_area", "nodata_area", "total_area"):
        area[name].attrs = {"units": unit, "long_name": name.replace("_", " ")}
    return area
