// The run page: live charts (server-sent events), spec, summary, steps_to, downloads, and the
// run's lifecycle: rename, tags, notes, archive/restore, rerun, cancel.
import {
  ApiError, FINISHED, MAX_POINTS, RUN_POLL_MS, api, app, badge, every, features, fmt,
  fmtDuration, h, num, onLeave, progressBar, send, showError, tagChips, toNumbers,
} from "./lib.js";
import {
  COLOUR_MEASURED, COLOUR_THEORY, chartedMetrics, clipTheory, definitions, ema, lineChart,
  theoryFor, theoryLabel, theoryNote, xAxisSelect, xValues,
} from "./charts.js";
import { readEvents } from "./events.js";
import { fieldError, clearErrors, showFieldErrors } from "./forms.js";

function kvTable(object, id) {
  return h("table", { class: "kv", id },
    h("tbody", {}, Object.entries(object).map(([k, v]) => h("tr", {}, h("td", {}, k), h("td", {}, fmt(num(v)))))));
}

// steps_to as a table: the first logged step below each error threshold, and its time lr × step.
export function stepsToTable(stepsTo, lr) {
  return h("table", { id: "steps-to" }, h("thead", {}, h("tr", {},
    h("th", {}, "dir. error below"), h("th", { class: "num" }, "first step"), h("th", { class: "num" }, "t = lr × step"))),
  h("tbody", {}, Object.entries(stepsTo).map(([threshold, step]) => h("tr", {},
    h("td", {}, threshold), h("td", { class: "num" }, step === null ? "not reached" : fmt(step)),
    h("td", { class: "num" }, step === null ? "—" : fmt(step * lr))))));
}

function summaryCard(run) {
  if (!run.summary) return [h("h2", {}, "Summary"), h("p", { class: "muted" }, "Appears when the run ends.")];
  const { steps_to: stepsTo, ...rest } = run.summary;
  return [h("h2", {}, "Summary"), kvTable(rest, "summary-table"),
    stepsTo ? h("h2", { class: "sub" }, "Steps to") : "", stepsTo ? stepsToTable(stepsTo, run.spec.lr) : ""];
}

// Download an export through the API wrapper (it carries the sign-in token when there is one).
async function download(id, format, button) {
  button.disabled = true;
  try {
    const response = await send(`/experiments/${id}/metrics.${format}`, {});
    if (!response.ok) throw new ApiError(response.status, (await response.json()).detail);
    const url = URL.createObjectURL(await response.blob());
    h("a", { href: url, download: `experiment-${id}-metrics.${format}` }).click();
    setTimeout(() => URL.revokeObjectURL(url), 60_000);
  } catch (error) { alert(error.message); } finally { button.disabled = false; }
}

function downloads(id) {
  const button = (format, text) => {
    const node = h("button", { id: `download-${format}`, type: "button" }, text);
    node.addEventListener("click", () => download(id, format, node));
    return node;
  };
  return h("div", { class: "toolbar downloads" }, h("span", { class: "muted" }, "metrics"),
    button("csv", "Download CSV"), button("parquet", "Download Parquet"));
}

