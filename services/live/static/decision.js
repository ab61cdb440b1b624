// One live decision explained: what was chosen and why (the root's numbers and
// the search tree), what the network saw, which model and settings decided,
// and what became of the order. Reads GET /decisions/{id} (this page's address
// minus /view); marks <body data-ready="true"> when drawn, "error" when not.

import { fieldTable, fmt, html, jsonUrl, showError } from "./dom.js";
import { drawFeatures, staticTable } from "./features.js";
import { defaultMinVisits, drawTree } from "./tree.js";

const DEFAULT_DEPTH = 8; // four moves ahead: decision, chance, decision, ...
const NO_INPUTS = "What the search saw was not kept for this decision (a skipped bar, or past the retention).";

function intParam(name, fallback) {
  const value = Number.parseInt(new URLSearchParams(window.location.search).get(name), 10);
  return Number.isFinite(value) && value >= 0 ? value : fallback;
}

function summary(d) {
  document.title = `${d.action} ${d.instrument} ${d.bar_ts}`;
  document.getElementById("title").textContent = `${d.action} on ${d.instrument} at the bar of ${d.bar_ts}`;
  const units = d.order_units > 0 ? `+${d.order_units}` : String(d.order_units);
  return fieldTable([
    ["id", "decision (client order id)", d.id],
    ["action", "action", d.action],
    ["status", "status", d.status],
    ["reason", "reason", d.reason],
    ["position", "position before → order units", `${d.position_before} → ${units}`],
    ["root_value", "root value (search) / network value", `${fmt(d.root_value)} / ${fmt(d.network_value)} pips`],
  ]);
}

/** Every action at the root, visited or not: prior, visits and Q as the search ended. */
function rootActions(d) {
  if (!d.prior || !d.visit_counts) return html("p", { class: "note", "data-root": "absent" }, NO_INPUTS);
  const table = html("table", { class: "root-actions" });
  const head = html("tr");
  for (const label of ["action", "prior", "visits", "Q (pips)", ""]) head.append(html("th", {}, label));
  table.append(head);
  d.actions.forEach((name, a) => {
    const chosen = a === d.chosen_action;
    const tr = html("tr", { "data-action": a, "data-action-name": name, class: chosen ? "chosen" : "" });
    tr.append(html("td", {}, name), html("td", { class: "num" }, fmt(d.prior[a], 3)),
      html("td", { class: "num" }, d.visit_counts[a]), html("td", { class: "num" }, fmt((d.q_values || [])[a])),
      html("td", {}, chosen ? "chosen" : ""));
    table.append(tr);
  });
  return table;
}

function forecastSection(forecast, section) {
  section.append(html("p", { class: "note", "data-tree": "forecast" },
    `A forecaster decided (nothing was searched): the quantiles of the return over the next ` +
    `${forecast.horizon_bars} bars against the round trip's cost, in pips; it wanted position ` +
    `${forecast.target_position}.`));
  const table = html("table", { class: "forecast" });
  table.append(html("tr", {}, html("th", {}, "quantile"), html("th", {}, "return (pips)")));
  for (const [q, value] of Object.entries(forecast.quantiles)) {
    table.append(html("tr", { "data-quantile": q }, html("td", {}, q), html("td", { class: "num" }, fmt(value, 2))));
  }
  table.append(html("tr", {}, html("td", {}, "cost"), html("td", { class: "num" }, fmt(forecast.cost, 2))));
  section.append(table);
}

function strategistSection(tree, section) {
  section.append(html("p", { class: "note", "data-tree": "strategist" },
    `The Strategist decided (nothing was searched): asked for ${fmt(tree.return_wanted_pips, 1)} pips more ` +
    `in its episode, reading its last ${tree.steps_in_context} steps; its action probabilities:`));
  const table = html("table", { class: "forecast" });
  table.append(html("tr", {}, html("th", {}, "action"), html("th", {}, "probability")));
  for (const [name, p] of Object.entries(tree.probabilities)) {
    table.append(html("tr", { "data-action-name": name }, html("td", {}, name), html("td", { class: "num" }, fmt(p, 3))));
  }
  section.append(table);
}

