"""Archives that keep themselves current and reproducible: update, reprocess, compare versions.

Dynamic World classifies new scenes as they arrive and classifies the history again when
the model improves.  An archive written by :func:`dwcube.archive.write_archive` from a cube
of :func:`dwcube.load` and :func:`dwcube.classify` remembers how it was made
(``attrs["dwcube_job"]``: every argument of the load — catalogue, collections, bbox or
geometry, query, grouping, loader, masks, cloud mask — and of the classification — the
model's reference, weights, DEM source, options, tiling), and the archive's fingerprint
holds the grid, the model's version and weights hash and every setting that changes the
numbers.  Per date the archive keeps the source item ids, platform, processing baseline
and cloud cover (``time`` coordinates) and, per write, the dwcube version and when it
finished (``attrs["dwcube_writes"]``): :func:`date_provenance` puts them in one table.
From that record this module repeats the job.

:func:`update_archive` (``dwcube update STORE``)
    Holds the archive's write lock (:func:`dwcube.archive.archive_lock`) throughout;
    searches the stored catalogue from the last stored date on; leaves out the items it
    already holds (items arriving late for a stored date are reported, not added: dates
    are never amended); loads the new dates onto the archive's own grid with the stored
    settings; classifies and appends them to every model version that follows the
    archive; rewrites dates that failed reads left incomplete (``on_error="nan"``
    loads), and a killed update's unfinished write is resumed (same items, same job).
    Then it brings the near-real-time products of each version up to its last date,
    reading only the dates they have not seen: the hidden-Markov filter state
    (:func:`dwcube.temporal.filter_update`) and the change alerts
    (:func:`dwcube.change.changes_update` on the filtered posterior, with the date each
    alert was first reported), both kept in the version's ``nrt`` group
    (:func:`dwcube.archive.write_products`).  With nothing new it writes nothing and says
    so.  Two updates at once: the second is refused with
    :class:`~dwcube.archive.ArchiveBusyError` (exit status 75 on the command line), or
    with ``wait=`` waits and then finds nothing left to do.
:func:`reprocess` (``dwcube reprocess STORE --model NAME[==VERSION]``)
    Classifies the stored history again with another model into the group
    ``versions/NAME==VERSION`` of the same store, from the same items (found again by
    their ids) on the same grid, on whatever Dask scheduler is active, resumably (it is
    one :func:`~dwcube.archive.write_archive`); the existing versions are not touched.
    Once complete, updates keep it current too, and
    :func:`~dwcube.archive.open_archive` opens it by default (the newest complete
    version; ``model=`` chooses another).
:func:`compare_versions` (``dwcube compare STORE A B``)
    Model change versus land change: per date, the share of pixels whose label differs
    between two versions and the transition matrix from one to the other, and which of
    version B's change events version A does not have (changes that come from the
    model, not from the land).

Examples
--------
>>> import tempfile
>>> from dwcube.testing import TINY_MODEL, synthetic_cube
>>> from dwcube.archive import write_archive
>>> from dwcube.inference import classify
>>> with tempfile.TemporaryDirectory() as d:   # a cube made in memory has no catalogue to search
...     _ = write_archive(classify(synthetic_cube(32, 2), TINY_MODEL, device="cpu"), d + "/a.zarr")
...     try:
...         update_archive(d + "/a.zarr")
...     except JobError as exc:
...         print(str(exc).replace(d, "STORE")[:57])
STORE/a.zarr does not record how its cube was loaded (its
"""

from __future__ import annotations

import datetime as dt
import json
import os
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import xarray as xr

from .archive import (
    INCOMPLETE_ATTR,
    ArchiveError,
    archive_lock,
    archive_versions,
    open_archive,
    open_products,
    resolve_version,
    update_attrs,
    version_key,
    write_archive,
    write_products,
)

__all__ = [
    "AlertRule",
    "JobError",
    "ReprocessReport",
    "UpdateReport",
    "VersionUpdate",
    "compare_versions",
    "date_provenance",
    "recorded_job",
    "reprocess",
    "update_archive",
]

#: Days searched before the last stored date: items of one solar day may carry times on two
#: UTC days, and a date's items must be seen together to be told apart from new ones.
SEARCH_MARGIN_DAYS = 2
_FOLLOWS = "dwcube_follows_updates"  # version attribute: reprocessing finished, updates keep it current


class JobError(ArchiveError):
    """The archive's job cannot be repeated: it records no load, a part of it cannot be
    written down, or the catalogue no longer has the items of stored dates."""


@dataclass(frozen=True)
class AlertRule:
    """Which lasting class changes are alerts (the rule of :func:`dwcube.change.changes`).

    Examples
    --------
    >>> AlertRule(from_classes=("trees",)).kwargs()["from_classes"]
    ['trees']
    """

    from_classes: tuple[str, ...] | None = None
    to_classes: tuple[str, ...] | None = None
    min_duration: float = 30.0
    min_observations: int = 3
    which: Literal["first", "last"] = "first"

    def kwargs(self) -> dict[str, Any]:
        """Keyword arguments for :func:`dwcube.change.changes` / ``changes_update``."""
        return {"from_classes": None if self.from_classes is None else list(self.from_classes),
                "to_classes": None if self.to_classes is None else list(self.to_classes),
                "min_duration": float(self.min_duration), "min_observations": int(self.min_observations),
                "which": self.which}


