"""PatchingView and SteeringView in real JupyterLab: clicks run the kernel, streams stop, links move other views."""

from __future__ import annotations

import json

import pytest
from _lab import require_browser

require_browser()
from playwright.sync_api import expect  # noqa: E402

pytestmark = pytest.mark.browser

SETUP = "import llmasos_widgets as lw, torch, time\nmodel = lw.load_model('tiny-llama')"
MAKE = "pv = lw.PatchingView(model, {clean!r}, {corrupt!r}, metric=lw.logit_diff(' cat', ' the'), over={over!r})\npv"


def click_cell(page, root: str, row: int, col: int) -> None:
    """Click the centre of drawn cell (row, col) of a PatchingView's canvas (18 px of axis, 20 px rows)."""
    canvas = page.locator(f'{root} [data-testid="patch-grid"]')
    cell_w = float(canvas.get_attribute("data-cell-w"))
    canvas.click(position={"x": col * cell_w + cell_w / 2, "y": 18 + row * 20 + 10})


def test_a_click_on_a_cell_shows_that_runs_predictions_and_the_method_toggles(notebook):
    clean, corrupt = "The cat is in the 大型 🤖 naïve", "The dog is in the 大型 🤖 naïve"
    nb = notebook([SETUP, MAKE.format(clean=clean, corrupt=corrupt, over="resid")])
    page = nb.page
    status = page.locator('.lw-patching [data-testid="progress"]')
    expect(status).to_have_attribute("data-state", "ready", timeout=120_000)
    expect(page.locator('.lw-patching [data-testid="metrics"]')).to_contain_text("clean")
    expect(page.locator('.lw-patching [data-testid="diff"]')).to_have_text("#1 ·cat → ·dog")
    n = int(nb.kernel_exec("print(len(pv.tokens))"))
    assert page.locator(".lw-patching .lw-row-label").count() == n
    filled = page.locator('.lw-patching [data-testid="patch-grid"]').get_attribute("data-filled")
    assert int(filled) == 2 * n  # every cell of 2 layers x n positions

    click_cell(page, ".lw-patching", row=1, col=1)  # position 1 (the differing token), layer 1
    panel = page.locator('.lw-patching [data-testid="cell-predictions"]')
    expect(panel).to_have_attribute("data-state", "ready", timeout=30_000)
    assert nb.kernel_value("print(pv.selected_layer, pv.selected_token)", "1 1") == "1 1"
    expected = json.loads(
        nb.kernel_exec(
            "import json\nv, p = pv.experiment.cell_predictions(1, 1, 5)\n"
            "print(json.dumps([v, [[q.id, round(q.prob, 5)] for q in p]]))"
        )
    )
    rows = page.locator('.lw-patching [data-testid="cell-row"]')
    expect(rows).to_have_count(5)
    shown = [[int(r.get_attribute("data-token-id")), round(float(r.get_attribute("data-prob")), 5)] for r in rows.all()]
    assert shown == expected[1]
    metric = float(page.locator('.lw-patching [data-testid="cell-metric"]').get_attribute("data-metric"))
    assert metric == pytest.approx(expected[0], abs=1e-5)

    # The attribution grid: toggled in the page, the kernel computes it; the correlation is shown.
    page.locator('.lw-patching [data-testid="method-attribution"]').click()
    expect(status).to_have_attribute("data-method", "attribution", timeout=30_000)
    expect(status).to_have_attribute("data-state", "ready", timeout=30_000)
    assert nb.kernel_value("print(pv.method)", "attribution") == "attribution"
    expect(page.locator('.lw-patching [data-testid="correlation"]')).to_contain_text("Pearson r =")
    assert nb.errors == [], f"page errors: {nb.errors}"


