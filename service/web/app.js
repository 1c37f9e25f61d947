// dirconv dashboard: the router. Each page is its own module (plain ES modules, no build step);
// charts are uPlot, installed from npm by the Makefile. auth.js, when the page loads it, wraps
// every request (lib.js `send`).
import { app, detectFeatures, h, leavePage } from "./lib.js";
import { renderCompare } from "./compare.js";
import { renderNewRun, renderNewSweep } from "./forms.js";
import { renderRun } from "./run.js";
import { renderRuns } from "./runs.js";
import { renderSweeps } from "./sweeps.js";

function route() {
  leavePage();
  const [path, search = ""] = location.hash.replace(/^#/, "").split("?");
  const query = new URLSearchParams(search);
  const parts = path.split("/").filter(Boolean);
  const page = parts[0] || "runs";
  document.querySelectorAll("[data-nav]").forEach((a) => a.classList.toggle("active", a.dataset.nav === page));
  if (page === "runs" && parts[1]) renderRun(Number(parts[1]));
  else if (page === "runs") renderRuns(query);
  else if (page === "compare") renderCompare(query);
  else if (page === "sweeps" && parts[1]) location.hash = `#/compare?sweep=${parts[1]}`;
  else if (page === "sweeps") renderSweeps();
  else if (page === "new") renderNewRun();
  else if (page === "new-sweep") renderNewSweep();
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
