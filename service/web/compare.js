// Compare: runs or a sweep's members on one chart, each its own line, or grouped by grid/spec
// fields into bands (a median, mean or gmean line inside a q10–q90 or min–max band) that the
// API aggregates (GET /sweeps/{id}/aggregate, GET /metrics/aggregate).
import {
  COLOURS, FINISHED, LIST_POLL_MS, MAX_POINTS, api, app, badge, features, fmt, h, missingRoute,
  num, showError, toNumbers, every,
} from "./lib.js";
import {
  X_AXES, clipTheory, ema, lineChart, theoryFor, theoryLabel, theoryNote, xValues,
} from "./charts.js";

const CENTRES = { median: "median", mean: "mean", gmean: "geometric mean" };
const BANDS = { q: ["q10", "q90"], minmax: ["min", "max"], none: null };
const BAND_NAMES = { q: "q10–q90", minmax: "min–max", none: "no band" };

// The page's settings, all in the hash: #/compare?sweep=3&by=depth&centre=median&band=q&x=time
function settingsOf(query) {
  return {
    ids: (query.get("ids") || "").split(",").map(Number).filter((n) => n > 0),
    sweep: query.get("sweep") || "",
    by: (query.get("by") || "").split(",").filter(Boolean),
    centre: CENTRES[query.get("centre")] ? query.get("centre") : "median",
    band: query.get("band") in BANDS ? query.get("band") : "q",
    x: X_AXES[query.get("x")] ? query.get("x") : "step",
    y: query.get("y") === "linear" ? "linear" : "log",
    smooth: Math.min(0.99, Math.max(0, Number(query.get("smooth")) || 0)),
  };
}

function hashOf(s) {
  const params = new URLSearchParams();
  if (s.sweep) params.set("sweep", s.sweep); else params.set("ids", s.ids.join(","));
  if (s.by.length) params.set("by", s.by.join(","));
  for (const key of ["centre", "band", "x", "y"]) params.set(key, s[key]);
  if (s.smooth) params.set("smooth", s.smooth);
  return `#/compare?${params}`;
}

function select(id, choices, value, onChange) {
  const node = h("select", { id }, Object.entries(choices).map(([key, text]) =>
    h("option", { value: key, selected: key === value }, text)));
  node.addEventListener("change", () => onChange(node.value));
  return node;
}

export function renderCompare(query) {
  const s = settingsOf(query);
  const page = compareLayout(s);
  if (!s.sweep && !s.ids.length) {
    page.chart.replaceChildren(h("p", { class: "muted" }, "Pick runs on the Runs page or a sweep on the Sweeps page, or type their ids."));
    return;
  }
  let curves = [];
  const draw = () => drawCompare(page, s, curves);
  // Axis, scale and smoothing only redraw; the hash keeps them without re-reading anything.
  const redraw = (key) => (value) => {
    s[key] = key === "smooth" ? Number(value) : value;
    history.replaceState(null, "", hashOf(s));
    draw();
  };
  const regroup = (key) => (value) => { s[key] = value; location.hash = hashOf(s); };
  page.controls.append(
    h("label", {}, "line", select("centre", CENTRES, s.centre, regroup("centre"))),
    h("label", {}, "band", select("band", BAND_NAMES, s.band, regroup("band"))),
    h("label", {}, "x", select("x-axis", X_AXES, s.x, redraw("x"))),
    h("label", {}, "y", select("y-scale", { log: "log", linear: "linear" }, s.y, redraw("y"))),
    smoothingSlider(s.smooth, redraw("smooth")));
  let finished = false;
  every(LIST_POLL_MS, async () => {
    if (finished) return;
    let read;
    try { read = await readCurves(s, page, regroup); } catch (error) {
      showError(page.chart, error); finished = true; return;
    }
    curves = read.curves;
    draw();
    finished = read.finished;
  });
}

function smoothingSlider(value, onChange) {
  const slider = h("input", { type: "range", id: "smoothing", min: 0, max: 0.99, step: 0.01, value });
  const shown = h("span", { class: "muted" }, value ? String(value) : "off");
  slider.addEventListener("input", () => {
    shown.textContent = Number(slider.value) ? slider.value : "off";
    onChange(slider.value);
  });
  return h("label", {}, "smoothing (EMA)", slider, shown);
}