def test_a_streamed_sweep_is_interrupted_by_a_new_request(notebook):
    slow = (
        "sweep = pv.experiment.sweep\nyielded, ended = [], []\n"
        "def slow(*, should_stop=None):\n"
        "    try:\n"
        "        for item in sweep(should_stop=should_stop):\n"
        "            yielded.append(len(item[0]))\n"
        "            yield item\n"
        "            time.sleep(1.5)\n"
        "    finally:\n"
        "        ended.append(len(yielded))\n"
        "pv.experiment.sweep = slow"
    )
    clean = "The cat is in the cat is in the cat is in the"
    corrupt = "The dog is in the cat is in the cat is in the"
    nb = notebook([SETUP, MAKE.format(clean=clean, corrupt=corrupt, over="resid").replace("\npv", ""), slow, "pv"])
    page = nb.page
    status = page.locator('.lw-patching [data-testid="progress"]')
    # Rows arrive one by one: the grid fills while the sweep runs.
    page.wait_for_function(
        "() => Number(document.querySelector('.lw-patching [data-testid=\"progress\"]')?.dataset.done || 0) >= 4",
        timeout=60_000,
    )
    assert status.get_attribute("data-state") == "loading"
    page.locator('.lw-patching [data-testid="method-attribution"]').click()  # a new sweep request
    expect(status).to_have_attribute("data-method", "attribution", timeout=30_000)
    expect(status).to_have_attribute("data-state", "ready", timeout=30_000)
    assert nb.kernel_value("print(len(ended))", "1") == "1"  # the exact sweep has ended ...
    state = json.loads(nb.kernel_exec("import json; print(json.dumps([len(yielded), sorted(pv.results)]))"))
    total_groups = int(nb.kernel_exec("print(len(pv.tokens))"))  # one group per position
    assert state[0] < total_groups and state[1] == ["attribution"]  # ... stopped early, and kept nothing
    # Back to exact: a fresh sweep runs to the end.
    nb.kernel_exec("pv.experiment.sweep = sweep")
    page.locator('.lw-patching [data-testid="method-exact"]').click()
    expect(status).to_have_attribute("data-method", "exact", timeout=30_000)
    expect(status).to_have_attribute("data-state", "ready", timeout=60_000)
    assert nb.kernel_value("print(sorted(pv.results))", "['attribution', 'exact']") == "['attribution', 'exact']"
    assert nb.errors == [], f"page errors: {nb.errors}"


def test_a_head_click_in_patching_selects_it_in_a_linked_attention_view(notebook):
    nb = notebook(
        [
            SETUP,
            MAKE.format(clean="The cat is in the", corrupt="The dog is in the", over="heads").replace("\npv", ""),
            "av = lw.AttentionView(model.trace('The cat is in the'))\n"
            "links = lw.link(pv, av, names=('selected_layer', 'selected_head'))\npv",
            "av",
        ]
    )
    page = nb.page
    expect(page.locator('.lw-patching [data-testid="progress"]')).to_have_attribute(
        "data-state", "ready", timeout=120_000
    )
    click_cell(page, ".lw-patching", row=1, col=2)  # layer 1, head 2
    expect(page.locator('.lw-attention [data-testid="head-select"]')).to_have_value("2", timeout=30_000)
    expect(page.locator('.lw-attention [data-testid="layer-select"]')).to_have_value("1", timeout=30_000)
    expect(page.locator('.lw-patching [data-testid="cell-predictions"]')).to_have_attribute("data-state", "ready")
    state = "print(pv.selected_layer, pv.selected_head, av.selected_layer, av.selected_head)"
    assert nb.kernel_value(state, "1 2 1 2") == "1 2 1 2"
    assert nb.errors == [], f"page errors: {nb.errors}"


