"""The ``dwcube`` command line. It only parses arguments and delegates.

Commands
--------
``dwcube demo``
    The main job on its embedded default (see :mod:`dwcube.demo`).
``dwcube load CATALOG --out STORE ...``
    Search, load and normalise a cube and write it to a Zarr v3 store.
``dwcube weights list | fetch NAME | verify NAME``
    Registered models and their pinned weights: list them, download them into the
    user cache (hash-checked), or check a local copy.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence


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
    demo.add_argument("--source", choices=["auto", "t29unu", "synthetic"], default="auto")
    demo.add_argument("--workers", type=int, default=2, help="local Dask worker processes (0: threads only)")

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

    args = parser.parse_args(argv)
    try:
        if args.command == "demo":
            from .demo import run_demo

            run_demo(args.workdir, source=args.source, n_workers=args.workers)
        elif args.command == "load":
            from .load import load

            ds = load(
                args.catalog, collections=args.collections, bbox=args.bbox, datetime=args.datetime,
                bands=args.bands, resolution=args.resolution, crs=args.crs, chunks=args.chunks,
                loader=args.loader, on_error=args.on_error,
            )
            ds.to_zarr(args.out, mode="w-", zarr_format=3, consolidated=False)
            print(f"wrote {dict(ds.sizes)} to {args.out}")
        elif args.command == "weights":
            _weights_command(args)
    except Exception as exc:  # a clear one-line error for the shell, the traceback for --debug users
        print(f"dwcube {args.command}: error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
