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
``dwcube update STORE``
    Bring an archive up to date with its catalogue, with the settings it recorded: new
    dates appended to every model version, the filter state and change alerts kept
    current (:func:`dwcube.jobs.update_archive`); exit status 75 when another process
    is writing the archive.
``dwcube reprocess STORE --model NAME[==VERSION]``
    Classify the stored history again with another model, as a new version beside the
    others, resumably (:func:`dwcube.jobs.reprocess`).
``dwcube compare STORE A B``
    How two model versions differ: label disagreement per date, the transition matrix,
    change events of B that A lacks (:func:`dwcube.jobs.compare_versions`).
``dwcube export STORE --date DATE --layer label|probability --out FILE.tif``
    One date of an archive as a Cloud-Optimised GeoTIFF: the label with the Dynamic
    World colour table and class names, or one probability band per class.
``dwcube train CUBE LABELS --out DIR ...``
    Train the project's U-Net on a cube and a label raster (WorldCover, Dynamic
    World labels or a teacher's probabilities); resumable (see :mod:`dwcube.train.cli`).
``dwcube accuracy sample MAP --n N --out SAMPLES`` / ``dwcube accuracy estimate LABELLED``
    A stratified random sample of a label map (an archive date or a GeoTIFF) written as
    GeoParquet/GeoJSON/CSV for labelling; the labelled file back to accuracy and class
    areas with 95 % confidence intervals (see :mod:`dwcube.accuracy`).
``dwcube serve STORE [STORE ...] [--host 127.0.0.1] [--port 8000]``
    The web app over archives (map with a date slider, layers, a pixel's probability
    chart, before/after swipe, area scorecard; API at ``/docs``) and ``POST /api/predict``
    (see :mod:`dwcube.serve`); loopback only unless ``--host`` says otherwise.
``dwcube weights list | fetch NAME | verify NAME``
    Registered models and their pinned weights: list them, download them into the
    user cache (hash-checked), or check a local copy.

Option values may start with a minus sign (``--bbox -14.99,45.1,-14.5,45.2`` is read as
``--bbox=-14.99,...``); ``--datetime``, ``--bbox`` and the sizes are checked before anything
runs, and errors from deeper down name the command line's options (``--dem``, ``--mode a``),
not the Python parameters.

