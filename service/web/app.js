// dirconv dashboard: runs list, run page, compare page, new-run and new-sweep forms.
// Plain browser JavaScript (no build step); charts are uPlot, installed from npm by the Makefile.
"use strict";

const MAX_POINTS = 2000;          // points a chart asks for; the API thins long series
const LIST_POLL_MS = 2000;
const RUN_POLL_MS = 1000;
const COLOURS = ["#2f6fed", "#d9480f", "#2b8a3e", "#ae3ec9", "#e67700", "#0b7285",
                 "#c2255c", "#5c940d", "#364fc7", "#862e9c"];
const STATUSES = ["queued", "running", "succeeded", "failed", "canceled"];
const FINISHED = ["succeeded", "failed", "canceled"];

const app = document.getElementById("app");
const features = { sweeps: false, theory: false, compare: false };
let cleanup = [];                 // timers and charts of the page on screen
window.dirconv = { charts: {} };  // read by the browser tests

// ---------- helpers ----------

class ApiError extends Error {
  constructor(status, detail) {
    super(typeof detail === "string" ? detail : JSON.stringify(detail));
    this.status = status;
    this.detail = detail;
  }
}

async function api(path, options = {}) {
  const init = { headers: { "content-type": "application/json" }, ...options };
  if (init.body && typeof init.body !== "string") init.body = JSON.stringify(init.body);
  const response = await fetch(path, init);
  let body = null;
  try { body = await response.json(); } catch (_) { body = null; }
  if (!response.ok) throw new ApiError(response.status, body ? body.detail : response.statusText);
  return body;
}

function missingRoute(error) {
  return error instanceof ApiError && (error.status === 405 || error.detail === "Not Found");
}