def test_the_slider_produces_a_steered_generation_with_changed_tokens_marked(notebook):
    nb = notebook(
        [
            SETUP,
            "d = lw.Direction(torch.randn(64, generator=torch.Generator().manual_seed(0)), layer=1, name='random')\n"
            "sv = lw.SteeringView(model, 'The cat 大型 🤖 is', direction=d, alphas=(-60, 60), max_new_tokens=6)\nsv",
        ]
    )
    page = nb.page
    effect = page.locator('.lw-steering [data-testid="effect"]')
    expect(effect).to_have_attribute("data-state", "no-effect", timeout=120_000)  # alpha = 0 first
    expect(page.locator('.lw-steering [data-testid="no-effect"]')).to_contain_text("No effect")
    expect(page.locator('.lw-steering [data-testid="baseline"] .lw-generation-prompt')).to_have_text(
        "The·cat·大型·🤖·is"
    )
    slider = page.locator('.lw-steering [data-testid="alpha-slider"]')
    slider.fill("20")  # the top of the range
    expect(effect).to_have_attribute("data-state", "ready", timeout=60_000)
    expect(effect).to_have_attribute("data-step", "20")
    changed = page.locator('.lw-steering [data-testid="steered"] [data-changed="true"]')
    assert changed.count() >= 1
    assert nb.kernel_value("print(sv.alpha)", "60.0") == "60.0"  # the page set sv.alpha
    expected = json.loads(
        nb.kernel_exec(
            "import json; r = lw.steer(model, 'The cat 大型 🤖 is', d, 60.0, max_new_tokens=6)\n"
            "print(json.dumps(r.changed))"
        )
    )
    assert changed.count() == sum(expected)

    # A coefficient that breaks the logits: the kernel's error in place, and the view still works.
    nb.kernel_exec("sv.set_trait('alpha_values', [float(a) for a in [-1e38, 0.0, 1e38]]); sv.alpha = 0.0")
    page.wait_for_function("() => document.querySelector('.lw-steering [data-testid=\"alpha-slider\"]').max === '2'")
    slider.fill("2")
    expect(page.locator('.lw-steering [data-testid="steer-error"]')).to_contain_text("non-finite", timeout=60_000)
    slider.fill("1")
    expect(effect).to_have_attribute("data-state", "no-effect", timeout=60_000)
    assert nb.errors == [], f"page errors: {nb.errors}"


def test_smollm2_ioi_rows_are_drawn_as_they_stream(notebook):
    # The IOI resid sweep (30 x 14) streams: the free rows are drawn first, then the first computed row, then
    # the rest. How soon after the cell (the target: the first row within 1 s) is printed, not
    # asserted: a wall-clock time on a shared machine is a benchmark's business (DESIGN quotes these runs).
    clean = "When Mary and John went to the store, John gave a drink to"
    corrupt = "When Mary and John went to the store, Mary gave a drink to"
    nb = notebook(
        [
            "import llmasos_widgets as lw, time\nmodel = lw.load_model('smollm2-135m')",
            f"pv = lw.PatchingView(model, {clean!r}, {corrupt!r}, metric=lw.logit_diff(' Mary', ' John'))\n"
            "t_done = time.time()\npv",
        ],
        timeout=300,
    )
    page = nb.page
    canvas = page.locator('.lw-patching [data-testid="patch-grid"]')
    expect(canvas).to_have_attribute("data-first-computed-at", __import__("re").compile(r"\d+"), timeout=120_000)
    status = page.locator('.lw-patching [data-testid="progress"]')
    expect(status).to_have_attribute("data-state", "ready", timeout=120_000)
    t_done = float(nb.kernel_exec("print(t_done)")) * 1000
    first = float(canvas.get_attribute("data-first-chunk-at")) - t_done
    computed = float(canvas.get_attribute("data-first-computed-at")) - t_done
    seconds = float(nb.kernel_exec("print(pv.results['exact'].seconds)"))
    print(
        f"\n[smollm2 IOI] first rows (free) drawn {first:.0f} ms, first computed row {computed:.0f} ms "
        f"after the cell; sweep {seconds:.1f} s"
    )
    assert first <= computed  # the free rows were drawn before the first computed one (the page's own clock)
    assert int(canvas.get_attribute("data-filled")) == 30 * 14
    assert nb.errors == [], f"page errors: {nb.errors}"


