"""Drive a real JupyterLab from tests: serve it on loopback, open notebooks in headless Chromium.

Jupyter Notebook 7 is the same JupyterLab application in another shell, so the same helpers serve it
(``start_lab(NOTEBOOK7)``). The fixtures in ``conftest.py`` wrap these helpers; tests use ``lab``,
``browser`` and ``notebook`` (or ``notebook7``).
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = os.environ.get("LW_CHROMIUM", "/usr/bin/chromium")  # Debian's; never a download
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
DEFAULT_TIMEOUT = 120.0  # seconds; a cold kernel plus widget load takes 10-20 s on 2 cores
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")

# JupyterLab user settings written into the isolated config dir: no news toasts, no update checks,
# and every cell attached to the DOM (windowing would detach off-screen cells and their widgets).
_LAB_SETTINGS = {
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {
        "fetchNews": "false",
        "checkForUpdates": False,
        "doNotDisturbMode": True,
    },
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
}


@dataclass(frozen=True)
class JupyterApp:
    """A notebook front-end served by jupyter_server: how to start it and where it opens a notebook."""

    name: str
    module: str  # run as `python -m <module>`
    expose_app: str  # the option that sets window.jupyterapp, which the page helpers below drive
    home: str  # a page that must answer before the server counts as started
    notebook_page: str  # URL path of an open notebook; {workspace} and {name} are filled in
    # Uncaught page errors the front-end raises by itself, in every notebook (regexes on message and
    # stack): kept apart from ours in NotebookSession.host_errors.
    known_errors: tuple[str, ...] = ()


# Each page gets a workspace of its own in JupyterLab: nothing restored from, or saved into, another.
JUPYTERLAB = JupyterApp(
    "JupyterLab", "jupyterlab", "--LabApp.expose_app_in_browser=True", "/lab", "/lab/workspaces/{workspace}/tree/{name}"
)
# Notebook 7 opens one document per page, so it has no workspaces to keep apart.
NOTEBOOK7 = JupyterApp(
    "Jupyter Notebook",
    "notebook",
    "--JupyterNotebookApp.expose_app_in_browser=True",
    "/tree",
    "/notebooks/{name}",
    # Notebook 7.6's shortcuts plugin reads the schema of a settings plugin it has not loaded, on
    # every page, with or without our user settings.
    known_errors=(r"reading 'schema'\)[\s\S]*/static/notebook/notebook_core\.",),
)


class LabError(RuntimeError):
    """The Jupyter server or page did not behave (did not start, did not load, timed out)."""


class CellError(RuntimeError):
    """A notebook cell raised; the message holds the cell source and its traceback."""


class KernelExecError(RuntimeError):
    """Code run with ``NotebookSession.kernel_exec`` raised; the message holds the traceback."""


def missing_requirement(*extra: str) -> str | None:
    """Why browser tests cannot run here, or None when they can.

    ``extra`` names the packages one host needs beyond JupyterLab's (``"notebook"``, ``"marimo"``), so
    a missing one skips only that host's tests.
    """
    if not Path(CHROMIUM).exists():
        return f"{CHROMIUM} is missing (apt-get install chromium)"
    for mod in ("playwright", "jupyterlab", "anywidget", "jupyter_client", *extra):
        if importlib.util.find_spec(mod) is None:
            return f"python package {mod!r} is not installed"
    return None


def browser_required() -> bool:
    """True when LW_REQUIRE_BROWSER is set (CI): a missing browser is then a failure, not a skip."""
    return os.environ.get("LW_REQUIRE_BROWSER", "").strip().lower() not in ("", "0", "false", "no")


def require_browser(*extra: str) -> None:
    """Skip the calling test module (or fail it under LW_REQUIRE_BROWSER) if it cannot run.

    Call it at the top of a test module, before importing playwright, or in a fixture with the
    packages its host needs (``require_browser("marimo")``).
    """
    import pytest

    why = missing_requirement(*extra)
    if why is None:
        return
    if browser_required():
        pytest.fail(f"LW_REQUIRE_BROWSER is set but browser tests cannot run: {why}", pytrace=False)
    pytest.skip(
        f"browser tests need {why}; set LW_REQUIRE_BROWSER=1 to fail instead",
        allow_module_level=True,
    )


def strip_ansi(text: str) -> str:
    return _ANSI.sub("", text)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# --------------------------------------------------------------------------------------------
# Server
# --------------------------------------------------------------------------------------------


@dataclass
class LabServer:
    """A JupyterLab (or Notebook 7) server on loopback, started by :func:`start_lab`."""

    base_url: str  # "http://127.0.0.1:PORT" (no trailing slash)
    token: str
    root_dir: Path  # notebooks are written here
    runtime_dir: Path  # kernel-<id>.json connection files live here
    work_dir: Path  # parent of all the temp dirs; holds server.log
    proc: subprocess.Popen[bytes]
    log_path: Path
    screenshot_dir: Path
    app: JupyterApp = JUPYTERLAB

    def url(self, path: str, **query: str) -> str:
        """Absolute URL of ``path`` (e.g. ``"/api/sessions"``) with the token in the query."""
        q = urllib.parse.urlencode({**query, "token": self.token})
        return f"{self.base_url}{path}?{q}"

    def api(self, method: str, path: str, body: Any = None, timeout: float = 30) -> Any:
        """Call the server REST API; returns decoded JSON (or None for an empty body)."""
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(
            f"{self.base_url}{path}",
            data=data,
            method=method,
            headers={"Authorization": f"token {self.token}", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            raw = resp.read()
        return json.loads(raw) if raw else None

    def log_tail(self, n: int = 60) -> str:
        return log_tail(self.log_path, n)

    def stop(self, timeout: float = 20) -> None:
        """Shut kernels down through the API, then terminate (and if need be kill) the server."""
        if self.proc.poll() is None:
            try:
                self.api("POST", "/api/shutdown", timeout=5)
            except Exception:
                pass
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                pass
        stop_process_group(self.proc, timeout)


def stop_process_group(proc: subprocess.Popen[bytes], timeout: float = 20) -> None:
    """Terminate, and if need be kill, a server started with ``start_new_session`` and its children.

    Kernels are in the server's process group: the last SIGKILL reaches any that outlived it.
    """
    for sig in (signal.SIGTERM, signal.SIGKILL):
        if proc.poll() is not None:
            break
        _killpg(proc, sig)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            pass
    _killpg(proc, signal.SIGKILL)


def _killpg(proc: subprocess.Popen[bytes], sig: int) -> None:
    try:
        os.killpg(proc.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def log_tail(path: Path, n: int = 60) -> str:
    """The last ``n`` lines of a server log."""
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return "(no server log)"
    return "\n".join(lines[-n:])


def start_lab(
    app: JupyterApp = JUPYTERLAB, timeout: float = DEFAULT_TIMEOUT, extra_args: list[str] | None = None
) -> LabServer:
    """Start ``python -m jupyterlab`` (or ``app``) on a free loopback port, config and runtime isolated.

    The data dir is not isolated, so the installed labextensions (ipywidgets, anywidget) load.
    The repository root is put on the kernels' ``PYTHONPATH``, so the working tree is importable.
    """
    work = Path(tempfile.mkdtemp(prefix=f"lw-{app.module}-"))
    root, runtime, config, ipython = (work / d for d in ("root", "runtime", "config", "ipython"))
    screenshots = work / "screenshots"
    for d in (root, runtime, config, ipython, screenshots):
        d.mkdir()
    settings_dir = config / "lab" / "user-settings"
    for rel, value in _LAB_SETTINGS.items():
        p = settings_dir / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(json.dumps(value))

    env = dict(os.environ)
    env.update(
        JUPYTER_RUNTIME_DIR=str(runtime),
        JUPYTER_CONFIG_DIR=str(config),
        JUPYTERLAB_SETTINGS_DIR=str(settings_dir),
        JUPYTERLAB_WORKSPACES_DIR=str(config / "lab" / "workspaces"),
        IPYTHONDIR=str(ipython),
        PYTHONUNBUFFERED="1",
        PYTHONPATH=os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if p),
    )
    env.pop("JUPYTER_TOKEN", None)
    token = secrets.token_hex(24)
    log_path = work / "server.log"

    last_error = ""
    for _attempt in range(3):  # the free port can be taken between probing and binding: retry
        port = free_port()
        cmd = [
            sys.executable, "-m", app.module, "--no-browser",
            "--ServerApp.ip=127.0.0.1",
            f"--ServerApp.port={port}",
            "--ServerApp.port_retries=0",
            f"--IdentityProvider.token={token}",
            f"--ServerApp.root_dir={root}",
            app.expose_app,
            "--ServerApp.open_browser=False",
            *(["--allow-root"] if hasattr(os, "geteuid") and os.geteuid() == 0 else []),
            *(extra_args or []),
        ]  # fmt: skip
        log = open(log_path, "ab")  # noqa: SIM115 - closed when the process ends
        proc = subprocess.Popen(cmd, env=env, cwd=root, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        server = LabServer(
            base_url=f"http://127.0.0.1:{port}",
            token=token,
            root_dir=root,
            runtime_dir=runtime,
            work_dir=work,
            proc=proc,
            log_path=log_path,
            screenshot_dir=screenshots,
            app=app,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                last_error = f"server exited with code {proc.returncode}"
                break
            try:
                server.api("GET", "/api/status", timeout=5)
                # The app's page itself must answer too (extension manager, settings are loaded).
                with urllib.request.urlopen(server.url(app.home), timeout=15) as r:
                    if r.status == 200:
                        return server
            except (urllib.error.URLError, ConnectionError, TimeoutError, OSError) as e:
                last_error = repr(e)
            time.sleep(0.25)
        else:
            server.stop()
            raise LabError(
                f"{app.name} did not answer /api/status within {timeout:.0f} s "
                f"({last_error}).\nServer log {log_path}:\n{server.log_tail()}"
            )
        server.stop()
        if "address already in use" not in server.log_tail().lower():
            break
    raise LabError(f"{app.name} failed to start: {last_error}.\nServer log {log_path}:\n{server.log_tail()}")


def remove_lab_dirs(server: LabServer, keep: bool = False) -> None:
    """Delete the server's temp dirs, or with ``keep`` leave them (screenshots, log) and say where."""
    if keep:
        print(f"\n[lab] kept {server.work_dir} (screenshots/, server.log, root/)")
        return
    shutil.rmtree(server.work_dir, ignore_errors=True)