export function renderRun(id) {
  const page = runLayout(id);
  const state = { run: null, series: null, theory: undefined, range: null, metrics: [],
    axis: "step", smooth: 0, logY: true };
  const charts = {};
  const chartFor = (name) => {
    if (!charts[name]) {
      charts[name] = h("div", { class: "chart", id: `chart-${name}` });
      (page.firstChart.children.length === 0 ? page.firstChart : page.otherCharts).append(charts[name]);
    }
    return charts[name];
  };
  const draw = () => drawRun(state, chartFor, page, zoom);
  const readMetrics = async () => {
    state.metrics = await definitions();
    const params = new URLSearchParams({ max_points: MAX_POINTS });
    if (state.axis === "logstep") params.set("spacing", "log");
    if (state.range) { params.set("start_step", state.range[0]); params.set("end_step", state.range[1]); }
    state.series = (await api(`/experiments/${id}/metrics?${params}`)).series;
  };
  const zoom = async (lo, hi) => {
    const lr = state.axis === "time" ? state.run.spec.lr : 1;
    state.range = [Math.max(0, Math.floor(lo / lr)), Math.ceil(hi / lr)];
    page.reset.hidden = false;
    await readMetrics(); draw();
  };
  page.reset.addEventListener("click", async () => { state.range = null; page.reset.hidden = true; await readMetrics(); draw(); });
  page.axisSlot.append(xAxisSelect(async (axis) => { state.axis = axis; await readMetrics(); draw(); }));
  page.smooth.addEventListener("input", () => { state.smooth = Number(page.smooth.value); draw(); });
  page.yScale.addEventListener("change", () => { state.logY = page.yScale.value === "log"; draw(); });
  const show = async (run) => {
    const first = !state.run;
    state.run = run;
    renderRunHeader(run, page, speed(state, run), () => refresh(true));
    page.errorBox.replaceChildren(run.error ? h("div", { class: "error-box" }, run.error) : "");
    if (first) { page.specCard.append(kvTable(run.spec, "spec")); renderEditor(run, page.editor, refresh); }
    if (first || run.summary) page.summaryCard.replaceChildren(...summaryCard(run), downloads(id));
    if (state.theory === undefined) state.theory = await theoryFor(id);
  };
  const refresh = async (metricsToo = true) => {
    let run;
    try { run = await api(`/experiments/${id}`); } catch (error) { showError(app, error); return null; }
    await show(run);
    if (metricsToo && (!state.range || FINISHED.includes(run.status))) await readMetrics();
    draw();
    return run;
  };
  if (features.events) follow(id, state, { refresh, show, draw, readMetrics });
  else poll(refresh);
}

function poll(refresh) {
  let finished = false;
  every(RUN_POLL_MS, async () => {
    if (finished) return;
    const run = await refresh();
    finished = !run || FINISHED.includes(run.status);
  });
}

// Live updates from GET /experiments/{id}/events: `status` events carry the run, `progress`
// events the step and the points stored since the previous event, appended to the charts.
// The run and its metrics are read in full at the start, after the terminal status (for the
// summary and a fresh downsampling), and when the appended points grow past 2 × MAX_POINTS.
function follow(id, state, { refresh, show, draw, readMetrics }) {
  const stop = new AbortController();
  onLeave(() => stop.abort());
  const onEvent = async (name, data) => {
    if (!state.run || stop.signal.aborted) return;
    if (name === "status" && FINISHED.includes(data.status)) { await refresh(); return; }
    if (name === "status") { await show(data); return; }
    if (name !== "progress") return;
    await show({ ...state.run, progress: { step: data.step, total_steps: data.total_steps } });
    if (!appendPoints(state, data.points || {})) return;
    if (Object.values(state.series).some((s) => s.steps.length > 2 * MAX_POINTS)) await readMetrics();
    draw();
  };
  const stream = async () => {
    const run = await refresh();
    if (!run || FINISHED.includes(run.status) || stop.signal.aborted) return;
    try {
      await readEvents(`/experiments/${id}/events`, onEvent, stop.signal, cursorOf(state));
    } catch (error) {
      if (stop.signal.aborted) return;
      console.warn(error);
    }
    // The stream closed before the run ended (DIRCONV_EVENTS_MAX_SECONDS, or the server went
    // away): read where the run is and follow it again.
    if (!stop.signal.aborted && !FINISHED.includes(state.run?.status)) setTimeout(stream, RUN_POLL_MS);
  };
  stream();
}

// The events' Last-Event-ID for the points the page holds ("name=last step;..."), so that
// the stream starts after them rather than from step 0.
function cursorOf(state) {
  if (!state.series || state.range) return null;
  return Object.entries(state.series).filter(([, s]) => s.steps.length)
    .map(([name, s]) => `${name}=${s.steps[s.steps.length - 1]}`).join(";") || null;
}

// New points ({name: {steps, values}}) appended to what the page holds; false when there
// were none, or the charts show a zoomed range (re-read when the run ends).
function appendPoints(state, points) {
  if (!state.series || state.range) return false;
  let added = false;
  for (const [name, s] of Object.entries(points)) {
    if (!s.steps || !s.steps.length) continue;
    const held = state.series[name] || (state.series[name] = { steps: [], values: [] });
    const last = held.steps.length ? held.steps[held.steps.length - 1] : -1;
    s.steps.forEach((step, i) => {
      if (step > last) { held.steps.push(step); held.values.push(s.values[i]); added = true; }
    });
  }
  return added;
}

