"""Fixtures for browser tests: real notebook hosts on loopback and headless Debian Chromium.

JupyterLab (``notebook``), Jupyter Notebook 7 (``notebook7``) and marimo (``marimo_app``). Every
test under tests/browser/ gets the ``browser`` marker. Without /usr/bin/chromium (or without
playwright / jupyterlab, or a host's own package) the tests are skipped, unless LW_REQUIRE_BROWSER
is set: then they fail.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

_HERE = Path(__file__).resolve().parent
# Tests import the helpers as `_lab` whatever pytest's import mode (prepend or importlib).
if str(_HERE) not in sys.path:
    sys.path.insert(0, str(_HERE))

from _hosts import MarimoApp, marimo_source, open_marimo  # noqa: E402
from _lab import (  # noqa: E402
    DEFAULT_TIMEOUT,
    JUPYTERLAB,
    NOTEBOOK7,
    JupyterApp,
    LabServer,
    NotebookSession,
    browser_required,
    launch_chromium,
    missing_requirement,
    open_notebook,
    remove_lab_dirs,
    require_browser,
    start_lab,
)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "browser: runs in a real notebook host with headless Chromium (tests/browser/)")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    why = missing_requirement()
    for item in items:
        if _HERE not in Path(str(item.path)).resolve().parents:
            continue
        item.add_marker(pytest.mark.browser)
        if why is not None and not browser_required():
            item.add_marker(
                pytest.mark.skip(reason=f"browser tests need {why}; set LW_REQUIRE_BROWSER=1 to fail instead")
            )


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[Any]) -> Iterator[None]:
    outcome = yield
    rep = outcome.get_result()
    setattr(item, f"_lw_rep_{rep.when}", rep)


def _serve(request: pytest.FixtureRequest, app: JupyterApp) -> Iterator[LabServer]:
    server = start_lab(app, timeout=DEFAULT_TIMEOUT)
    print(f"\n[lab] {app.name} {server.base_url} root={server.root_dir} log={server.log_path}")
    try:
        yield server
    finally:
        server.stop()
        remove_lab_dirs(server, keep=request.session.testsfailed > 0)


@pytest.fixture(scope="session")
def lab(request: pytest.FixtureRequest) -> Iterator[LabServer]:
    """JupyterLab served on 127.0.0.1 with its own token, root, runtime and config dirs."""
    require_browser()
    yield from _serve(request, JUPYTERLAB)


@pytest.fixture(scope="session")
def notebook7_server(request: pytest.FixtureRequest) -> Iterator[LabServer]:
    """Jupyter Notebook 7 served like ``lab`` (it is JupyterLab's application in another shell)."""
    require_browser("notebook")
    yield from _serve(request, NOTEBOOK7)


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    """Headless Debian Chromium driven by Playwright's sync API (a playwright ``Browser``)."""
    require_browser()
    from playwright.sync_api import sync_playwright

    pw = sync_playwright().start()
    try:
        b = launch_chromium(pw)
        try:
            yield b
        finally:
            b.close()
    finally:
        pw.stop()


def _test_failed(request: pytest.FixtureRequest) -> bool:
    rep = getattr(request.node, "_lw_rep_call", None)
    return rep is not None and rep.failed


@pytest.fixture
def notebook(request: pytest.FixtureRequest, lab: LabServer, browser: Any) -> Iterator[Callable[..., NotebookSession]]:
    """Factory ``notebook(cells, name=None, timeout=120, run=True) -> NotebookSession``.

    Sessions opened through it are closed after the test; if the test failed, each open page is
    screenshotted first and the paths, page errors and console errors are printed.
    """
    yield from _notebooks(request, lab, browser)


@pytest.fixture
def notebook7(
    request: pytest.FixtureRequest, notebook7_server: LabServer, browser: Any
) -> Iterator[Callable[..., NotebookSession]]:
    """Factory like ``notebook``, in Jupyter Notebook 7 (pages at /notebooks/<name>)."""
    yield from _notebooks(request, notebook7_server, browser)


def _notebooks(
    request: pytest.FixtureRequest, server: LabServer, browser: Any
) -> Iterator[Callable[..., NotebookSession]]:
    opened: list[NotebookSession] = []

    def factory(
        cells: list[str], name: str | None = None, timeout: float = DEFAULT_TIMEOUT, run: bool = True
    ) -> NotebookSession:
        if name is None:
            stem = request.node.name.replace("[", "-").replace("]", "").replace("/", "_")
            name = f"{stem}-{len(opened)}.ipynb"
        nb = open_notebook(server, browser, name, cells, timeout=timeout, run=run)
        opened.append(nb)
        return nb

    yield factory

    failed = _test_failed(request)
    for nb in opened:
        if failed:
            shot = nb.screenshot("failed")
            print(f"\n[lab] {nb.name}: screenshot {shot}")
            print(f"[lab] page errors: {nb.errors}")
            print(f"[lab] console errors: {nb.console_errors}")
            print(f"[lab] server log tail:\n{server.log_tail(20)}")
        nb.close()


@pytest.fixture
def marimo_app(request: pytest.FixtureRequest, browser: Any) -> Iterator[Callable[..., MarimoApp]]:
    """Factory ``marimo_app(cells, timeout=120) -> MarimoApp``: a marimo notebook served and open in a page.

    ``cells`` is a list of cell codes (see ``_hosts.marimo_source``) or a whole marimo file. Each app
    has a server of its own, stopped after the test with its temp dir removed; if the test failed,
    the page is screenshotted, the server log tail printed and the dir kept.
    """
    require_browser("marimo")
    opened: list[MarimoApp] = []

    def factory(cells: list[str] | str, timeout: float = DEFAULT_TIMEOUT) -> MarimoApp:
        source = cells if isinstance(cells, str) else marimo_source(cells)
        app = open_marimo(browser, source, timeout=timeout)
        opened.append(app)
        return app

    yield factory

    failed = _test_failed(request)
    for app in opened:
        if failed:
            print(f"\n[marimo] {app.base_url}: screenshot {app.screenshot('failed')}")
            print(f"[marimo] page errors: {app.errors}")
            print(f"[marimo] console errors: {app.console_errors}")
            print(f"[marimo] server log tail:\n{app.log_tail(40)}")
        app.close(keep=failed)
