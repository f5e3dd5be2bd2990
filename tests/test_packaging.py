"""The wheel carries the built front-end bundles (the Python build runs the npm build)."""

import subprocess
import sys
import zipfile

import pytest

pytestmark = pytest.mark.slow

VIEWS = (
    "tokens",
    "attention",
    "neurons",
    "lens",
    "saliency",
    "concepts",
    "standalone",
)  # standalone: save_html's runtime


def test_wheel_contains_every_view_bundle(tmp_path):
    root = __import__("pathlib").Path(__file__).parent.parent
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(tmp_path), str(root)],
        check=True,
        timeout=600,
    )
    (wheel,) = tmp_path.glob("llmasos_widgets-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    for view in VIEWS:
        assert f"llmasos_widgets/static/{view}.js" in names
    assert not any("node_modules" in n for n in names)
