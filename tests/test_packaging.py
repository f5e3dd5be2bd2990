"""The wheel carries the built front-end (each view's bundle and stylesheet: the npm build runs in it) and the SAEs."""

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).parent.parent


def views() -> list[str]:
    """The views are the folders of js/ that hold an index.ts (what build.mjs bundles)."""
    return sorted(p.parent.name for p in (ROOT / "js").glob("*/index.ts"))


def test_wheel_contains_every_view_bundle(tmp_path):
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(tmp_path), str(ROOT)],
        check=True,
        timeout=600,
    )
    (wheel,) = tmp_path.glob("llmasos_widgets-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert len(views()) >= 8, views()
    for view in views():
        assert f"llmasos_widgets/static/{view}.js" in names
        if view != "standalone":  # save_html's runtime has no stylesheet of its own
            assert f"llmasos_widgets/static/{view}.css" in names
    assert "llmasos_widgets/static/manifest.json" in names
    shipped = sorted(n for n in names if n.startswith("llmasos_widgets/data/saes/"))
    assert shipped == [
        "llmasos_widgets/data/saes/smollm2-135m-layer12.safetensors",
        "llmasos_widgets/data/saes/smollm2-135m-layer24.safetensors",
        "llmasos_widgets/data/saes/smollm2-135m-randomized-layer12.safetensors",
    ]
    assert not any("node_modules" in n for n in names)
