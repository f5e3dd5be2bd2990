// EvaluationView: which attribution to trust. Each method's deletion or insertion curve on one chart over
// the random floor (dashed), the table of every metric with its bootstrap interval, the paired test of each
// method against the floor, and a prompt's overlays from every method side by side, following the token
// selection. The kernel sends the whole evaluation in one answer; everything else happens in the page, so
// an exported file works as the live view does.

import { fillOptions, tagged } from "../shared/dom";
import { normalizeRow, scoreColor } from "../shared/scores";
import { appendQuoted, el, renderTokenStrip, setSelected, setText, tokenKeyTarget } from "../shared/tokens";
import { defineView, errorBox, type View } from "../shared/view";
import { floats } from "../shared/wire";
import { drawnValues, evenGrid, markerIndex, niceMax, polylinePoints, rankingOrder, toPixel, trapezoid, type Box } from "./chart";
import { bestIndex, fmt, intervalText, methodColour, pValueText, verdict } from "./format";
import "./style.css";

/** What the kernel sent (views/evaluation.py, `payload`). */
interface Data {
  methods: string[];
  metrics: string[];
  higherBetter: boolean[];
  curves: string[];
  references: Record<string, string>;
  signed: boolean[];
  prompts: { text: string; target: string; tokens: string[] }[];
  curveLengths: Record<string, number[]>;
  level: number;
  nBoot: number;
  pTarget: Float32Array;
  scores: Float32Array; // [token of every prompt, method]
  values: Float32Array; // [prompt, metric, method]
  summary: Float32Array; // [metric, method, 3]
  paired: Float32Array; // [metric, method, 4]
  curve: Record<string, Float32Array>; // prompts' [method, point] blocks one after the other
  grid: Record<string, Float32Array>;
  mean: Record<string, Float32Array>; // [method, grid point]
  tokenStart: number[]; // each prompt's first row in `scores`
}

const SVG = "http://www.w3.org/2000/svg";
const WIDTH = 460;
const HEIGHT = 240;
const BOX: Box = { left: 52, top: 12, width: WIDTH - 52 - 14, height: HEIGHT - 12 - 34 };

function svg<K extends keyof SVGElementTagNameMap>(tag: K, attrs: Record<string, string | number> = {}): SVGElementTagNameMap[K] {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
  return node;
}

/** `tagged` for an SVG element: a data-testid and `data-*` attributes the browser tests read. */
function tagSvg<T extends SVGElement>(node: T, testid: string, data: Record<string, unknown> = {}): T {
  node.dataset.testid = testid;
  for (const [key, value] of Object.entries(data)) node.dataset[key] = String(value);
  return node;
}

