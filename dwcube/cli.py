"""The ``dwcube`` command line. It only parses arguments and delegates.

Commands
--------
``dwcube demo``
    The main job on its embedded default (see :mod:`dwcube.demo`).
``dwcube load CATALOG --out STORE ...``
    Search, load and normalise a cube and write it to a Zarr v3 store.
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
``dwcube weights list | fetch NAME | verify NAME``
    Registered models and their pinned weights: list them, download them into the
    user cache (hash-checked), or check a local copy.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path


def _bbox(text: str) -> list[float]:
    parts = [float(v) for v in text.split(",")]
    if len(parts) != 4:
        raise argparse.ArgumentTypeError("bbox is west,south,east,north in degrees")
    return parts


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
            resampling=spec.resampling or "bilinear", on_error=args.on_error,
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


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``dwcube`` command.

    Examples
    --------
    >>> main(["demo", "--source", "synthetic", "--workdir", "/tmp/d"])  # doctest: +SKIP
    0
    """
    parser = argparse.ArgumentParser(prog="dwcube", description="Dynamic World-style land cover on STAC datacubes")
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", help="run the main job offline on a sample scene (local Dask, local Zarr)")
    demo.add_argument("--workdir", default="dwcube-demo", help="output folder (default: ./dwcube-demo)")
    demo.add_argument("--source", choices=["auto", "eolearn", "synthetic"], default="auto")
    demo.add_argument("--workers", type=int, default=2, help="local Dask worker processes (0: threads only)")
    demo.add_argument("--weights", help="Dynamic World weights folder (default: $DWCUBE_WEIGHTS, cache, shared/)")

    cl = sub.add_parser("classify", help="load, classify and write (or append to) a Zarr archive")
    cl.add_argument("catalog", help="STAC API URL or local catalogue file")
    cl.add_argument("--out", required=True, help="output Zarr archive (created, or appended to)")
    cl.add_argument("--collections", nargs="*")
    cl.add_argument("--bbox", type=_bbox, help="west,south,east,north in degrees")
    cl.add_argument("--datetime", help="date or range, e.g. 2024-05/2024-08")
    cl.add_argument("--model", default="dynamic-world",
                    help="registered model (default: dynamic-world), or a U-Net weights file (.pt) from dwcube train")
    cl.add_argument("--weights", help="weights folder (default: $DWCUBE_WEIGHTS, then the user cache)")
    cl.add_argument("--device", default="auto", help="auto (GPU when a worker has one), cpu, cuda, cuda:1")
    cl.add_argument("--scheduler", help="address of a dask.distributed scheduler (default: local threads)")
    cl.add_argument("--resolution", type=float, help="pixel size (default: the model's, 10 m)")
    cl.add_argument("--crs")
    cl.add_argument("--chunks", type=int, default=1024, help="Dask chunk size in pixels (default 1024)")
    cl.add_argument("--tile", type=int, default=512, help="tile size inside a chunk (default 512)")
    cl.add_argument("--batch-size", type=int, default=4)
    cl.add_argument("--mode", choices=["a", "w", "w-"], default="a",
                    help="a: create or append/resume (default); w-: create only; w: replace")
    cl.add_argument("--precision", choices=["uint16", "uint8", "float32"], help="stored probabilities (new archives)")
    cl.add_argument("--archive-chunk", type=int, help="archive chunk size in pixels (new archives; default 512)")
    cl.add_argument("--dem", help="elevation for models that use it (unet): a raster file, or a STAC catalogue "
                                  "with cop-dem-glo-30 tiles")
    cl.add_argument("--no-cloud-mask", action="store_true", help="do not mask clouds (L1C is masked by default)")
    cl.add_argument("--on-error", choices=["raise", "nan"], default="raise")
    cl.add_argument("--map", help="also draw the labels to this PNG file")
    cl.add_argument("--no-progress", action="store_true")

    ar = sub.add_parser("archive", help="inspect a probability archive")
    asub = ar.add_subparsers(dest="archive_command", required=True)
    ai = asub.add_parser("info", help="model, classes, grid, dates, pending write, encoding and size")
    ai.add_argument("store")
    ai.add_argument("--json", action="store_true", help="machine-readable output")
    ac = asub.add_parser("check", help="read and decode every chunk (checksums too); exit status 1 if damaged")
    ac.add_argument("store")
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
    up.add_argument("--no-progress", action="store_true")

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
    rp.add_argument("--no-progress", action="store_true")

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
    ld.add_argument("--out", required=True, help="output Zarr store")
    ld.add_argument("--collections", nargs="*")
    ld.add_argument("--bbox", type=_bbox)
    ld.add_argument("--datetime")
    ld.add_argument("--bands", nargs="*")
    ld.add_argument("--resolution", type=float)
    ld.add_argument("--crs")
    ld.add_argument("--chunks", type=int, default=2048)
    ld.add_argument("--loader", choices=["odc-stac", "stackstac"], default="odc-stac")
    ld.add_argument("--on-error", choices=["raise", "nan"], default="raise")

    wt = sub.add_parser("weights", help="list, fetch or verify model weights")
    wsub = wt.add_subparsers(dest="weights_command", required=True)
    wsub.add_parser("list", help="registered models and where their weights are")
    wf = wsub.add_parser("fetch", help="download pinned weights into the user cache, hash-checked")
    wf.add_argument("name", help="model name, e.g. dynamic-world")
    wf.add_argument("--dest", help="folder to download into (default: the user cache)")
    wf.add_argument("--url", help="mirror to download from instead of the pinned origin")
    wv = wsub.add_parser("verify", help="find a model's weights and check every file's SHA-256")
    wv.add_argument("name")
    wv.add_argument("--path", help="weights folder (default: $DWCUBE_WEIGHTS, then the user cache)")

    from .train import cli as train_cli

    train_cli.add_parser(sub)

    args = parser.parse_args(argv)
    try:
        if args.command == "demo":
            from .demo import run_demo

            run_demo(args.workdir, source=args.source, n_workers=args.workers, weights=args.weights)
        elif args.command == "load":
            from .load import load

            ds = load(
                args.catalog, collections=args.collections, bbox=args.bbox, datetime=args.datetime,
                bands=args.bands, resolution=args.resolution, crs=args.crs, chunks=args.chunks,
                loader=args.loader, on_error=args.on_error,
            )
            ds.to_zarr(args.out, mode="w-", zarr_format=3, consolidated=False)
            print(f"wrote {dict(ds.sizes)} to {args.out}")
        elif args.command == "classify":
            _classify_command(args)
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
        elif args.command == "weights":
            _weights_command(args)
        elif args.command == "train":
            return train_cli.run(args)
    except Exception as exc:  # a clear one-line error for the shell, the traceback for --debug users
        print(f"dwcube {args.command}: error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