@dataclass
class VersionUpdate:
    """What an update did to one model version.

    Attributes
    ----------
    key
        ``NAME==VERSION``.
    written, replaced
        Dates appended, and stored dates rewritten (ISO).
    blocks, blocks_resumed
        Block writes run, and blocks an interrupted write had finished.
    nrt_dates
        Dates fed to the filter state and the alerts (0: they were current).
    new_alerts
        Pixels whose alert is new or changed in this update.
    nrt_restarted
        The near-real-time products were recomputed from the first date (none existed, or
        dates they had seen were rewritten).
    """

    key: str
    written: list[str] = field(default_factory=list)
    replaced: list[str] = field(default_factory=list)
    blocks: int = 0
    blocks_resumed: int = 0
    nrt_dates: int = 0
    new_alerts: int = 0
    nrt_restarted: bool = False


@dataclass
class UpdateReport:
    """What :func:`update_archive` did.

    Attributes
    ----------
    store
        The archive.
    new_items
        Ids of the catalogue items loaded as new dates.
    late_items
        Items found for dates the archive already holds (not added: dates are not amended).
    versions
        Per model version updated.
    skipped_versions
        Versions not updated, with the reason.
    incomplete
        Dates whose reads failed (``on_error="nan"``): date → failures; retried next time.
    """

    store: str
    new_items: list[str] = field(default_factory=list)
    late_items: list[str] = field(default_factory=list)
    versions: list[VersionUpdate] = field(default_factory=list)
    skipped_versions: list[str] = field(default_factory=list)
    incomplete: dict[str, list[str]] = field(default_factory=dict)

    @property
    def nothing_new(self) -> bool:
        """Whether the update wrote nothing."""
        return not any(v.written or v.replaced or v.blocks or v.nrt_dates for v in self.versions)

    def format(self) -> str:
        """Human-readable lines."""
        if self.nothing_new:
            lines = [f"{self.store}: up to date, nothing new in the catalogue; nothing written"]
        else:
            lines = [f"{self.store}: {len(self.new_items)} new item(s)"]
        for v in self.versions:
            if not (v.written or v.replaced or v.blocks or v.nrt_dates):
                continue
            span = (v.written[0] if len(v.written) == 1 else f"{v.written[0]} … {v.written[-1]}") if v.written else ""
            parts = [f"appended {len(v.written)} date(s)" + (f" ({span})" if span else "")]
            if v.replaced:
                parts.append(f"rewrote {len(v.replaced)} incomplete date(s)")
            if v.blocks_resumed:
                parts.append(f"resumed {v.blocks_resumed} finished block(s) of an interrupted write")
            if v.nrt_dates:
                parts.append(f"filter state and alerts {'recomputed over' if v.nrt_restarted else 'fed'} "
                             f"{v.nrt_dates} date(s), {v.new_alerts} new alert pixel(s)")
            lines.append(f"  {v.key}: " + "; ".join(parts))
        lines += [f"  skipped {s}" for s in self.skipped_versions]
        if self.late_items:
            lines.append(f"  {len(self.late_items)} item(s) arrived late for dates already stored and were not "
                         f"added: {', '.join(self.late_items[:5])}{' …' if len(self.late_items) > 5 else ''}")
        for date, fails in self.incomplete.items():
            lines.append(f"  incomplete {date}: {len(fails)} failed read(s) ({fails[0]}); retried by the next update")
        return "\n".join(lines)


@dataclass
class ReprocessReport:
    """What :func:`reprocess` did.

    Attributes
    ----------
    store, key, group
        The archive, the new version's ``NAME==VERSION`` and its group.
    written, skipped
        Dates classified by this call, and dates the version already held.
    blocks, blocks_resumed
        Block writes run, and blocks an interrupted reprocess had finished.
    complete
        Whether the version now holds every date of the archive.
    """

    store: str
    key: str
    group: str
    written: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    blocks: int = 0
    blocks_resumed: int = 0
    complete: bool = False

    def format(self) -> str:
        """Human-readable lines."""
        head = (f"{self.store}: version {self.key} complete ({self.group})" if self.complete
                else f"{self.store}: version {self.key} INCOMPLETE; rerun to finish it")
        body = f"  classified {len(self.written)} date(s), {len(self.skipped)} already there"
        if self.blocks_resumed:
            body += f", resumed {self.blocks_resumed} finished block(s) of an interrupted reprocess"
        return head + "\n" + body


# -- the recorded job -------------------------------------------------------------------------


def recorded_job(store: str | os.PathLike[str], model: str | None = "default") -> dict[str, Any]:
    """How a version of an archive was made: ``{"load": ..., "classify": ...}`` as recorded.

    Parameters
    ----------
    store
        The archive.
    model
        The version (see :func:`dwcube.archive.resolve_version`; default: the archive's first).

    Raises
    ------
    JobError
        When the archive does not record the load (written by a dwcube without job records,
        or from a cube that did not come from :func:`dwcube.load`).

    Examples
    --------
    >>> import tempfile
    >>> from dwcube.testing import TINY_MODEL, synthetic_cube
    >>> from dwcube.archive import write_archive
    >>> from dwcube.inference import classify
    >>> with tempfile.TemporaryDirectory() as d:
    ...     _ = write_archive(classify(synthetic_cube(32, 2), TINY_MODEL, device="cpu"), d + "/a.zarr")
    ...     recorded_job(d + "/a.zarr", model=None)["classify"]["model"]
    {'kind': 'import', 'target': 'dwcube.testing:TINY_MODEL'}
    """
    version = resolve_version(store, model)
    ds = _version_attrs(os.fspath(store), version["group"])
    job = dict(ds.get("dwcube_job") or {})
    if "classify" not in job:
        raise JobError(f"{os.fspath(store)} does not record how it was classified (written by a dwcube without job "
                       "records); rebuild it with dwcube classify, or write new dates with write_archive yourself")
    return job


