"""The documentation's own parts: API coverage lists, the gallery text, the notebooks' skip rule.

The docs build itself (``make docs``, part of ``make test``) checks the same coverage with every
cross-reference; these tests say it in seconds and without Sphinx.
"""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parents[1] / "docs"


def _load(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def _autosummary_entries(text: str) -> set[str]:
    """Names listed in ``.. autosummary::`` blocks, qualified by the ``currentmodule`` in force."""
    names, module, inside = set(), "", False
    for line in text.splitlines():
        m = re.match(r"\.\. currentmodule:: (\S+)", line.strip())
        if m:
            module, inside = m.group(1), False
            continue
        if line.strip().startswith(".. autosummary::"):
            inside = True
            continue
        if inside:
            if line.startswith("```"):
                inside = False
            elif line.strip() and not line.strip().startswith(":"):
                names.add(f"{module}.{line.strip()}")
    return names


def test_every_public_name_and_accessor_method_is_listed_in_the_api_reference() -> None:
    pytest.importorskip("sphinx")
    ext = _load("dwcube_docs", DOCS / "_ext" / "dwcube_docs.py")
    listed = _autosummary_entries((DOCS / "api" / "index.md").read_text())
    listed |= _autosummary_entries((DOCS / "api" / "accessor.md").read_text())
    missing = [n for n in ext.public_api_names() if n not in listed]
    assert not missing, f"add these to docs/api/index.md or docs/api/accessor.md: {missing}"
    assert "dwcube.load" in listed and "dwcube.accessor.LulcArrayAccessor.smooth" in listed


def test_gallery_text_links_each_figure_to_its_cell_and_shows_its_code() -> None:
    pytest.importorskip("sphinx")
    ext = _load("dwcube_docs", DOCS / "_ext" / "dwcube_docs.py")
    rec = {"name": "flicker", "file": "time-flicker.png", "title": "Flicker", "caption": "Per pixel.",
           "label": "time-flicker", "notebook": "time", "notebook_title": "Time", "order": [2, 1],
           "code": "fig = plot.x()\nprint('```')"}
    text = ext.gallery_markdown([rec])
    assert "```{image} /_generated/gallery/time-flicker.png" in text
    assert "{ref}`Time <time-flicker>`" in text
    assert "````python\nfig = plot.x()" in text          # a longer fence around code that holds ```
    assert "no figures" in ext.gallery_markdown([])


def test_notebooks_skip_their_cells_with_a_note_when_the_shared_data_is_absent(monkeypatch, tmp_path) -> None:
    pytest.importorskip("IPython")
    from IPython.core.interactiveshell import InteractiveShell

    helpers = _load("nbhelpers", DOCS / "notebooks" / "nbhelpers.py")
    monkeypatch.setattr(helpers, "shared_dir", lambda: None)
    monkeypatch.setattr(helpers, "GALLERY", tmp_path)
    shell = InteractiveShell.instance()
    try:
        shown = []
        monkeypatch.setattr("IPython.display.display", lambda obj: shown.append(obj))
        assert helpers.setup("nb", "A notebook", order=9) is None
        assert "not found" in shown[0].data
        shell.run_cell("ran = []")                        # skipped: `ran` stays undefined
        assert "ran" not in shell.user_ns
        shell.run_cell("# runs without ../shared\nran = [1]")
        assert shell.user_ns["ran"] == [1]
    finally:
        shell.input_transformers_post.clear()
        InteractiveShell.clear_instance()
