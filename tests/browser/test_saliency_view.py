"""SaliencyView in real JupyterLab on smollm2-135m: pick another target, the overlay and the kernel follow."""

from __future__ import annotations

import pytest
from _lab import require_browser

require_browser()
from playwright.sync_api import expect  # noqa: E402

pytestmark = pytest.mark.browser

CELLS = [
    "import llmasos_widgets as lw\nmodel = lw.load_model('smollm2-135m')",
    "res = lw.attribute(model, 'The capital of France is', target=' Paris', progress=False)\n"
    "view = lw.SaliencyView(res)\nview",
]


def scores(page):
    return page.evaluate(
        "() => [...document.querySelectorAll('[data-testid=overlay] [data-testid=token]')]"
        ".map(s => s.dataset.score === undefined ? null : Number(s.dataset.score))"
    )


def test_pick_another_target_recomputes_the_overlay_and_the_kernel_state(notebook):
    nb = notebook(CELLS, timeout=300)
    page = nb.page
    overlay = page.locator('[data-testid="overlay"]')
    expect(overlay).to_have_attribute("data-state", "ready", timeout=120_000)
    expect(overlay).to_have_attribute("data-target", " Paris")
    before = scores(page)
    # The default integrated gradients converged, and the view says with how many points.
    convergence = page.locator('[data-testid="convergence"]')
    steps, gap = nb.kernel_exec("print(res.ig_steps[0], f'{float(res.completeness_gap[0]):.2%}')").split()
    expect(convergence).to_have_text(f"integrated gradients: {steps} path points, completeness gap {gap} (adaptive)")
    assert float(gap.rstrip("%")) < 5 and page.locator('[data-testid="notice"]').text_content() == ""
    kernel = [float(v) for v in nb.kernel_exec("print(*view.result.scores[0].tolist())").split()]
    assert before == pytest.approx(kernel, abs=1e-6)  # the overlay shows the kernel's numbers
    options = page.locator('[data-testid="target-select"] option')
    values = [options.nth(i).get_attribute("value") for i in range(options.count())]
    other = next(v for v in values if v != " Paris")
    page.locator('[data-testid="target-select"]').select_option(value=other)
    expect(overlay).to_have_attribute("data-target", other, timeout=120_000)
    expect(overlay).to_have_attribute("data-state", "ready")
    after = scores(page)
    assert after != before
    both = f"{other!r} {other!r}"
    assert nb.kernel_value("print(repr(view.result.target_tokens[0]), repr(view.target))", both) == both
    kernel = [float(v) for v in nb.kernel_exec("print(*view.result.scores[0].tolist())").split()]
    assert after == pytest.approx(kernel, abs=1e-6)
    # A click on a token syncs selected_token and shows its score.
    page.locator('[data-testid="overlay"] [data-testid="token"]').nth(3).click()
    expect(page.locator('[data-testid="detail"]')).to_contain_text("#3")
    assert nb.kernel_value("print(view.selected_token)", "3") == "3"
    assert nb.errors == []


def test_generation_matrix_click_an_output_token_shows_its_row(notebook):
    nb = notebook(
        [
            CELLS[0],
            "gen = model.generate_trace('Q: What is the capital of France?\\nA:', max_new_tokens=4)\n"
            "view = lw.SaliencyView(lw.attribute(model, gen, method='saliency', progress=False))\nview",
        ],
        timeout=300,
    )
    page = nb.page
    overlay = page.locator('[data-testid="overlay"]')
    expect(overlay).to_have_attribute("data-state", "ready", timeout=120_000)
    expect(page.locator('[data-testid="matrix-canvas"]')).to_be_visible()
    page.locator('[data-testid="row"]').nth(2).click()
    expect(overlay).to_have_attribute("data-row", "2", timeout=30_000)
    n_prompt = int(nb.kernel_exec("print(gen.generated.index(True))"))
    assert nb.kernel_value("print(view.selected_row, view.selected_token)", f"2 {n_prompt + 2}") == f"2 {n_prompt + 2}"
    shown = [s for s in scores(page) if s is not None]
    assert len(shown) == n_prompt + 2  # the prompt and the two tokens generated before it
    assert nb.errors == []


def test_a_view_on_a_trace_computes_its_first_result_then_its_progress_line_goes(notebook):
    nb = notebook(
        [
            "import llmasos_widgets as lw\nmodel = lw.load_model('tiny-llama')",
            "view = lw.SaliencyView(model.trace('Le café 大型 🤖 naïve'))\nview",
        ]
    )
    page = nb.page
    expect(page.locator('[data-testid="overlay"]')).to_have_attribute("data-state", "ready", timeout=120_000)
    # The first result bumps `version`, which asks for the scores again while the first request is out:
    # the progress line must still go once they are drawn.
    expect(page.locator('[data-testid="progress"]')).to_be_hidden(timeout=30_000)
    assert nb.kernel_value("print(view.version)", "1") == "1"
    assert nb.errors == []