def test_exported_patching_and_steering_views_answer_offline(browser, tmp_path):
    import torch

    import llmasos_widgets as lw
    from llmasos_widgets.views.export import save_html

    model = lw.load_model("tiny-llama")
    pv = lw.PatchingView(model, "The cat is in the", "The dog is in the", metric=lw.logit_diff(" cat", " the"))
    d = lw.Direction(torch.randn(64, generator=torch.Generator().manual_seed(0)), layer=1)
    sv = lw.SteeringView(model, "The cat is", direction=d, alphas=(-60, 60), max_new_tokens=4)
    path = save_html([pv, sv], tmp_path / "causal.html")
    context = browser.new_context(offline=True)
    context.route("**/*", lambda r: r.continue_() if r.request.url.startswith(("file:", "blob:")) else r.abort())
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(path.as_uri())
    try:
        status = page.locator('.lw-patching [data-testid="progress"]')
        expect(status).to_have_attribute("data-state", "ready", timeout=30_000)
        click_cell(page, ".lw-patching", row=1, col=1)
        expect(page.locator('.lw-patching [data-testid="cell-predictions"]')).to_have_attribute("data-state", "ready")
        page.locator('.lw-patching [data-testid="method-attribution"]').click()
        expect(status).to_have_attribute("data-method", "attribution")
        expect(status).to_have_attribute("data-state", "ready")
        page.locator('.lw-patching [data-testid="rerun"]').click()  # needs the kernel: said in place
        expect(page.locator('.lw-patching [data-testid="sweep-error"]')).to_contain_text("not recorded in this file")
        effect = page.locator('.lw-steering [data-testid="effect"]')
        expect(effect).to_have_attribute("data-state", "no-effect", timeout=30_000)
        page.locator('.lw-steering [data-testid="alpha-slider"]').fill("20")
        expect(effect).to_have_attribute("data-state", "ready")
        assert errors == []
    finally:
        context.close()


def test_a_kernel_interrupt_stops_a_streamed_sweep_and_a_rerun_completes(notebook):
    slow = (
        "def slow(logits):\n"
        "    time.sleep(0.5)  # a slow metric: the sweep takes a while\n"
        "    return logits[:, 0] - logits[:, 1]\n"
        "groups = []\n"
    )
    make = (
        "pv = lw.PatchingView(model, 'The cat is in the cat is in the cat', 'The dog is in the cat is in the cat', "
        "metric=lw.Metric.of(slow, name='slow'))\n"
        "sweep = pv.experiment.sweep\n"
        "def counted(*, should_stop=None):\n"
        "    for item in sweep(should_stop=should_stop):\n"
        "        groups.append(len(item[0]))\n"
        "        yield item\n"
        "pv.experiment.sweep = counted\npv"
    )
    nb = notebook([SETUP, slow, make])
    page = nb.page
    status = page.locator('.lw-patching [data-testid="progress"]')
    page.wait_for_function(
        "() => Number(document.querySelector('.lw-patching [data-testid=\"progress\"]')?.dataset.done || 0) >= 4",
        timeout=60_000,
    )
    nb.lab.api("POST", f"/api/kernels/{nb.kernel_id()}/interrupt")  # what the toolbar's ■ button does
    expect(status).to_have_attribute("data-state", "error", timeout=30_000)
    expect(status).to_contain_text("stopped by a kernel interrupt at ")
    expect(status).to_contain_text("run it again")
    total = int(nb.kernel_exec("print(pv.experiment.n_cells)"))
    page.wait_for_timeout(1500)  # had the sweep gone on, more groups would come meanwhile
    state = json.loads(nb.kernel_exec("import json; print(json.dumps([sum(groups), sorted(pv.results)]))"))
    assert state[0] < total and state[1] == []  # it stopped, and an interrupted sweep keeps nothing
    assert json.loads(nb.kernel_exec("import json; print(json.dumps(sum(groups)))")) == state[0]
    # The kernel and the view are still usable: re-run computes the whole grid.
    nb.kernel_exec("pv.experiment.sweep = sweep")
    page.locator('.lw-patching [data-testid="rerun"]').click()
    expect(status).to_have_attribute("data-state", "ready", timeout=120_000)
    assert nb.kernel_value("print(sorted(pv.results))", "['attribution', 'exact']") == "['attribution', 'exact']"
    filled = page.locator('.lw-patching [data-testid="patch-grid"]').get_attribute("data-filled")
    assert int(filled) == total
    assert nb.errors == [], f"page errors: {nb.errors}"


