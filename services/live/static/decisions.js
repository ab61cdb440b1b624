// The recent live decisions, newest first, from GET /decisions (this page's
// address minus /view): a filter (all, with an order, without), paging, and a
// link from each row to its explanation. The filter and page live in the
// address (?orders=&offset=&limit=), so a view can be shared or reloaded.
// Marks <body data-ready="true"> after each load.

import { html, jsonUrl, showError } from "./dom.js";

const FILTERS = ["all", "only", "none"];
const params = new URLSearchParams(window.location.search);
const state = {
  orders: FILTERS.includes(params.get("orders")) ? params.get("orders") : "all",
  limit: Math.min(500, Math.max(1, Number.parseInt(params.get("limit"), 10) || 50)),
  offset: Math.max(0, Number.parseInt(params.get("offset"), 10) || 0),
};

function row(d) {
  const tr = html("tr", { "data-id": d.id });
  const link = html("a", { href: `${encodeURIComponent(d.id)}/view` }, "explain");  // /decisions/{id}/view
  const units = d.order_units > 0 ? `+${d.order_units}` : String(d.order_units);
  tr.append(html("td", {}, d.bar_ts), html("td", {}, d.instrument), html("td", { "data-field": "action" }, d.action),
    html("td", { "data-field": "status" }, d.status), html("td", { class: "num" }, units),
    html("td", {}, d.model_version), html("td", {}, d.tree_kept ? "kept" : "—"));
  const cell = html("td");
  cell.append(link);
  tr.append(cell);
  return tr;
}

async function load() {
  document.body.dataset.ready = "false";
  const query = new URLSearchParams({ limit: state.limit, offset: state.offset, orders: state.orders });
  window.history.replaceState(null, "", `${window.location.pathname}?${query}`);
  const response = await fetch(`${jsonUrl()}?${query}`, { headers: { Accept: "application/json" } });
  if (!response.ok) throw new Error(`${jsonUrl()}: ${response.status} ${await response.text()}`);
  const page = await response.json();
  document.querySelector("#decisions tbody").replaceChildren(...page.decisions.map(row));
  const first = page.decisions.length ? page.offset + 1 : 0;
  document.getElementById("range").textContent = ` ${first}–${page.offset + page.decisions.length} of ${page.total}`;
  document.getElementById("newer").disabled = page.offset === 0;
  document.getElementById("older").disabled = page.offset + page.decisions.length >= page.total;
}

function reload() {
  load().then(
    () => { document.body.dataset.ready = "true"; },
    (error) => { showError(String(error)); document.body.dataset.ready = "error"; },
  );
}

const select = document.querySelector("select[name=orders]");
select.value = state.orders;
select.addEventListener("change", () => { state.orders = select.value; state.offset = 0; reload(); });
document.getElementById("newer").addEventListener("click", () => { state.offset = Math.max(0, state.offset - state.limit); reload(); });
document.getElementById("older").addEventListener("click", () => { state.offset += state.limit; reload(); });
reload();
