"""The ``dwcube`` command line. It only parses arguments and delegates.

Commands
--------
``dwcube demo``
    The main job on its embedded default (see :mod:`dwcube.demo`).
``dwcube load CATALOG --out STORE ...``
    Search, load and normalise a cube and write it to a Zarr v3 store, with a progress bar.
``dwcube classify CATALOG --out STORE ...``
    Search and load a cube, classify it with a registered model (local Dask, or a
    cluster given by ``--scheduler``) and write or append it to a Zarr archive, with a
    progress bar; ``--map`` also draws the labels to a PNG.
``dwcube archive info STORE``
    What an archive holds: model, classes, grid, dates, pending write, encoding, size.
``dwcube archive check STORE``
    Read and decode every chunk of an archive (checksums too) and list any damage;
    exit status 1 when damaged.
``dwcube export STORE --date DATE --layer label|probability --out FILE.tif``
    One date of an archive as a Cloud-Optimised GeoTIFF: the label with the Dynamic
    World colour table and class names, or one probability band per class.
``dwcube train CUBE LABELS --out DIR ...``
    Train the project's U-Net on a cube and a label raster (WorldCover, Dynamic
    World labels or a teacher's probabilities); resumable (see :mod:`dwcube.train.cli`).
``dwcube weights list | fetch NAME | verify NAME``
    Registered models and their pinned weights: list them, download them into the
    user cache (hash-checked), or check a local copy.

Option values may start with a minus sign (``--bbox -14.99,45.1,-14.5,45.2`` is read as
``--bbox=-14.99,...``); ``--datetime``, ``--bbox`` and the sizes are checked before anything
runs, and errors from deeper down name the command line's options (``--dem``, ``--mode a``),
not the Python parameters.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

#: Options whose value may start with "-" (negative longitudes and latitudes).
NEGATIVE_VALUE_OPTIONS = ("--bbox",)

#: Python parameter names in error messages -> the command line's options.
CLI_OPTIONS = {
    "dem": "--dem", "mode": "--mode", "bands": "--bands", "resolution": "--resolution", "crs": "--crs",
    "chunks": "--chunks", "tile": "--tile", "batch_size": "--batch-size", "collections": "--collections",
    "bbox": "--bbox", "datetime": "--datetime", "weights": "--weights", "device": "--device",
    "on_error": "--on-error", "loader": "--loader", "gdal_env": "--gdal-env", "precision": "--precision",
}


def _bbox(text: str) -> list[float]:
    """``west,south,east,north`` in degrees, checked."""
    try:
        parts = [float(v) for v in text.split(",")]
    except ValueError:
        parts = []
    if len(parts) != 4:
        raise argparse.ArgumentTypeError(f"{text!r} is not west,south,east,north in degrees (four numbers, "
                                         "e.g. --bbox -14.99,45.1,-14.5,45.2)")
    west, south, east, north = parts
    if not (-180 <= west < east <= 180 and -90 <= south < north <= 90):
        raise argparse.ArgumentTypeError(f"{text!r}: need -180 <= west < east <= 180 and -90 <= south < north <= 90 "
                                         "(degrees, west,south,east,north)")
    return parts


def _datetime(text: str) -> str:
    """A STAC date or range (``2024``, ``2024-05``, ``2024-05-01``, ``START/END``, ``../END``), checked."""
    from .stac import parse_datetime_range

    try:
        start, end = parse_datetime_range(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a date or range ({exc}); use YYYY, YYYY-MM, YYYY-MM-DD, an ISO time, "
            "or START/END with '..' for an open end, e.g. 2024-05/2024-08") from None
    if start is not None and end is not None and start > end:
        raise argparse.ArgumentTypeError(f"{text!r}: the range ends before it starts")
    return text


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive whole number")
    return value


def _non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number >= 0")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive number")
    return value


def _key_value(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"{text!r} is not KEY=VALUE (e.g. --gdal-env AWS_REQUEST_PAYER=requester)")
    return key.strip(), value


def join_negative_values(argv: Sequence[str], options: Sequence[str] = NEGATIVE_VALUE_OPTIONS) -> list[str]:
    """Rewrite ``OPTION -1.5,...`` as ``OPTION=-1.5,...`` so that argparse does not take the
    value for an option; anything else (and everything after ``--``) is left alone.

    Examples
    --------
    >>> join_negative_values(["load", "c.json", "--bbox", "-14.99,45.1,15.0,45.2", "--out", "x"])
    ['load', 'c.json', '--bbox=-14.99,45.1,15.0,45.2', '--out', 'x']
    >>> join_negative_values(["--bbox", "--out"])
    ['--bbox', '--out']
    """
    out: list[str] = []
    i = 0
    while i < len(argv):
        token = argv[i]
        if token == "--":
            return out + list(argv[i:])
        if token in options and i + 1 < len(argv) and re.match(r"-[\d.]", argv[i + 1]):
            out.append(f"{token}={argv[i + 1]}")
            i += 2
            continue
        out.append(token)
        i += 1
    return out


def cli_words(message: str, options: Mapping[str, str] = CLI_OPTIONS) -> str:
    """An error message from the library in the command line's words: ``dem=load_dem(...)``
    becomes ``--dem``, ``mode='a'`` becomes ``--mode a``, ``bands=[...]`` becomes ``--bands``.

    Examples
    --------
    >>> cli_words("elevation (pass dem=load_dem(...))")
    'elevation (pass --dem)'
    >>> cli_words("x.zarr already exists (mode='w-'); use mode='a' to append or 'w' to replace it")
    'x.zarr already exists (--mode w-); use --mode a to append or --mode w to replace it'
    >>> cli_words("output CRS EPSG:4326 is geographic: pass resolution= in degrees")
    'output CRS EPSG:4326 is geographic: pass --resolution in degrees'
    """
    message = message.replace("or 'w' to replace", "or mode='w' to replace")
    message = message.replace("or pass the folder explicitly", "or pass the folder with --weights")
    for name, option in options.items():
        pattern = rf"(?<![\w.$-]){name}=(?:load_dem\(\.\.\.\)|'([^']*)'|\"([^\"]*)\"|\[\.\.\.\]|\.\.\.)?"
        message = re.sub(pattern, lambda m, o=option: o + (f" {m.group(1) or m.group(2)}" if (m.group(1) or m.group(2))
                                                           else ""), message)
    return message


def _weights_command(args: argparse.Namespace) -> None:
    from .models import registry
    from .models import weights as W

    if args.weights_command == "list":
        for e in registry.list_entries():
            if e.weights is None:
                where = "packaged"
            else:
                try:
                    where = str(W.resolve(e.weights))
                except W.WeightsError as exc:
                    where = f"not available ({type(exc).__name__})"
            print(f"{e.name}\t{e.version}\t{e.license or '-'}\t{where}")
            if e.weights is not None and where.startswith("not available"):
                for root, label in W.search_locations(e.weights):
                    print(f"\tlooked in {root} ({label})")
        return
    entry = registry.get_entry(args.name)
    if entry.weights is None:
        print(f"{entry.name}: weights ship with dwcube; nothing to {args.weights_command}")
        return
    if args.weights_command == "fetch":
        root = W.fetch(entry.weights, args.dest, base_url=args.url, progress=lambda line: print(line, flush=True))
        print(f"{entry.name}: weights in {root}")
    else:
        root = W.resolve(entry.weights, args.path)
        print(f"{entry.name}: {len(entry.weights.files)} files verified in {root}")


def _classify_command(args: argparse.Namespace) -> None:
    import contextlib

    from .archive import ArchiveEncoding, write_archive
    from .inference import classify
    from .load import load
    from .models.registry import get_entry

    if args.model.endswith(".pt"):  # a U-Net trained with `dwcube train`
        from .models.unet import unet_entry

        entry = unet_entry(args.model, name=Path(args.model).stem)
    else:
        entry = get_entry(args.model)
    spec = entry.inputs
    client_cm: contextlib.AbstractContextManager = contextlib.nullcontext()
    if args.scheduler:
        from dask.distributed import Client

        client_cm = Client(args.scheduler)
    with client_cm:
        cube = load(
            args.catalog, collections=args.collections, bbox=args.bbox, datetime=args.datetime,
            resolution=args.resolution or spec.resolution, crs=args.crs, chunks=args.chunks,
            resampling=spec.resampling or "bilinear", on_error=args.on_error, gdal_env=dict(args.gdal_env or []),
            **({"cloud_mask": False} if args.no_cloud_mask else {}),
        )
        print(f"cube: {cube.sizes['time']} date(s), {cube.sizes[cube.odc.spatial_dims[0]]} × "
              f"{cube.sizes[cube.odc.spatial_dims[1]]} px, {cube.attrs.get('sensor')}", flush=True)
        dem = None
        if args.dem:
            from .elevation import load_dem

            dem = load_dem(args.dem, cube)
        prob = classify(cube, entry, weights=args.weights, dem=dem, device=args.device, tile=args.tile,
                        batch_size=args.batch_size)
        enc = None  # an existing archive keeps its encoding; a new one gets the default
        if args.precision or args.archive_chunk:
            enc = ArchiveEncoding(precision=args.precision or "uint16", chunk=args.archive_chunk or 512)
        report = write_archive(prob, args.out, mode=args.mode, encoding=enc, progress=not args.no_progress)
    print(f"{args.out}: wrote {len(report.written)} date(s), skipped {len(report.skipped)} already stored"
          + (f", resumed {report.blocks_resumed} finished block(s)" if report.blocks_resumed else ""))
    if args.map:
        from .archive import open_archive
        from .plot import label_maps

        label_maps(open_archive(args.out).label, suptitle=f"{entry.name} labels").savefig(args.map, dpi=120)
        print(f"map: {args.map}")


def _archive_command(args: argparse.Namespace) -> int:
    import json

    from .archive import archive_info, check_archive, format_info

    if args.archive_command == "check":
        report = check_archive(args.store)
        print(json.dumps({**vars(report), "ok": report.ok}, indent=1) if args.json else report.format())
        return 0 if report.ok else 1
    info = archive_info(args.store)
    print(json.dumps(info, indent=1, default=str) if args.json else format_info(info))
    return 0


def _export_command(args: argparse.Namespace) -> None:
    from .export import export_cog

    path = export_cog(args.store, args.out, date=args.date, layer=args.layer, blocksize=args.blocksize)
    print(f"{path}: {args.layer} of {args.date} from {args.store} (Cloud-Optimised GeoTIFF)")


WEIGHTS_SEARCH = "$DWCUBE_WEIGHTS, $DWCUBE_SHARED/dynamicworld or ../shared/dynamicworld, then the user cache"


def build_parser() -> argparse.ArgumentParser:
    """The ``dwcube`` argument parser (every option has a help text).

    Examples
    --------
    >>> args = build_parser().parse_args(["archive", "info", "lulc.zarr", "--json"])
    >>> args.command, args.archive_command, args.json
    ('archive', 'info', True)
    """
    from . import __version__

    parser = argparse.ArgumentParser(prog="dwcube", description="Dynamic World-style land cover on STAC datacubes")
    parser.add_argument("--version", action="version", version=f"dwcube {__version__}",
                        help="print the version and exit")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", help="what to do")

    demo = sub.add_parser("demo", help="run the main job offline on a sample scene (local Dask, local Zarr)")
    demo.add_argument("--workdir", default="dwcube-demo", help="output folder (default: ./dwcube-demo)")
    demo.add_argument("--source", choices=["auto", "eolearn", "synthetic"], default="auto",
                      help="scenes: the real eo-learn L1C scenes from ../shared, or synthetic ones "
                           "(default auto: eo-learn when ../shared is found)")
    demo.add_argument("--workers", type=_non_negative_int, default=2,
                      help="local Dask worker processes (0: threads only; default 2)")
    demo.add_argument("--model", choices=["auto", "dynamic-world", "unet"], default="auto",
                      help="auto (default): Dynamic World when its weights are found, else the U-Net shipped "
                           "with dwcube")
    demo.add_argument("--weights", help=f"Dynamic World weights folder (default: {WEIGHTS_SEARCH})")

    cl = sub.add_parser("classify", help="load, classify and write (or append to) a Zarr archive")
    cl.add_argument("catalog", help="STAC API URL or local catalogue file")
    cl.add_argument("--out", required=True, help="output Zarr archive (created, or appended to)")
    cl.add_argument("--collections", nargs="*", help="STAC collections to search, e.g. sentinel-2-l2a")
    cl.add_argument("--bbox", type=_bbox, metavar="W,S,E,N", help="west,south,east,north in degrees (negative values are fine)")
    cl.add_argument("--datetime", type=_datetime, metavar="DATE[/DATE]", help="date or range, e.g. 2024-05/2024-08 (UTC)")
    cl.add_argument("--model", default="dynamic-world",
                    help="registered model (default: dynamic-world), or a U-Net weights file (.pt) from dwcube train")
    cl.add_argument("--weights", help=f"weights folder (default: {WEIGHTS_SEARCH})")
    cl.add_argument("--device", default="auto", help="auto (GPU when a worker has one), cpu, cuda, cuda:1")
    cl.add_argument("--scheduler", help="address of a dask.distributed scheduler (default: local threads)")
    cl.add_argument("--resolution", type=_positive_float, help="pixel size in the CRS's units (default: the model's, 10 m)")
    cl.add_argument("--crs", help="output CRS, e.g. EPSG:32633 (default: the CRS most items share)")
    cl.add_argument("--chunks", type=_positive_int, default=1024, help="Dask chunk size in pixels (default 1024)")
    cl.add_argument("--tile", type=_positive_int, default=512,
                    help="tile size inside a chunk, a multiple of the model's alignment (default 512)")
    cl.add_argument("--batch-size", type=_positive_int, default=4, help="tiles per forward pass (default 4)")
    cl.add_argument("--mode", choices=["a", "w", "w-"], default="a",
                    help="a: create or append/resume (default); w-: create only; w: replace")
    cl.add_argument("--precision", choices=["uint16", "uint8", "float32"], help="stored probabilities (new archives)")
    cl.add_argument("--archive-chunk", type=_positive_int, help="archive chunk size in pixels (new archives; default 512)")
    cl.add_argument("--dem", help="elevation for models that use it (unet): a raster file, or a STAC catalogue "
                                  "with cop-dem-glo-30 tiles")
    cl.add_argument("--no-cloud-mask", action="store_true", help="do not mask clouds (L1C is masked by default)")
    cl.add_argument("--on-error", choices=["raise", "nan"], default="raise",
                    help="an unreadable asset: raise (default) or read it as NaN and list it in the attributes")
    cl.add_argument("--gdal-env", type=_key_value, action="append", metavar="KEY=VALUE",
                    help="a GDAL setting for reading the assets (repeatable), e.g. AWS_REQUEST_PAYER=requester")
    cl.add_argument("--map", help="also draw the labels to this PNG file")
    cl.add_argument("--no-progress", action="store_true", help="no progress bar")

    ar = sub.add_parser("archive", help="inspect a probability archive")
    asub = ar.add_subparsers(dest="archive_command", required=True, metavar="ARCHIVE_COMMAND", help="what to do")
    ai = asub.add_parser("info", help="model, classes, grid, dates, pending write, encoding and size")
    ai.add_argument("store", help="the Zarr archive")
    ai.add_argument("--json", action="store_true", help="machine-readable output")
    ac = asub.add_parser("check", help="read and decode every chunk (checksums too); exit status 1 if damaged")
    ac.add_argument("store")
    ac.add_argument("--json", action="store_true", help="machine-readable output")

    ex = sub.add_parser("export", help="write one date of an archive to a Cloud-Optimised GeoTIFF")
    ex.add_argument("store", help="the archive")
    ex.add_argument("--date", required=True, help="the date to export, e.g. 2024-05-17")
    ex.add_argument("--layer", choices=["label", "probability"], default="label",
                    help="label: uint8 classes with the Dynamic World colour table (default); "
                         "probability: one float32 band per class")
    ex.add_argument("--out", required=True, help="output GeoTIFF file")
    ex.add_argument("--blocksize", type=int, default=512, help="tile size in pixels (default 512)")

    ld = sub.add_parser("load", help="load a normalised reflectance cube and write it to Zarr")
    ld.add_argument("catalog", help="STAC API URL or local catalogue file")
    ld.add_argument("--out", required=True, help="output Zarr store (must not exist)")
    ld.add_argument("--collections", nargs="*", help="STAC collections to search, e.g. sentinel-2-l2a")
    ld.add_argument("--bbox", type=_bbox, metavar="W,S,E,N", help="west,south,east,north in degrees (negative values are fine)")
    ld.add_argument("--datetime", type=_datetime, metavar="DATE[/DATE]", help="date or range, e.g. 2024-05/2024-08 (UTC)")
    ld.add_argument("--bands", nargs="*", help="bands by common name or id, e.g. red nir08 or B04 B8A (default: all)")
    ld.add_argument("--resolution", type=_positive_float, help="pixel size in the CRS's units (default: the sensor's)")
    ld.add_argument("--crs", help="output CRS, e.g. EPSG:32633 (default: the CRS most items share)")
    ld.add_argument("--chunks", type=_positive_int, default=2048, help="Dask chunk size in pixels (default 2048)")
    ld.add_argument("--loader", choices=["odc-stac", "stackstac"], default="odc-stac", help="reader (default odc-stac)")
    ld.add_argument("--no-cloud-mask", action="store_true",
                    help="do not mask clouds on L1C (masked by default with Dynamic World's recipe)")
    ld.add_argument("--on-error", choices=["raise", "nan"], default="raise",
                    help="an unreadable asset: raise (default) or read it as NaN and list it in the attributes")
    ld.add_argument("--gdal-env", type=_key_value, action="append", metavar="KEY=VALUE",
                    help="a GDAL setting for reading the assets (repeatable), e.g. AWS_REQUEST_PAYER=requester")
    ld.add_argument("--no-progress", action="store_true", help="no progress bar")

    wt = sub.add_parser("weights", help="list, fetch or verify model weights")
    wsub = wt.add_subparsers(dest="weights_command", required=True, metavar="WEIGHTS_COMMAND", help="what to do")
    wsub.add_parser("list", help="registered models and where their weights are (or where dwcube looked)")
    wf = wsub.add_parser("fetch", help="download pinned weights into the user cache, hash-checked")
    wf.add_argument("name", help="model name, e.g. dynamic-world")
    wf.add_argument("--dest", help="folder to download into (default: the user cache)")
    wf.add_argument("--url", help="mirror to download from instead of the pinned origin")
    wv = wsub.add_parser("verify", help="find a model's weights and check every file's SHA-256")
    wv.add_argument("name", help="model name, e.g. dynamic-world")
    wv.add_argument("--path", help=f"weights folder (default: {WEIGHTS_SEARCH})")

    from .train import cli as train_cli

    train_cli.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``dwcube`` command.

    Examples
    --------
    >>> main(["archive", "info", "/nonexistent.zarr"])
    1
    """
    from .train import cli as train_cli

    parser = build_parser()
    args = parser.parse_args(join_negative_values(sys.argv[1:] if argv is None else list(argv)))
    try:
        if args.command == "demo":
            from .demo import run_demo

            run_demo(args.workdir, source=args.source, n_workers=args.workers, weights=args.weights, model=args.model)
        elif args.command == "load":
            from .execute import compute_with_progress
            from .load import load

            ds = load(
                args.catalog, collections=args.collections, bbox=args.bbox, datetime=args.datetime,
                bands=args.bands, resolution=args.resolution, crs=args.crs, chunks=args.chunks,
                loader=args.loader, on_error=args.on_error, gdal_env=dict(args.gdal_env or []),
                **({"cloud_mask": False} if args.no_cloud_mask else {}),
            )
            write = ds.to_zarr(args.out, mode="w-", zarr_format=3, consolidated=False, compute=False)
            compute_with_progress(write, progress=not args.no_progress, label="loading and writing")
            print(f"wrote {dict(ds.sizes)} to {args.out}" + (" (no cloud mask)" if args.no_cloud_mask else ""))
        elif args.command == "classify":
            _classify_command(args)
        elif args.command == "archive":
            return _archive_command(args)
        elif args.command == "export":
            _export_command(args)
        elif args.command == "weights":
            _weights_command(args)
        elif args.command == "train":
            return train_cli.run(args)
    except Exception as exc:  # a clear one-line error for the shell, the traceback for --debug users
        print(f"dwcube {args.command}: error: {type(exc).__name__}: {cli_words(str(exc))}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
