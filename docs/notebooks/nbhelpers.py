"""What the documentation's notebooks share: finding the real data, and keeping figures for the gallery.

Not part of dwcube: the notebooks import it from their own folder (``docs/notebooks``).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from dwcube.testing import shared_dir

GALLERY = Path(__file__).resolve().parents[1] / "_generated" / "gallery"
NOTE = ("**The real data was not found** (`../shared` next to the dwcube checkout, or `$DWCUBE_SHARED`): "
        "the cells of this notebook that need it were not run, so it shows code without results. "
        "See *Installation* for where the data comes from.")
_RUNS_ANYWAY = "# runs without ../shared"


def setup(notebook: str, title: str, order: int) -> Path | None:
    """The ``shared/`` folder, or None after showing a note and arranging that the following cells
    are skipped (all but those whose first line is ``# runs without ../shared``).

    ``notebook``, ``title`` and ``order`` say where the notebook's gallery figures come from.
    """
    from IPython import get_ipython
    from IPython.display import Markdown, display

    _context.update(notebook=notebook, title=title, order=order, count=0)
    for old in GALLERY.glob(f"{notebook}-*"):  # figures of an earlier run of this notebook
        old.unlink()
    shared = shared_dir()
    if shared is None:
        display(Markdown(f"```{{warning}}\n{NOTE}\n```"))
        ip = get_ipython()

        def skip(lines: list[str]) -> list[str]:
            if lines and lines[0].strip() == _RUNS_ANYWAY:
                return lines
            return ["None\n"]

        ip.input_transformers_post.append(skip)
    return shared


_context: dict[str, Any] = {}


def _cell_code() -> str:
    """The code of the cell being run (IPython's ``In`` history), up to its final ``keep(...)`` call."""
    from IPython import get_ipython

    ip = get_ipython()
    code = ip.user_ns["In"][-1] if ip is not None and ip.user_ns.get("In") else ""
    lines = code.splitlines()
    ends = [i for i, line in enumerate(lines) if re.match(r"keep\(", line)]  # keep(...) ends a cell
    return "\n".join(lines[:ends[0]] if ends else lines).strip()


def keep(fig_or_path: Any, name: str, title: str, caption: str, *, label: str) -> Any:
    """Save a figure (Matplotlib figure, or a GIF/PNG file) for the gallery and return what displays it.

    ``label`` is the MyST target (``(label)=``) just above the cell, which the gallery links to.
    """
    from IPython.display import Image

    GALLERY.mkdir(parents=True, exist_ok=True)
    _context["count"] = _context.get("count", 0) + 1
    stem = f"{_context['notebook']}-{name}"
    if isinstance(fig_or_path, (str, Path)):
        src = Path(fig_or_path)
        file = f"{stem}{src.suffix}"
        (GALLERY / file).write_bytes(src.read_bytes())
        shown: Any = Image(data=src.read_bytes(), format=src.suffix.lstrip("."))
    else:
        file = f"{stem}.png"
        fig_or_path.savefig(GALLERY / file, dpi=110, bbox_inches="tight")
        shown = Image(data=(GALLERY / file).read_bytes(), format="png")
    record = {"name": name, "file": file, "title": title, "caption": caption, "label": label,
              "notebook": _context["notebook"], "notebook_title": _context["title"],
              "order": [_context["order"], _context["count"]], "code": _cell_code()}
    (GALLERY / f"{stem}.json").write_text(json.dumps(record, indent=1))
    return shown


__all__ = ["keep", "setup"]
