// The search tree of one decision as SVG, laid out left to right: depth along x,
// leaves one row each along y, a parent centred on its children.
//
// The tree is the search crate's own JSON (BatchedSearch.tree_json): decision
// nodes (circles) have action edges to chance nodes (diamonds, the afterstates,
// whose value is that action's Q); chance nodes have outcome edges, with the
// outcome's probability, to decision nodes.
//
// Collapse rule, so a tree of hundreds of nodes stays readable: a child is drawn
// when it is at most `maxDepth` edges from the root and has at least
// `minVisits` visits (default: 1% of the root's, at least 1). A node with
// children left out says how many ("+2 hidden").
//
// The chosen path: the root, the chosen action's edge, then at each node the
// edge to its most visited child (the first of equals), while that child is drawn.

import { fmt, svg } from "./dom.js";

export const COLUMN = 220; // px between depths: room for an action edge's label
export const ROW = 44;     // px between leaves: an edge label above, a node label below
const RADIUS = 7;
const MARGIN = 24;
const LEFT = 60;           // px left of the root: room for its label
const MAX_STROKE = 10;     // px, the edge holding all of the root's visits

export function defaultMinVisits(root) {
  return Math.max(1, Math.floor(root.visits / 100));
}

/** The drawn tree: each kept node with its depth, the edge it hangs from and its kept children. */
export function viewTree(root, decision, { maxDepth, minVisits }) {
  const name = (names, i) => (names && names[i] !== undefined ? String(names[i]) : String(i));
  function visit(node, depth, edge) {
    const all = node.children || [];
    const kept = depth < maxDepth ? all.filter((e) => e.child.visits >= minVisits) : [];
    const view = {
      id: node.node, kind: node.kind, visits: node.visits, value: node.value, reward: node.reward,
      depth, edge, hidden: all.length - kept.length, exportCut: !("children" in node), chosen: false,
    };
    view.children = kept.map((e) => {
      const isAction = node.kind === "decision";
      const index = isAction ? e.action : e.outcome;
      const childEdge = {
        kind: isAction ? "action" : "outcome", index, prior: e.prior,
        name: name(isAction ? decision.actions : decision.outcomes, index),
      };
      return visit(e.child, depth + 1, childEdge);
    });
    return view;
  }
  const view = visit(root, 0, null);
  markChosenPath(view, decision.chosen_action);
  return view;
}

function markChosenPath(view, chosenAction) {
  view.chosen = true;
  let node = view.children.find((c) => c.edge.index === chosenAction);
  while (node) {
    node.chosen = true;
    // a child left out has fewer visits than every kept one, so the most visited is kept if any is
    let best = null;
    for (const child of node.children) if (best === null || child.visits > best.visits) best = child;
    node = best;
  }
}

function layout(view) {
  let row = 0;
  let deepest = 0;
  (function place(node) {
    node.x = LEFT + node.depth * COLUMN;
    deepest = Math.max(deepest, node.depth);
    if (node.children.length === 0) {
      node.y = MARGIN + 14 + row++ * ROW;
      return;
    }
    node.children.forEach(place);
    node.y = (node.children[0].y + node.children[node.children.length - 1].y) / 2;
  })(view);
  return { width: LEFT + MARGIN + deepest * COLUMN + 170, height: 2 * MARGIN + row * ROW };
}

function edgeLabel(edge, child) {
  if (edge.kind === "action") return `${edge.name} · p ${fmt(edge.prior)} · Q ${fmt(child.value)}`;
  const reward = child.reward ? ` · r ${fmt(child.reward)}` : "";
  return `${edge.name} ${fmt(100 * edge.prior, 0)}%${reward}`;
}

function drawEdge(group, parent, child, rootVisits) {
  const edge = child.edge;
  const attrs = {
    class: `edge ${edge.kind}${child.chosen ? " chosen" : ""}`, "data-edge": edge.kind,
    "data-parent": parent.id, "data-child": child.id, "data-visits": child.visits, "data-prior": edge.prior,
  };
  if (edge.kind === "action") Object.assign(attrs, { "data-action": edge.index, "data-action-name": edge.name, "data-q": child.value });
  else Object.assign(attrs, { "data-outcome": edge.index, "data-outcome-name": edge.name, "data-reward": child.reward });
  if (child.chosen) attrs["data-chosen"] = "true";
  const g = svg("g", attrs);
  const [x0, y0, x1, y1] = [parent.x + RADIUS, parent.y, child.x - RADIUS, child.y];
  const mid = (x0 + x1) / 2;
  const width = 1 + (MAX_STROKE - 1) * child.visits / Math.max(rootVisits, 1);
  g.append(svg("path", { d: `M${x0},${y0} C${mid},${y0} ${mid},${y1} ${x1},${y1}`, "stroke-width": width.toFixed(2) }));
  g.append(svg("text", { class: "edge-label", x: x1 - 4, y: y1 - 6, "text-anchor": "end" }, edgeLabel(edge, child)));
  g.append(svg("title", {}, `${edgeLabel(edge, child)}\nvisits ${child.visits}`));
  group.append(g);
}

function drawNode(group, node) {
  const attrs = {
    class: `node ${node.kind}${node.chosen ? " chosen" : ""}`, "data-node": node.id, "data-kind": node.kind,
    "data-visits": node.visits, "data-value": node.value, "data-depth": node.depth, "data-hidden": node.hidden,
  };
  if (node.chosen) attrs["data-chosen"] = "true";
  const g = svg("g", attrs);
  const { x, y } = node;
  if (node.kind === "decision") g.append(svg("circle", { cx: x, cy: y, r: RADIUS }));
  else g.append(svg("polygon", { points: `${x},${y - RADIUS - 1} ${x + RADIUS + 1},${y} ${x},${y + RADIUS + 1} ${x - RADIUS - 1},${y}` }));
  const hidden = node.hidden ? ` · +${node.hidden} hidden` : "";
  g.append(svg("text", { class: "node-label", x, y: y + RADIUS + 12, "text-anchor": "middle" },
    `n ${node.visits} · v ${fmt(node.value)}${hidden}`));
  const what = node.kind === "decision" ? "decision node" : "chance node (afterstate)";
  g.append(svg("title", {}, `${what} ${node.id}\nvisits ${node.visits}\nvalue ${node.value}\nreward ${node.reward}` +
    (node.exportCut ? "\n(the export's depth limit: children not kept)" : "")));
  group.append(g);
}

/** The tree as an <svg> element; returns it with the number of nodes drawn. */
export function drawTree(root, decision, options) {
  const view = viewTree(root, decision, options);
  const size = layout(view);
  const out = svg("svg", { class: "tree", width: size.width, height: size.height, "data-max-depth": options.maxDepth, "data-min-visits": options.minVisits });
  const edges = svg("g", { class: "edges" });
  const nodes = svg("g", { class: "nodes" });
  let count = 0;
  (function draw(node) {
    count += 1;
    for (const child of node.children) {
      drawEdge(edges, node, child, root.visits);
      draw(child);
    }
    drawNode(nodes, node);
  })(view);
  out.append(edges, nodes);
  return { element: out, nodes: count };
}
