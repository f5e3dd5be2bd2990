"""The browser harness itself, on an inline anywidget: clicks, synced traits, binary messages.

Template for browser tests: build cells, open them with the ``notebook`` fixture, act with
Playwright on ``nb.page``, check Python state with ``nb.kernel_value`` (polled: a page change reaches the
kernel as a comm message, which may come after a ``kernel_exec`` sent at once), and assert no page errors.
"""

from __future__ import annotations

import statistics
import sys

import pytest
from _lab import CellError, KernelExecError, require_browser

require_browser()  # before playwright is imported: skip the module, or fail under LW_REQUIRE_BROWSER
from playwright.sync_api import expect  # noqa: E402

pytestmark = pytest.mark.browser

# An inline widget: a click bumps the synced `count` and sends bytes in a custom message; Python
# answers with the bytes reversed, sliced out of a larger buffer, and the page shows what it got.
ECHO_WIDGET = r'''
import anywidget
import traitlets


class Echo(anywidget.AnyWidget):
    _esm = """
    export default {
      render({ model, el }) {
        const btn = document.createElement("button");
        btn.className = "lw-echo-btn";
        btn.textContent = "send";
        const out = document.createElement("pre");
        out.className = "lw-echo-out";
        const count = document.createElement("span");
        count.className = "lw-echo-count";
        const showCount = () => { count.textContent = String(model.get("count")); };
        model.on("change:count", showCount);
        showCount();
        const sent = new Map();
        window.__lwRtts = window.__lwRtts || [];
        let n = 0;
        btn.addEventListener("click", () => {
          n += 1;
          sent.set(n, performance.now());
          model.set("count", model.get("count") + 1);
          model.save_changes();
          const bytes = Uint8Array.from([n, 0, 1, 127, 128, 254, 255]);
          model.send({ type: "echo", id: n }, undefined, [bytes.buffer]);
        });
        model.on("msg:custom", (msg, buffers) => {
          if (msg.type !== "echo") return;
          const b = buffers[0];
          // Honour the view's offset and length: the buffer is a window into the whole message.
          const got = ArrayBuffer.isView(b)
            ? new Uint8Array(b.buffer, b.byteOffset, b.byteLength)
            : new Uint8Array(b);
          window.__lwRtts.push(performance.now() - sent.get(msg.id));
          sent.delete(msg.id);
          out.textContent = `echo ${msg.id}: ${Array.from(got).join(",")}`;
        });
        el.append(btn, count, out);
      },
    };
    """
    count = traitlets.Int(0).tag(sync=True)

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.received = b""
        self.on_msg(self._on_msg)

    def _on_msg(self, _widget, content, buffers):
        if content.get("type") != "echo":
            return
        self.received = bytes(buffers[0])
        padded = b"\xaa" * 16 + self.received[::-1] + b"\xbb" * 16
        view = memoryview(padded)[16 : 16 + len(self.received)]
        self.send({"type": "echo", "id": content["id"]}, buffers=[view])
'''


def test_click_syncs_trait_and_round_trips_binary_message(notebook):
    nb = notebook([ECHO_WIDGET, "w = Echo()\nw"])
    page = nb.page
    button = page.locator(".lw-echo-btn")
    out = page.locator(".lw-echo-out")
    expect(button).to_be_visible(timeout=120_000)  # the widget view renders after the cell ran

    button.click()
    expect(out).to_have_text("echo 1: 255,254,128,127,1,0,1", timeout=30_000)
    assert nb.kernel_value("print(w.count)", "1") == "1"
    assert (
        nb.kernel_value("print(list(w.received))", "[1, 0, 1, 127, 128, 254, 255]") == "[1, 0, 1, 127, 128, 254, 255]"
    )

    # A change made from the kernel side reaches the page's model too.
    nb.kernel_exec("w.count = 41")
    expect(page.locator(".lw-echo-count")).to_have_text("41", timeout=30_000)
    button.click()
    expect(out).to_have_text("echo 2: 255,254,128,127,1,0,2", timeout=30_000)
    assert nb.kernel_value("print(w.count)", "42") == "42"

    # Round trip click -> kernel -> page, measured in the page. Reported, not asserted.
    for i in range(3, 13):
        button.click()
        expect(out).to_have_text(f"echo {i}: 255,254,128,127,1,0,{i}", timeout=30_000)
    rtts = page.evaluate("() => window.__lwRtts.slice(2)")
    assert len(rtts) == 10
    print(
        f"\n[lab] click->response round trip over {len(rtts)} clicks: "
        f"median {statistics.median(rtts):.1f} ms, min {min(rtts):.1f} ms, max {max(rtts):.1f} ms"
    )

    if nb.console_errors:  # JupyterLab logs some benign ones; shown, not asserted
        print(f"[lab] console errors: {nb.console_errors}")
    assert nb.errors == [], f"page errors: {nb.errors}"


def test_kernel_exec_shares_the_notebook_kernel_and_reports_errors(notebook):
    nb = notebook(["x = 41", "print('hello from cell')"])
    assert nb.cells()[1]["outputs"][0]["text"] == "hello from cell\n"
    assert nb.kernel_exec("print(x + 1)") == "42\n"
    assert nb.kernel_exec("x + 1") == "42\n"  # an expression's value counts as output
    with pytest.raises(KernelExecError, match="ZeroDivisionError"):
        nb.kernel_exec("1 / 0")
    assert nb.kernel_exec("print(x)") == "41\n"  # the kernel is still usable
    # The kernel JupyterLab started is the tests' own environment (.venv under scripts/test.sh), not
    # whatever Python a machine has elsewhere.
    assert nb.kernel_value("import sys; print(sys.prefix)", sys.prefix) == sys.prefix
    assert nb.errors == [], f"page errors: {nb.errors}"


def test_a_failing_cell_raises_with_its_traceback(notebook):
    with pytest.raises(CellError, match=r"cell 1 .* raised NameError") as info:
        notebook(["y = 1", "undefined_name + y", "z = 3"])
    assert "undefined_name" in str(info.value)