function mount(view: View): void {
  const status = tagged(el("div", "lw-status"), "evaluation");
  status.dataset.state = "loading";
  const curveSelect = tagged(el("select"), "curve-select");
  const metricSelect = tagged(el("select"), "metric-select");
  const controls = el("div", "lw-controls");
  const curveLabel = el("label", undefined, "curve");
  curveLabel.append(curveSelect);
  controls.append(curveLabel);
  const caption = tagged(el("div", "lw-muted"), "chart-caption");
  const chart = tagSvg(svg("svg", { width: WIDTH, height: HEIGHT, viewBox: `0 0 ${WIDTH} ${HEIGHT}` }), "chart");
  const legend = tagged(el("div", "lw-legend"), "legend");
  const table = tagged(el("table", "lw-table"), "table");
  const tableNote = el("div", "lw-muted");
  const pairedHead = el("div", "lw-subhead");
  const metricLabel = el("label", undefined, "paired test on");
  metricLabel.append(metricSelect);
  pairedHead.append(metricLabel);
  const paired = tagged(el("table", "lw-table"), "paired");
  const prompts = tagged(el("div", "lw-prompts"), "prompt-list");
  const overlays = tagged(el("div", "lw-overlays"), "overlays");
  const detail = tagged(el("div", "lw-detail"), "detail");
  const left = el("div", "lw-left");
  left.append(controls, caption, chart, legend, el("div", "lw-subhead", "prompts (click one)"), prompts);
  const right = el("div", "lw-right");
  right.append(el("div", "lw-subhead", "every metric"), table, tableNote, pairedHead, paired);
  const top = el("div", "lw-top");
  top.append(left, right);
  status.append(top, overlays, detail);
  view.root.append(status);

  let data: Data | undefined;
  let localToken = -1; // the token picked in a prompt that is not the view's text (an Explorer's other prompts)

  const shownPrompt = (): number => view.int("selected_prompt", -1);
  const linked = (): boolean => shownPrompt() >= 0 && shownPrompt() === view.int("text_prompt", -1);
  const token = (): number => (linked() ? view.selected() : localToken);
  const curveName = (): string => String(view.get("curve") ?? "");
  const floor = (): string => String(view.get("floor") ?? "");

  function header(): void {
    const n = view.list("prompt_texts").length;
    const methods = view.list<string>("methods");
    view.setHeader(`evaluation: ${n} prompt${n === 1 ? "" : "s"}, ${methods.length} methods, removed tokens become ${view.get("baseline_token")}`);
    fillOptions(curveSelect, view.list<[string, string, boolean]>("curve_choices").map(([c, , up]) => [c, `${c} (${up ? "higher" : "lower"} is better)`] as const));
    curveSelect.value = curveName();
    fillOptions(metricSelect, view.list<[string, string, boolean]>("metric_choices").map(([m, , up]) => [m, `${m} ${up ? "↑" : "↓"}`] as const));
    metricSelect.value = String(view.get("metric") ?? "");
  }

  /** The prompt's [method, point] curve of `curve` for method j. */
  function promptCurve(d: Data, curve: string, p: number, j: number): Float32Array {
    const lengths = d.curveLengths[curve]!;
    let start = 0;
    for (let q = 0; q < p; q++) start += lengths[q]! * d.methods.length;
    const n = lengths[p]!;
    return d.curve[curve]!.subarray(start + j * n, start + (j + 1) * n);
  }

  function promptScores(d: Data, p: number, j: number): number[] {
    const n = d.prompts[p]!.tokens.length;
    const m = d.methods.length;
    return Array.from({ length: n }, (_, i) => d.scores[(d.tokenStart[p]! + i) * m + j]!);
  }

  function drawChart(): void {
    const d = data;
    chart.replaceChildren();
    if (!d) return;
    const curve = curveName();
    if (!d.curves.includes(curve)) return;
    const p = shownPrompt();
    const m = d.methods.length;
    const lines: { j: number; xs: number[]; ys: number[] }[] = [];
    for (let j = 0; j < m; j++) {
      if (p >= 0) {
        const ys = drawnValues(promptCurve(d, curve, p, j));
        lines.push({ j, xs: evenGrid(ys.length), ys });
      } else {
        const g = d.grid[curve]!;
        lines.push({ j, xs: Array.from(g), ys: Array.from(d.mean[curve]!.subarray(j * g.length, (j + 1) * g.length)) });
      }
    }
    const top = niceMax(lines.flatMap((l) => l.ys));
    Object.assign(chart.dataset, { curve, prompt: String(p), top: String(top) });
    // Axes, ticks and labels.
    const axis = svg("g", { class: "lw-axis" });
    axis.append(svg("line", { x1: BOX.left, y1: BOX.top + BOX.height, x2: BOX.left + BOX.width, y2: BOX.top + BOX.height }));
    axis.append(svg("line", { x1: BOX.left, y1: BOX.top, x2: BOX.left, y2: BOX.top + BOX.height }));
    for (const f of [0, 0.25, 0.5, 0.75, 1]) {
      const [x] = toPixel(f, 0, BOX, top);
      const label = svg("text", { x, y: BOX.top + BOX.height + 13, "text-anchor": "middle" });
      label.textContent = String(f);
      axis.append(label);
      const [, y] = toPixel(0, f * top, BOX, top);
      const ylabel = svg("text", { x: BOX.left - 4, y: y + 4, "text-anchor": "end" });
      ylabel.textContent = fmt(f * top);
      axis.append(ylabel, svg("line", { class: "lw-gridline", x1: BOX.left, y1: y, x2: BOX.left + BOX.width, y2: y }));
    }
    const xTitle = svg("text", { x: BOX.left + BOX.width / 2, y: HEIGHT - 4, "text-anchor": "middle" });
    xTitle.textContent = curve.startsWith("insertion") ? "fraction of tokens put back (top ranked first)" : "fraction of tokens taken away (top ranked first)";
    const yTitle = svg("text", { x: 12, y: BOX.top + BOX.height / 2, "text-anchor": "middle", transform: `rotate(-90 12 ${BOX.top + BOX.height / 2})` });
    yTitle.textContent = "p(target)";
    axis.append(xTitle, yTitle);
    chart.append(axis);
    // The floor last, so it is drawn over the methods it bounds.
    const order = [...lines].sort((a, b) => Number(d.methods[a.j] === floor()) - Number(d.methods[b.j] === floor()));
    for (const { j, xs, ys } of order) {
      const method = d.methods[j]!;
      const isFloor = method === floor();
      const line = svg("polyline", {
        points: polylinePoints(xs, ys, BOX, top),
        fill: "none",
        stroke: methodColour(d.methods, j, floor()),
        "stroke-width": isFloor ? 2 : 1.6,
        class: isFloor ? "lw-curve lw-floor" : "lw-curve",
      });
      if (isFloor) line.setAttribute("stroke-dasharray", "5 4");
      tagSvg(line, "curve-line", {
        method,
        floor: isFloor,
        xs: xs.join(","),
        values: ys.join(","),
        area: trapezoid(xs, ys),
      });
      const title = svg("title");
      title.textContent = `${method}${isFloor ? " (the random floor)" : ""}: area ${fmt(trapezoid(xs, ys))}`;
      line.append(title);
      chart.append(line);
    }
    drawMarkers(d, curve, p, top);
    drawLegend(d, curve, p);
  }

  /** Where the selected token leaves (or joins) each method's curve of the shown prompt. */
  function drawMarkers(d: Data, curve: string, p: number, top: number): void {
    const i = token();
    if (p < 0 || i < 0) return;
    d.methods.forEach((method, j) => {
      const rank = rankingOrder(promptScores(d, p, j)).indexOf(i);
      const ys = promptCurve(d, curve, p, j);
      const k = markerIndex(curve, rank, ys.length);
      if (k < 0) return;
      const [x, y] = toPixel(evenGrid(ys.length)[k]!, ys[k]!, BOX, top);
      const dot = svg("circle", { cx: x, cy: y, r: 4, fill: methodColour(d.methods, j, floor()), class: "lw-marker" });
      tagSvg(dot, "marker", { method, rank, point: k, value: ys[k]! });
      chart.append(dot);
    });
  }

  /** Area of the shown curve per method: the prompt's, or the mean over prompts with its interval. */
  function drawLegend(d: Data, curve: string, p: number): void {
    legend.replaceChildren();
    const k = d.metrics.indexOf(curve);
    const m = d.methods.length;
    d.methods.forEach((method, j) => {
      const item = tagged(el("span", "lw-legend-item"), "legend-item", { method });
      const swatch = el("span", method === floor() ? "lw-swatch lw-floor" : "lw-swatch");
      swatch.style.borderColor = methodColour(d.methods, j, floor());
      const area =
        p >= 0
          ? fmt(d.values[(p * d.metrics.length + k) * m + j]!)
          : intervalText(d.summary[(k * m + j) * 3]!, d.summary[(k * m + j) * 3 + 1]!, d.summary[(k * m + j) * 3 + 2]!);
      item.append(swatch, el("span", undefined, `${method}${method === floor() ? " (floor)" : ""}: area ${area}`));
      legend.append(item);
    });
    const choice = view.list<[string, string, boolean]>("curve_choices").find(([c]) => c === curve);
    setText(caption, `${choice ? choice[1] : curve}; ${p >= 0 ? `prompt ${p}` : `mean over ${d.prompts.length} prompts`}${floor() ? "; dashed grey: the random floor" : "; no random floor (evaluate with methods=[..., 'random'])"}`);
  }

  function drawTable(): void {
    const d = data;
    table.replaceChildren();
    if (!d) return;
    const m = d.methods.length;
    const head = el("tr");
    head.append(el("th", undefined, "method"));
    d.metrics.forEach((metric, k) => {
      const th = el("th", undefined, `${metric} ${d.higherBetter[k] ? "↑" : "↓"}`);
      const choice = view.list<[string, string, boolean]>("metric_choices").find(([c]) => c === metric);
      if (choice) th.title = choice[1];
      head.append(th);
    });
    table.append(head);
    const best = d.metrics.map((_, k) => bestIndex(Array.from({ length: m }, (_, j) => d.summary[(k * m + j) * 3]!), d.higherBetter[k]!));
    d.methods.forEach((method, j) => {
      const row = tagged(el("tr", method === floor() ? "lw-floor-row" : undefined), "table-row", { method });
      row.append(el("td", "lw-method", method === floor() ? `${method} (floor)` : method));
      d.metrics.forEach((metric, k) => {
        const [mean, low, high] = [0, 1, 2].map((q) => d.summary[(k * m + j) * 3 + q]!);
        const cell = tagged(el("td", best[k] === j ? "lw-best" : undefined, intervalText(mean!, low!, high!)), "cell", { metric, method, mean: mean!, low: low!, high: high! });
        row.append(cell);
      });
      table.append(row);
    });
    setText(tableNote, `mean over ${d.prompts.length} prompts [${Math.round(d.level * 100)} % bootstrap interval, ${d.nBoot} resamples]; bold: the best mean`);
    drawPaired();
  }

  function drawPaired(): void {
    const d = data;
    paired.replaceChildren();
    if (!d) return;
    const metric = String(view.get("metric") ?? "");
    const k = d.metrics.indexOf(metric);
    if (k < 0) return;
    const ref = d.references[metric]!;
    const m = d.methods.length;
    const up = d.higherBetter[k];
    const head = el("tr");
    head.append(el("th", undefined, "method"), el("th", undefined, `− ${ref} (mean difference [95 %])`), el("th", undefined, "paired sign-flip test"));
    paired.append(head);
    d.methods.forEach((method, j) => {
      const [diff, low, high, p] = [0, 1, 2, 3].map((q) => d.paired[(k * m + j) * 4 + q]!);
      const row = tagged(el("tr"), "paired-row", { method, diff: diff!, low: low!, high: high!, p: p! });
      if (method === ref) {
        row.append(el("td", "lw-method", method), el("td", "lw-muted", ref === floor() ? "the floor" : "the best: the reference"), el("td"));
      } else {
        row.append(
          el("td", "lw-method", method),
          el("td", undefined, `${intervalText(diff!, low!, high!)} ${verdict(diff!, p!, up!)}`),
          el("td", p! < 0.05 ? "lw-best" : undefined, pValueText(p!)),
        );
      }
      paired.append(row);
    });
  }

  function drawPrompts(): void {
    const d = data;
    prompts.replaceChildren();
    if (!d) return;
    const item = (index: number, text: string): HTMLElement => {
      const row = tagged(el("div", "lw-prompt"), "prompt", { index });
      row.classList.toggle("lw-selected", index === shownPrompt());
      row.tabIndex = 0;
      row.append(el("span", "lw-index", index < 0 ? "all" : `#${index}`), el("span", "lw-prompt-text", text));
      return row;
    };
    prompts.append(item(-1, `every prompt: the mean curves`));
    d.prompts.forEach((p, i) => {
      const row = item(i, p.text);
      const target = el("span", "lw-muted", " → ");
      appendQuoted(target, p.target);
      target.append(` p = ${fmt(d.pTarget[i]!)}`);
      row.append(target);
      if (i === view.int("text_prompt", -1) && view.hosted) row.append(el("span", "lw-muted", " (this text)"));
      prompts.append(row);
    });
  }

  function drawOverlays(): void {
    const d = data;
    overlays.replaceChildren();
    const p = shownPrompt();
    overlays.dataset.prompt = String(p);
    if (!d || p < 0 || p >= d.prompts.length) {
      overlays.append(el("div", "lw-hint", "click a prompt to see every method's scores on its tokens"));
      detail.textContent = "";
      return;
    }
    const tokens = d.prompts[p]!.tokens;
    const curve = curveName();
    const k = d.metrics.indexOf(curve);
    d.methods.forEach((method, j) => {
      const box = tagged(el("div", "lw-overlay"), "overlay", { method });
      const raw = promptScores(d, p, j);
      const norm = normalizeRow(raw, "max_abs", 0);
      const area = k >= 0 ? d.values[(p * d.metrics.length + k) * d.methods.length + j]! : NaN;
      const label = el("div", "lw-overlay-label", `${method}${method === floor() ? " (floor)" : ""} · ${curve} area ${fmt(area)}`);
      label.style.borderColor = methodColour(d.methods, j, floor());
      const strip = el("div", "lw-strip");
      strip.tabIndex = 0;
      const spans = renderTokenStrip(strip, tokens, { selected: token(), onSelect: pick });
      spans.forEach((span, i) => {
        span.style.background = scoreColor(norm[i]!, d.signed[j]!) ?? "";
        span.dataset.score = String(raw[i]);
      });
      view.listen(strip, "keydown", (e) => {
        const to = tokenKeyTarget(e.key, token(), tokens.length);
        if (to === null) return;
        e.preventDefault();
        e.stopPropagation();
        pick(to);
      });
      box.append(label, strip);
      overlays.append(box);
    });
    showToken();
  }

  function pick(i: number): void {
    if (linked()) view.set({ selected_token: i });
    else {
      localToken = i;
      showToken();
      drawChart();
    }
  }

  /** Mark the token in every strip and say its score and rank under each method. */
  function showToken(): void {
    const d = data;
    const i = token();
    const p = shownPrompt();
    overlays.querySelectorAll<HTMLElement>(".lw-strip").forEach((strip) => {
      setSelected(Array.from(strip.querySelectorAll<HTMLElement>(".lw-token")), i);
    });
    if (!d || p < 0 || i < 0 || i >= d.prompts[p]!.tokens.length) {
      detail.textContent = "";
      delete detail.dataset.token;
      return;
    }
    detail.dataset.token = String(i);
    detail.replaceChildren(el("span", undefined, `#${i} `));
    appendQuoted(detail, d.prompts[p]!.tokens[i]!);
    const n = d.prompts[p]!.tokens.length;
    const parts = d.methods.map((method, j) => {
      const scores = promptScores(d, p, j);
      return `${method}: ${fmt(scores[i]!)} (rank ${rankingOrder(scores).indexOf(i) + 1}/${n})`;
    });
    detail.append(el("span", undefined, `  ${parts.join(" · ")}`));
  }

  function redraw(): void {
    drawChart();
    drawPrompts();
    drawOverlays();
  }

  async function load(): Promise<void> {
    try {
      const progress = el("span", "lw-loading", "computing the intervals and paired tests…");
      progress.dataset.testid = "progress";
      status.append(progress);
      const onProgress = ({ done, total }: { done: number; total: number }): void => {
        setText(progress, `computing the intervals and paired tests: ${done}/${total} metrics`);
      };
      const response = await view.client.request("evaluation", "evaluation", {}, onProgress).finally(() => progress.remove());
      if (!response) return;
      const { msg, arrays } = response;
      const prompts = (msg["prompts"] as Data["prompts"]) ?? [];
      const tokenStart: number[] = [];
      let at = 0;
      for (const p of prompts) {
        tokenStart.push(at);
        at += p.tokens.length;
      }
      const curves = (msg["curves"] as string[]) ?? [];
      data = {
        methods: (msg["methods"] as string[]) ?? [],
        metrics: (msg["metrics"] as string[]) ?? [],
        higherBetter: (msg["higher_better"] as boolean[]) ?? [],
        curves,
        references: (msg["references"] as Record<string, string>) ?? {},
        signed: (msg["signed"] as boolean[]) ?? [],
        prompts,
        curveLengths: (msg["curve_lengths"] as Record<string, number[]>) ?? {},
        level: Number(msg["level"] ?? 0.95),
        nBoot: Number(msg["n_boot"] ?? 0),
        pTarget: floats(arrays, "p_target"),
        scores: floats(arrays, "scores"),
        values: floats(arrays, "values"),
        summary: floats(arrays, "summary"),
        paired: floats(arrays, "paired"),
        curve: Object.fromEntries(curves.map((c) => [c, floats(arrays, `curve/${c}`)])),
        grid: Object.fromEntries(curves.map((c) => [c, floats(arrays, `grid/${c}`)])),
        mean: Object.fromEntries(curves.map((c) => [c, floats(arrays, `mean/${c}`)])),
        tokenStart,
      };
      drawTable();
      redraw();
      status.dataset.state = "ready";
    } catch (e) {
      status.dataset.state = "error";
      status.append(errorBox(e));
    }
  }

  view.listen(curveSelect, "change", () => view.set({ curve: curveSelect.value }));
  view.listen(metricSelect, "change", () => view.set({ metric: metricSelect.value }));
  view.listen(prompts, "click", (e) => showPrompt((e.target as HTMLElement).closest<HTMLElement>(".lw-prompt")));
  view.listen(prompts, "keydown", (e) => {
    if (e.key !== "Enter" && e.key !== " ") return;
    e.preventDefault();
    showPrompt((e.target as HTMLElement).closest<HTMLElement>(".lw-prompt"));
  });

  function showPrompt(row: HTMLElement | null): void {
    if (!row) return;
    const index = Number(row.dataset.index);
    localToken = -1;
    // Alone, the prompt shown is the view's text (its selection); in an Explorer the text is the Explorer's.
    if (view.hosted) view.set({ selected_prompt: index });
    else view.set({ selected_prompt: index, text_prompt: index, selected_token: -1 });
  }
  view.on("curve", () => {
    curveSelect.value = curveName();
    drawChart();
    drawOverlays();
  });
  view.on("metric", () => {
    metricSelect.value = String(view.get("metric") ?? "");
    drawPaired();
  });
  view.on(["selected_prompt", "text_prompt"], redraw);
  view.on("selected_token", () => {
    if (!linked()) return;
    showToken();
    drawChart();
  });
  view.on(["methods", "curve_choices", "metric_choices", "prompt_texts", "baseline_token", "model_name"], header);
  header();
  void load();
}

export default defineView({ name: "evaluation", mount });
