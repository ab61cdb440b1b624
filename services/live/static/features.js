// What the network saw: the close and the 9 temporal features over the window
// as small multiples (each series scaled to its own min..max, since they have
// different units), and the 6 static position features as a table.

import { fmt, html, svg } from "./dom.js";

const LABEL = 200;  // px for the series' names
const PLOT = 420;
const ROW = 34;
const PLOT_HEIGHT = 24;
const VALUE = 90;   // px for the last value

function polylinePoints(values, top) {
  const finite = values.filter((v) => Number.isFinite(v));
  const low = Math.min(...finite);
  const span = Math.max(...finite) - low || 1; // a constant series is a flat line in the middle
  const step = values.length > 1 ? PLOT / (values.length - 1) : 0;
  const flat = Math.max(...finite) === low;
  return values
    .map((v, i) => [i, v])
    .filter(([, v]) => Number.isFinite(v))
    .map(([i, v]) => {
      const y = flat ? top + PLOT_HEIGHT / 2 : top + PLOT_HEIGHT * (1 - (v - low) / span);
      return `${(LABEL + i * step).toFixed(1)},${y.toFixed(1)}`;
    })
    .join(" ");
}

/** The window as one SVG of small multiples: a row per series, the decision's bar at the right end. */
export function drawFeatures(features) {
  const series = [{ name: "close", values: features.close }];
  features.names.forEach((name, k) => series.push({ name, values: features.window.map((row) => row[k]) }));
  const width = LABEL + PLOT + VALUE;
  const height = series.length * ROW + 24;
  const out = svg("svg", { class: "features", width, height, "data-points": features.window.length });
  series.forEach((s, k) => {
    const top = k * ROW + 4;
    const g = svg("g", { class: "series", "data-series": s.name, "data-points": s.values.length });
    g.append(svg("text", { class: "series-name", x: LABEL - 8, y: top + PLOT_HEIGHT / 2 + 4, "text-anchor": "end" }, s.name));
    g.append(svg("rect", { class: "plot", x: LABEL, y: top, width: PLOT, height: PLOT_HEIGHT }));
    g.append(svg("polyline", { points: polylinePoints(s.values, top) }));
    const last = s.values[s.values.length - 1];
    g.append(svg("text", { class: "series-last", x: LABEL + PLOT + 8, y: top + PLOT_HEIGHT / 2 + 4 }, fmt(last, 3)));
    out.append(g);
  });
  const axis = series.length * ROW + 16;
  const times = features.bar_ts || [];
  if (times.length) {
    out.append(svg("text", { class: "axis", x: LABEL, y: axis }, times[0]));
    out.append(svg("text", { class: "axis", x: LABEL + PLOT, y: axis, "text-anchor": "end" }, `${times[times.length - 1]} (decided at its close)`));
  }
  return out;
}

/** The static position features as a name/value table. */
export function staticTable(statics) {
  const table = html("table", { class: "static" });
  statics.names.forEach((name, k) => {
    const tr = html("tr", { "data-static": name });
    tr.append(html("th", {}, name), html("td", { class: "num" }, fmt(statics.values[k], 4)));
    table.append(tr);
  });
  return table;
}
