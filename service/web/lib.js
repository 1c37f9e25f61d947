// Shared by every page: the API wrapper, DOM and number helpers, page cleanup, feature detection.

export const MAX_POINTS = 2000;   // points a chart asks for; the API thins long series
export const LIST_ROWS = 200;     // rows a list page asks for (fewer if the API's page is smaller)
export const LIST_POLL_MS = 2000;
export const RUN_POLL_MS = 1000;  // only against an API without /experiments/{id}/events
// 16 colours that stay apart on white (Kelly's list of maximum contrast, the palest left out).
export const COLOURS = ["#0067a5", "#be0032", "#008856", "#f38400", "#875692", "#882d17",
  "#e68fac", "#2b3d26", "#d4a000", "#604e97", "#8db600", "#5fa8e0", "#e25822", "#848482",
  "#b3446c", "#a08c5a"];
export const STATUSES = ["queued", "running", "succeeded", "failed", "canceled"];
export const FINISHED = ["succeeded", "failed", "canceled"];

export const app = document.getElementById("app");
export const features = {
  sweeps: false, theory: false, compare: false, aggregate: false, sweepAggregate: false,
  lifecycle: false, events: false,
  pageSize: 1000,  // the largest `limit` a list read takes (DIRCONV_MAX_PAGE_SIZE)
};
const cleanup = [];               // timers, streams and charts of the page on screen
window.dirconv = { charts: {}, violations: [] };  // read by the browser tests
// What the page's Content-Security-Policy refused (index.html): the browser tests expect none.
document.addEventListener("securitypolicyviolation", (event) => {
  window.dirconv.violations.push(`${event.violatedDirective}: ${event.blockedURI} ${event.sample}`);
});

export function onLeave(stop) { cleanup.push(stop); }
export function leavePage() { cleanup.splice(0).forEach((stop) => stop()); }

// ---------- the API ----------

export class ApiError extends Error {
  constructor(status, detail) {
    super(typeof detail === "string" ? detail : JSON.stringify(detail));
    this.status = status;
    this.detail = detail;
  }
}

// fetch(), through the sign-in wrapper of auth.js when the page has it.
export function send(path, init) {
  return window.dirconvAuth ? window.dirconvAuth.fetch(path, init) : fetch(path, init);
}

export async function api(path, options = {}) {
  const init = { headers: { "content-type": "application/json" }, ...options };
  if (init.body && typeof init.body !== "string") init.body = JSON.stringify(init.body);
  const response = await send(path, init);
  let body = null;
  try { body = await response.json(); } catch (_) { body = null; }
  if (!response.ok) throw new ApiError(response.status, body ? body.detail : response.statusText);
  return body;
}

export function missingRoute(error) {
  return error instanceof ApiError && (error.status === 405 || error.detail === "Not Found");
}

// ---------- DOM ----------

export function h(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else if (key === "class") node.className = value;
    // Through the CSSOM: a strict CSP (style-src 'self') refuses style attributes, not this.
    else if (key === "style") node.style.cssText = value;
    else node.setAttribute(key, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

// The API spells non-finite floats "NaN", "Infinity", "-Infinity".
export const num = (v) => (typeof v === "string" && /^(-?Infinity|NaN)$/.test(v) ? Number(v) : v);
export const toNumbers = (values) => values.map((v) => (typeof v === "string" ? Number(v) : v));

export function fmt(value) {
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

export function fmtDuration(seconds) {
  if (seconds === null || seconds === undefined) return "—";
  if (seconds < 90) return `${seconds.toFixed(seconds < 10 ? 1 : 0)} s`;
  if (seconds < 5400) return `${(seconds / 60).toFixed(1)} min`;
  return `${(seconds / 3600).toFixed(1)} h`;
}

export function badge(status) {
  return h("span", { class: `badge ${status}`, "data-status": status }, status);
}

export function tagChips(tags) {
  return h("span", { class: "tags" }, (tags || []).map((t) => h("span", { class: "tag" }, t)));
}

export function progressBar(run, wide = false) {
  const { step, total_steps: total } = run.progress;
  const percent = total ? Math.min(100, (100 * step) / total) : 0;
  return h("div", { class: `progress ${run.status}${wide ? " wide" : ""}`, title: `${step}/${total}` },
    h("div", { style: `width:${percent.toFixed(1)}%` }),
    h("span", {}, `${percent.toFixed(0)}%  ${fmt(step)}/${fmt(total)}`));
}

export function every(ms, fn) {
  let stopped = false;
  let timer = null;
  const tick = async () => {
    if (stopped) return;
    try { await fn(); } catch (error) { console.error(error); }
    if (!stopped) timer = setTimeout(tick, ms);
  };
  tick();
  onLeave(() => { stopped = true; clearTimeout(timer); });
}

export function showError(container, error) {
  container.replaceChildren(h("div", { class: "error-box" }, String(error.message || error)));
}

// ---------- feature detection ----------

// The server's spec fields ({field: {enum, description, ...}} from its OpenAPI schema), or null
// when it has no schema: the forms offer what this server takes, whatever its version.
export let specFields = null;

export async function detectFeatures() {
  try {
    const spec = await api("/openapi.json");
    // Paths with their parameters' names dropped: "/sweeps/{}/aggregate".
    const paths = Object.fromEntries(Object.entries(spec.paths || {})
      .map(([path, methods]) => [path.replace(/\{[^}]*\}/g, "{}"), methods]));
    const has = (path, method = "get") => Boolean(paths[path]?.[method]);
    features.sweeps = has("/sweeps");
    features.theory = has("/experiments/{}/theory");
    features.compare = has("/metrics/compare");
    features.aggregate = has("/metrics/aggregate");
    features.sweepAggregate = has("/sweeps/{}/aggregate");
    features.lifecycle = has("/experiments/{}", "patch");
    features.events = has("/experiments/{}/events");
    specFields = spec.components?.schemas?.ExperimentSpec?.properties || null;
    const limit = (paths["/experiments"]?.get?.parameters || []).find((p) => p.name === "limit");
    features.pageSize = limit?.schema?.maximum || features.pageSize;
  } catch (_) { /* an API without its schema: every optional feature stays hidden */ }
  document.querySelectorAll("[data-feature]").forEach((node) => {
    node.hidden = !features[node.dataset.feature];
  });
}
