"""The views' built front-end: one ES module and one stylesheet per view in llmasos_widgets/static/.

``npm run build`` (run by ``pip install``) bundles ``js/<view>/`` into ``static/<view>.js`` and ``.css``.
"""

from __future__ import annotations

import json
from pathlib import Path

STATIC = Path(__file__).resolve().parent.parent / "static"  # llmasos_widgets/static, built by npm


def bundle(view: str) -> Path | str:
    """A view's built front-end module; if the npm build has not run, a module that says so in the cell."""
    path = STATIC / f"{view}.js"
    if path.is_file():
        return path
    message = (
        f"llmasos_widgets: the front-end bundle {path.name} is missing. Install the package with "
        "`pip install .` (it runs the npm build) or run `npm install && npm run build` in the repository."
    )
    return f"export default {{ render({{ el }}) {{ el.textContent = {json.dumps(message)}; }} }};"


def stylesheet(view: str) -> Path | str:
    """A view's built stylesheet (static/<view>.css), or "" when the build has not made one."""
    path = STATIC / f"{view}.css"
    return path if path.is_file() else ""