function drawRun(state, chartFor, page, zoom) {
  if (!state.series || !state.run) return;
  const lr = state.run.spec.lr;
  const metrics = chartedMetrics(state.metrics, state.series);
  metrics.forEach((metric) => chartFor(metric.name));  // all laid out before any is sized
  let theoryShown = null;
  for (const metric of metrics) {
    const s = state.series[metric.name];
    const logY = state.logY && metric.scale !== "linear";
    const values = toNumbers(s.values);
    const x = xValues(s.steps, state.axis, lr);
    const label = metric.name.replace("_", " ");
    const lines = state.smooth
      ? [{ label: `${label} (raw)`, steps: x, values, colour: COLOUR_MEASURED, faint: true },
        { label, steps: x, values: ema(values, state.smooth, logY), colour: COLOUR_MEASURED }]
      : [{ label, steps: x, values, colour: COLOUR_MEASURED }];
    if (metric.name === "directional_error" && state.theory && s.steps.length) {
      const clipped = clipTheory(state.theory, s.steps[0], s.steps[s.steps.length - 1]);
      lines.push({ label: theoryLabel("flow theory", state.theory), colour: COLOUR_THEORY, dash: true,
        steps: xValues(clipped.steps, state.axis, lr), values: clipped.values });
      theoryShown = state.theory;
    }
    lineChart(chartFor(metric.name), metric.name, metric.description, lines, {
      logX: state.axis === "logstep", logY, onZoom: zoom,
      xLabel: state.axis === "time" ? "t = lr × step" : "step",
    });
  }
  page.note.textContent = theoryShown ? theoryNote(!theoryShown.complete) : "";
}

function runLayout(id) {
  const page = {
    head: h("h1", {}, `Run ${id}`), status: h("div", { class: "toolbar", id: "run-actions" }),
    progress: h("span"), pace: h("span", { id: "pace" }), headerKey: null,
    errorBox: h("div"), editor: h("div"), note: h("div", { class: "legend-note", id: "theory-note" }),
    specCard: h("div", { class: "card grow" }, h("h2", {}, "Spec")),
    summaryCard: h("div", { class: "card grow", id: "summary" }),
    reset: h("button", { id: "reset-zoom", hidden: true }, "Reset zoom"),
    smooth: h("input", { type: "range", id: "smoothing", min: 0, max: 0.99, step: 0.01, value: 0 }),
    yScale: h("select", { id: "y-scale" }, h("option", { value: "log" }, "log (metrics charted so)"),
      h("option", { value: "linear" }, "linear")),
    axisSlot: h("span"), firstChart: h("div"), otherCharts: h("div", { class: "chart-grid" }),
  };
  app.replaceChildren(page.head, page.status, page.errorBox,
    h("div", { class: "card" },
      h("div", { class: "toolbar" }, page.axisSlot, h("label", {}, "y", page.yScale),
        h("label", {}, "smoothing", page.smooth), page.reset,
        h("span", { class: "muted" }, "Drag across a chart to zoom in (the zoomed range is re-read at full detail); hover for values.")),
      page.firstChart, page.otherCharts, page.note),
    page.editor, h("div", { class: "row" }, page.specCard, page.summaryCard));
  return page;
}

// Steps a second since the previous update, and the time left at that pace.
function speed(state, run) {
  const now = performance.now();
  const last = state.lastPoll;
  state.lastPoll = { at: now, step: run.progress.step };
  if (run.status !== "running" || !last || run.progress.step <= last.step) return "";
  const rate = (1000 * (run.progress.step - last.step)) / (now - last.at);
  const left = (run.progress.total_steps - run.progress.step) / rate;
  return `${fmt(Math.round(rate))} steps/s, about ${left < 90 ? `${Math.ceil(left)} s` : `${Math.ceil(left / 60)} min`} left`;
}

function actionButton(id, text, action, run, onclick, danger = false) {
  const button = h("button", { id, class: danger ? "danger" : null, "data-action": action,
    "data-owner": action === "change" ? run.owner : null }, text);
  button.addEventListener("click", async () => {
    button.disabled = true;
    try { await onclick(); } catch (error) { alert(error.message); button.disabled = false; }
  });
  return button;
}