``dwcube load`` and ``dwcube classify`` take :func:`dwcube.load`'s read options
(``--on-error``, ``--read-retries``, ``--max-pixels``), and ``classify`` takes
``--no-scale-check`` (:func:`dwcube.classify`'s ``check_scale=False``).  With ``--on-error nan``
the output is written with what could be read, every asset read that still failed is listed
on stderr (one line each, :func:`dwcube.read_failures`), and the exit status is 1.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

#: Options whose value may start with "-" (negative longitudes and latitudes).
NEGATIVE_VALUE_OPTIONS = ("--bbox",)

#: Python parameter names in error messages -> the command line's options.
CLI_OPTIONS = {
    "dem": "--dem", "mode": "--mode", "bands": "--bands", "resolution": "--resolution", "crs": "--crs",
    "chunks": "--chunks", "tile": "--tile", "batch_size": "--batch-size", "collections": "--collections",
    "bbox": "--bbox", "datetime": "--datetime", "weights": "--weights", "device": "--device",
    "on_error": "--on-error", "loader": "--loader", "gdal_env": "--gdal-env", "precision": "--precision",
    "max_pixels": "--max-pixels", "read_retries": "--read-retries",
}

#: Defaults of :func:`dwcube.load`'s ``max_pixels`` and ``read_retries``, repeated here so that
#: ``dwcube --help`` does not import the loader (tests/test_cli.py checks that they agree).
DEFAULT_MAX_PIXELS = 4_000_000_000
DEFAULT_READ_RETRIES = 2

#: Exit status of ``dwcube load``/``classify`` when the output was written but some asset reads
#: failed (``--on-error nan``: those pixels are NaN), as ``archive check`` reports damage.
EXIT_READ_FAILURES = 1


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


def _max_pixels(text: str) -> int | None:
    """A positive whole number of pixels (``4000000000`` or ``4e9``), or ``none`` for no limit."""
    if text.strip().lower() == "none":
        return None
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not (1 <= value < float("inf")) or value != int(value):
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive whole number of pixels (e.g. 4e9) or 'none'")
    return int(value)


def _read_retries(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if not 0 <= value <= 20:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number from 0 to 20")
    return value


def _report_read_failures(command: str, cube: Any) -> int:
    """Print every asset read of ``cube`` that failed (one line each, stderr); the exit status."""
    from .reads import read_failures

    failures = read_failures(cube)
    for failure in failures:
        print(f"dwcube {command}: read failed, NaN: {failure}", file=sys.stderr)
    if failures:
        print(f"dwcube {command}: {len(failures)} asset read(s) failed; their pixels are NaN in the output "
              "(--on-error nan)", file=sys.stderr)
        return EXIT_READ_FAILURES
    return 0


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
    >>> cli_words("more than max_pixels=4e+09: pass max_pixels=None or a larger number")
    'more than --max-pixels 4e+09: pass --max-pixels none or a larger number'
    """
    message = message.replace("or 'w' to replace", "or mode='w' to replace")
    message = message.replace("or pass the folder explicitly", "or pass the folder with --weights")
    for name, option in options.items():
        pattern = (rf"(?<![\w.$-]){name}=(?:load_dem\(\.\.\.\)|'([^']*)'|\"([^\"]*)\"|\[\.\.\.\]|\.\.\.|"
                   r"([\w.+-]+))?")
        message = re.sub(pattern, lambda m, o=option: o + _cli_value(m.group(1) or m.group(2) or m.group(3)), message)
    return message


def _cli_value(value: str | None) -> str:
    return "" if not value else " none" if value == "None" else f" {value}"


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


def _classify_command(args: argparse.Namespace) -> int:
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
            read_retries=args.read_retries, max_pixels=args.max_pixels,
            cloud_mask=_cloud_mask_arg(args),
        )
        print(f"cube: {cube.sizes['time']} date(s), {cube.sizes[cube.odc.spatial_dims[0]]} × "
              f"{cube.sizes[cube.odc.spatial_dims[1]]} px, {cube.attrs.get('sensor')}", flush=True)
        dem = None
        if args.dem:
            from .elevation import load_dem

            dem = load_dem(args.dem, cube)
        prob = classify(cube, entry, weights=args.weights, dem=dem, device=args.device, tile=args.tile,
                        batch_size=args.batch_size, check_scale=not args.no_scale_check)
        enc = None  # an existing archive keeps its encoding; a new one gets the default
        if args.precision or args.archive_chunk:
            enc = ArchiveEncoding(precision=args.precision or "uint16", chunk=args.archive_chunk or 512)
        report = write_archive(prob, args.out, mode=args.mode, encoding=enc, progress=not args.no_progress,
                               quicklook=cube if args.quicklook else None)
    print(f"{args.out}: wrote {len(report.written)} date(s), skipped {len(report.skipped)} already stored"
          + (f", resumed {report.blocks_resumed} finished block(s)" if report.blocks_resumed else "")
          + (f", RGB quicklook of {len(report.quicklook)} date(s)" if args.quicklook else ""))
    if args.map:
        from .archive import open_archive
        from .plot import label_maps

        label_maps(open_archive(args.out).label, suptitle=f"{entry.name} labels").savefig(args.map, dpi=120)
        print(f"map: {args.map}")
    return _report_read_failures("classify", cube)


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


#: Exit status of ``dwcube update``/``reprocess`` when another process holds the archive (EX_TEMPFAIL).
EXIT_BUSY = 75


def _client(address: str | None):  # type: ignore[no-untyped-def]
    import contextlib

    if not address:
        return contextlib.nullcontext()
    from dask.distributed import Client

    return Client(address)


def _update_command(args: argparse.Namespace) -> int:
    import json

    from .archive import ArchiveBusyError
    from .jobs import update_archive

    try:
        with _client(args.scheduler):
            report = update_archive(args.store, catalog=args.catalog, until=args.until, nrt=not args.no_nrt,
                                    device=args.device, wait=args.wait, progress=not args.no_progress)
    except ArchiveBusyError as exc:
        print(f"dwcube update: busy: {exc}", file=sys.stderr)
        return EXIT_BUSY
    print(json.dumps(vars(report) | {"nothing_new": report.nothing_new}, default=lambda o: vars(o), indent=1)
          if args.json else report.format())
    return 0


def _reprocess_command(args: argparse.Namespace) -> int:
    from .archive import ArchiveBusyError
    from .jobs import reprocess

    try:
        with _client(args.scheduler):
            report = reprocess(args.store, args.model, weights=args.weights, dem=args.dem, device=args.device,
                               catalog=args.catalog, wait=args.wait, progress=not args.no_progress)
    except ArchiveBusyError as exc:
        print(f"dwcube reprocess: busy: {exc}", file=sys.stderr)
        return EXIT_BUSY
    print(report.format())
    return 0 if report.complete else 1


def _compare_command(args: argparse.Namespace) -> None:
    import json

    from .jobs import compare_versions

    cmp = compare_versions(args.store, args.a, args.b, tolerance=args.tolerance_days)
    if args.json:
        print(json.dumps({"attrs": cmp.attrs, "dates": [str(t)[:19] for t in cmp.time.values],
                          "label_disagreement": cmp.label_disagreement.values.tolist(),
                          "transitions": cmp.transitions.sum("time").values.tolist(),
                          "classes": [str(c) for c in cmp.class_a.values]}, indent=1))
        return
    a, b = cmp.attrs["version_a"], cmp.attrs["version_b"]
    print(f"{args.store}: {a} (a) vs {b} (b), {cmp.sizes['time']} date(s)")
    for t, share, n in zip(cmp.time.values, cmp.label_disagreement.values, cmp.valid_pixels.values, strict=True):
        print(f"  {str(t)[:19]}  labels differ on {100 * share:5.1f} % of {int(n)} px")
    total = cmp.transitions.sum("time").values
    names = [str(c) for c in cmp.class_a.values]
    width = max(len(n) for n in names)
    print(f"transitions a → b (pixel-dates), rows a, columns b; overall disagreement "
          f"{100 * cmp.attrs['label_disagreement_overall']:.1f} %")
    print(" " * (width + 2) + " ".join(f"{n[:6]:>7}" for n in names))
    for n, row in zip(names, total, strict=True):
        print(f"  {n:<{width}}" + " ".join(f"{int(v):>7}" for v in row))
    print(f"change events: {cmp.attrs['changes_in_b']} in b, {cmp.attrs['changes_only_in_b']} of them absent from a "
          f"(the model's, not the land's; ±{args.tolerance_days:g} days, same classes); "
          f"{cmp.attrs['changes_only_in_a']} of a's absent from b")


def _export_command(args: argparse.Namespace) -> None:
    from .export import export_cog

    path = export_cog(args.store, args.out, date=args.date, layer=args.layer, blocksize=args.blocksize)
    print(f"{path}: {args.layer} of {args.date} from {args.store} (Cloud-Optimised GeoTIFF)")


def _accuracy_map(path: str, date: str | None) -> Any:
    """The label map to sample: one date of a dwcube archive, or a single-band label GeoTIFF."""
    import numpy as np

    if path.lower().endswith((".tif", ".tiff")):
        import rioxarray

        da = rioxarray.open_rasterio(path, chunks=True, mask_and_scale=False)
        return da.isel(band=0, drop=True) if "band" in da.dims else da
    from .archive import open_archive

    label = open_archive(path).label
    dates = [str(np.datetime_as_string(t, unit="D")) for t in label.time.values]
    if date is None:
        if len(dates) != 1:
            raise ValueError(f"the archive has {len(dates)} dates: choose one with --date ({', '.join(dates[:6])}"
                             f"{' …' if len(dates) > 6 else ''})")
        return label.isel(time=0)
    if date not in dates:
        raise ValueError(f"--date {date} is not a date of the archive; it has {', '.join(dates[:6])}"
                         f"{' …' if len(dates) > 6 else ''}")
    return label.isel(time=dates.index(date))


def _accuracy_command(args: argparse.Namespace) -> int:
    from . import accuracy

    if args.accuracy_command == "sample":
        allocation = args.allocation
        if args.n is None:
            raise ValueError("give --n, the total sample size")
        samples = accuracy.stratified_sample(_accuracy_map(args.map, args.date), args.n, allocation=allocation,
                                             minimum=args.minimum, seed=args.seed, unit=args.unit)
        path = accuracy.write_samples(samples, args.out)
        per = samples.groupby("stratum").size().to_dict()
        print(f"{path}: {len(samples)} sample units ({', '.join(f'{k}: {v}' for k, v in per.items())}); "
              "fill the 'reference' column, then run `dwcube accuracy estimate` on the labelled file")
        return 0
    samples = accuracy.read_samples(args.labelled)
    est = accuracy.estimate_from_samples(samples, reference=args.reference)
    table = accuracy.summary_table(est)
    print(table.to_string(float_format=lambda v: f"{v:.4g}"))
    print(f"overall accuracy: {float(est.overall_accuracy):.4f} ± {float(est.overall_accuracy_ci95):.4f} (95 %)")
    if args.out:
        table.to_csv(args.out)
        print(f"table: {args.out}")
    if args.plot:
        from .plot import area_estimates, error_matrix

        stem = Path(args.plot)
        area_estimates(est).savefig(stem, dpi=120)
        matrix = stem.with_name(f"{stem.stem}_matrix{stem.suffix or '.png'}")
        error_matrix(est).savefig(matrix, dpi=120)
        print(f"plots: {stem}, {matrix}")
    return 0


WEIGHTS_SEARCH = "$DWCUBE_WEIGHTS, $DWCUBE_SHARED/dynamicworld or ../shared/dynamicworld, then the user cache"


def _add_cloud_mask_mode(p: argparse.ArgumentParser) -> None:
    """``--cloud-mask-mode``, shared by ``load`` and ``classify``."""
    p.add_argument("--cloud-mask-mode", choices=["fast", "exact"], default="fast",
                   help="how the L1C cloud mask evaluates s2cloudless: fast (default) on an 80 m grid, at 10 m only "
                        "near the 0.65 threshold (>= 99.9 %% of pixels as exact, several times faster); exact on "
                        "every 10 m pixel, as Earth Engine's cloud-probability product")


def _cloud_mask_arg(args: argparse.Namespace) -> bool | str:
    """What ``load(cloud_mask=...)`` gets from ``--no-cloud-mask`` and ``--cloud-mask-mode``."""
    return False if args.no_cloud_mask else args.cloud_mask_mode


def _add_read_options(p: argparse.ArgumentParser) -> None:
    """The asset-read options that ``load`` and ``classify`` share."""
    p.add_argument("--on-error", choices=["raise", "nan"], default="raise",
                   help="an unreadable asset: raise (default) or read it as NaN and list it in the attributes")
    p.add_argument("--gdal-env", type=_key_value, action="append", metavar="KEY=VALUE",
                   help="a GDAL setting for reading the assets (repeatable), e.g. AWS_REQUEST_PAYER=requester")
    p.add_argument("--read-retries", type=_read_retries, default=DEFAULT_READ_RETRIES, metavar="N",
                   help="extra attempts for an asset read that fails (HTTP error, body cut short, truncated "
                        "file), 0-20 (default 2); what still fails raises, or is NaN with --on-error nan")
    p.add_argument("--max-pixels", type=_max_pixels, default=DEFAULT_MAX_PIXELS, metavar="N",
                   help="refuse output grids of more than N px per date, a guard against a mistyped --bbox "
                        "or --resolution (default 4e9; 'none' for no limit)")


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
    cl.add_argument("--dem", help="elevation for models trained with one (a U-Net trained with --dem): a raster file, or a STAC catalogue "
                                  "with cop-dem-glo-30 tiles")
    cl.add_argument("--no-cloud-mask", action="store_true", help="do not mask clouds (L1C is masked by default)")
    _add_cloud_mask_mode(cl)
    _add_read_options(cl)
    cl.add_argument("--no-scale-check", action="store_true",
                    help="do not check that the model's band inputs are reflectance 0-1 (by default digital "
                         "numbers are refused and values 10000 times too small warned about)")
    cl.add_argument("--map", help="also draw the labels to this PNG file")
    cl.add_argument("--quicklook", action="store_true",
                    help="also keep a small uint8 RGB quicklook of each date in the archive (the image "
                         "dwcube serve shows behind each date)")
    cl.add_argument("--no-progress", action="store_true", help="no progress bar")

    ar = sub.add_parser("archive", help="inspect a probability archive")
    asub = ar.add_subparsers(dest="archive_command", required=True, metavar="ARCHIVE_COMMAND", help="what to do")
    ai = asub.add_parser("info", help="model, classes, grid, dates, pending write, encoding and size")
    ai.add_argument("store", help="the Zarr archive")
    ai.add_argument("--json", action="store_true", help="machine-readable output")
    ac = asub.add_parser("check", help="read and decode every chunk (checksums too); exit status 1 if damaged")
    ac.add_argument("store", help="the Zarr archive")
    ac.add_argument("--json", action="store_true", help="machine-readable output")

    up = sub.add_parser("update", help="append the catalogue's new dates to an archive, with its recorded settings, "
                                       "and keep its filter state and change alerts current")
    up.add_argument("store", help="the archive (made by dwcube classify or write_archive)")
    up.add_argument("--catalog", help="search this catalogue instead of the recorded one (a mirror, a local copy)")
    up.add_argument("--until", help="only items up to this date, e.g. 2024-10-31")
    up.add_argument("--wait", type=float, default=0.0,
                    help="seconds to wait for another writer of the archive (default 0: exit at once with status 75)")
    up.add_argument("--no-nrt", action="store_true", help="do not update the filter state and change alerts")
    up.add_argument("--device", help="where the model runs (default: as recorded, usually auto)")
    up.add_argument("--scheduler", help="address of a dask.distributed scheduler (default: local threads)")
    up.add_argument("--json", action="store_true", help="machine-readable output")
    up.add_argument("--no-progress", action="store_true", help="no progress bar on stderr (for cron and logs)")

    rp = sub.add_parser("reprocess", help="classify an archive's history again with another model, as a new version")
    rp.add_argument("store", help="the archive")
    rp.add_argument("--model", required=True,
                    help="NAME or NAME==VERSION of a registered model, a U-Net weights file (.pt), or module:attribute")
    rp.add_argument("--weights", help="the model's weights folder, or a U-Net weights file for --model unet")
    rp.add_argument("--dem", help="elevation for models that use it (default: the one the archive used)")
    rp.add_argument("--catalog", help="find the stored items in this catalogue instead of the recorded one")
    rp.add_argument("--device", help="where the model runs (default auto)")
    rp.add_argument("--scheduler", help="address of a dask.distributed scheduler (default: local threads)")
    rp.add_argument("--wait", type=float, default=0.0, help="seconds to wait for another writer (default 0)")
    rp.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")

    cp = sub.add_parser("compare", help="how two model versions of an archive differ (model change vs land change)")
    cp.add_argument("store", help="the archive")
    cp.add_argument("a", help="first version: default, NAME or NAME==VERSION (see dwcube archive info)")
    cp.add_argument("b", help="second version")
    cp.add_argument("--tolerance-days", type=float, default=30.0,
                    help="a change of b within this many days of one of a (same classes) is the same event")
    cp.add_argument("--json", action="store_true", help="machine-readable output")

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
    _add_cloud_mask_mode(ld)
    _add_read_options(ld)
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

    acc = sub.add_parser("accuracy", help="stratified sample of a map; accuracy and areas with 95 %% CIs")
    accsub = acc.add_subparsers(dest="accuracy_command", required=True, metavar="ACCURACY_COMMAND",
                                help="what to do")
    asa = accsub.add_parser("sample", help="draw a stratified random sample of a label map for labelling")
    asa.add_argument("map", help="a dwcube archive (its label at --date) or a label GeoTIFF")
    asa.add_argument("--out", required=True, help="sample file: .parquet (GeoParquet), .geojson or .csv")
    asa.add_argument("--date", help="the archive date to sample, e.g. 2024-05-17 (needed when it has several)")
    asa.add_argument("--n", type=int, help="total sample size (see dwcube.accuracy.sample_size)")
    asa.add_argument("--allocation", choices=["olofsson", "proportional", "equal"], default="olofsson",
                     help="olofsson: --minimum per stratum, the rest proportional (default)")
    asa.add_argument("--minimum", type=int, default=50, help="minimum per stratum for --allocation olofsson (50)")
    asa.add_argument("--seed", type=int, default=0, help="seed of the draw (same seed, same sample)")
    asa.add_argument("--unit", choices=["m2", "ha", "km2"], default="ha", help="area unit (default ha)")
    aes = accsub.add_parser("estimate", help="accuracy and class areas with 95 %% CIs from a labelled sample file")
    aes.add_argument("labelled", help="the sample file with its reference column filled")
    aes.add_argument("--reference", default="reference", help="column of the reference labels (default reference)")
    aes.add_argument("--out", help="also write the table to this CSV file")
    aes.add_argument("--plot", help="also draw the areas to this PNG (and the error matrix to NAME_matrix.png)")

    sv = sub.add_parser("serve", help="web app over archives (map, pixel chart, areas) and a prediction service")
    sv.add_argument("stores", nargs="+", metavar="STORE", help="archives to serve, each named by its folder name")
    sv.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    sv.add_argument("--port", type=_positive_int, default=8000, help="port to listen on (default 8000)")
    sv.add_argument("--weights", help="weights folder of the prediction models (default: the usual search)")
    sv.add_argument("--predict-idle", type=_positive_float, default=300.0,
                    help="seconds without a prediction after which its network is freed (default 300)")
    sv.add_argument("--allow-assets", action="append", default=[], metavar="PREFIX",
                    help="a URL prefix (https://host/path/) or local folder whose files POST /api/predict may read "
                         "as a posted STAC item's assets (repeatable; default: none, items are refused)")

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
                read_retries=args.read_retries, max_pixels=args.max_pixels,
                cloud_mask=_cloud_mask_arg(args),
            )
            write = ds.to_zarr(args.out, mode="w-", zarr_format=3, consolidated=False, compute=False)
            compute_with_progress(write, progress=not args.no_progress, label="loading and writing")
            print(f"wrote {dict(ds.sizes)} to {args.out}" + (" (no cloud mask)" if args.no_cloud_mask else ""))
            return _report_read_failures("load", ds)
        elif args.command == "classify":
            return _classify_command(args)
        elif args.command == "archive":
            return _archive_command(args)
        elif args.command == "update":
            return _update_command(args)
        elif args.command == "reprocess":
            return _reprocess_command(args)
        elif args.command == "compare":
            _compare_command(args)
        elif args.command == "export":
            _export_command(args)
        elif args.command == "accuracy":
            return _accuracy_command(args)
        elif args.command == "weights":
            _weights_command(args)
        elif args.command == "train":
            return train_cli.run(args)
        elif args.command == "serve":
            from .serve import serve

            serve(args.stores, host=args.host, port=args.port, weights=args.weights, predict_idle=args.predict_idle,
                  asset_roots=args.allow_assets)
    except Exception as exc:  # a clear one-line error for the shell, the traceback for --debug users
        print(f"dwcube {args.command}: error: {type(exc).__name__}: {cli_words(str(exc))}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