function h(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else if (key === "class") node.className = value;
    else node.setAttribute(key, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

// The API spells non-finite floats "NaN", "Infinity", "-Infinity".
const num = (v) => (typeof v === "string" && /^(-?Infinity|NaN)$/.test(v) ? Number(v) : v);
function fmt(value) {
  if (value === null || value === undefined) return "—";
  if (typeof value === "number") {
    if (Number.isInteger(value)) return value.toLocaleString("en-US");
    return Math.abs(value) >= 1e5 || Math.abs(value) < 1e-3 ? value.toExponential(3)
      : String(Number(value.toPrecision(5)));
  }
  if (Array.isArray(value)) return "[" + value.map(fmt).join(", ") + "]";
  if (typeof value === "object") return JSON.stringify(value);
  return String(value);
}
const toNumbers = (values) => values.map((v) => (typeof v === "string" ? Number(v) : v));

function badge(status) { return h("span", { class: `badge ${status}`, "data-status": status }, status); }

function progressBar(run, wide = false) {
  const { step, total_steps: total } = run.progress;
  const percent = total ? Math.min(100, (100 * step) / total) : 0;
  return h("div", { class: `progress ${run.status}${wide ? " wide" : ""}`, title: `${step}/${total}` },
    h("div", { style: `width:${percent.toFixed(1)}%` }),
    h("span", {}, `${percent.toFixed(0)}%  ${fmt(step)}/${fmt(total)}`));
}

function every(ms, fn) {
  let stopped = false;
  let timer = null;
  const tick = async () => {
    if (stopped) return;
    try { await fn(); } catch (error) { console.error(error); }
    if (!stopped) timer = setTimeout(tick, ms);
  };
  tick();
  cleanup.push(() => { stopped = true; clearTimeout(timer); });
}

function showError(container, error) {
  container.replaceChildren(h("div", { class: "error-box" }, String(error.message || error)));
}

// ---------- charts ----------

function tick(value) {
  if (value === null || value === undefined) return "";
  if (value >= 1e-3 && value < 1e5) return String(Number(value.toPrecision(3)));
  return value.toExponential(0);
}

function logSafe(values) { return values.map((v) => (v > 0 && Number.isFinite(v) ? v : null)); }

// One uPlot chart: `series` is [{label, steps, values, colour, dash}], log-y unless
// `logY` is false, optional log-x.
function lineChart(target, key, title, series, { logX = false, logY = true, onZoom = null } = {}) {
  if (!window.uPlot) {
    target.replaceChildren(h("div", { class: "error-box" },
      "Chart library missing: run `make install` (it copies uPlot from npm into service/web/vendor/)."));
    return null;
  }
  const tables = series.map((s) => {
    const keep = s.steps.map((step) => !logX || step > 0);
    const values = logY ? logSafe(s.values) : s.values;
    return [s.steps.filter((_, i) => keep[i]), values.filter((_, i) => keep[i])];
  });
  const data = tables.length ? uPlot.join(tables) : [[]];
  // Same lines as last time: only the data changed, so keep the chart (and the hover).
  const signature = JSON.stringify([title, logX, logY, series.map((s) => s.label)]);
  const existing = window.dirconv.charts[key];
  if (existing && existing.signature === signature && target.contains(existing.root)) {
    existing.setData(data);
    return existing;
  }
  if (existing) { existing.destroy(); delete window.dirconv.charts[key]; }
  const width = Math.max(320, target.clientWidth || 600);
  const options = {
    title, width, height: 300,
    scales: { x: { time: false, distr: logX ? 3 : 1 }, y: { distr: logY ? 3 : 1 } },
    axes: [{ label: "step" }, { size: 60, values: (u, ticks) => ticks.map(tick) }],
    cursor: { sync: { key: "dirconv" }, drag: { x: true, y: false, setScale: !onZoom } },
    series: [{ label: "step" }, ...series.map((s) => ({
      label: s.label, stroke: s.colour, width: 1.6, dash: s.dash ? [6, 5] : undefined,
      spanGaps: true, points: { show: false },
      value: (u, v) => (v === null || v === undefined ? "—" : fmt(v)),
    }))],
    hooks: onZoom ? { setSelect: [(u) => {
      if (u.select.width < 2) return;
      const lo = u.posToVal(u.select.left, "x");
      const hi = u.posToVal(u.select.left + u.select.width, "x");
      u.setSelect({ left: 0, top: 0, width: 0, height: 0 }, false);
      onZoom(Math.max(0, Math.floor(lo)), Math.ceil(hi));
    }] } : {},
  };
  target.replaceChildren();
  const chart = new uPlot(options, data, target);
  chart.signature = signature;
  window.dirconv.charts[key] = chart;
  cleanup.push(() => {
    if (window.dirconv.charts[key] !== chart) return;  // already replaced and destroyed
    chart.destroy();
    delete window.dirconv.charts[key];
  });
  return chart;
}

// ---------- feature detection ----------

async function detectFeatures() {
  try {
    const spec = await api("/openapi.json");
    const paths = Object.keys(spec.paths || {});
    features.sweeps = paths.includes("/sweeps");
    features.theory = paths.some((p) => p.startsWith("/experiments/") && p.endsWith("/theory"));
    features.compare = paths.includes("/metrics/compare");
    specFields = spec.components?.schemas?.ExperimentSpec?.properties || null;
  } catch (_) { /* an API without its schema: every optional feature stays hidden */ }
  document.querySelectorAll("[data-feature]").forEach((node) => {
    node.hidden = !features[node.dataset.feature];
  });
}

// The server's spec fields ({field: {enum, description, ...}} from its OpenAPI schema), or null
// when it has no schema: the forms offer what this server takes, whatever its version.
let specFields = null;

// Every metric a run may log, in the API's order: {name, description, scale, optimizers}.
// Read once; an API without the endpoint gives none, and charts fall back to the bare names.
let metricDefinitions = null;
function definitions() {
  if (!metricDefinitions) {
    metricDefinitions = api("/metrics/definitions").then((body) => body.data).catch(() => []);
  }
  return metricDefinitions;
}

// The charts of a run: one per metric it logs, those the API defines first, in its order.
function chartedMetrics(defined, series) {
  const known = defined.filter((d) => d.name in series);
  const names = new Set(known.map((d) => d.name));
  const others = Object.keys(series).filter((name) => !names.has(name))
    .map((name) => ({ name, description: name.replace("_", " "), scale: "log" }));
  return [...known, ...others];
}

async function theoryFor(id) {
  if (!features.theory) return null;
  try {
    const body = await api(`/experiments/${id}/theory?max_points=${MAX_POINTS}`);
    return { steps: body.steps, values: toNumbers(body.directional_error) };
  } catch (_) { return null; }  // 404/422: no theory for this spec
}

// ---------- runs list ----------

const selected = new Set();

function renderRuns(query) {
  const status = h("select", { id: "filter-status" }, h("option", { value: "" }, "any status"),
    STATUSES.map((s) => h("option", { value: s, selected: query.get("status") === s }, s)));
  const tag = h("input", { type: "text", id: "filter-tag", placeholder: "tag", value: query.get("tag") || "" });
  const search = h("input", { type: "text", id: "filter-name", placeholder: "name contains" });
  const compare = h("button", { id: "compare-selected", disabled: true,
    onclick: () => { location.hash = `#/compare?ids=${[...selected].join(",")}`; } }, "Compare selected");
  const body = h("tbody");
  const count = h("span", { class: "muted" });
  const table = h("table", { id: "runs" }, h("thead", {}, h("tr", {},
    h("th"), h("th", {}, "id"), h("th", {}, "name"), h("th", {}, "status"), h("th", {}, "progress"),
    h("th", { class: "num" }, "depth"), h("th", {}, "loss"), h("th", {}, "optimizer"),
    h("th", { class: "num" }, "lr"), h("th", { class: "num" }, "final dir. error"),
    h("th", {}, "created"))), body);
  app.replaceChildren(
    h("h1", {}, "Runs", h("a", { href: "#/new" }, h("button", { class: "primary" }, "New run"))),
    h("div", { class: "card" },
      h("div", { class: "toolbar" }, h("label", {}, "status", status), h("label", {}, "tag", tag),
        h("label", {}, "name", search), compare, count),
      table));
  let rows = [];
  const draw = () => {
    const needle = search.value.trim().toLowerCase();
    const shown = rows.filter((run) => !needle || run.name.toLowerCase().includes(needle));
    body.replaceChildren(...shown.map((run) => runRow(run, compare)));
    if (!shown.length) body.append(h("tr", {}, h("td", { colspan: 11, class: "muted" }, "No runs yet.")));
    compare.disabled = selected.size === 0;
  };
  const load = async () => {
    const params = new URLSearchParams({ limit: "200" });
    if (status.value) params.set("status", status.value);
    if (tag.value.trim()) params.set("tag", tag.value.trim());
    const page = await api(`/experiments?${params}`);
    rows = page.data;
    count.textContent = `${page.count} run${page.count === 1 ? "" : "s"}`;
    draw();
  };
  status.addEventListener("change", load);
  tag.addEventListener("change", load);
  search.addEventListener("input", draw);
  every(LIST_POLL_MS, load);
}

function runRow(run, compareButton) {
  const box = h("input", { type: "checkbox", checked: selected.has(run.id), onchange: (e) => {
    if (e.target.checked) selected.add(run.id); else selected.delete(run.id);
    compareButton.disabled = selected.size === 0;
  } });
  const spec = run.spec;
  const summary = run.summary || {};
  return h("tr", { "data-id": run.id },
    h("td", {}, box), h("td", {}, run.id),
    h("td", {}, h("a", { href: `#/runs/${run.id}` }, run.name)),
    h("td", {}, badge(run.status)), h("td", {}, progressBar(run)),
    h("td", { class: "num" }, spec.depth), h("td", {}, spec.loss), h("td", {}, spec.optimizer),
    h("td", { class: "num" }, fmt(spec.lr)),
    h("td", { class: "num" }, fmt(num(summary.final_directional_error))),
    h("td", { class: "muted" }, new Date(run.created_at).toLocaleString()));
}

// ---------- run page ----------

function kvTable(object, id) {
  return h("table", { class: "kv", id },
    h("tbody", {}, Object.entries(object).map(([k, v]) => h("tr", {}, h("td", {}, k), h("td", {}, fmt(num(v)))))));
}

function renderRun(id) {
  const head = h("h1", {}, `Run ${id}`);
  const status = h("div", { class: "toolbar" });
  const errorBox = h("div");
  const specCard = h("div", { class: "card grow" }, h("h2", {}, "Spec"));
  const summaryCard = h("div", { class: "card grow", id: "summary" }, h("h2", {}, "Summary"),
    h("p", { class: "muted" }, "Appears when the run ends."));
  const logX = h("input", { type: "checkbox", id: "log-x" });
  const reset = h("button", { id: "reset-zoom", hidden: true }, "Reset zoom");
  // One chart per metric the run logs (GET /metrics/definitions): the first full width.
  const charts = {};
  const firstChart = h("div");
  const otherCharts = h("div", { class: "chart-grid" });
  const chartFor = (name) => {
    if (!charts[name]) {
      charts[name] = h("div", { class: "chart", id: `chart-${name}` });
      if (firstChart.children.length === 0) firstChart.append(charts[name]);
      else otherCharts.append(charts[name]);
    }
    return charts[name];
  };
  app.replaceChildren(head, status, errorBox,
    h("div", { class: "card" },
      h("div", { class: "toolbar" }, h("label", {}, logX, "log-scale steps"), reset,
        h("span", { class: "muted" }, "Drag across a chart to zoom in (the zoomed range is re-read at full detail); hover for values.")),
      firstChart, otherCharts),
    h("div", { class: "row" }, specCard, summaryCard));

  const state = { run: null, series: null, theory: undefined, range: null, metrics: [] };
  const draw = () => {
    if (!state.series) return;
    const metrics = chartedMetrics(state.metrics, state.series);
    metrics.forEach((metric) => chartFor(metric.name));  // all laid out before any is sized
    for (const metric of metrics) {
      const name = metric.name;
      const s = state.series[name];
      const lines = [{ label: name.replace("_", " "), steps: s.steps, values: toNumbers(s.values), colour: COLOURS[0] }];
      if (name === "directional_error" && state.theory) {
        const theory = state.range ? clip(state.theory, state.range) : state.theory;
        lines.push({ label: "flow theory", ...theory, colour: COLOURS[1], dash: true });
      }
      lineChart(chartFor(name), name, metric.description, lines,
        { logX: logX.checked, logY: metric.scale !== "linear", onZoom: zoom });
    }
  };
  // Without `names` the API answers every metric the run logs.
  const readMetrics = async () => {
    state.metrics = await definitions();
    const params = new URLSearchParams({ max_points: MAX_POINTS });
    if (state.range) { params.set("start_step", state.range[0]); params.set("end_step", state.range[1]); }
    state.series = (await api(`/experiments/${id}/metrics?${params}`)).series;
  };
  const zoom = async (lo, hi) => {
    state.range = [lo, hi]; reset.hidden = false;
    await readMetrics(); draw();
  };
  reset.addEventListener("click", async () => { state.range = null; reset.hidden = true; await readMetrics(); draw(); });
  logX.addEventListener("change", draw);

  let finished = false;
  every(RUN_POLL_MS, async () => {
    if (finished) return;
    let run;
    try { run = await api(`/experiments/${id}`); } catch (error) { showError(app, error); finished = true; return; }
    state.run = run;
    renderRunHeader(run, head, status, speed(state, run));
    errorBox.replaceChildren(run.error ? h("div", { class: "error-box" }, run.error) : "");
    if (specCard.children.length === 1) specCard.append(kvTable(run.spec, "spec"));
    if (run.summary) summaryCard.replaceChildren(h("h2", {}, "Summary"), kvTable(run.summary, "summary-table"));
    if (state.theory === undefined) state.theory = await theoryFor(id);
    if (!state.range || FINISHED.includes(run.status)) await readMetrics();
    draw();
    finished = FINISHED.includes(run.status);
  });
}

function clip(series, [lo, hi]) {
  const keep = series.steps.map((step) => step >= lo && step <= hi);
  return { steps: series.steps.filter((_, i) => keep[i]), values: series.values.filter((_, i) => keep[i]) };
}

// Steps a second since the previous poll, and the time left at that pace.
function speed(state, run) {
  const now = performance.now();
  const last = state.lastPoll;
  state.lastPoll = { at: now, step: run.progress.step };
  if (run.status !== "running" || !last || run.progress.step <= last.step) return "";
  const rate = (1000 * (run.progress.step - last.step)) / (now - last.at);
  const left = (run.progress.total_steps - run.progress.step) / rate;
  return `${fmt(Math.round(rate))} steps/s, about ${left < 90 ? `${Math.ceil(left)} s` : `${Math.ceil(left / 60)} min`} left`;
}

function renderRunHeader(run, head, status, pace) {
  head.replaceChildren(`${run.name}`, h("span", { class: "muted" }, `#${run.id}`), badge(run.status));
  const cancel = h("button", { class: "danger", id: "cancel", onclick: async () => {
    cancel.disabled = true;
    try { await api(`/experiments/${run.id}/cancel`, { method: "POST" }); } catch (error) { alert(error.message); }
  } }, "Cancel run");
  status.replaceChildren(progressBar(run, true),
    pace ? h("span", { id: "pace" }, pace) : "",
    FINISHED.includes(run.status) ? "" : cancel,
    h("a", { href: `#/compare?ids=${run.id}` }, "compare…"),
    h("span", { class: "muted" }, `created ${new Date(run.created_at).toLocaleString()}`));
}

// ---------- compare page ----------

function renderCompare(query) {
  const ids = h("input", { type: "text", id: "compare-ids", placeholder: "run ids, e.g. 1,2,3", value: query.get("ids") || "" });
  const sweep = h("input", { type: "text", id: "compare-sweep", placeholder: "sweep id", value: query.get("sweep") || "", hidden: !features.sweeps });
  const logX = h("input", { type: "checkbox", id: "log-x" });
  const chart = h("div", { class: "chart", id: "chart-compare" });
  const table = h("div", { id: "compare-table" });
  const note = h("div", { class: "legend-note" });
  const go = () => {
    const params = new URLSearchParams();
    if (sweep.value.trim()) params.set("sweep", sweep.value.trim());
    else params.set("ids", ids.value.replace(/\s+/g, ""));
    location.hash = `#/compare?${params}`;
  };
  app.replaceChildren(h("h1", {}, "Compare"),
    h("div", { class: "card" },
      h("div", { class: "toolbar" }, h("label", {}, "runs", ids),
        features.sweeps ? h("label", {}, "or sweep", sweep) : "",
        h("button", { class: "primary", onclick: go }, "Show"), h("label", {}, logX, "log-scale steps")),
      chart, note),
    h("div", { class: "card" }, h("h2", {}, "Runs"), table));
  const wanted = query.get("sweep") ? { sweep: query.get("sweep") }
    : { ids: (query.get("ids") || "").split(",").map(Number).filter((n) => n > 0) };
  if (!wanted.sweep && !wanted.ids.length) {
    chart.replaceChildren(h("p", { class: "muted" }, "Pick runs on the Runs page, or type their ids."));
    return;
  }
  let lines = [];
  let finished = false;
  const draw = () => lineChart(chart, "compare", "directional error (solid: measured, dashed: flow theory)",
    lines, { logX: logX.checked });
  logX.addEventListener("change", draw);
  every(LIST_POLL_MS, async () => {
    if (finished) return;
    let members;
    try { members = await compareMembers(wanted); } catch (error) { showError(chart, error); finished = true; return; }
    lines = await compareLines(members);
    note.textContent = features.theory ? "Dashed lines: each run's population gradient flow."
      : "This API has no theory endpoint yet; measured curves only.";
    draw();
    table.replaceChildren(compareTable(members));
    finished = members.every((m) => FINISHED.includes(m.run.status));
  });
}

// Members: {run, label, steps, values} for a sweep or a list of ids.
async function compareMembers(wanted) {
  if (wanted.sweep) {
    const body = await api(`/sweeps/${wanted.sweep}/metrics?name=directional_error&max_points=${MAX_POINTS}`);
    return Promise.all(body.members.map(async (m) => ({
      run: await api(`/experiments/${m.experiment_id}`),
      label: Object.entries(m.grid_values || {}).map(([k, v]) => `${k}=${v}`).join(", ") || `#${m.experiment_id}`,
      steps: m.steps, values: toNumbers(m.values),
    })));
  }
  const runs = await Promise.all(wanted.ids.map((id) => api(`/experiments/${id}`)));
  const series = await compareSeries(wanted.ids);
  return runs.map((run, i) => ({
    run, label: `#${run.id} ${run.name} (depth ${run.spec.depth}, ${run.spec.optimizer})`, ...series[i],
  }));
}

// Directional error of each id: one `/metrics/compare` read (#5) or one read a run.
async function compareSeries(ids) {
  if (features.compare) {
    try {
      const body = await api(`/metrics/compare?ids=${ids.join(",")}&name=directional_error&max_points=${MAX_POINTS}`);
      const found = pickCompareSeries(body, ids);
      if (found) return found;
    } catch (error) { if (!missingRoute(error)) console.warn(error); }
  }
  return Promise.all(ids.map(async (id) => {
    const body = await api(`/experiments/${id}/metrics?names=directional_error&max_points=${MAX_POINTS}`);
    const s = body.series.directional_error;
    return { steps: s.steps, values: toNumbers(s.values) };
  }));
}

// Accept the likely shapes of #5's answer: a list of {experiment_id, steps, values} or a map by id.
function pickCompareSeries(body, ids) {
  const list = body.series || body.members || body.experiments || body.runs || body;
  const byId = {};
  if (Array.isArray(list)) list.forEach((m) => { byId[m.experiment_id ?? m.id] = m; });
  else if (list && typeof list === "object") Object.assign(byId, list);
  const found = ids.map((id) => byId[id]);
  if (found.some((m) => !m || !Array.isArray(m.steps))) return null;
  return found.map((m) => ({ steps: m.steps, values: toNumbers(m.values) }));
}

async function compareLines(members) {
  const lines = [];
  const theories = await Promise.all(members.map((m) => theoryFor(m.run.id)));
  members.forEach((m, i) => {
    const colour = COLOURS[i % COLOURS.length];
    lines.push({ label: m.label, steps: m.steps, values: m.values, colour });
    if (theories[i]) lines.push({ label: `${m.label} · flow`, ...theories[i], colour, dash: true });
  });
  return lines;
}

function compareTable(members) {
  const keys = [...new Set(members.flatMap((m) => Object.keys(m.run.summary || {})))];
  return h("table", {}, h("thead", {}, h("tr", {}, h("th", {}, "run"), h("th", {}, "status"),
    keys.map((k) => h("th", { class: "num" }, k)))),
  h("tbody", {}, members.map((m, i) => h("tr", {},
    h("td", {}, h("span", { style: `color:${COLOURS[i % COLOURS.length]}` }, "■ "),
      h("a", { href: `#/runs/${m.run.id}` }, m.label)),
    h("td", {}, badge(m.run.status)),
    keys.map((k) => h("td", { class: "num" }, fmt(num((m.run.summary || {})[k]))))))));
}

// ---------- forms ----------

// [field, kind, hint, choices]; kinds: text, int, float, floats, tags, choice.
const SPEC_FIELDS = [
  ["name", "text", "default experiment-<id>"],
  ["tags", "tags", "comma-separated"],
  ["depth", "int", "N ≥ 1 (default 1)"],
  ["width", "int", "hidden width (default dim)"],
  ["dim", "int", "input dimension d ≥ 2 (default 2)"],
  ["distribution", "choice", "", ["uniform_sphere", "gaussian"]],
  ["teacher", "floats", "dim numbers (default e_d)"],
  ["loss", "choice", "", ["logistic", "exponential"]],
  ["optimizer", "choice", "", ["sgd", "gd", "flow"]],
  ["lr", "float", "learning rate > 0 (default 0.001)"],
  ["batch_size", "int", "fresh points a step (default 1000)"],
  ["steps", "int", "default 20000"],
  ["init", "choice", "", ["paper", "balanced", "gaussian"]],
  ["init_scale", "float", "balanced and gaussian inits only (default 1)"],
  ["init_vector", "floats", "w_e(0), dim numbers (default 0.6, 0.8)"],
  ["n_samples", "int", "gd only: the fixed sample's size (default 1000)"],
  ["log_every", "int", "default 1"],
  ["seed", "int", "default 0"],
  ["device", "choice", "", ["auto", "cpu", "cuda"]],
  ["dtype", "choice", "", ["float32", "float64"]],
];

function specForm(prefix) {
  const form = h("form", { class: "spec", id: `${prefix}form`, novalidate: true });
  for (const [field, kind, ownHint, ownChoices] of SPEC_FIELDS) {
    const id = `${prefix}${field}`;
    const served = specFields ? specFields[field] : {};
    const choices = served?.enum || ownChoices;
    const hint = served ? ownHint : "not on this server";
    const input = kind === "choice"
      ? h("select", { id, name: field }, h("option", { value: "" }, `(default: ${choices[0]})`), choices.map((c) => h("option", { value: c }, c)))
      : h("input", { type: "text", id, name: field, autocomplete: "off" });
    input.disabled = !served;
    if (served?.description) input.title = served.description;
    form.append(h("div", { class: "field", "data-field": field },
      h("label", { for: id }, field), input, hint ? h("span", { class: "hint" }, hint) : "",
      h("span", { class: "error", id: `${id}-error`, role: "alert" })));
  }
  return form;
}

function parseValue(kind, raw) {
  const text = raw.trim();
  const number = (t) => (t !== "" && Number.isFinite(Number(t)) ? Number(t) : t);
  if (kind === "int" || kind === "float") return number(text);
  if (kind === "floats") return text.split(/[\s,]+/).filter(Boolean).map(number);
  if (kind === "tags") return text.split(",").map((t) => t.trim()).filter(Boolean);
  return text;
}

function readSpec(form) {
  const spec = {};
  for (const [field, kind] of SPEC_FIELDS) {
    const input = form.elements[field];
    if (!input.disabled && input.value.trim() !== "") spec[field] = parseValue(kind, input.value);
  }
  return spec;
}

function clearErrors(root) {
  root.querySelectorAll(".field").forEach((f) => f.classList.remove("invalid"));
  root.querySelectorAll(".error").forEach((e) => { e.textContent = ""; });
}

// Put each 422 message next to its field; `fieldFor` maps a loc to a field element or null.
function showFieldErrors(error, general, fieldFor) {
  if (!(error instanceof ApiError) || !Array.isArray(error.detail)) {
    general.replaceChildren(h("div", { class: "error-box" }, error.message || String(error)));
    return;
  }
  const loose = [];
  for (const item of error.detail) {
    const field = fieldFor(item.loc || []);
    if (!field) { loose.push(`${(item.loc || []).join(".")}: ${item.msg}`); continue; }
    field.classList.add("invalid");
    const slot = field.querySelector(".error");
    slot.textContent = slot.textContent ? `${slot.textContent}; ${item.msg}` : item.msg;
  }
  general.replaceChildren(loose.length ? h("div", { class: "error-box" }, loose.join("\n")) : "");
}

function renderNewRun() {
  const form = specForm("spec-");
  const general = h("div", { id: "form-errors" });
  const submit = h("button", { class: "primary", id: "submit-run", type: "button" }, "Submit run");
  const preset = h("button", { type: "button", id: "preset-paper", onclick: () => {
    form.reset();
    form.elements.depth.value = "4";
    form.elements.tags.value = "paper";
    form.elements.name.value = "paper-depth4";
  } }, "Paper's run, depth 4");
  submit.addEventListener("click", async () => {
    clearErrors(form); general.replaceChildren();
    submit.disabled = true;
    try {
      const run = await api("/experiments", { method: "POST", body: readSpec(form) });
      location.hash = `#/runs/${run.id}`;
    } catch (error) {
      showFieldErrors(error, general, (loc) => (loc[0] === "body" && loc[1]
        ? form.querySelector(`.field[data-field="${loc[1]}"]`) : null));
    } finally { submit.disabled = false; }
  });
  form.addEventListener("submit", (e) => { e.preventDefault(); submit.click(); });
  app.replaceChildren(h("h1", {}, "New run"),
    h("div", { class: "card" },
      h("p", { class: "muted" }, "Every field is optional; an empty field takes the paper's default (Lin, Sun, Zhang 2021: d = 2, logistic loss, SGD, lr 0.001, batch 1000, init (0.6, 0.8))."),
      general, form, h("div", { class: "actions" }, submit, preset)));
}

function renderNewSweep() {
  if (!features.sweeps) {
    app.replaceChildren(h("h1", {}, "New sweep"), h("div", { class: "card muted" }, "This API has no sweeps yet."));
    return;
  }
  const name = h("input", { type: "text", id: "sweep-name", name: "name", placeholder: "sweep name" });
  const grid = h("textarea", { id: "sweep-grid", name: "grid", placeholder: "depth = 1, 2, 3, 4\nlr = 0.001, 0.01" }, "depth = 1, 2, 3, 4");
  const nameField = h("div", { class: "field", "data-field": "name" }, h("label", { for: "sweep-name" }, "name"), name, h("span", { class: "error" }));
  const gridField = h("div", { class: "field", "data-field": "grid" },
    h("label", { for: "sweep-grid" }, "grid"), grid,
    h("span", { class: "hint" }, "one field a line: field = value, value, …"), h("span", { class: "error" }));
  const base = specForm("base-");
  const general = h("div", { id: "form-errors" });
  const submit = h("button", { class: "primary", id: "submit-sweep", type: "button" }, "Submit sweep");
  submit.addEventListener("click", async () => {
    clearErrors(app); general.replaceChildren();
    const parsed = parseGrid(grid.value);
    try {
      if (parsed.problems.length) throw new ApiError(422, parsed.problems);
      const body = { name: name.value.trim() || "sweep", base: readSpec(base), grid: parsed.grid };
      const sweep = await api("/sweeps", { method: "POST", body });
      location.hash = `#/compare?sweep=${sweep.id}`;
    } catch (error) {
      showFieldErrors(withGridLines(error, parsed.lines), general, (loc) => {
        if (loc[1] === "base" && loc[2]) return base.querySelector(`.field[data-field="${loc[2]}"]`);
        if (loc[1] === "grid") return gridField;
        if (loc[1] === "name") return nameField;
        return null;
      });
    }
  });
  app.replaceChildren(h("h1", {}, "New sweep"),
    h("div", { class: "card" }, general, h("div", { class: "row" }, h("div", { class: "grow" }, nameField), h("div", { class: "grow" }, gridField))),
    h("div", { class: "card" }, h("h2", {}, "Base spec"), base, h("div", { class: "actions" }, submit)));
}

// The grid text, one `field = v1, v2` a line: {grid, lines: {field: line number}, problems:
// 422-shaped errors for lines that do not parse}.
function parseGrid(text) {
  const grid = {}, lines = {}, problems = [];
  text.split("\n").forEach((line, index) => {
    if (!line.trim()) return;
    const [field, values = ""] = line.split("=").map((part) => part.trim());
    const parsed = values.split(",").map((v) => v.trim()).filter(Boolean)
      .map((v) => (Number.isFinite(Number(v)) ? Number(v) : v));
    if (!line.includes("=") || !field || !parsed.length) {
      problems.push({ loc: ["body", "grid"], msg: `line ${index + 1}: expected "field = value, value, …", got "${line.trim()}"` });
      return;
    }
    grid[field] = parsed;
    lines[field] = index + 1;
  });
  return { grid, lines, problems };
}

// The API's errors about a grid field, prefixed with the form line that set that field.
function withGridLines(error, lines) {
  if (!(error instanceof ApiError) || !Array.isArray(error.detail)) return error;
  for (const item of error.detail) {
    const [where, part, field] = item.loc || [];
    if (where === "body" && part === "grid" && field in lines) item.msg = `line ${lines[field]} (${field}): ${item.msg}`;
  }
  return error;
}

// ---------- router ----------

function route() {
  cleanup.forEach((stop) => stop());
  cleanup = [];
  const [path, search = ""] = location.hash.replace(/^#/, "").split("?");
  const query = new URLSearchParams(search);
  const parts = path.split("/").filter(Boolean);
  const page = parts[0] || "runs";
  document.querySelectorAll("[data-nav]").forEach((a) => a.classList.toggle("active", a.dataset.nav === page));
  if (page === "runs" && parts[1]) renderRun(Number(parts[1]));
  else if (page === "runs") renderRuns(query);
  else if (page === "compare") renderCompare(query);
  else if (page === "new") renderNewRun();
  else if (page === "new-sweep") renderNewSweep();
  else if (page === "sweeps" && parts[1]) location.hash = `#/compare?sweep=${parts[1]}`;
  else app.replaceChildren(h("p", {}, "Unknown page. ", h("a", { href: "#/" }, "Back to runs")));
}

async function start() {
  if (!window.uPlot) {
    const banner = document.getElementById("banner");
    banner.hidden = false;
    banner.textContent = "The chart library is missing: run `make install` to copy uPlot from npm into service/web/vendor/.";
  }
  await detectFeatures();
  window.addEventListener("hashchange", route);
  route();
}

start();
