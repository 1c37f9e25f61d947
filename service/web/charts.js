// Charts (uPlot), the x-axis choices, EMA smoothing and the flow-theory curve.
import { MAX_POINTS, api, features, fmt, h, onLeave, toNumbers } from "./lib.js";

// Below this the flow integrator (DOP853, rtol 1e-10) no longer resolves the direction: the
// same precision floor the run summary's rate fit stops at (worker/summary.py FLOW_FLOOR).
export const THEORY_FLOOR = 1e-9;
export const COLOUR_MEASURED = "#2f6fed";
export const COLOUR_THEORY = "#d9480f";
export const X_AXES = { step: "steps", logstep: "log-scale steps", time: "time t = lr × step" };

function tick(value) {
  if (value === null || value === undefined) return "";
  if (value >= 1e-3 && value < 1e5) return String(Number(value.toPrecision(3)));
  return value.toExponential(0);
}

function logSafe(values) { return values.map((v) => (v > 0 && Number.isFinite(v) ? v : null)); }

// A #rrggbb colour with an alpha byte: faint lines and band fills.
export const alpha = (colour, a) => colour + Math.round(a * 255).toString(16).padStart(2, "0");

// The x values of `steps` on `axis`: steps themselves, or continuous time lr × step.
export function xValues(steps, axis, lr) {
  return axis === "time" ? steps.map((s) => s * lr) : steps;
}

// A toolbar select for the x axis; `onChange` gets its value.
export function xAxisSelect(onChange, choices = Object.keys(X_AXES)) {
  const select = h("select", { id: "x-axis" },
    choices.map((key) => h("option", { value: key }, X_AXES[key])));
  select.addEventListener("change", () => onChange(select.value));
  return h("label", {}, "x", select);
}

// Exponential moving average with TensorBoard's bias correction, over finite points only;
// on a log-y chart it runs on log values (errors shrink by decades). weight 0: unchanged.
export function ema(values, weight, logY = true) {
  if (!weight) return values;
  let mean = 0;
  let mass = 0;
  return values.map((v) => {
    if (v === null || !Number.isFinite(v) || (logY && v <= 0)) return null;
    const x = logY ? Math.log(v) : v;
    mean = weight * mean + (1 - weight) * x;
    mass = weight * mass + (1 - weight);
    return logY ? Math.exp(mean / mass) : mean / mass;
  });
}

// Each series as [x, y] with log-unsafe points dropped, and band series expanded after it.
function tablesOf(series, logX, logY) {
  const tables = [];
  const entries = [];
  for (const s of series) {
    const keep = s.steps.map((x) => !logX || x > 0);
    const pick = (values) => {
      const ys = logY ? logSafe(values) : values;
      return [s.steps.filter((_, i) => keep[i]), ys.filter((_, i) => keep[i])];
    };
    tables.push(pick(s.values));
    entries.push({ ...s, role: "line" });
    if (s.band) {
      tables.push(pick(s.band.hi), pick(s.band.lo));
      entries.push({ ...s, role: "hi" }, { ...s, role: "lo" });
    }
  }
  return { tables, entries };
}

function seriesOption(entry) {
  const value = (u, v) => (v === null || v === undefined ? "—" : fmt(v));
  if (entry.role !== "line") {
    return { label: `${entry.label} ${entry.band.label[entry.role === "hi" ? 1 : 0]}`,
      stroke: alpha(entry.colour, 0.35), width: 0.6, spanGaps: true, points: { show: false }, value };
  }
  return {
    label: entry.label, stroke: entry.faint ? alpha(entry.colour, 0.3) : entry.colour,
    width: entry.faint ? 1 : (entry.width || 1.6), dash: entry.dash ? [6, 5] : undefined,
    spanGaps: true, points: { show: false }, value,
  };
}

function bandsOf(entries) {
  const bands = [];
  entries.forEach((entry, i) => {
    if (entry.role === "hi") bands.push({ series: [i + 1, i + 2], fill: alpha(entry.colour, 0.16) });
  });
  return bands;
}

function zoomHook(onZoom) {
  return { setSelect: [(u) => {
    if (u.select.width < 2) return;
    const lo = u.posToVal(u.select.left, "x");
    const hi = u.posToVal(u.select.left + u.select.width, "x");
    u.setSelect({ left: 0, top: 0, width: 0, height: 0 }, false);
    onZoom(lo, hi);
  }] };
}