function lifecycleButtons(run, refresh) {
  if (!features.lifecycle) return [];
  const rerun = actionButton("rerun", "Rerun", "create", run, async () => {
    const copy = await api(`/experiments/${run.id}/rerun`, { method: "POST" });
    location.hash = `#/runs/${copy.id}`;
  });
  const archive = run.archived
    ? actionButton("restore", "Restore", "change", run, async () => {
      await api(`/experiments/${run.id}/restore`, { method: "POST" }); await refresh();
    })
    : actionButton("archive", "Archive", "change", run, async () => {
      await api(`/experiments/${run.id}`, { method: "DELETE" }); await refresh();
    }, true);
  return [rerun, archive];
}

// The heading and the action buttons are rebuilt only when what they show changes (a button
// replaced every event could swallow a click); the progress bar and pace on every update.
function renderRunHeader(run, page, pace, refresh) {
  const key = JSON.stringify([run.status, run.name, run.tags, run.archived, run.owner, run.duration_seconds]);
  if (page.headerKey !== key) {
    page.headerKey = key;
    page.head.replaceChildren(`${run.name}`, h("span", { class: "muted" }, `#${run.id}`), badge(run.status),
      run.archived ? h("span", { class: "badge archived", id: "archived-badge" }, "archived") : "",
      tagChips(run.tags));
    page.status.replaceChildren(page.progress, page.pace, ...runActions(run, refresh));
  }
  page.progress.replaceChildren(progressBar(run, true));
  page.pace.textContent = pace;
}

function runActions(run, refresh) {
  const cancel = actionButton("cancel", "Cancel run", "change", run, async () => {
    await api(`/experiments/${run.id}/cancel`, { method: "POST" });
  }, true);
  const took = FINISHED.includes(run.status) && run.duration_seconds != null ? `took ${fmtDuration(run.duration_seconds)}` : "";
  return [FINISHED.includes(run.status) ? "" : cancel, ...lifecycleButtons(run, refresh),
    h("a", { href: `#/compare?ids=${run.id}` }, "compare…"),
    run.sweep_id ? h("a", { href: `#/compare?sweep=${run.sweep_id}` }, `sweep ${run.sweep_id}`) : "",
    run.owner ? h("span", { class: "muted", id: "owner" }, `owner ${run.owner}`) : "",
    h("span", { class: "muted" }, `created ${new Date(run.created_at).toLocaleString()}`),
    took ? h("span", { class: "muted", id: "duration" }, took) : ""];
}

// Name, tags and notes, saved with one PATCH of the fields that changed.
function renderEditor(run, container, refresh) {
  if (!features.lifecycle) return;
  const field = (name, input) => h("div", { class: "field", "data-field": name },
    h("label", { for: input.id }, name), input, h("span", { class: "error", role: "alert" }));
  const name = h("input", { type: "text", id: "run-name", value: run.name });
  const tags = h("input", { type: "text", id: "run-tags", value: run.tags.join(", "), placeholder: "comma-separated" });
  const notes = h("textarea", { id: "run-notes", placeholder: "notes" }, run.notes || "");
  const general = h("div");
  const saved = h("span", { class: "muted", id: "run-saved" });
  const save = actionButton("save-run", "Save", "change", run, async () => {
    clearErrors(container); saved.textContent = ""; general.replaceChildren();
    const body = changedFields(run, name.value, tags.value, notes.value);
    try {
      Object.assign(run, await api(`/experiments/${run.id}`, { method: "PATCH", body }));
      saved.textContent = "saved";
      await refresh(false);
    } catch (error) {
      showFieldErrors(error, general, (loc) => fieldError(container, loc[0] === "body" ? loc[1] : null));
    }
    save.disabled = false;
  });
  container.replaceChildren(h("div", { class: "card", id: "run-editor" },
    h("div", { class: "row" }, h("div", { class: "grow" }, field("name", name), field("tags", tags)),
      h("div", { class: "grow" }, field("notes", notes))),
    general, h("div", { class: "actions" }, save, saved)));
}

function changedFields(run, name, tags, notes) {
  const body = {};
  const tagList = tags.split(",").map((t) => t.trim()).filter(Boolean);
  if (name.trim() !== run.name) body.name = name.trim();
  if (JSON.stringify(tagList) !== JSON.stringify(run.tags)) body.tags = tagList;
  if (notes !== (run.notes || "")) body.notes = notes;
  return body;
}