# --------------------------------------------------------------------------------------------
# Browser
# --------------------------------------------------------------------------------------------


@contextlib.contextmanager
def lab_and_browser(timeout: float = DEFAULT_TIMEOUT) -> Iterator[tuple[LabServer, Any]]:
    """A JupyterLab server and a headless Chromium for scripts (bench/), both stopped and removed after."""
    from playwright.sync_api import sync_playwright

    lab = start_lab(timeout=timeout)
    try:
        with sync_playwright() as p:
            browser = launch_chromium(p)
            try:
                yield lab, browser
            finally:
                browser.close()
    finally:
        lab.stop()
        remove_lab_dirs(lab)


def launch_chromium(playwright: Any, headless: bool = True) -> Any:
    """Launch Debian's chromium through Playwright (never Playwright's downloaded browsers)."""
    return playwright.chromium.launch(executable_path=CHROMIUM, headless=headless, args=CHROMIUM_ARGS)


def save_screenshot(page: Any, directory: Path, label: str) -> Path | None:
    """Full-page screenshot of ``page`` into ``directory``; returns its path (None if it failed)."""
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", label)[:120]
    path = directory / f"{safe}-{int(time.time() * 1000) % 10**8}.png"
    try:
        page.screenshot(path=str(path), full_page=True, timeout=15000)
    except Exception:
        return None
    return path