def _version_attrs(path: str, group: str | None) -> dict[str, Any]:
    import zarr

    from .archive import _group_path

    return dict(zarr.open_group(_group_path(path, group), mode="r", zarr_format=3, use_consolidated=False).attrs)


def _load_record(path: str, catalog: str | None) -> tuple[dict[str, Any], dict[str, Any]]:
    """The root's recorded load (its JSON record and the arguments for :func:`dwcube.load`)."""
    from .load import load_arguments

    job = dict(_version_attrs(path, None).get("dwcube_job") or {})
    record = job.get("load")
    if record is None:
        raise JobError(f"{path} does not record how its cube was loaded (its cube did not come from dwcube.load, "
                       "or a dwcube without job records wrote it), so there is nothing to repeat; write new dates "
                       "with write_archive yourself")
    record = dict(record)
    missing = [k for k in record.get("not_reproducible", []) if not (k == "catalog" and catalog)]
    if missing:
        raise JobError(f"{path} was loaded with arguments that cannot be written down ({', '.join(missing)}: "
                       "e.g. items in memory, or a grouping function); pass catalog= (dwcube update --catalog) "
                       "for the catalogue; other arguments cannot be repeated")
    if catalog:
        record["catalog"] = os.path.abspath(catalog) if "://" not in catalog and os.path.exists(catalog) else catalog
        record["not_reproducible"] = []
    return record, load_arguments(record)


def _grid(path: str) -> Any:
    from affine import Affine
    from odc.geo.geobox import GeoBox

    g = _version_attrs(path, None)["dwcube_archive"]["grid"]
    return GeoBox(tuple(g["shape"]), Affine(*g["transform"]), g["crs"])


def _entry_and_args(job: Mapping[str, Any], *, device: str | None) -> tuple[Any, dict[str, Any]]:
    """The model entry and the keyword arguments of :func:`dwcube.classify` a version recorded."""
    from .models.registry import UnknownModelError, entry_from_reference

    rec = dict(job["classify"])
    if rec.get("model") is None:
        raise JobError("the archive's model was not a registered model, a U-Net file or a module attribute, so "
                       "another process cannot find it again; register it (dwcube.models.registry.register)")
    try:
        entry = entry_from_reference(rec["model"])
    except UnknownModelError as exc:
        raise JobError(f"cannot find the archive's model again: {exc}") from None
    weights = rec.get("weights")
    if weights is not None and not os.path.exists(weights):
        weights = None  # moved: the usual search ($DWCUBE_WEIGHTS, the cache); the hash still has to match
    args = {"weights": weights, "device": device or rec.get("device") or "auto", "tile": int(rec.get("tile", 512)),
            "batch_size": int(rec.get("batch_size", 4)), "compile": rec.get("compile", "auto"),
            "fill_value": float(rec.get("fill_value", 0.0)), "options": dict(rec.get("options") or {})}
    return entry, {**args, "dem": rec.get("dem")}


def _classify(cube: xr.Dataset, entry: Any, args: Mapping[str, Any]) -> xr.DataArray:
    from .inference import classify

    kwargs = dict(args)
    dem_source = kwargs.pop("dem")
    dem = None
    if dem_source is not None:
        from .elevation import load_dem

        dem = load_dem(dem_source, cube)
    return classify(cube, entry, dem=dem, **kwargs)


# -- finding the items ------------------------------------------------------------------------


def _stored_dates(path: str, version: Mapping[str, Any]) -> tuple[np.ndarray, list[str]]:
    """A version's complete dates (datetime64[ns]) and each date's item ids (comma-separated)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = open_archive(path, model=_model_of(version))
    times = ds["time"].values.astype("datetime64[ns]")
    ids = [str(v) for v in ds["item_id"].values] if "item_id" in ds.coords else [""] * len(times)
    return times, ids


def _iso(t: Any) -> str:
    return str(np.datetime64(t, "us"))


def _utc(t: np.datetime64) -> str:
    return np.datetime_as_string(np.datetime64(t, "s"), unit="s") + "Z"


def _search(record: Mapping[str, Any], start: str, until: str | None) -> list[Any]:
    """The job's search from ``start`` (ISO or ``..``) to ``until``; an empty list for nothing."""
    from .stac import EmptySearchError, search

    try:
        return search(record["catalog"], collections=record.get("collections"), bbox=record.get("bbox"),
                      geometry=record.get("geometry"), datetime=f"{start}/{until or '..'}", query=record.get("query"))
    except EmptySearchError:
        return []


@dataclass
class _Plan:
    stored_items: dict[str, list[Any]]  # ISO date → its items (stored dates needed again)
    new_groups: list[list[Any]]  # groups of items that are not stored yet, in time order
    late: list[str]


def _plan(items: Sequence[Any], groupby: Any, stored_times: np.ndarray, stored_ids: Sequence[str],
          needed: Sequence[np.datetime64]) -> _Plan:
    """Sort the searched items: those of stored dates that must be classified again, new
    dates (all their items unseen and after the last stored date), and late arrivals."""
    from .load import _naive, date_groups

    owner = {part: i for i, ids in enumerate(stored_ids) for part in ids.split(",") if part}
    by_id = {it.id: it for it in items}
    plan = _Plan({}, [], [])
    last = stored_times.max() if stored_times.size else None
    for members in date_groups(list(items), groupby or "id"):
        group = [items[i] for i in members]
        if any(it.id in owner for it in group):
            plan.late += [it.id for it in group if it.id not in owner]
            continue
        first = np.datetime64(_naive(group[0]), "ns")
        if last is not None and first <= last:
            plan.late += [it.id for it in group]
            continue
        plan.new_groups.append(group)
    for t in needed:
        i = int(np.searchsorted(stored_times, t))
        ids = [p for p in stored_ids[i].split(",") if p]
        lost = [p for p in ids if p not in by_id]
        if lost or not ids:
            raise JobError(f"the catalogue no longer has item(s) {', '.join(lost) or '(none recorded)'} of the stored "
                           f"date {_iso(t)}, so it cannot be classified again; pass catalog= (--catalog) for a "
                           "catalogue that has them")
        plan.stored_items[_iso(t)] = [by_id[p] for p in ids]
    return plan