// One uPlot chart: `series` is [{label, steps (x values), values, colour, dash, faint,
// band: {lo, hi, label: [lo name, hi name]}}]; log-y unless `logY` is false.
export function lineChart(target, key, title, series,
  { logX = false, logY = true, onZoom = null, xLabel = "step", legend = true, height = 300 } = {}) {
  if (!window.uPlot) {
    target.replaceChildren(h("div", { class: "error-box" },
      "Chart library missing: run `make install` (it copies uPlot from npm into service/web/vendor/)."));
    return null;
  }
  const { tables, entries } = tablesOf(series, logX, logY);
  const data = tables.length ? uPlot.join(tables) : [[]];
  // Same lines as last time: only the data changed, so keep the chart (and the hover).
  const signature = JSON.stringify([title, logX, logY, xLabel, legend,
    entries.map((e) => [e.label, e.role, e.faint, e.colour])]);
  const existing = window.dirconv.charts[key];
  if (existing && existing.signature === signature && target.contains(existing.root)) {
    existing.setData(data);
    return existing;
  }
  if (existing) { existing.destroy(); delete window.dirconv.charts[key]; }
  const options = {
    title, width: Math.max(320, target.clientWidth || 600), height,
    // A log x axis spans the data, not the decades around it (uPlot's default).
    scales: { x: { time: false, distr: logX ? 3 : 1, ...(logX ? { range: (u, lo, hi) => [lo, hi] } : {}) },
      y: { distr: logY ? 3 : 1 } },
    axes: [{ label: xLabel }, { size: 60, values: (u, ticks) => ticks.map(tick) }],
    cursor: { sync: { key: "dirconv" }, drag: { x: true, y: false, setScale: !onZoom } },
    legend: { show: legend },
    series: [{ label: xLabel }, ...entries.map(seriesOption)],
    bands: bandsOf(entries),
    hooks: onZoom ? zoomHook(onZoom) : {},
  };
  target.replaceChildren();
  const chart = new uPlot(options, data, target);
  chart.signature = signature;
  window.dirconv.charts[key] = chart;
  onLeave(() => {
    if (window.dirconv.charts[key] !== chart) return;  // already replaced and destroyed
    chart.destroy();
    delete window.dirconv.charts[key];
  });
  return chart;
}

// ---------- metric definitions ----------

// Every metric a run may log, in the API's order: {name, description, scale, optimizers}.
// Read once; an API without the endpoint gives none, and charts fall back to the bare names.
let metricDefinitions = null;
export function definitions() {
  if (!metricDefinitions) {
    metricDefinitions = api("/metrics/definitions").then((body) => body.data).catch(() => []);
  }
  return metricDefinitions;
}

// The charts of a run: one per metric it logs, those the API defines first, in its order.
export function chartedMetrics(defined, series) {
  const known = defined.filter((d) => d.name in series);
  const names = new Set(known.map((d) => d.name));
  const others = Object.keys(series).filter((name) => !names.has(name))
    .map((name) => ({ name, description: name.replace("_", " "), scale: "log" }));
  return [...known, ...others];
}

// ---------- theory ----------

// A run's spec never changes, so neither does its curve: read once a page load.
const theories = new Map();

// The flow's curve for a run: {steps, values, complete, end}, or null without one.
export async function theoryFor(id) {
  if (!theories.has(id)) {
    theories.set(id, readTheory(id).then((curve) => {
      if (curve === undefined) theories.delete(id);  // the API was busy: ask again later
      return curve || null;
    }));
  }
  return theories.get(id);
}

async function readTheory(id) {
  if (!features.theory) return null;
  try {
    const body = await api(`/experiments/${id}/theory?max_points=${MAX_POINTS}`);
    const steps = body.steps;
    return { steps, values: toNumbers(body.directional_error), complete: body.complete,
      end: steps[steps.length - 1] };
  } catch (error) { return error.status === 503 ? undefined : null; }  // 404/422: no theory for this spec
}

// The theory inside [lo, hi] (the data's steps), cut where it first drops below THEORY_FLOOR:
// {steps, values, floored} where `floored` says a cut was made.
export function clipTheory(theory, lo, hi) {
  const steps = [];
  const values = [];
  for (let i = 0; i < theory.steps.length; i++) {
    const step = theory.steps[i];
    if (step < lo || step > hi) continue;
    if (theory.values[i] < THEORY_FLOOR) return { steps, values, floored: true };
    steps.push(step);
    values.push(theory.values[i]);
  }
  return { steps, values, floored: false };
}

// The legend's name of a theory line: incomplete curves are marked.
export function theoryLabel(base, theory) {
  return theory.complete ? base : `${base} (incomplete: integrated to step ${fmt(theory.end)})`;
}

export function theoryNote(anyIncomplete) {
  const floor = `Flow theory drawn dashed, within the data's steps and only above ${THEORY_FLOOR.toExponential(0)} (the integrator's precision).`;
  return anyIncomplete ? `${floor} A curve marked incomplete stopped early: the flow turned too stiff to follow in the time allowed.` : floor;
}