def write_notebook(path: Path, cells: list[str]) -> None:
    """Write an nbformat-4 notebook of code cells, with a python3 kernelspec (no kernel dialog)."""
    nb = {
        "nbformat": 4,
        "nbformat_minor": 5,
        "metadata": {
            "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
            "language_info": {"name": "python"},
        },
        "cells": [
            {
                "cell_type": "code",
                "id": f"cell-{i}",
                "metadata": {},
                "execution_count": None,
                "outputs": [],
                "source": src,
            }
            for i, src in enumerate(cells)
        ],
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(nb, indent=1))


# JavaScript run in the page. `__lwPanel(path)` finds the notebook panel open on `path`.
_JS_HELPERS = """
() => {
  window.__lwPanel = (path) => {
    const app = window.jupyterapp;
    if (!app || !app.shell) return null;
    for (const w of app.shell.widgets('main')) {
      if (w.context && w.context.path === path && w.content && w.sessionContext) return w;
    }
    return null;
  };
  window.__lwCells = (path) => {
    const panel = window.__lwPanel(path);
    const cells = panel.content.model.cells;
    const out = [];
    for (let i = 0; i < cells.length; i++) {
      const c = cells.get(i);
      out.push({
        type: c.type,
        execution_count: c.type === 'code' ? c.executionCount : null,
        source: c.sharedModel.getSource(),
        outputs: c.type === 'code' ? c.outputs.toJSON() : [],
      });
    }
    return out;
  };
  return true;
}
"""