def _load_items(items: Sequence[Any], record: Mapping[str, Any], args: Mapping[str, Any], grid: Any) -> xr.Dataset:
    """A cube of exactly ``items`` on the archive's grid, loaded as the job loads."""
    from .load import load

    kwargs = {k: v for k, v in args.items() if k not in ("catalog", "datetime", "max_items", "bbox", "geometry",
                                                           "crs", "resolution")}
    items = sorted(items, key=lambda it: (it.datetime or dt.datetime.min.replace(tzinfo=dt.timezone.utc), it.id))
    cube = load(list(items), grid=grid, **kwargs)
    cube.attrs["load_parameters"] = json.dumps(record)  # the job's own record, not this call's
    return cube


# -- update -----------------------------------------------------------------------------------


def update_archive(
    store: str | os.PathLike[str],
    *,
    catalog: str | None = None,
    until: str | None = None,
    nrt: bool = True,
    transitions: Any = None,
    alert_rule: AlertRule | None = None,
    device: str | None = None,
    wait: float = 0.0,
    progress: bool = False,
) -> UpdateReport:
    """Bring an archive up to date with its catalogue, with its stored settings.

    Parameters
    ----------
    store
        The archive (created by ``dwcube classify`` or ``write_archive`` of a cube from
        :func:`dwcube.load` and :func:`dwcube.classify`).
    catalog
        Search this catalogue instead of the stored one (a moved mirror, a local copy).
    until
        Take items up to this date/time only (ISO; default: everything there is).
    nrt
        Keep the near-real-time products current: the filter state and the change alerts
        of every version (created on the first update, over all stored dates).
    transitions
        The :class:`~dwcube.temporal.TransitionModel` of the filter, for the first
        update that creates the state (default: ``TransitionModel()``); later updates use
        the stored one, and a different one is refused.
    alert_rule
        Which changes are alerts (:class:`AlertRule`), for the first update likewise.
    device
        Where the model runs (default: as recorded, usually ``"auto"``).
    wait
        Seconds to wait for another writer of the archive (default 0: refuse at once with
        :class:`~dwcube.archive.ArchiveBusyError`).
    progress
        Progress bars on stderr.

    Returns
    -------
    UpdateReport
        New and late items, dates appended and rewritten per version, the products'
        progress; ``nothing_new`` when nothing was written.

    Raises
    ------
    JobError
        When the job cannot be repeated (see :func:`recorded_job`), or the catalogue lost
        the items of a date that must be classified again.
    ArchiveBusyError
        When another process writes the archive.

    Notes
    -----
    Runs on the active Dask scheduler (a ``dask.distributed.Client`` included: the store
    must then be on a file system every worker sees).  Reads of the stored history: only
    the dates the products have not seen (none in a steady state), plus, once, all of
    them for the first products or after a rewrite of dates they had seen.

    Examples
    --------
    An archive of two dates from a catalogue file; a third scene arrives in the catalogue:

    >>> import shutil, tempfile
    >>> from pathlib import Path
    >>> import dwcube
    >>> from dwcube.demo import write_catalog
    >>> from dwcube.testing import TINY_MODEL, sentinel2_series_items
    >>> d = Path(tempfile.mkdtemp())
    >>> items = sentinel2_series_items(d, ["2024-05-01", "2024-05-11", "2024-05-21"], base_url=d.as_uri())
    >>> catalog = write_catalog(items[:2], d / "items.json")
    >>> cube = dwcube.load(str(catalog), collections=["sentinel-2-l2a"], chunks=48)
    >>> _ = dwcube.write_archive(dwcube.classify(cube, TINY_MODEL, device="cpu"), d / "lulc.zarr")
    >>> _ = write_catalog(items, d / "items.json")
    >>> report = update_archive(d / "lulc.zarr")
    >>> report.new_items, report.versions[0].written
    (['S2A_33TVL_20240521_0_L2A'], ['2024-05-21T10:00:00.000000'])
    >>> print(update_archive(d / "lulc.zarr").format())  # doctest: +ELLIPSIS
    /.../lulc.zarr: up to date, nothing new in the catalogue; nothing written
    >>> shutil.rmtree(d)
    """
    path = os.fspath(store)
    report = UpdateReport(store=path)
    with archive_lock(path, wait=wait):
        record, args = _load_record(path, catalog)
        versions = archive_versions(path)
        followed = [versions[0]]
        for v in versions[1:]:
            if _version_attrs(path, v["group"]).get(_FOLLOWS):
                followed.append(v)
            else:
                report.skipped_versions.append(f"{v['key']}: its reprocessing has not finished (run dwcube "
                                               f"reprocess {path} --model {v['key']})")
        root_times, root_ids = _stored_dates(path, versions[0])
        root_last = root_times.max() if root_times.size else None
        redo = dict(_version_attrs(path, None).get(INCOMPLETE_ATTR) or {})
        lags: dict[str, list[np.datetime64]] = {}  # a version behind the first (a killed update): its missing dates
        for v in followed[1:]:
            vt, _ = _stored_dates(path, v)
            lags[v["key"]] = [t for t in root_times if not vt.size or t > vt.max()]
        lagging = sorted({t for ts in lags.values() for t in ts})
        needed = sorted(set(lagging) | {np.datetime64(d, "ns") for d in redo})
        if needed:
            start = _utc(min(needed) - np.timedelta64(SEARCH_MARGIN_DAYS, "D"))
        elif root_last is not None:
            start = _utc(root_last - np.timedelta64(SEARCH_MARGIN_DAYS, "D"))
        else:  # the first write never finished: the job's own period
            start = _period_start(record.get("datetime"))
        items = _search(record, start, until)
        plan = _plan(items, args.get("groupby", "solar_day"), root_times, root_ids, needed)
        report.late_items = plan.late
        new_items = [it for g in plan.new_groups for it in g]
        report.new_items = [it.id for it in new_items]
        grid = _grid(path)
        if new_items or lagging:
            lag_items = [it for t in lagging for it in plan.stored_items[_iso(t)]]
            cube = _load_items(lag_items + new_items, record, args, grid)
            times = cube["time"].values.astype("datetime64[ns]")
            fresh = [t for t in times if root_last is None or t > root_last]
            for v in followed:
                want = fresh if v["group"] is None else sorted(set(lags[v["key"]]) | set(fresh))
                if not want:
                    continue
                entry, cargs = _entry_and_args(recorded_job(path, _model_of(v)), device=device)
                prob = _classify(cube.sel(time=want), entry, cargs)
                keeps_quicklook = v["group"] is None and _has_quicklook(path)
                rep = write_archive(prob, path, group=v["group"], progress=progress,
                                    quicklook=cube.sel(time=want) if keeps_quicklook else None)
                vu = _version_report(report, v["key"])
                vu.written, vu.blocks, vu.blocks_resumed = rep.written, rep.blocks, rep.blocks_resumed
        rewritten: dict[str, list[str]] = {}
        if redo:  # dates whose reads failed: read and classify them again, in place
            cube = _load_items([it for d in redo for it in plan.stored_items[_iso(np.datetime64(d, "ns"))]],
                               record, args, grid)
            for v in followed:
                entry, cargs = _entry_and_args(recorded_job(path, _model_of(v)), device=device)
                rep = write_archive(_classify(cube, entry, cargs), path, group=v["group"], replace=True,
                                    progress=progress)
                vu = _version_report(report, v["key"])
                vu.replaced = rep.written
                vu.blocks += rep.blocks
                vu.blocks_resumed += rep.blocks_resumed
                rewritten[v["key"]] = rep.written
        report.incomplete = dict(_version_attrs(path, None).get(INCOMPLETE_ATTR) or {})
        if nrt:
            for v in followed:
                n, new_alerts, restarted = _update_nrt(path, v, transitions, alert_rule,
                                                       rewritten=rewritten.get(v["key"], []))
                if n:
                    vu = _version_report(report, v["key"])
                    vu.nrt_dates, vu.new_alerts, vu.nrt_restarted = n, new_alerts, restarted
    return report


