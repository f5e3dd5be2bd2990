"""save_html: one offline file with each view's bundle, traits and recorded answers."""

import html
import json
import re
import warnings

import numpy as np
import pytest

import llmasos_widgets as lw
from llmasos_widgets.analyses.concepts import projection
from llmasos_widgets.views import export, wire

TEXT = "The capital of France is </script><img src=x onerror=alert(1)> 大"


@pytest.fixture(scope="module")
def trace():
    return lw.load_model("tiny-llama").trace(TEXT)


def exported(path):
    """The data of each view in an exported file."""
    page = path.read_text(encoding="utf-8")
    parts = re.findall(
        r'<script type="application/octet-stream" class="lw-export" data-host="[^"]+">(.*?)</script>', page, re.S
    )
    return page, [export.unpack(p) for p in parts]


def test_a_tokens_view_records_the_predictions_at_every_token(trace, tmp_path):
    view = lw.TokensView(trace, k=3)
    path = view.save_html(tmp_path / "tokens.html")
    page, (data,) = exported(path)
    keys = set(data["recorded"])
    assert keys == {export.request_key({"what": "predictions", "position": p, "k": 3}) for p in range(len(trace))}
    # What the file answers is what the kernel answers.
    answer = data["recorded"][export.request_key({"what": "predictions", "position": 4, "k": 3})]["messages"][-1]
    assert answer["content"]["tokens"] == [p.token for p in trace.top_predictions(4, k=3)]
    assert data["state"]["tokens"] == trace.tokens and data["state"]["k"] == 3
    assert "the top-3 next tokens at every token are recorded" in page


def test_model_text_cannot_leave_its_data(trace, tmp_path):
    page, (data,) = exported(lw.TokensView(trace).save_html(tmp_path / "t.html"))
    assert "<img" not in page and page.count("</script>") == 2  # the data and the runtime, nothing else
    assert "</script><img src=x onerror=alert(1)>" in "".join(data["state"]["tokens"])  # there, as data
    assert "default-src 'none'" in page  # no network, whatever a view would try


def test_several_views_share_one_file_and_each_says_what_it_recorded(trace, tmp_path):
    views = [lw.AttentionView(trace), lw.LensView(trace), lw.NeuronView(trace, layer=1)]
    page, data = exported(export.save_html(views, tmp_path / "all.html", title="France & co"))
    assert len(data) == 3 and "<title>France &amp; co</title>" in page
    attention = data[0]["recorded"]
    assert export.request_key({"what": "overview", "size": views[0].thumb_size}) in attention
    last = {"what": "token", "position": len(trace) - 1, "direction": "to", "bins": views[0].token_bins}
    assert export.request_key(last) in attention
    assert "where every token looks and who looks at every token are recorded" in html.unescape(page)


def test_attention_rows_are_bounded_and_the_note_says_which(trace, monkeypatch):
    view = lw.AttentionView(trace)
    T = len(trace)
    reply = export.Recording(view, "token")
    reply.run(view._handler("token"), {"position": 0, "direction": "from", "bins": view.token_bins})
    one = view._token_bytes()
    # The stated cost covers what an answer carries (pooled bins, maxima) and its message.
    assert sum(len(b) for m in reply.messages for b in m["buffers"]) <= one

    def cost(positions, direction):
        return one * len(positions)

    every_from = cost(range(T), "from")
    for budget, n_from, n_to, said in [
        (1, 0, 0, "no token's rows"),
        (cost(range(3), "from"), 3, 0, "where tokens 0..2 look (not who looks at them)"),
        (every_from + cost(range(2), "to"), T, 2, "where every token looks and who looks at tokens 0..1"),
        (every_from + cost(range(T), "to"), T, T, "where every token looks and who looks at every token"),
    ]:
        monkeypatch.setattr(view, "export_token_bytes", budget)
        requests, note = view._export_requests()
        tokens = [r for r in requests if r["what"] == "token"]
        assert [r["position"] for r in tokens if r["direction"] == "from"] == list(range(n_from))
        assert [r["position"] for r in tokens if r["direction"] == "to"] == list(range(n_to))
        assert said in note


