"""Drive a marimo app from tests: serve a notebook file with ``marimo run`` on loopback, open it in Chromium.

Jupyter Notebook 7 needs nothing here: it is JupyterLab's application in another shell, served by
``_lab.start_lab(NOTEBOOK7)``. marimo is another host altogether. It runs every cell when a page
connects and draws an anywidget inside ``<marimo-anywidget>``'s open shadow root; Playwright's CSS
locators pierce open shadow roots, so tests find a view's elements as they do in JupyterLab. A
served app has no kernel to run code in from the side: a test reads Python state from a cell that
shows it (``json_cell``), and changes it through a control whose cell does (``mo.ui.run_button``).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from _lab import DEFAULT_TIMEOUT, REPO_ROOT, free_port, log_tail, save_screenshot, stop_process_group


class MarimoError(RuntimeError):
    """The marimo server or page did not behave, or a cell of the app raised."""


def marimo_source(cells: list[str]) -> str:
    """A marimo notebook file of ``cells``, each the code of one cell as typed in a notebook.

    marimo works out what each cell defines and uses from its code, so a cell needs no parameters
    or ``return``; its last expression is its output. (Lines inside a multi-line string literal get
    the function body's indentation too.)
    """
    parts = ["import marimo", "", "app = marimo.App()", ""]
    for code in cells:
        parts += ["", "@app.cell", "def _():", textwrap.indent(code.strip() or "pass", "    "), ""]
    parts += ["", 'if __name__ == "__main__":', "    app.run()", ""]
    return "\n".join(parts)


def json_cell(testid: str, expr: str) -> str:
    """Cell code that shows ``json.dumps(expr)`` in ``<pre data-testid=testid>``: how a test reads Python.

    The cell runs again whenever a UI element named in ``expr`` changes, so ``widget.selected_token``
    (``widget`` being a ``mo.ui.anywidget``) follows clicks in the view. Read it with
    ``MarimoApp.read_json(testid)``.
    """
    return (
        "import html as _html\nimport json as _json\nimport marimo as _mo\n\n"
        f"_mo.Html('<pre data-testid=\"{testid}\">' + _html.escape(_json.dumps({expr})) + '</pre>')"
    )


@dataclass
class MarimoApp:
    """A marimo notebook served by ``marimo run`` on loopback and open in a browser page of its own."""

    base_url: str  # "http://127.0.0.1:PORT"
    token: str
    work_dir: Path  # holds app.py, server.log, screenshots/ and the server's config, state and cache
    proc: subprocess.Popen[bytes]
    context: Any = None  # playwright BrowserContext
    page: Any = None  # playwright Page
    errors: list[str] = field(default_factory=list)  # uncaught page errors ("pageerror")
    console_errors: list[str] = field(default_factory=list)
    timeout: float = DEFAULT_TIMEOUT

    @property
    def log_path(self) -> Path:
        return self.work_dir / "server.log"

    def log_tail(self, n: int = 60) -> str:
        return log_tail(self.log_path, n)

    def raise_cell_errors(self) -> None:
        """Raise MarimoError if a cell raised: ``marimo run`` hides the error in the page, logs its traceback."""
        log = log_tail(self.log_path, 10**6)
        if "Traceback (most recent call last)" in log:
            raise MarimoError(f"a cell of {self.work_dir / 'app.py'} raised; server log:\n{log[-6000:]}")

    def read_json(self, testid: str) -> Any:
        """The value a ``json_cell(testid, ...)`` shows now."""
        return json.loads(self.page.locator(f'[data-testid="{testid}"]').text_content())

    def screenshot(self, label: str = "shot") -> Path | None:
        shots = self.work_dir / "screenshots"
        shots.mkdir(exist_ok=True)
        return save_screenshot(self.page, shots, f"marimo-{label}")

    def close(self, keep: bool = False) -> None:
        """Close the page, stop the server; remove the temp dir, or with ``keep`` leave it and say where."""
        if self.context is not None:
            try:
                self.context.close()
            except Exception:
                pass
            self.context = None
        stop_process_group(self.proc)
        if keep:
            print(f"\n[marimo] kept {self.work_dir} (app.py, server.log, screenshots/)")
        else:
            shutil.rmtree(self.work_dir, ignore_errors=True)


def open_marimo(
    browser: Any, source: str, timeout: float = DEFAULT_TIMEOUT, viewport: tuple[int, int] = (1400, 1000)
) -> MarimoApp:
    """Serve ``source`` (a marimo notebook file) with ``marimo run`` and open it in a new page.

    Returns once the page has loaded; the cells run after it connects, so wait for what they show
    with Playwright locators. The server runs with its own token and its own config, state and
    cache dirs; the repository root is on its ``PYTHONPATH``, so the working tree is importable.
    """
    work = Path(tempfile.mkdtemp(prefix="lw-marimo-"))
    (work / "app.py").write_text(source)
    env = dict(os.environ)
    env.update(
        XDG_CONFIG_HOME=str(work / "config"),  # marimo.toml: no user settings in, none written out
        XDG_STATE_HOME=str(work / "state"),
        XDG_CACHE_HOME=str(work / "cache"),  # marimo's logs
        # ...but the dequantized bundled models stay where they are (models.cache_dir's rule).
        LLMASOS_CACHE=env.get("LLMASOS_CACHE") or env.get("XDG_CACHE_HOME") or str(Path.home() / ".cache"),
        MARIMO_SKIP_UPDATE_CHECK="1",  # no network
        PYTHONUNBUFFERED="1",
        PYTHONPATH=os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if p),
    )
    token = secrets.token_hex(24)
    app: MarimoApp | None = None
    last_error = ""
    for _attempt in range(3):  # the free port can be taken between probing and binding: retry
        port = free_port()
        cmd = [
            sys.executable, "-m", "marimo", "run", "app.py", "--headless", "--no-sandbox",
            "--host", "127.0.0.1", "--port", str(port), "--token-password", token,
        ]  # fmt: skip
        with open(work / "server.log", "ab") as log:
            proc = subprocess.Popen(
                cmd, env=env, cwd=work, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        app = MarimoApp(base_url=f"http://127.0.0.1:{port}", token=token, work_dir=work, proc=proc, timeout=timeout)
        last_error = _wait_healthy(app, timeout)
        if not last_error:
            break
        stop_process_group(proc)
        if "address already in use" not in app.log_tail().lower():
            break
    assert app is not None
    if last_error:
        app.close(keep=True)
        raise MarimoError(f"marimo run did not start: {last_error}\nServer log:\n{app.log_tail()}")

    app.context = browser.new_context(viewport={"width": viewport[0], "height": viewport[1]})
    app.page = app.context.new_page()
    app.page.set_default_timeout(timeout * 1000)
    app.page.on("pageerror", lambda exc: app.errors.append(f"{exc}\n{getattr(exc, 'stack', '')}"))
    app.page.on("console", lambda msg: app.console_errors.append(msg.text) if msg.type == "error" else None)
    try:
        app.page.goto(f"{app.base_url}/?access_token={token}", wait_until="load", timeout=timeout * 1000)
    except Exception as e:
        shot = app.screenshot("open-failed")
        app.close(keep=True)
        raise MarimoError(f"the marimo page did not load ({e}); screenshot {shot}\n{app.log_tail()}") from e
    return app


def _wait_healthy(app: MarimoApp, timeout: float) -> str:
    """Wait until the server answers /health; return "" then, or why it did not."""
    deadline = time.monotonic() + timeout
    error = f"no answer from /health within {timeout:.0f} s"
    while time.monotonic() < deadline:
        if app.proc.poll() is not None:
            return f"server exited with code {app.proc.returncode}"
        try:
            with urllib.request.urlopen(f"{app.base_url}/health", timeout=5) as r:
                if r.status == 200:
                    return ""
        except (urllib.error.URLError, ConnectionError, TimeoutError, OSError) as e:
            error = repr(e)
        time.sleep(0.25)
    return error