_JS_PANEL_READY = """
(path) => {
  if (!window.__lwPanel) return false;
  const p = window.__lwPanel(path);
  if (!p || !p.context.isReady) return false;
  const k = p.sessionContext.session && p.sessionContext.session.kernel;
  return !!k && p.sessionContext.kernelDisplayStatus === 'idle';
}
"""

_JS_RUN_ALL = """
async (path) => {
  const app = window.jupyterapp;
  const panel = window.__lwPanel(path);
  app.shell.activateById(panel.id);
  await panel.sessionContext.ready;
  // Resolves once every cell's execute reply came back (or false when a cell raised).
  return await app.commands.execute('notebook:run-all-cells');
}
"""

_JS_ALL_DONE = """
(path) => {
  const p = window.__lwPanel(path);
  if (!p || p.sessionContext.kernelDisplayStatus !== 'idle') return false;
  const cells = p.content.model.cells;
  for (let i = 0; i < cells.length; i++) {
    const c = cells.get(i);
    if (c.type !== 'code') continue;
    if (c.outputs.toJSON().some((o) => o.output_type === 'error')) return true;  // stopped
    if (c.sharedModel.getSource().trim() && c.executionCount == null) return false;
  }
  return true;
}
"""


@dataclass
class NotebookSession:
    """A notebook open in its own browser page, all cells run, with a side door into its kernel."""

    lab: LabServer
    name: str  # path relative to the lab root, e.g. "test_x.ipynb"
    context: Any  # playwright BrowserContext
    page: Any  # playwright Page
    errors: list[str] = field(default_factory=list)  # uncaught page errors ("pageerror")
    host_errors: list[str] = field(default_factory=list)  # the ones lab.app.known_errors names
    console_errors: list[str] = field(default_factory=list)  # console.error messages
    timeout: float = DEFAULT_TIMEOUT
    _client: Any = None
    _closed: bool = False

    # -- kernel ---------------------------------------------------------------------------------

    def kernel_id(self) -> str:
        """Id of the kernel the notebook's session uses (from the server's /api/sessions)."""
        for s in self.lab.api("GET", "/api/sessions"):
            if s.get("path") == self.name and s.get("kernel"):
                return str(s["kernel"]["id"])
        raise LabError(f"no kernel session for {self.name!r} in /api/sessions")

    def _kernel_client(self) -> Any:
        if self._client is None:
            from jupyter_client import BlockingKernelClient

            cf = self.lab.runtime_dir / f"kernel-{self.kernel_id()}.json"
            if not cf.exists():
                raise LabError(
                    f"connection file {cf} missing; runtime dir holds "
                    f"{sorted(p.name for p in self.lab.runtime_dir.iterdir())}"
                )
            client = BlockingKernelClient()
            client.load_connection_file(str(cf))
            client.start_channels()
            client.wait_for_ready(timeout=self.timeout)
            self._client = client
        return self._client

    def kernel_exec(self, code: str, timeout: float | None = None) -> str:
        """Run ``code`` in the notebook's own kernel (same globals as its cells); return stdout.

        Raises ``KernelExecError`` with the traceback if the code raises. Widget state changed
        here syncs to the page like a change made in a cell.
        """
        client = self._kernel_client()
        out: list[str] = []
        err: list[str] = []

        def hook(msg: dict[str, Any]) -> None:
            kind, content = msg["header"]["msg_type"], msg["content"]
            if kind == "stream":
                (out if content.get("name") == "stdout" else err).append(content["text"])
            elif kind == "execute_result":
                out.append(content.get("data", {}).get("text/plain", "") + "\n")

        reply = client.execute_interactive(
            code,
            store_history=False,
            allow_stdin=False,
            timeout=timeout or self.timeout,
            output_hook=hook,
        )
        content = reply["content"]
        if content.get("status") != "ok":
            tb = strip_ansi("\n".join(content.get("traceback", [])))
            raise KernelExecError(
                f"kernel_exec raised {content.get('ename')}: {content.get('evalue')}\n"
                f"--- code ---\n{code}\n--- traceback ---\n{tb}\n--- stderr ---\n{''.join(err)}"
            )
        return "".join(out)

    def kernel_value(self, code: str, expected: str, timeout: float = 30.0) -> str:
        """``kernel_exec(code)`` stripped, polled until it equals ``expected`` or ``timeout`` seconds pass.

        A change made in the page reaches the kernel as a comm message, which a loaded machine may
        deliver after a ``kernel_exec`` sent just then: read the kernel's state this way after a click.
        """
        deadline = time.monotonic() + timeout
        while True:
            value = self.kernel_exec(code).strip()
            if value == expected or time.monotonic() > deadline:
                return value
            time.sleep(0.2)

    # -- page -----------------------------------------------------------------------------------

    def cells(self) -> list[dict[str, Any]]:
        """Cells as the page's notebook model holds them: type, execution_count, source, outputs."""
        return list(self.page.evaluate(f"() => window.__lwCells({json.dumps(self.name)})"))

    def run_all(self, timeout: float | None = None) -> None:
        """Run every cell (again) and wait until all finished; raise CellError if one raised."""
        t = (timeout or self.timeout) * 1000
        self.page.evaluate(_JS_RUN_ALL, self.name)
        try:
            self.page.wait_for_function(_JS_ALL_DONE, arg=self.name, timeout=t, polling=200)
        except Exception as e:
            shot = self.screenshot("run-all-timeout")
            raise LabError(
                f"cells of {self.name} did not finish within {t / 1000:.0f} s; "
                f"cells: {self._cell_summary()}; screenshot {shot}"
            ) from e
        self.raise_cell_errors()

    def raise_cell_errors(self) -> None:
        for i, c in enumerate(self.cells()):
            for o in c["outputs"]:
                if o.get("output_type") == "error":
                    tb = strip_ansi("\n".join(o.get("traceback", [])))
                    raise CellError(
                        f"cell {i} of {self.name} raised {o.get('ename')}: {o.get('evalue')}\n"
                        f"--- source ---\n{c['source']}\n--- traceback ---\n{tb}"
                    )

    def _cell_summary(self) -> str:
        try:
            return ", ".join(f"[{c['execution_count']}]" for c in self.cells())
        except Exception as e:  # the page may be gone
            return f"(unavailable: {e})"

    def screenshot(self, label: str = "shot") -> Path | None:
        """Full-page screenshot into the lab's screenshot dir; returns its path (None if failed)."""
        return save_screenshot(self.page, self.lab.screenshot_dir, f"{Path(self.name).stem}-{label}")

    def close(self) -> None:
        """Close the page and shut the notebook's kernel down (frees memory on small machines)."""
        if self._closed:
            return
        self._closed = True
        if self._client is not None:
            try:
                self._client.stop_channels()
            except Exception:
                pass
        try:
            for s in self.lab.api("GET", "/api/sessions"):
                if s.get("path") == self.name:
                    self.lab.api("DELETE", f"/api/sessions/{s['id']}")
        except Exception:
            pass
        try:
            self.context.close()
        except Exception:
            pass

    def __enter__(self) -> NotebookSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_notebook(
    lab: LabServer,
    browser: Any,
    name: str,
    cells: list[str],
    timeout: float = DEFAULT_TIMEOUT,
    run: bool = True,
    viewport: tuple[int, int] = (1400, 1000),
) -> NotebookSession:
    """Write ``name`` with ``cells`` into the server's root, open it in a new page and run all cells.

    Returns once the kernel is idle and every code cell has an execution count. Raises
    ``CellError`` (with the traceback) if a cell raised and ``LabError`` on a timeout; both
    take a screenshot first and name its path. Widgets render asynchronously after their cell
    finished: wait for them with Playwright locators.
    """
    write_notebook(lab.root_dir / name, cells)
    context = browser.new_context(viewport={"width": viewport[0], "height": viewport[1]})
    page = context.new_page()
    page.set_default_timeout(timeout * 1000)
    nb = NotebookSession(lab=lab, name=name, context=context, page=page, timeout=timeout)

    def on_error(exc: Any) -> None:
        text = f"{exc}\n{getattr(exc, 'stack', '')}"
        known = any(re.search(k, text) for k in lab.app.known_errors)
        (nb.host_errors if known else nb.errors).append(text)

    page.on("pageerror", on_error)
    page.on(
        "console",
        lambda msg: nb.console_errors.append(msg.text) if msg.type == "error" else None,
    )
    try:
        path = lab.app.notebook_page.format(workspace=f"lw-{secrets.token_hex(6)}", name=urllib.parse.quote(name))
        url = lab.url(path)
        page.goto(url, wait_until="domcontentloaded", timeout=timeout * 1000)
        _wait(
            nb,
            "() => !!(window.jupyterapp && window.jupyterapp.shell)",
            None,
            f"window.jupyterapp (is {lab.app.expose_app} set?)",
        )
        page.evaluate(_JS_HELPERS)
        _wait(nb, _JS_PANEL_READY, name, f"notebook {name} open with an idle kernel")
        if run:
            nb.run_all(timeout)
    except BaseException:
        nb.screenshot("open-failed")
        nb.close()
        raise
    return nb


def _wait(nb: NotebookSession, js: str, arg: Any, what: str) -> None:
    try:
        nb.page.wait_for_function(js, arg=arg, timeout=nb.timeout * 1000, polling=200)
    except Exception as e:
        shot = nb.screenshot("timeout")
        raise LabError(
            f"timed out after {nb.timeout:.0f} s waiting for {what}; screenshot {shot}; "
            f"page errors {nb.errors}; console errors {nb.console_errors[-5:]}\n"
            f"server log tail:\n{nb.lab.log_tail(20)}"
        ) from e