def test_a_concept_view_records_bokehjs_every_chart_and_every_projection(trace, tmp_path, capsys):
    shout = lw.Concept("shout", [f"STOP {w.upper()} NOW!!!" for w in "abcdefghijkl"])
    calm = lw.Concept("calm", [f"please, the {w} is fine." for w in "abcdefghijkl"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # CAVs of a tiny random model are unreliable
        result = lw.tcav(trace.model, ["The capital"], 5, [shout, calm], [0, 1], n_random=2, progress=False)
    view = lw.ConceptView(result)
    requests, note = view._export_requests()
    assert {r["what"] for r in requests} == {"bokehjs", "chart"} and "no text was shown to project" in note
    view.selected_layer = -1  # no layer selected: that chart is drawn first, so it is recorded too
    assert {r["layer"] for r in view._export_requests()[0] if r["what"] == "chart"} == {-1, 0, 1}
    view.selected_layer = 1
    path = view.show_projection(trace).save_html(tmp_path / "concepts.html")
    page, (data,) = exported(path)
    charts = [{"what": "chart", "layer": la, "width": w} for la in (0, 1) for w in view.chart_widths]
    projections = [{"what": "projection", "concept": c, "layer": la} for c in (0, 1) for la in (0, 1)]
    assert set(data["recorded"]) == {export.request_key(r) for r in [{"what": "bokehjs"}, *charts, *projections]}
    assert "projection onto every concept at every layer" in html.unescape(page)
    # What the file answers is what the kernel answers.
    (message,) = data["recorded"][export.request_key(projections[3])]["messages"]
    (desc,) = message["content"]["arrays"]
    cosine = wire.decode(desc, message["buffers"][desc["buffer"]])
    np.testing.assert_allclose(cosine, projection(result, trace, 1, 1).numpy(), atol=1e-6)
    chart = data["recorded"][export.request_key(charts[-1])]["messages"][0]["content"]
    assert chart["layer"] == 1 and "lw-tcav-chart" in json.dumps(chart["item"])
    # BokehJS (about 1.3 MB) is most of the file; each chart adds about 9 kB.
    size = path.stat().st_size
    print(f"ConceptView export of 2 concepts x 2 layers: {size / 1024:.0f} kB")
    assert size < 2 * 2**20


def test_bad_paths_are_refused_and_nothing_is_half_written(trace, tmp_path, monkeypatch):
    view = lw.TokensView(trace)
    with pytest.raises(ValueError, match="is a directory"):
        view.save_html(tmp_path)
    with pytest.raises(ValueError, match="does not exist"):
        view.save_html(tmp_path / "missing" / "t.html")
    with pytest.raises(ValueError, match="cannot write /proc/t.html: .*choose a folder you can write to"):
        view.save_html("/proc/t.html")
    monkeypatch.setattr(export, "STATIC", tmp_path / "nowhere")
    with pytest.raises(ValueError, match="export runtime static/standalone.js is missing"):
        view.save_html(tmp_path / "t.html")
    monkeypatch.undo()
    monkeypatch.setattr(type(view), "front_end", "no-such-view")
    with pytest.raises(ValueError, match=r"bundle static/no-such-view.js is missing: run `npm run build`"):
        view.save_html(tmp_path / "t.html")
    monkeypatch.undo()
    monkeypatch.setattr(export, "MAX_BYTES", 1000)
    with pytest.raises(ValueError, match="over 0 MB: record less"):
        view.save_html(tmp_path / "big.html")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("name", ["view.txt", "view", "view.html.gz", "view.json"])
def test_a_file_name_that_is_not_html_is_refused_by_every_entry_point(trace, tmp_path, name):
    target = tmp_path / name
    message = rf"{re.escape(str(target))} does not end in \.html or \.htm: .*view\.html"
    explorer = lw.Explorer(trace, panels=["tokens"])
    for save in (lw.TokensView(trace).save_html, explorer.save_html, lambda p: export.save_html([explorer], p)):
        with pytest.raises(ValueError, match=message):
            save(target)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("name", ["view.html", "VIEW.HTM", "a.b.htm"])
def test_html_and_htm_names_are_written(trace, tmp_path, name):
    assert lw.TokensView(trace).save_html(tmp_path / name).read_text(encoding="utf-8").startswith("<!doctype html>")
