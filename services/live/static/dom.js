// Small DOM helpers shared by the decision pages. Every string reaches the page
// through setAttribute or textContent, never innerHTML: decision data is text.

const SVG_NS = "http://www.w3.org/2000/svg";

function fill(element, attrs, text) {
  for (const [name, value] of Object.entries(attrs)) {
    if (value !== undefined && value !== null) element.setAttribute(name, String(value));
  }
  if (text !== undefined && text !== null) element.textContent = String(text);
  return element;
}

/** An SVG element with attributes and optional text. */
export function svg(name, attrs = {}, text) {
  return fill(document.createElementNS(SVG_NS, name), attrs, text);
}

/** An HTML element with attributes and optional text. */
export function html(name, attrs = {}, text) {
  return fill(document.createElement(name), attrs, text);
}

/** A number for people: fixed digits, or a dash where there is none (an unvisited action's Q). */
export function fmt(x, digits = 2) {
  return x === null || x === undefined || Number.isNaN(Number(x)) ? "—" : Number(x).toFixed(digits);
}

/** A table of label/value rows; each value cell carries data-field=<key> for tests and scripts. */
export function fieldTable(rows, fieldPrefix = "") {
  const table = html("table", { class: "fields" });
  for (const [key, label, value] of rows) {
    const tr = html("tr");
    tr.append(html("th", {}, label), html("td", { "data-field": fieldPrefix + key }, value === null || value === undefined ? "—" : value));
    table.append(tr);
  }
  return table;
}

/** The page's JSON: its own address minus the trailing /view (works behind a path prefix too). */
export function jsonUrl() {
  return window.location.pathname.replace(/\/view\/?$/, "");
}

export function showError(message) {
  const box = document.getElementById("error");
  box.textContent = message;
  box.hidden = false;
}
