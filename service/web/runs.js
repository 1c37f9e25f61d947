// The runs list: filters (status, tag, name, spec values, sweep, archived), sort, selection.
import {
  ApiError, LIST_POLL_MS, LIST_ROWS, STATUSES, api, app, badge, every, features, fmt, fmtDuration, h, num,
  progressBar, tagChips,
} from "./lib.js";

const selected = new Set();
const SORTS = {
  "-created_at": "newest first", created_at: "oldest first",
  min_directional_error: "best dir. error", final_directional_error: "final dir. error",
};

// "depth=4 lr=0.001" <-> the query's spec.depth=4&spec.lr=0.001.
function specFilterText(query) {
  return [...query.entries()].filter(([k]) => k.startsWith("spec."))
    .map(([k, v]) => `${k.slice(5)}=${v}`).join(" ");
}

function setSpecFilters(params, text) {
  for (const token of text.split(/[\s,;]+/).filter(Boolean)) {
    const [field, ...rest] = token.split("=");
    params.append(`spec.${field}`, rest.join("="));
  }
}

function filterControls(query) {
  const status = h("select", { id: "filter-status" }, h("option", { value: "" }, "any status"),
    STATUSES.map((s) => h("option", { value: s, selected: query.get("status") === s }, s)));
  const tag = h("input", { type: "text", id: "filter-tag", placeholder: "tag", value: query.get("tag") || "" });
  const search = h("input", { type: "text", id: "filter-name", placeholder: "name contains" });
  const spec = h("input", { type: "text", id: "filter-spec", placeholder: "depth=4 lr=0.001",
    value: specFilterText(query) });
  const sweep = h("input", { type: "text", id: "filter-sweep", placeholder: "sweep id", size: 6,
    value: query.get("sweep_id") || "" });
  const sort = h("select", { id: "sort" }, Object.entries(SORTS).map(([value, text]) =>
    h("option", { value, selected: (query.get("sort") || "-created_at") === value }, text)));
  const archived = h("input", { type: "checkbox", id: "filter-archived", checked: query.get("archived") === "true" });
  return { status, tag, search, spec, sweep, sort, archived };
}

function listParams(c) {
  const params = new URLSearchParams({ limit: String(Math.min(LIST_ROWS, features.pageSize)) });
  if (c.status.value) params.set("status", c.status.value);
  if (c.tag.value.trim()) params.set("tag", c.tag.value.trim());
  if (!features.lifecycle) return params;  // an older API knows none of the rest
  if (c.sweep.value.trim()) params.set("sweep_id", c.sweep.value.trim());
  if (c.archived.checked) params.set("archived", "true");
  if (c.sort.value !== "-created_at") params.set("sort", c.sort.value);
  setSpecFilters(params, c.spec.value);
  return params;
}

const HEADINGS = [["", ""], ["id", ""], ["name", ""], ["status", ""], ["progress", ""],
  ["sweep", "num"], ["owner", "owner"], ["depth", "num"], ["optimizer", ""], ["lr", "num"],
  ["duration", "num"], ["best dir. error", "num"], ["final dir. error", "num"], ["created", ""]];

export function renderRuns(query) {
  const c = filterControls(query);
  const compare = h("button", { id: "compare-selected", disabled: true,
    onclick: () => { location.hash = `#/compare?ids=${[...selected].join(",")}`; } }, "Compare selected");
  const body = h("tbody");
  const count = h("span", { class: "muted" });
  const problem = h("div", { id: "list-error" });
  const table = h("table", { id: "runs" }, h("thead", {}, h("tr", {},
    HEADINGS.map(([text, kind]) => h("th", { class: kind || null }, text)))), body);
  const later = features.lifecycle ? [h("label", {}, "spec", c.spec), h("label", {}, "sweep", c.sweep),
    h("label", {}, "sort", c.sort), h("label", {}, c.archived, "archived")] : [];
  app.replaceChildren(
    h("h1", {}, "Runs", h("a", { href: "#/new" }, h("button", { class: "primary" }, "New run"))),
    h("div", { class: "card" },
      h("div", { class: "toolbar" }, h("label", {}, "status", c.status), h("label", {}, "tag", c.tag),
        h("label", {}, "name", c.search), ...later, compare, count),
      problem, h("div", { class: "table-scroll" }, table)));
  let rows = [];
  const draw = () => {
    const needle = c.search.value.trim().toLowerCase();
    const shown = rows.filter((run) => !needle || run.name.toLowerCase().includes(needle));
    table.classList.toggle("with-owner", shown.some((run) => run.owner));
    body.replaceChildren(...shown.map((run) => runRow(run, compare)));
    if (!shown.length) body.append(h("tr", {}, h("td", { colspan: HEADINGS.length, class: "muted" }, "No runs.")));
    compare.disabled = selected.size === 0;
  };
  const load = async () => {
    const params = listParams(c);
    keepInAddress(params);
    let page;
    try { page = await api(`/experiments?${params}`); } catch (error) {
      // A filter the API refuses (422 naming it) is shown, not retried silently.
      problem.replaceChildren(h("div", { class: "error-box" }, describe(error)));
      return;
    }
    problem.replaceChildren();
    rows = page.data;
    count.textContent = `${page.count} run${page.count === 1 ? "" : "s"}`;
    draw();
  };
  [c.status, c.tag, c.spec, c.sweep, c.sort, c.archived].forEach((n) => n.addEventListener("change", load));
  c.search.addEventListener("input", draw);
  every(LIST_POLL_MS, load);
}

// The filters in the page's address (without reloading it), so a filtered list can be shared.
function keepInAddress(params) {
  const shown = new URLSearchParams(params);
  shown.delete("limit");
  const hash = shown.toString() ? `#/?${shown}` : "#/";
  if (location.hash !== hash) history.replaceState(null, "", hash);
}

function describe(error) {
  if (error instanceof ApiError && Array.isArray(error.detail)) {
    return error.detail.map((d) => `${(d.loc || []).join(".")}: ${d.msg}`).join("\n");
  }
  return error.message || String(error);
}

function runRow(run, compareButton) {
  const box = h("input", { type: "checkbox", checked: selected.has(run.id), onchange: (e) => {
    if (e.target.checked) selected.add(run.id); else selected.delete(run.id);
    compareButton.disabled = selected.size === 0;
  } });
  const spec = run.spec;
  const summary = run.summary || {};
  const sweep = run.sweep_id ? h("a", { href: `#/?sweep_id=${run.sweep_id}` }, run.sweep_id) : "";
  return h("tr", { "data-id": run.id, class: run.archived ? "archived" : null },
    h("td", {}, box), h("td", {}, run.id),
    h("td", { class: "name" }, h("a", { href: `#/runs/${run.id}` }, run.name), " ", tagChips(run.tags),
      run.archived ? h("span", { class: "badge" }, "archived") : ""),
    h("td", {}, badge(run.status)), h("td", {}, progressBar(run)),
    h("td", { class: "num" }, sweep), h("td", { class: "owner" }, run.owner || ""),
    h("td", { class: "num" }, spec.depth), h("td", {}, spec.optimizer),
    h("td", { class: "num" }, fmt(spec.lr)),
    h("td", { class: "num duration" }, fmtDuration(run.duration_seconds)),
    h("td", { class: "num best" }, fmt(num(summary.min_directional_error))),
    h("td", { class: "num" }, fmt(num(summary.final_directional_error))),
    h("td", { class: "muted" }, new Date(run.created_at).toLocaleString()));
}