def _model_of(version: Mapping[str, Any]) -> str:
    """The ``model=`` that opens ``version`` (an entry of :func:`archive_versions`)."""
    return "default" if version["group"] is None else str(version["key"])


def _period_start(period: Any) -> str:
    from .stac import parse_datetime_range

    start, _ = parse_datetime_range(period)
    return ".." if start is None else start.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _version_report(report: UpdateReport, key: str) -> VersionUpdate:
    for v in report.versions:
        if v.key == key:
            return v
    report.versions.append(VersionUpdate(key))
    return report.versions[-1]


def _update_nrt(path: str, version: Mapping[str, Any], transitions: Any, alert_rule: AlertRule | None,
                rewritten: Sequence[str]) -> tuple[int, int, bool]:
    """Feed a version's unseen dates to its filter state and alerts; (dates fed, new alert
    pixels, whether the products were recomputed from the first date)."""
    from .change import changes_update
    from .temporal import TransitionModel, filter_update

    group = version["group"]
    products, meta = open_products(path, group=group)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = open_archive(path, model=_model_of(version))
    prob = ds.probability
    times = prob["time"].values.astype("datetime64[ns]")
    last = meta.get("last_date")
    restart = not products or last is None or any(np.datetime64(d, "ns") <= np.datetime64(last, "ns")
                                                  for d in rewritten)
    stored_rule = meta.get("alert_rule")
    if restart:
        if stored_rule and alert_rule is None:
            alert_rule = AlertRule(**{k: tuple(v) if isinstance(v, list) else v for k, v in stored_rule.items()})
        if transitions is None and products.get("filter_state") is not None:
            transitions = TransitionModel.from_json(products["filter_state"].attrs["temporal_transition_model"])
        fresh = times
        state = astate = old_alerts = None
    else:
        if alert_rule is not None and stored_rule is not None and alert_rule.kwargs() != stored_rule:
            raise JobError(f"{path}: the alerts were made with the rule {stored_rule}, not {alert_rule.kwargs()}; "
                           "the alerts would change rule half-way (start a new archive for another rule)")
        fresh = times[times > np.datetime64(last, "ns")]
        state, astate, old_alerts = products["filter_state"], products["alert_state"], products["alerts"]
    if not fresh.size:
        return 0, 0, False
    rule = alert_rule or (AlertRule(**{k: tuple(v) if isinstance(v, list) else v for k, v in stored_rule.items()})
                          if stored_rule else AlertRule())
    new = prob.sel(time=fresh)
    filtered, new_state = filter_update(new, state, None if state is not None else transitions)
    alerts, new_astate = changes_update(filtered, astate, **(rule.kwargs() if astate is None else {}))
    stamp = np.datetime64(fresh[-1], "ns")
    found = alerts.change_date.notnull()
    if old_alerts is None:
        reported = xr.where(found, stamp, np.datetime64("NaT", "ns"))
    else:
        same = ((alerts.change_date == old_alerts.change_date) & (alerts.from_class == old_alerts.from_class)
                & (alerts.to_class == old_alerts.to_class))
        reported = xr.where(found & ~same, stamp, old_alerts.reported)
    alerts["reported"] = reported.astype("datetime64[ns]").assign_attrs(
        long_name="last date of the update that first reported this alert (NaT: none)")
    alerts = alerts.drop_vars(["spatial_ref"], errors="ignore").assign_coords(spatial_ref=prob.spatial_ref) \
        if "spatial_ref" in prob.coords else alerts
    attrs = {"last_date": _iso(stamp), "dates_seen": int((times <= stamp).sum()),
             "updated": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
             "alert_rule": rule.kwargs()}
    write_products(path, {"filter_state": new_state, "alert_state": new_astate, "alerts": alerts}, group=group,
                   attrs=attrs)
    written, _ = open_products(path, group=group)  # counted from what was stored: the graph runs once
    count = int((written["alerts"].reported == stamp).sum().compute())
    return int(fresh.size), count, bool(restart)


