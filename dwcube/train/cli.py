"""``dwcube train``: the training recipe from the command line (parses arguments and delegates).

:mod:`dwcube.cli` adds this sub-command with :func:`add_parser` and runs it with :func:`run`.

Usage::

    dwcube load catalog.parquet --out cube.zarr --bands blue green red nir08 swir16 swir22 ...
    dwcube train cube.zarr worldcover.tif --out runs/a            # WorldCover labels
    dwcube train cube.zarr dw_labels.tif --kind dynamic-world --out runs/b --steps 5000
    dwcube train cube.zarr teacher.zarr --kind probability --out runs/c   # distillation

Rerunning the same command resumes from ``OUT/checkpoint.pt``.  The result,
``OUT/unet.pt``, is used with ``dwcube classify CATALOG --model OUT/unet.pt`` (and ``--dem DEM``
when it was trained with one) or ``dwcube.classify(cube, unet_entry("OUT/unet.pt"))``.

Examples
--------
>>> import argparse
>>> p = argparse.ArgumentParser(); sub = p.add_subparsers(dest="command")
>>> _ = add_parser(sub)
>>> a = p.parse_args(["train", "cube.zarr", "labels.tif", "--out", "runs/a", "--steps", "10"])
>>> a.steps, a.kind, a.attention
(10, 'auto', True)
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

__all__ = ["add_parser", "run"]


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``train`` sub-command to ``dwcube``'s sub-parsers; returns it.

    Examples
    --------
    >>> p = argparse.ArgumentParser(); sub = p.add_subparsers(dest="command")
    >>> add_parser(sub).prog.endswith("train")
    True
    """
    tr = subparsers.add_parser("train", help="train the U-Net on a cube and a label raster (resumable)")
    tr.add_argument("cube", help="reflectance cube: Zarr store (from `dwcube load`) or NetCDF")
    tr.add_argument("labels", help="label raster (GeoTIFF/COG: WorldCover codes or Dynamic World labels), "
                                   "or a Zarr/NetCDF of probabilities with a 'class' dimension")
    tr.add_argument("--out", required=True, help="run folder (checkpoints, metrics, unet.pt)")
    tr.add_argument("--kind", choices=["auto", "worldcover", "dynamic-world", "probability"], default="auto",
                    help="what LABELS holds (default auto: probabilities when it has a 'class' dimension, else "
                         "WorldCover codes when a value is >= 10, else Dynamic World labels 0-8)")
    tr.add_argument("--dem", help="elevation: a raster file or a STAC catalogue with cop-dem-glo-30 tiles "
                                  "(put on the cube's grid); makes elevation an input of the model, which then "
                                  "needs --dem to classify too")
    tr.add_argument("--steps", type=int, default=3000, help="optimiser steps (default 3000)")
    tr.add_argument("--batch-size", type=int, default=16, help="patches per step (default 16)")
    tr.add_argument("--patch", type=int, default=96, help="patch size in pixels (default 96)")
    tr.add_argument("--samples", type=int, default=2000, help="training patches (default 2000)")
    tr.add_argument("--val-samples", type=int, default=200, help="validation patches (default 200)")
    tr.add_argument("--dates-per-sample", type=int, default=2,
                    help="dates of the cube drawn per patch location (temporal augmentation; default 2)")
    tr.add_argument("--block", type=int, default=96, help="block size of the 90:10 spatial split (pixels)")
    tr.add_argument("--lr", type=float, default=2e-3, help="Adam learning rate (default 0.002)")
    tr.add_argument("--label-smoothing", type=float, default=0.05, help="label smoothing of the loss (default 0.05)")
    tr.add_argument("--target-temperature", type=float, default=1.0,
                    help="sharpen soft targets (teacher probabilities) with this temperature; <1 sharpens "
                         "(the shipped model: 0.3); no effect on hard labels")
    tr.add_argument("--radiometric", type=float, default=1.0,
                    help="scale of the radiometric augmentation (brightness, band gain, haze); 0 turns it off "
                         "(the shipped model: 0.5)")
    tr.add_argument("--landsat-fraction", type=float, default=0.3,
                    help="share of samples made Landsat-like (cross-sensor augmentation)")
    tr.add_argument("--no-attention", dest="attention", action="store_false",
                    help="no attention gates on the skip connections")
    tr.add_argument("--no-aspp", dest="aspp", action="store_false", help="no ASPP bottleneck")
    tr.add_argument("--widths", help="channels at the four levels, e.g. 16,32,64,96")
    tr.add_argument("--fit-normalisation", action="store_true",
                    help="fit the input normalisation on the patches (default: the shipped model's)")
    tr.add_argument("--device", default="auto", help="auto (GPU when present), cpu, cuda")
    tr.add_argument("--threads", type=int, help="CPU threads for PyTorch")
    tr.add_argument("--seed", type=int, default=0, help="random seed of sampling, augmentation and weights (default 0)")
    tr.add_argument("--quick", action="store_true",
                    help="a seconds-long run with a tiny model (smoke test; the other training options are ignored)")
    tr.add_argument("--no-resume", dest="resume", action="store_false",
                    help="start afresh instead of resuming from OUT/checkpoint.pt")
    tr.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")
    return tr


