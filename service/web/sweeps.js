// The sweeps page: every sweep with its grid, member counts by status, and links to its
// members (the runs list filtered by sweep) and to its grouped compare view.
import { LIST_POLL_MS, LIST_ROWS, STATUSES, api, app, every, features, fmt, h } from "./lib.js";

const SEED_FIELDS = ["seed"];

// The compare view of a sweep, grouped by every grid field but the seed (folded into bands).
export function groupedCompareHash(sweep) {
  const by = Object.keys(sweep.grid).filter((field) => !SEED_FIELDS.includes(field));
  if (!by.length || !features.sweepAggregate) return `#/compare?sweep=${sweep.id}`;
  return `#/compare?sweep=${sweep.id}&by=${by.join(",")}&x=time`;
}

function counts(sweep) {
  return h("span", { class: "counts" }, STATUSES.filter((s) => sweep.counts[s]).map((s) =>
    h("span", { class: `badge ${s}`, "data-status": s, "data-count": sweep.counts[s] }, `${sweep.counts[s]} ${s}`)));
}

function gridText(grid) {
  return h("span", { class: "grid" }, Object.entries(grid).map(([field, values]) =>
    h("span", { class: "grid-field" }, h("strong", {}, field), ` ${values.map(fmt).join(", ")}`)));
}

function sweepRow(sweep) {
  return h("tr", { "data-sweep": sweep.id },
    h("td", {}, sweep.id), h("td", {}, sweep.name), h("td", {}, gridText(sweep.grid)),
    h("td", { class: "num" }, sweep.total), h("td", {}, counts(sweep)),
    h("td", {}, h("a", { href: `#/?sweep_id=${sweep.id}`, class: "members" }, "members"), " · ",
      h("a", { href: groupedCompareHash(sweep), class: "compare" }, "compare"), " · ",
      h("a", { href: `#/compare?sweep=${sweep.id}`, class: "lines" }, "every run")),
    h("td", { class: "muted" }, new Date(sweep.created_at).toLocaleString()));
}

export function renderSweeps() {
  if (!features.sweeps) {
    app.replaceChildren(h("h1", {}, "Sweeps"), h("div", { class: "card muted" }, "This API has no sweeps yet."));
    return;
  }
  const body = h("tbody");
  const count = h("span", { class: "muted" });
  app.replaceChildren(
    h("h1", {}, "Sweeps", h("a", { href: "#/new-sweep" }, h("button", { class: "primary" }, "New sweep"))),
    h("div", { class: "card" }, h("div", { class: "toolbar" }, count),
      h("div", { class: "table-scroll" }, h("table", { id: "sweeps" }, h("thead", {}, h("tr", {},
        ["id", "name", "grid", "runs", "by status", "", "created"].map((t) => h("th", {}, t)))), body))));
  every(LIST_POLL_MS, async () => {
    const page = await api(`/sweeps?limit=${Math.min(LIST_ROWS, features.pageSize)}`);
    count.textContent = `${page.count} sweep${page.count === 1 ? "" : "s"}`;
    body.replaceChildren(...page.data.map(sweepRow));
    if (!page.data.length) body.append(h("tr", {}, h("td", { colspan: 7, class: "muted" }, "No sweeps yet.")));
  });
}
