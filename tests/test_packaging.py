"""What a built wheel carries: the licence files, py.typed, the s2cloudless model and the U-Net
weights, an SPDX licence expression, and no setuptools deprecation warning while building."""

from __future__ import annotations

import email
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path


REPO = Path(__file__).resolve().parent.parent


def test_licence_text_is_the_apache_2_0_licence() -> None:
    text = (REPO / "LICENSE").read_text()
    assert text.lstrip().startswith("Apache License") and "Version 2.0, January 2004" in text
    assert "END OF TERMS AND CONDITIONS" in text and "APPENDIX: How to apply the Apache License" in text
    assert (REPO / "dwcube" / "py.typed").is_file() and (REPO / "CHANGELOG.md").is_file()


def test_the_wheel_carries_licences_data_and_typing(tmp_path: Path) -> None:
    # built from a copy, so that no build/ folder is left in (or reused from) the checkout
    src = tmp_path / "src"
    shutil.copytree(REPO, src, ignore=shutil.ignore_patterns(".git", ".venv", "build", "dist", "*.egg-info", "__pycache__",
                                                             ".pytest_cache", "*.zarr", "dwcube-demo", "_work"))
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-w",
                            str(tmp_path), str(src)], capture_output=True, text=True, timeout=600)
    assert build.returncode == 0, build.stderr
    assert "SetuptoolsDeprecationWarning" not in build.stdout + build.stderr
    (wheel,) = tmp_path.glob("dwcube-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        meta_name = next(n for n in names if n.endswith(".dist-info/METADATA"))
        meta = email.message_from_bytes(zf.read(meta_name))
    assert {"dwcube/py.typed", "dwcube/data/s2cloudless/pixel_s2_cloud_detector_lightGBM_v0.1.txt.xz",
            "dwcube/data/s2cloudless/LICENSE.md", "dwcube/data/s2cloudless/NOTICE",
            "dwcube/models/weights/unet-v2.pt", "dwcube/serve/static/index.html", "dwcube/serve/static/app.js",
            "dwcube/serve/static/vendor/leaflet/leaflet.js", "dwcube/serve/static/vendor/leaflet/LICENSE"} <= names
    licences = {n.split(".dist-info/licenses/", 1)[1] for n in names if ".dist-info/licenses/" in n}
    assert {"LICENSE", "NOTICE", "dwcube/data/s2cloudless/LICENSE.md"} <= licences
    assert meta["License-Expression"] == "Apache-2.0 AND CC-BY-SA-4.0"
    requires = " ".join(meta.get_all("Requires-Dist") or [])
    assert "s2cloudless" in requires and 'extra == "test"' in requires
    assert not any(r.startswith(("s2cloudless", "lightgbm")) and "extra" not in r
                   for r in meta.get_all("Requires-Dist") or [])
