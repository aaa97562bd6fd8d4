"""Build-time parts of dwcube's documentation (a local Sphinx extension).

* **Gallery.** The executed notebooks save their figures with ``nbhelpers.keep`` into
  ``docs/_generated/gallery/`` (a PNG or GIF and a JSON record: caption, notebook, label of
  the section, the code of the cell).  The page ``gallery`` is read after every notebook and
  its text is generated from those records, so it shows what this build computed.
* **API coverage.** After reading, every name in ``dwcube.__all__`` and every public method
  of the ``.lulc`` accessors must have been documented; a missing one is a warning (an error
  under ``-W``), so a new public name without an API page fails the build.
* **References.** Docstrings written for their module (``:func:`to_cog``` in
  :mod:`dwcube.export`) also resolve on the top-level pages, and re-exported names resolve to
  where they are defined (``_resolve_elsewhere``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from sphinx.application import Sphinx
from sphinx.util import logging

logger = logging.getLogger(__name__)

GALLERY_DOC = "gallery"
GALLERY_DIR = Path(__file__).resolve().parents[1] / "_generated" / "gallery"


def _gallery_records() -> list[dict[str, Any]]:
    if not GALLERY_DIR.is_dir():
        return []
    records = [json.loads(p.read_text()) for p in sorted(GALLERY_DIR.glob("*.json"))]
    return sorted(records, key=lambda r: (r["order"], r["name"]))


def gallery_markdown(records: list[dict[str, Any]]) -> str:
    """The MyST text of the gallery for ``records`` (from ``nbhelpers.keep``)."""
    if not records:
        return ("```{note}\nThis build made no figures: the notebooks need the real data in `../shared` "
                "(see {doc}`installation`). Build the docs in a checkout that has it to fill the gallery.\n```\n")
    out = []
    for rec in records:
        out.append(f"## {rec['title']}\n")
        out.append(f"```{{image}} /_generated/gallery/{rec['file']}\n:alt: {rec['title']}\n:width: 100%\n```\n")
        out.append(f"{rec['caption']}\n")
        out.append(f"Made in {{ref}}`{rec['notebook_title']} <{rec['label']}>`, by this code:\n")
        code = rec["code"].rstrip()
        fence = "````" if "```" in code else "```"
        out.append(f"{fence}python\n{code}\n{fence}\n")
    return "\n".join(out)


def _read_gallery_last(app: Sphinx, env: Any, docnames: list[str]) -> None:
    if GALLERY_DOC in docnames:
        docnames.remove(GALLERY_DOC)
        docnames.append(GALLERY_DOC)


def _gallery_always_outdated(app: Sphinx, env: Any, added: set[str], changed: set[str], removed: set[str]) -> list[str]:
    return [GALLERY_DOC] if GALLERY_DOC in env.found_docs else []


def _fill_gallery(app: Sphinx, docname: str, source: list[str]) -> None:
    if docname == GALLERY_DOC:
        source[0] = source[0].replace("<!-- gallery -->", gallery_markdown(_gallery_records()))


def public_api_names() -> list[str]:
    """Fully qualified names that must have an API page."""
    import dwcube
    from dwcube.accessor import LulcAccessor, LulcArrayAccessor

    names = [f"dwcube.{n}" for n in dwcube.__all__ if n != "__version__"]
    for cls in (LulcAccessor, LulcArrayAccessor):
        names += [f"dwcube.accessor.{cls.__name__}.{m}" for m in vars(cls)
                  if not m.startswith("_") and callable(getattr(cls, m))]
    return names


def _check_api_coverage(app: Sphinx, env: Any) -> None:
    documented = set(env.get_domain("py").objects)
    missing = [n for n in public_api_names() if n not in documented]
    if missing:
        logger.warning("public names without an API page (add them to docs/api/index.md): %s", ", ".join(missing))


def _import(name: str) -> Any:
    """The object named ``name`` (``dwcube.sensors.MaskSpec``), or None."""
    import importlib

    parts = name.split(".")
    for i in range(len(parts), 0, -1):
        try:
            obj: Any = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        try:
            for part in parts[i:]:
                obj = getattr(obj, part)
        except AttributeError:
            return None
        return obj
    return None


def _candidates(target: str, current_module: str | None, refdoc: str) -> list[str]:
    """Where else a reference in a docstring may point.

    * ``dwcube.load.load`` / ``dwcube.composite.composite``: the modules :mod:`dwcube.load` and
      :mod:`dwcube.composite` have the names of the functions they define (``dwcube.load`` is
      the function), so they have no module page; their public names have top-level pages.
    * A short name in the docstring of a top-level page (``dwcube.export_cog``) means a name of
      the module that defines the object (``dwcube.export.to_cog``).
    * A re-exported name (``dwcube.sensors.MaskSpec``) is documented where it is defined
      (``dwcube.sensors.base.MaskSpec``).
    """
    import types

    import dwcube

    out = []
    page = refdoc.rpartition("/")[2]
    documented = _import(page) if refdoc.startswith("api/generated/") else None
    home = documented.__name__ if isinstance(documented, types.ModuleType) else getattr(documented, "__module__", None)
    if home and "." not in target:
        out.append(f"{home}.{target}")
    for name in (target, f"{current_module}.{target}" if current_module else None,
                 f"{home}.{target}" if home else None):
        obj = _import(name) if name and name.startswith("dwcube") else None
        qualname = getattr(obj, "__qualname__", None)
        if obj is not None and qualname and getattr(obj, "__module__", None):
            out.append(f"{obj.__module__}.{qualname}")
    for cand in list(out) + [target]:
        module, _, name = cand.rpartition(".")
        if module in ("dwcube.load", "dwcube.composite") and name in dwcube.__all__:
            out.append(f"dwcube.{name}")
    return [c for c in dict.fromkeys(out) if c != target]


def _resolve_elsewhere(app: Sphinx, env: Any, node: Any, contnode: Any) -> Any:
    if node.get("refdomain") != "py":
        return None
    py = env.get_domain("py")
    for target in _candidates(node.get("reftarget", ""), node.get("py:module"), node["refdoc"]):
        found = py.resolve_xref(env, node["refdoc"], app.builder, node["reftype"], target, node, contnode)
        if found is not None:
            return found
    return None


def setup(app: Sphinx) -> dict[str, Any]:
    app.connect("env-before-read-docs", _read_gallery_last)
    app.connect("env-get-outdated", _gallery_always_outdated)
    app.connect("source-read", _fill_gallery)
    app.connect("env-check-consistency", _check_api_coverage)
    app.connect("missing-reference", _resolve_elsewhere)
    return {"parallel_read_safe": False, "parallel_write_safe": True}
