// The new-run and new-sweep forms, and the field-error helpers other pages' forms share.
import { ApiError, api, app, features, h, specFields } from "./lib.js";

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

export function clearErrors(root) {
  root.querySelectorAll(".field").forEach((f) => f.classList.remove("invalid"));
  root.querySelectorAll(".error").forEach((e) => { e.textContent = ""; });
}

// Put each 422 message next to its field; `fieldFor` maps a loc to a field element or null.
export function showFieldErrors(error, general, fieldFor) {
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

export function renderNewRun() {
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

export function renderNewSweep() {
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

// The .field element of `name` inside `root`, or null.
export function fieldError(root, name) {
  return name ? root.querySelector(`.field[data-field="${name}"]`) : null;
}