function compareLayout(s) {
  const ids = h("input", { type: "text", id: "compare-ids", placeholder: "run ids, e.g. 1,2,3", value: s.ids.join(",") });
  const sweep = h("input", { type: "text", id: "compare-sweep", placeholder: "sweep id", value: s.sweep, hidden: !features.sweeps });
  const go = () => {
    const chosen = { ...s, sweep: sweep.value.trim(), ids: ids.value.replace(/\s+/g, "").split(",").map(Number).filter((n) => n > 0) };
    if (!chosen.sweep) chosen.by = s.sweep ? [] : s.by;  // a sweep's fields need not be the runs'
    location.hash = hashOf(chosen);
  };
  const page = {
    controls: h("div", { class: "toolbar" }), groupBy: h("div", { class: "toolbar", id: "group-by" }),
    chart: h("div", { class: "chart", id: "chart-compare" }),
    legend: h("div", { class: "group-legend", id: "compare-legend" }),
    note: h("div", { class: "legend-note", id: "compare-note" }),
    table: h("div", { id: "compare-table", class: "table-scroll" }),
  };
  app.replaceChildren(h("h1", {}, "Compare"),
    h("div", { class: "card" },
      h("div", { class: "toolbar" }, h("label", {}, "runs", ids),
        features.sweeps ? h("label", {}, "or sweep", sweep) : "",
        h("button", { class: "primary", id: "compare-show", onclick: go }, "Show")),
      page.groupBy, page.controls, page.chart, page.legend, page.note),
    h("div", { class: "card" }, h("h2", {}, "Table"), page.table));
  return page;
}

// Tick boxes for the fields the runs may be grouped by; ticking one regroups.
function groupByBoxes(page, fields, s, regroup) {
  if (page.groupBy.dataset.fields === fields.join(",")) return;
  page.groupBy.dataset.fields = fields.join(",");
  const boxes = fields.map((field) => {
    const box = h("input", { type: "checkbox", value: field, "data-by": field, checked: s.by.includes(field) });
    box.addEventListener("change", () => {
      regroup("by")(boxes.filter((b) => b.checked).map((b) => b.value));
    });
    return box;
  });
  const usable = features.sweepAggregate || features.aggregate;
  page.groupBy.replaceChildren(h("span", { class: "muted" }, "group by"),
    ...boxes.map((box) => h("label", {}, box, box.value)),
    usable ? h("span", { class: "muted" }, "(unticked fields, seeds typically, fold into each group's band)")
      : h("span", { class: "muted" }, "(this API cannot aggregate yet)"));
  boxes.forEach((box) => { box.disabled = !usable; });
}

// ---------- reading ----------

// {curves, finished}: curves are [{label, values, colour, ids, lr, steps, centre, band, theory}].
async function readCurves(s, page, regroup) {
  if (s.sweep) {
    const sweep = await api(`/sweeps/${s.sweep}`);
    groupByBoxes(page, Object.keys(sweep.grid), s, regroup);
    const finished = !sweep.counts.queued && !sweep.counts.running;
    if (s.by.length && features.sweepAggregate) return { curves: await sweepGroups(s), finished };
    const members = await sweepMembers(s.sweep);
    return { curves: await withTheory(members), finished };
  }
  const runs = await Promise.all(s.ids.map((id) => api(`/experiments/${id}`)));
  groupByBoxes(page, varyingFields(runs), s, regroup);
  const finished = runs.every((run) => FINISHED.includes(run.status));
  if (s.by.length && features.aggregate) return { curves: await runGroups(s, runs), finished };
  return { curves: await withTheory(await runMembers(runs)), finished };
}

function statsParam(s) {
  return [s.centre, ...(BANDS[s.band] || [])].join(",");
}

function groupCurve(s, group, i, lr) {
  const band = BANDS[s.band];
  return {
    label: Object.entries(group.values).map(([k, v]) => `${k}=${fmt(v)}`).join(", "),
    values: group.values, ids: group.ids, colour: COLOURS[i % COLOURS.length], lr,
    steps: group.steps, n: group.n, centre: toNumbers(group[s.centre]),
    band: band ? { lo: toNumbers(group[band[0]]), hi: toNumbers(group[band[1]]), label: band } : null,
  };
}

async function sweepGroups(s) {
  const params = new URLSearchParams({ name: "directional_error", by: s.by.join(","),
    stats: statsParam(s), max_points: MAX_POINTS });
  const body = await api(`/sweeps/${s.sweep}/aggregate?${params}`);
  const firsts = await runsOf(body.groups.map((group) => group.ids[0]), s.sweep);
  return withTheory(body.groups.map((group, i) => ({ ...groupCurve(s, group, i, firsts[i].spec.lr), runs: [firsts[i]] })));
}