def _open(path: str) -> Any:
    import xarray as xr

    p = Path(path)
    if p.is_dir() or p.suffix == ".zarr":
        return xr.open_zarr(p, consolidated=False)
    if p.suffix in (".nc", ".nc4", ".h5"):
        return xr.open_dataset(p, chunks={})
    import rioxarray

    return rioxarray.open_rasterio(p, chunks=True, masked=False)


def _labels(path: str) -> Any:
    import xarray as xr

    obj = _open(path)
    if isinstance(obj, xr.Dataset):
        names = [n for n, v in obj.data_vars.items() if "class" in v.dims] or list(obj.data_vars)
        return obj[names[0]]
    return obj


def run(args: argparse.Namespace) -> int:
    """Run ``dwcube train`` with parsed arguments; returns the exit status.

    Errors propagate (``dwcube``'s ``main`` prints them as one line).

    Examples
    --------
    A quick run on a synthetic cube and WorldCover-coded labels, both stored as Zarr:

    >>> import argparse, contextlib, io, tempfile
    >>> from pathlib import Path
    >>> import numpy as np, xarray as xr
    >>> from dwcube.testing import synthetic_cube
    >>> d = Path(tempfile.mkdtemp())
    >>> cube = synthetic_cube(48, 2, bands=["blue", "green", "red", "nir08", "swir16", "swir22"], seed=3)
    >>> cube.to_zarr(d / "cube.zarr", zarr_format=3, consolidated=False) and None
    >>> wc = xr.DataArray(np.where(cube.red.isel(time=0).values > 0.1, 10, 30).astype(np.uint8),
    ...                   dims=("y", "x"), coords={"y": cube.y, "x": cube.x})
    >>> xr.Dataset({"label": wc}).to_zarr(d / "wc.zarr", zarr_format=3, consolidated=False) and None
    >>> parser = argparse.ArgumentParser(prog="dwcube")
    >>> _ = add_parser(parser.add_subparsers(dest="command"))
    >>> args = parser.parse_args(["train", str(d / "cube.zarr"), str(d / "wc.zarr"), "--kind", "worldcover",
    ...                           "--out", str(d / "run"), "--quick", "--no-progress"])
    >>> with contextlib.redirect_stdout(io.StringIO()):
    ...     status = run(args)
    >>> status, (d / "run" / "unet.pt").is_file()
    (0, True)
    """
    from ..models.unet import UNetConfig
    from .augment import AugmentParams
    from .metrics import format_metrics
    from .recipe import Recipe, train_from_cube
    from .sampling import SamplingParams, SplitParams

    cube = _open(args.cube)
    labels = _labels(args.labels)
    dem = None
    if args.dem:
        from ..elevation import load_dem

        dem = load_dem(args.dem, cube)
    if args.quick:
        recipe = Recipe.quick()
    else:
        widths = tuple(int(v) for v in args.widths.split(",")) if args.widths else UNetConfig().widths
        model = UNetConfig(widths=widths, attention=args.attention, aspp=args.aspp)  # type: ignore[arg-type]
        base = Recipe()
        recipe = Recipe(
            sampling=SamplingParams(patch=args.patch, n_samples=args.samples, dates_per_sample=args.dates_per_sample,
                                    seed=args.seed),
            val_samples=args.val_samples,
            split=SplitParams(block=args.block, seed=args.seed),
            train=replace(base.train, steps=args.steps, batch_size=args.batch_size, lr=args.lr,
                          label_smoothing=args.label_smoothing, target_temperature=args.target_temperature,
                          device=args.device, threads=args.threads, seed=args.seed, model=model,
                          augment=AugmentParams().scaled(args.radiometric, landsat_fraction=args.landsat_fraction)),
            normalisation="fit" if args.fit_normalisation else "shipped",
        )
    print(f"cube: {dict(cube.sizes)}; labels: {args.labels} ({args.kind}); out: {args.out}", flush=True)
    result = train_from_cube(cube, labels, args.out, kind=args.kind, dem=dem, recipe=recipe, resume=args.resume,
                             progress=args.progress, log=lambda line: print(line, flush=True),
                             source=Path(args.cube).name)
    if result.metrics is not None:
        print(format_metrics(result.metrics, title="validation (spatially held-out blocks)"))
    print(json.dumps({"weights": str(result.weights), "sha256": result.sha256}))
    return 0


if __name__ == "__main__":  # pragma: no cover
    parser = argparse.ArgumentParser(prog="dwcube")
    add_parser(parser.add_subparsers(dest="command", required=True))
    sys.exit(run(parser.parse_args()))