def test_views_of_one_model_at_once_give_the_numbers_each_gives_alone(notebook):
    # smollm2 and the README's IOI prompts: two PatchingViews shown one after the other sweep at once on
    # their worker threads, and a trace taken in a cell while a SteeringView generates is not steered.
    setup = (
        "import llmasos_widgets as lw, torch\nmodel = lw.load_model('smollm2-135m')\n"
        "clean = 'When Mary and John went to the store, John gave a drink to'\n"
        "corrupt = 'When Mary and John went to the store, Mary gave a drink to'\n"
        "metric = lw.logit_diff(' Mary', ' John')\n"
        "reference = model.trace(clean)"
    )
    nb = notebook(
        [
            setup,
            "pv1 = lw.PatchingView(model, clean, corrupt, metric=metric)\npv1",
            "pv2 = lw.PatchingView(model, clean, corrupt, metric=metric, over='mlp')\npv2",
            "sv = lw.SteeringView(model, 'I think that the weather today is', direction=torch.ones(576), layer=10,\n"
            "                     alphas=(-40, 40), max_new_tokens=60)\nsv",
        ],
        timeout=300,
    )
    page = nb.page
    for status in page.locator('.lw-patching [data-testid="progress"]').all():
        expect(status).to_have_attribute("data-state", "ready", timeout=180_000)
    effect = page.locator('.lw-steering [data-testid="effect"]')
    expect(effect).to_have_attribute("data-state", "no-effect", timeout=120_000)
    check = (
        "import json\n"
        "alone = {o: lw.patch(model, clean, corrupt, metric=metric, over=o, progress=False)\n"
        "         for o in ('resid', 'mlp')}\n"
        "print(json.dumps([float((v.results['exact'].scores - alone[o].scores).abs().nan_to_num(0).max())\n"
        "                  for v, o in ((pv1, 'resid'), (pv2, 'mlp'))]))"
    )
    assert max(json.loads(nb.kernel_exec(check))) < 1e-4
    # Steer in the page (a worker thread generates 60 tokens) while a cell traces: every trace equals the
    # reference. The request reaches the kernel before the cell (one channel, in order), so they overlap.
    page.locator('.lw-steering [data-testid="alpha-slider"]').fill("20")
    expect(effect).to_have_attribute("data-state", "loading", timeout=10_000)
    page.wait_for_timeout(500)
    # Trace until the steered generation has finished, and once more (at most 120 s on a loaded machine).
    traced = (
        "import json, time\nbefore, worst, n, end = sv.result.alpha, 0.0, 0, time.time() + 120\n"
        "done_at = None\n"
        "while time.time() < end and (done_at is None or n <= done_at):\n"
        "    t = model.trace(clean)\n"
        "    worst = max(worst, float((t.residual - reference.residual).abs().max()))\n"
        "    n += 1\n"
        "    if done_at is None and sv.result.alpha != before:\n"
        "        done_at = n\n"
        "print(json.dumps([worst, n, before, sv.result.alpha]))"
    )
    worst, n, before, after = json.loads(nb.kernel_exec(traced))
    assert (before, after) == (0.0, 40.0)  # the steered generation ran while the cell traced
    assert worst < 1e-4 and n > 1, (worst, n)
    expect(effect).to_have_attribute("data-state", "ready", timeout=120_000)
    assert nb.errors == [], f"page errors: {nb.errors}"
