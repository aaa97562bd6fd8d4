"""Sphinx configuration of dwcube's documentation (``make docs``; see docs/contributing.md)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(DOCS / "_ext"))

import dwcube  # noqa: E402
from dwcube.testing import shared_dir  # noqa: E402

project = "dwcube"
author = "dwcube developers"
copyright = "dwcube developers, Apache-2.0"  # noqa: A001 - Sphinx's name
release = version = dwcube.__version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "numpydoc",
    "myst_nb",
    "sphinx_copybutton",
    "dwcube_docs",  # docs/_ext/dwcube_docs.py: gallery, API checks, reference aliases
]

templates_path = ["_templates"]
exclude_patterns = ["_build", "_generated", "**.ipynb_checkpoints", "Thumbs.db", ".DS_Store",
                    "notebooks/*.py", "model_card.md"]
source_suffix = {".rst": "restructuredtext", ".md": "myst-nb"}
root_doc = "index"

# -- warnings are errors (the Makefile passes -W); every cross-reference is checked -------
nitpicky = True
# Names of other projects: the build is offline (no intersphinx inventories), so references to
# them cannot resolve; references to dwcube's own names are all checked.
nitpick_ignore_regex = [
    (r"py:.*", r"(xr|xarray|np|numpy|numpy\.typing|npt|da|dask|pd|pandas|torch|pystac|pystac_client|odc|rasterio"
               r"|pyproj|shapely|zarr|matplotlib|mpl|PIL|scipy|numba|rustac|pyarrow|geopandas|argparse|os|io"
               r"|pathlib|collections|typing|datetime|dt|concurrent|multiprocessing|subprocess|threading"
               r"|http|socketserver|_thread|json|logging|types|enum|contextlib|warnings|lightgbm|s2cloudless)(\..*)?"),
    (r"py:.*", r"(Any|Path|Sequence|Mapping|Iterable|Iterator|Callable|Literal|Self|TypeAlias|Union|Optional"
               r"|Hashable|MutableMapping|Generator|ContextManager|PathLike|TextIO|BinaryIO|Figure|Axes"
               r"|DataArray|Dataset|ndarray|Tensor|Module|Item|ItemCollection|GeoBox|CRS|Client|Future"
               r"|DataFrame|Table|Timestamp|Timedelta|Polygon|BaseGeometry|Geometry|ArrayLike|DTypeLike"
               r"|Array|Delayed|Enum|Namespace|ArgumentParser|Exception|RuntimeError|ValueError|KeyError"
               r"|TypeError|FileNotFoundError|OSError|UserWarning|Warning|IndexError|AttributeError"
               r"|NotImplementedError|LookupError|ImportError|ModuleNotFoundError|property|object|type"
               r"|int|float|str|bool|bytes|dict|list|tuple|set|frozenset|None|callable|iterable"
               r"|optional|default|array|array-like|array_like|sequence|mapping|path-like|file-like"
               r"|function|generator|iterator|slice|complex|memoryview|bytearray|range|Ellipsis)"),
    # module constants without a docstring get no page of their own (their modules explain them)
    (r"py:data", r"(dwcube\.[\w.]+\.)?[A-Z][A-Z0-9_]+"),
    (r"py:class", r"dwcube\.reads\.T"),  # a TypeVar
    # fragments of built-in generics split at their commas ("dict[str", "tuple[float")
    (r"py:class", r"(dict|tuple|list|set)\[.*"),
    (r"py:.*", r"(float32|float64|uint8|uint16|int64|int32|bool_|datetime64|timedelta64)"),
]

# -- autodoc / autosummary / numpydoc ------------------------------------------------------
autosummary_generate = True
autosummary_imported_members = False
autosummary_ignore_module_all = True
autodoc_default_options = {"member-order": "bysource"}
autodoc_typehints = "signature"
autodoc_preserve_defaults = True
python_maximum_signature_line_length = 88  # one parameter per line in long signatures
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
numpydoc_xref_param_type = False
numpydoc_validation_checks: set[str] = set()

# -- MyST / MyST-NB: notebooks are MyST Markdown, executed by the build --------------------
myst_enable_extensions = ["colon_fence", "deflist", "dollarmath"]
myst_heading_anchors = 3
SHARED = shared_dir(ROOT)
# the notebooks' kernels import this checkout of dwcube (and docs/notebooks/nbhelpers.py)
os.environ["PYTHONPATH"] = os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])
nb_execution_mode = os.environ.get("DWCUBE_DOCS_EXECUTE", "cache")
# the cache key is the notebooks' code only, so a build without ../shared has its own cache
nb_execution_cache_path = str(DOCS / "_build" / (".jupyter_cache" if SHARED else ".jupyter_cache-noshared"))
nb_execution_timeout = 900
nb_execution_raise_on_error = True
nb_execution_show_tb = True
nb_merge_streams = True
nb_render_markdown_format = "myst"  # the notebooks display MyST admonitions (the note without ../shared)
nb_kernel_rgx_aliases = {".*": "python3"}
nb_ipywidgets_js: dict[str, dict[str, str]] = {}

# -- HTML ------------------------------------------------------------------------------------
html_theme = "pydata_sphinx_theme"
html_title = f"dwcube {release}"
html_static_path = ["_static"]
html_css_files = ["dwcube.css"]
html_theme_options = {
    "navigation_with_keys": False,
    "show_toc_level": 2,
    "header_links_before_dropdown": 5,
    "navbar_align": "left",
    "footer_start": ["copyright"],
    "footer_end": ["sphinx-version"],
    "secondary_sidebar_items": ["page-toc"],
}
# pages without sub-pages need no left sidebar
html_sidebars = {page: [] for page in ("installation", "notebooks/getting-started", "gallery", "model-card",
                                       "design", "contributing", "changelog")}
html_show_sourcelink = False
html_last_updated_fmt = None