# -- reprocess --------------------------------------------------------------------------------


def _parse_model(model: Any, weights: str | None) -> Any:
    """``NAME[==VERSION]``, a U-Net weights file (``.pt``), ``module:attribute`` or an entry."""
    from .models.registry import ModelEntry, UnknownModelError, entry_from_reference, get_entry

    if isinstance(model, ModelEntry):
        return model
    text = str(model)
    name, _, want = text.partition("==")
    if name.endswith(".pt") or (weights and str(weights).endswith(".pt") and name == "unet"):
        from pathlib import Path

        from .models.unet import unet_entry

        file = name if name.endswith(".pt") else str(weights)
        entry = unet_entry(file, name=Path(file).stem if name.endswith(".pt") else "unet",
                           version=want or "0")
        return entry
    try:
        entry = entry_from_reference({"kind": "import", "target": name}) if ":" in name else get_entry(name)
    except UnknownModelError as exc:
        raise JobError(str(exc).strip("'\"")) from None
    if want and want not in (entry.version, entry.version.split("+")[0]):
        raise JobError(f"--model {text}: the installed {entry.name} is version {entry.version}, not {want}; install "
                       f"the dwcube that ships {entry.name} {want}, or pass its weights file (--weights FILE.pt)")
    return entry


def reprocess(
    store: str | os.PathLike[str],
    model: Any,
    *,
    weights: str | os.PathLike[str] | None = None,
    dem: str | None = None,
    options: Mapping[str, Any] | None = None,
    device: str | None = None,
    catalog: str | None = None,
    wait: float = 0.0,
    progress: bool = False,
) -> ReprocessReport:
    """Classify the stored history again with another model, as a new version beside the others.

    Parameters
    ----------
    store
        The archive.
    model
        ``"NAME"`` or ``"NAME==VERSION"`` of a registered model (the version is checked
        against the installed one), a U-Net weights file (``.pt``), ``"module:attribute"``
        of a :class:`~dwcube.models.registry.ModelEntry`, or the entry itself.
    weights
        Weights folder of the model (default: ``$DWCUBE_WEIGHTS``, the cache), or the
        U-Net file for ``model="unet"``.
    dem
        Elevation source for models that use it (default: the one the archive's first
        version used).
    options
        Build options of the model.
    device
        Where it runs (default ``"auto"``).
    catalog
        Find the items in this catalogue instead of the stored one.
    wait
        Seconds to wait for another writer.
    progress
        Progress bar on stderr.

    Returns
    -------
    ReprocessReport
        Dates classified, resumed blocks, whether the version is complete.

    Raises
    ------
    JobError
        When the history cannot be loaded again (see :func:`update_archive`), the model
        is the archive's first version, or the requested version is not installed.

    Notes
    -----
    The version lives in the group ``versions/NAME==VERSION``; nothing else in the
    store changes except the store's consolidated metadata.  It is one
    :func:`~dwcube.archive.write_archive` over all stored dates: killed, it resumes
    where it was when run again, and ends identical to an uninterrupted run.  Once
    complete, :func:`update_archive` appends new dates to it as well.

    Examples
    --------
    An archive of the tiny test model, classified again by its version 1 (in practice:
    ``reprocess(store, "unet==2.0.0")``):

    >>> import shutil, tempfile
    >>> from pathlib import Path
    >>> import dwcube
    >>> from dwcube.archive import archive_versions
    >>> from dwcube.demo import write_catalog
    >>> from dwcube.testing import TINY_MODEL, sentinel2_series_items
    >>> d = Path(tempfile.mkdtemp())
    >>> items = sentinel2_series_items(d, ["2024-05-01", "2024-05-11"], base_url=d.as_uri())
    >>> cube = dwcube.load(str(write_catalog(items, d / "items.json")), collections=["sentinel-2-l2a"], chunks=48)
    >>> _ = dwcube.write_archive(dwcube.classify(cube, TINY_MODEL, device="cpu"), d / "lulc.zarr")
    >>> report = reprocess(d / "lulc.zarr", "dwcube.testing:TINY_MODEL_V2")
    >>> report.key, report.group, len(report.written), report.complete
    ('tiny-test==1', 'versions/tiny-test==1', 2, True)
    >>> [(v["key"], v["default"]) for v in archive_versions(d / "lulc.zarr")]
    [('tiny-test==0', False), ('tiny-test==1', True)]
    >>> shutil.rmtree(d)
    """
    path = os.fspath(store)
    entry = _parse_model(model, os.fspath(weights) if weights is not None else None)
    key = version_key(entry.name, entry.version)
    group = f"versions/{key}"
    with archive_lock(path, wait=wait):
        record, args = _load_record(path, catalog)
        versions = archive_versions(path)
        if key == versions[0]["key"]:
            raise JobError(f"{key} is the model the archive {path} was made with (its first version); reprocess "
                           "with another model or version")
        root_times, root_ids = _stored_dates(path, versions[0])
        if not root_times.size:
            raise JobError(f"{path} holds no complete date to reprocess")
        _, first_args = _entry_and_args(recorded_job(path, "default"), device=device)
        margin = np.timedelta64(SEARCH_MARGIN_DAYS, "D")
        items = _search(record, _utc(root_times.min() - margin), _utc(root_times.max() + margin))
        plan = _plan(items, args.get("groupby", "solar_day"), root_times, root_ids, list(root_times))
        cube = _load_items([it for its in plan.stored_items.values() for it in its], record, args, _grid(path))
        got = cube["time"].values.astype("datetime64[ns]")
        if not np.array_equal(got, root_times):
            raise JobError(f"loading the stored items again gave other dates ({len(got)}, the archive has "
                           f"{len(root_times)}); the catalogue's items changed")
        tile = first_args["tile"] if first_args["tile"] % entry.alignment == 0 else 512
        cargs = {**first_args, "tile": tile, "options": dict(options or {}), "dem": dem or first_args.get("dem"),
                 "weights": None if weights is None or str(weights).endswith(".pt") else os.fspath(weights)}
        prob = _classify(cube, entry, cargs)
        rep = write_archive(prob, path, group=group, progress=progress)
        mine = next(v for v in archive_versions(path) if v["group"] == group)
        if mine["complete"]:
            update_attrs(path, {_FOLLOWS: True}, group=group)
    return ReprocessReport(store=path, key=key, group=group, written=rep.written, skipped=rep.skipped,
                           blocks=rep.blocks, blocks_resumed=rep.blocks_resumed, complete=mine["complete"])