// Runs picked by id, grouped on the page by their spec values, each group aggregated by the API.
async function runGroups(s, runs) {
  const groups = new Map();
  for (const run of runs) {
    const values = Object.fromEntries(s.by.map((field) => [field, run.spec[field]]));
    const key = JSON.stringify(values);
    if (!groups.has(key)) groups.set(key, { values, runs: [] });
    groups.get(key).runs.push(run);
  }
  const ordered = [...groups.values()].sort((a, b) => compareValues(a.values, b.values));
  return withTheory(await Promise.all(ordered.map(async (group, i) => {
    const ids = group.runs.map((run) => run.id);
    const params = new URLSearchParams({ ids: ids.join(","), name: "directional_error",
      stats: statsParam(s), max_points: MAX_POINTS });
    const body = await api(`/metrics/aggregate?${params}`);
    return { ...groupCurve(s, { ...body, values: group.values, ids }, i, group.runs[0].spec.lr), runs: group.runs };
  })));
}

function compareValues(a, b) {
  for (const key of Object.keys(a)) {
    const [x, y] = [a[key], b[key]];
    if (x === y) continue;
    if (typeof x === "number" && typeof y === "number") return x - y;
    return String(x).localeCompare(String(y));
  }
  return 0;
}

// Spec fields whose values differ among `runs`: what they can be grouped by.
function varyingFields(runs) {
  const fields = runs.length ? Object.keys(runs[0].spec) : [];
  return fields.filter((field) => new Set(runs.map((run) => JSON.stringify(run.spec[field]))).size > 1);
}

// The runs of `ids`: one list read by sweep where the API filters by it, else one read a run.
async function runsOf(ids, sweepId) {
  const byId = {};
  if (features.lifecycle) {
    const page = await api(`/experiments?sweep_id=${sweepId}&archived=true&limit=${features.pageSize}`);
    page.data.forEach((run) => { byId[run.id] = run; });
  }
  return Promise.all(ids.map((id) => byId[id] || api(`/experiments/${id}`)));
}

async function sweepMembers(sweepId) {
  const body = await api(`/sweeps/${sweepId}/metrics?name=directional_error&max_points=${MAX_POINTS}`);
  const runs = await runsOf(body.members.map((m) => m.experiment_id), sweepId);
  return body.members.map((m, i) => ({
    runs: [runs[i]], ids: [m.experiment_id], colour: COLOURS[i % COLOURS.length], lr: runs[i].spec.lr,
    label: Object.entries(m.grid_values || {}).map(([k, v]) => `${k}=${v}`).join(", ") || `#${m.experiment_id}`,
    steps: m.steps, centre: toNumbers(m.values), band: null,
  }));
}

async function runMembers(runs) {
  const series = await compareSeries(runs.map((run) => run.id));
  return runs.map((run, i) => ({
    runs: [run], ids: [run.id], colour: COLOURS[i % COLOURS.length], lr: run.spec.lr,
    label: `#${run.id} ${run.name} (depth ${run.spec.depth}, ${run.spec.optimizer})`,
    steps: series[i].steps, centre: series[i].values, band: null,
  }));
}

// Directional error of each id: one `/metrics/compare` read, or one read a run.
async function compareSeries(ids) {
  if (features.compare) {
    try {
      const body = await api(`/metrics/compare?ids=${ids.join(",")}&name=directional_error&max_points=${MAX_POINTS}`);
      const byId = Object.fromEntries(body.runs.map((m) => [m.experiment_id, m]));
      if (ids.every((id) => byId[id])) return ids.map((id) => ({ steps: byId[id].steps, values: toNumbers(byId[id].values) }));
    } catch (error) { if (!missingRoute(error)) console.warn(error); }
  }
  return Promise.all(ids.map(async (id) => {
    const body = await api(`/experiments/${id}/metrics?names=directional_error&max_points=${MAX_POINTS}`);
    const s = body.series.directional_error;
    return { steps: s.steps, values: toNumbers(s.values) };
  }));
}

// Each curve's flow theory: that of its first run (seeds share it when the init is fixed).
async function withTheory(curves) {
  const theories = await Promise.all(curves.map((c) => theoryFor(c.ids[0])));
  return curves.map((c, i) => ({ ...c, theory: theories[i] }));
}

// ---------- drawing ----------