function treeSection(d, section) {
  if (!d.tree) {
    section.append(html("p", { class: "note", "data-tree": "absent" },
      "The search tree was not kept for this decision (the service keeps the trees of recent and order-placing decisions)."));
    return;
  }
  if (d.tree.family === "tft") {  // a forecaster decided: its "tree" is the forecast it acted on
    forecastSection(d.tree, section);
    return;
  }
  if (d.tree.family === "dt") {  // the Strategist decided: the return it was asked for, its probabilities
    strategistSection(d.tree, section);
    return;
  }
  const options = { maxDepth: intParam("depth", DEFAULT_DEPTH), minVisits: intParam("min_visits", defaultMinVisits(d.tree)) };
  const controls = html("form", { class: "controls" });
  const depth = html("input", { type: "number", min: 1, max: 64, value: options.maxDepth, name: "depth" });
  const minVisits = html("input", { type: "number", min: 1, value: options.minVisits, name: "min_visits" });
  const count = html("span", { class: "count" });
  controls.append(html("label", {}, "depth "), depth, html("label", {}, " min visits "), minVisits, count);
  const legend = html("p", { class: "legend" },
    "● decision node   ◆ chance node (afterstate: its value is the action's Q)   " +
    "edge width ∝ visits   orange: the chosen action, then the most visited child   n visits · v value (pips)");
  const scroll = html("div", { class: "tree-scroll" });
  section.append(controls, legend, scroll);
  function redraw() {
    options.maxDepth = Math.max(1, Number.parseInt(depth.value, 10) || DEFAULT_DEPTH);
    options.minVisits = Math.max(1, Number.parseInt(minVisits.value, 10) || 1);
    const drawn = drawTree(d.tree, d, options);
    scroll.replaceChildren(drawn.element);
    count.textContent = `  ${drawn.nodes} nodes drawn`;
    const params = new URLSearchParams(window.location.search);
    params.set("depth", options.maxDepth);
    params.set("min_visits", options.minVisits);
    window.history.replaceState(null, "", `${window.location.pathname}?${params}`);
  }
  controls.addEventListener("change", redraw);
  controls.addEventListener("submit", (event) => { event.preventDefault(); redraw(); });
  redraw();
}

function featuresSection(features) {
  if (!features) return html("p", { class: "note", "data-features": "absent" }, NO_INPUTS);
  // the journal's bars no longer rebuild the input the search saw: say so rather than draw something else
  if (!features.window) return html("p", { class: "error", "data-features": "mismatch" }, features.error || "no window");
  return drawFeatures(features);
}

function provenance(d) {
  const box = html("div");
  box.append(fieldTable([
    ["model_version", "model version", d.model_version],
    ["checkpoint_sha256", "checkpoint sha256", d.checkpoint_sha256],
    ["episode", "episode", d.episode],
    ["feature_spec", "feature spec", d.feature_spec],
    ["input_hash", "input hash", d.input_hash],
    ["decided_at", "decided at", d.decided_at],
  ]));
  box.append(html("h3", {}, "search settings"));
  const settings = html("table", { class: "fields" });
  for (const [key, value] of Object.entries(d.search || {})) {
    const tr = html("tr");
    tr.append(html("th", {}, key), html("td", { "data-setting": key }, typeof value === "object" ? JSON.stringify(value) : value));
    settings.append(tr);
  }
  box.append(settings);
  return box;
}

function orderSection(d) {
  if (!d.order) return html("p", { class: "note", "data-order": "none" }, `No order was sent (status ${d.status}).`);
  const o = d.order;
  return fieldTable([
    ["client_id", "client id", o.client_id],
    ["units", "units", o.units],
    ["status", "status", o.status],
    ["broker_order_id", "broker order id", o.broker_order_id],
    ["fill_price", "fill price", o.fill_price],
    ["filled_units", "filled units", o.filled_units],
    ["realized_pips", "realized pips", o.realized_pips === null || o.realized_pips === undefined ? null : fmt(o.realized_pips)],
  ], "order.");
}

async function main() {
  const response = await fetch(jsonUrl(), { headers: { Accept: "application/json" } });
  if (!response.ok) throw new Error(`${jsonUrl()}: ${response.status} ${await response.text()}`);
  const d = await response.json();
  document.getElementById("summary").append(summary(d));
  document.getElementById("root").append(rootActions(d));
  treeSection(d, document.getElementById("tree"));
  document.getElementById("features").append(featuresSection(d.features));
  if (d.static) document.getElementById("static").append(staticTable(d.static));
  document.getElementById("provenance").append(provenance(d));
  document.getElementById("order").append(orderSection(d));
}

main().then(
  () => { document.body.dataset.ready = "true"; },
  (error) => { showError(String(error)); document.body.dataset.ready = "error"; },
);