def _has_quicklook(path: str) -> bool:
    """Whether the archive keeps an RGB quicklook (an update then extends it to the new dates)."""
    from .archive import _is_local
    from .serve.quicklook import open_quicklook

    return _is_local(path) and open_quicklook(path) is not None


# -- comparing versions -----------------------------------------------------------------------


def compare_versions(store: str | os.PathLike[str], a: str, b: str, *, tolerance: float = 30.0,
                     alert_rule: AlertRule | None = None) -> xr.Dataset:
    """Model change versus land change: how two versions of an archive differ.

    Parameters
    ----------
    store
        The archive.
    a, b
        The versions (``"default"``, ``"NAME"``, ``"NAME==VERSION"``; see
        :func:`dwcube.archive.resolve_version`), usually the old model and the new.
    tolerance
        Days within which a change of ``b`` counts as the same event as one of ``a`` (same
        pixel, same from- and to-class).
    alert_rule
        The change rule (:class:`AlertRule`) applied to both, with the smoothing of
        :func:`dwcube.change.changes`.

    Returns
    -------
    xarray.Dataset
        Over the dates both hold: ``label_disagreement`` (time) share of the pixels valid
        in both whose label differs, ``valid_pixels`` (time), ``transitions``
        (time, class_a, class_b) pixel counts of label ``a`` → label ``b``; over the
        grid: ``change_in_a``, ``change_in_b`` (bool), ``change_only_in_b`` (a change
        event of ``b`` that ``a`` does not have: from the model, not the land) and
        ``change_only_in_a``; ``attrs``: the versions, the rule and the totals.

    Examples
    --------
    Two untrained test networks disagree almost everywhere:

    >>> import shutil, tempfile
    >>> from pathlib import Path
    >>> import dwcube
    >>> from dwcube.demo import write_catalog
    >>> from dwcube.testing import TINY_MODEL, sentinel2_series_items
    >>> d = Path(tempfile.mkdtemp())
    >>> items = sentinel2_series_items(d, ["2024-05-01", "2024-05-11"], base_url=d.as_uri())
    >>> cube = dwcube.load(str(write_catalog(items, d / "items.json")), collections=["sentinel-2-l2a"], chunks=48)
    >>> _ = dwcube.write_archive(dwcube.classify(cube, TINY_MODEL, device="cpu"), d / "lulc.zarr")
    >>> _ = reprocess(d / "lulc.zarr", "dwcube.testing:TINY_MODEL_V2")
    >>> cmp = compare_versions(d / "lulc.zarr", "tiny-test==0", "tiny-test==1")
    >>> cmp.label_disagreement.values.round(2), int(cmp.transitions.sum()), cmp.sizes["class_a"]
    (array([1.  , 0.99]), 4608, 9)
    >>> shutil.rmtree(d)
    """
    from .change import changes

    path = os.fspath(store)
    va, vb = resolve_version(path, a), resolve_version(path, b)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        da_, db_ = open_archive(path, model=_model_of(va)), open_archive(path, model=_model_of(vb))
    common = np.intersect1d(da_["time"].values, db_["time"].values)
    if not common.size:
        raise ArchiveError(f"versions {va['key']} and {vb['key']} of {path} share no date")
    da_, db_ = da_.sel(time=common), db_.sel(time=common)
    classes = [str(c) for c in da_["class"].values]
    if [str(c) for c in db_["class"].values] != classes:
        raise ArchiveError(f"versions {va['key']} and {vb['key']} have different classes; they cannot be compared")
    k = len(classes)
    nodata = 255
    disagreement = np.zeros(len(common))
    valid = np.zeros(len(common), np.int64)
    trans = np.zeros((len(common), k, k), np.int64)
    for i in range(len(common)):
        la = np.asarray(da_.label.isel(time=i).values).astype(np.int64)
        lb = np.asarray(db_.label.isel(time=i).values).astype(np.int64)
        ok = (la != nodata) & (lb != nodata)
        valid[i] = int(ok.sum())
        trans[i] = np.bincount(la[ok] * k + lb[ok], minlength=k * k).reshape(k, k)
        disagreement[i] = float((la[ok] != lb[ok]).sum() / valid[i]) if valid[i] else np.nan
    rule = (alert_rule or AlertRule()).kwargs()
    ca = changes(da_.probability, **rule).compute()
    cb = changes(db_.probability, **rule).compute()
    in_a, in_b = ca.change_date.notnull(), cb.change_date.notnull()
    close = abs((cb.change_date - ca.change_date) / np.timedelta64(1, "D")) <= tolerance
    same = in_a & in_b & (ca.from_class == cb.from_class) & (ca.to_class == cb.to_class) & close
    ydim, xdim = da_.label.dims[1:]
    out = xr.Dataset(
        {
            "label_disagreement": ("time", disagreement, {"long_name": "share of pixels valid in both whose label "
                                                           "differs", "units": "1"}),
            "valid_pixels": ("time", valid, {"long_name": "pixels with a label in both versions"}),
            "transitions": (("time", "class_a", "class_b"), trans,
                            {"long_name": f"pixels labelled class_a by {va['key']} and class_b by {vb['key']}"}),
            "change_in_a": in_a.assign_attrs(long_name=f"a lasting change in {va['key']}"),
            "change_in_b": in_b.assign_attrs(long_name=f"a lasting change in {vb['key']}"),
            "change_only_in_b": (in_b & ~same).assign_attrs(
                long_name=f"a change event of {vb['key']} that {va['key']} does not have (the model, not the land)"),
            "change_only_in_a": (in_a & ~same).assign_attrs(
                long_name=f"a change event of {va['key']} that {vb['key']} does not have"),
        },
        coords={"time": common, "class_a": classes, "class_b": classes},
    )
    out = out.assign_coords({c: da_.coords[c] for c in ("spatial_ref", ydim, xdim) if c in da_.coords})
    out.attrs = {"version_a": va["key"], "version_b": vb["key"], "change_rule": json.dumps(rule),
                 "change_tolerance_days": float(tolerance),
                 "label_disagreement_overall": float((trans.sum(0).sum() - np.trace(trans.sum(0))) / trans.sum())
                 if trans.sum() else float("nan"),
                 "changes_in_a": int(in_a.sum()), "changes_in_b": int(in_b.sum()),
                 "changes_only_in_b": int((in_b & ~same).sum()), "changes_only_in_a": int((in_a & ~same).sum())}
    return out