function linesOf(curve, s) {
  const x = xValues(curve.steps, s.x, curve.lr);
  const logY = s.y === "log";
  const lines = [];
  if (s.smooth) lines.push({ label: `${curve.label} (raw)`, steps: x, values: curve.centre, colour: curve.colour, faint: true });
  lines.push({ label: curve.label, steps: x, colour: curve.colour, width: curve.band ? 2 : 1.6,
    values: s.smooth ? ema(curve.centre, s.smooth, logY) : curve.centre, band: curve.band });
  if (curve.theory && curve.steps.length) {
    const clipped = clipTheory(curve.theory, curve.steps[0], curve.steps[curve.steps.length - 1]);
    lines.push({ label: theoryLabel(`${curve.label} · flow`, curve.theory), colour: curve.colour, dash: true,
      steps: xValues(clipped.steps, s.x, curve.lr), values: clipped.values });
  }
  return lines;
}

function drawCompare(page, s, curves) {
  const grouped = curves.some((c) => c.band !== null || c.n);
  const band = grouped && BANDS[s.band] ? `, band: ${BAND_NAMES[s.band]}` : "";
  const title = `directional error (solid: ${grouped ? CENTRES[s.centre] : "measured"}${band}, dashed: flow theory)`;
  lineChart(page.chart, "compare", title, curves.flatMap((c) => linesOf(c, s)), {
    logX: s.x === "logstep", logY: s.y === "log", legend: !grouped,
    xLabel: s.x === "time" ? "t = lr × step" : "step", height: grouped ? 420 : 300,
  });
  page.legend.replaceChildren(...(grouped ? curves.map(groupKey) : []));
  page.note.textContent = notesOf(s, curves);
  page.table.replaceChildren(grouped ? groupTable(curves, s) : memberTable(curves));
}

function groupKey(curve) {
  return h("span", { class: "group-key", "data-group": curve.label },
    h("span", { class: "swatch", style: `background:${curve.colour}` }), curve.label,
    h("span", { class: "muted" }, ` (${curve.ids.length})`));
}

function notesOf(s, curves) {
  const notes = [theoryNote(curves.some((c) => c.theory && !c.theory.complete))];
  if (s.smooth) notes.push(`Smoothed: EMA of weight ${s.smooth} over the plotted points (raw faint).`);
  if (s.x === "time") {
    notes.push("x is continuous time t = lr × step: runs with different learning rates line up with each other and with the flow.");
  }
  return notes.join(" ");
}

const last = (values) => (values && values.length ? values[values.length - 1] : null);
const finiteMin = (values) => values.filter(Number.isFinite).reduce((a, b) => Math.min(a, b), Infinity);

function groupTable(curves, s) {
  const fields = Object.keys(curves[0]?.values || {});
  const band = BANDS[s.band];
  return h("table", { class: "groups" }, h("thead", {}, h("tr", {}, h("th", {}, ""),
    fields.map((f) => h("th", {}, f)), h("th", { class: "num" }, "runs"), h("th", { class: "num" }, "last step"),
    h("th", { class: "num" }, `final ${s.centre}`), band ? h("th", { class: "num" }, `final ${band.join("–")}`) : "",
    h("th", { class: "num" }, `best ${s.centre}`), h("th", {}, "members"))),
  h("tbody", {}, curves.map((c) => h("tr", { "data-group": c.label },
    h("td", {}, h("span", { class: "swatch", style: `background:${c.colour}` })),
    fields.map((f) => h("td", {}, fmt(c.values[f]))),
    h("td", { class: "num" }, c.ids.length), h("td", { class: "num" }, fmt(last(c.steps))),
    h("td", { class: "num" }, fmt(num(last(c.centre)))),
    band ? h("td", { class: "num" }, `${fmt(last(c.band.lo))} – ${fmt(last(c.band.hi))}`) : "",
    h("td", { class: "num" }, fmt(finiteMin(c.centre))),
    h("td", {}, c.ids.map((id) => h("a", { href: `#/runs/${id}`, class: "member" }, `#${id}`)))))));
}

function memberTable(curves) {
  const runs = curves.map((c) => c.runs[0]);
  const keys = [...new Set(runs.flatMap((run) => Object.keys(run.summary || {})))].filter((k) => k !== "steps_to");
  return h("table", {}, h("thead", {}, h("tr", {}, h("th", {}, "run"), h("th", {}, "status"),
    keys.map((k) => h("th", { class: "num" }, k)))),
  h("tbody", {}, curves.map((c, i) => h("tr", {},
    h("td", {}, h("span", { style: `color:${c.colour}` }, "■ "), h("a", { href: `#/runs/${runs[i].id}` }, c.label)),
    h("td", {}, badge(runs[i].status)),
    keys.map((k) => h("td", { class: "num" }, fmt(num((runs[i].summary || {})[k]))))))));
}