# -- per-date provenance ----------------------------------------------------------------------


def date_provenance(store: str | os.PathLike[str], model: str | None = None) -> Any:
    """Per date of a version: its source items, platform, processing baseline, cloud cover,
    and when it was classified with which dwcube version.

    Returns
    -------
    pandas.DataFrame
        Indexed by date; columns from the archive's per-date coordinates (``item_id``,
        ``platform``, ``processing_baseline``, ``cloud_cover``… as loaded) and, from the
        write records, ``classified`` (UTC time the write of that date finished) and
        ``dwcube_version``.

    Examples
    --------
    >>> import tempfile
    >>> from dwcube.testing import TINY_MODEL, synthetic_cube
    >>> from dwcube.archive import write_archive
    >>> from dwcube.inference import classify
    >>> cube = synthetic_cube(32, 2).assign_coords(item_id=("time", ["S2A_1", "S2B_2"]))
    >>> with tempfile.TemporaryDirectory() as d:
    ...     _ = write_archive(classify(cube, TINY_MODEL, device="cpu"), d + "/a.zarr")
    ...     table = date_provenance(d + "/a.zarr")
    >>> list(table.item_id), list(table.dwcube_version)
    (['S2A_1', 'S2B_2'], ['0.1.0', '0.1.0'])
    """
    import pandas as pd

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        version = resolve_version(store, model)
        ds = open_archive(store, model=_model_of(version))
    times = ds["time"].values.astype("datetime64[us]")
    cols: dict[str, Any] = {name: c.values for name, c in ds.coords.items() if c.dims == ("time",) and name != "time"}
    classified = np.full(len(times), None, dtype=object)
    versions = np.full(len(times), None, dtype=object)
    iso = [str(t) for t in times]
    for w in _version_attrs(os.fspath(store), version["group"]).get("dwcube_writes", []):
        dates = w.get("replaced") or None
        for i, t in enumerate(iso):
            inside = (t in dates) if dates else (w["dates"][0] <= t <= w["dates"][1])
            if inside:
                classified[i], versions[i] = w.get("finished"), w.get("dwcube_version")
    cols["classified"], cols["dwcube_version"] = classified, versions
    return pd.DataFrame(cols, index=pd.DatetimeIndex(times, name="time"))
