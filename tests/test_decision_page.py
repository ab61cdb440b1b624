"""The decision pages (services/live/pages.py, services/live/static/) in a real
headless Chromium, Debian's chromium and chromedriver driven by Selenium.

The live service trades on paper; its last order-placing decision's page is then
compared with GET /decisions/{id}: every tree node the collapse rule keeps, with
its visits and value, the root's action edges (visits, prior, Q), the chosen
path, the feature chart's points, provenance and the order's fill; the list page
with GET /decisions (paging, the order filter, the link to a view). A stub app
serves a decision with nothing kept, with markup in its strings.

DECISION_PAGE_SCREENSHOT=docs/images/decision-page.png saves a screenshot of the
live decision's page there (off by default). Not MICRO_*: the settings refuse
unknown MICRO_ variables."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import httpx
import pytest
import uvicorn
from fastapi import FastAPI, HTTPException
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.support.ui import WebDriverWait

from services.live.pages import add_decision_pages
from tests.live_helpers import promote_checkpoint, trading_checkpoint
from tests.service_helpers import free_port, require_tool, start, wait_for

DEFAULT_DEPTH = 8  # the page's default collapse depth (static/decision.js)


# ---- the browser -------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def browser():
    options = webdriver.ChromeOptions()
    options.binary_location = require_tool("chromium", "chromium")
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--window-size=1600,1400"):
        options.add_argument(argument)
    # a driver path given: Selenium Manager looks nothing up (there is no network to look in)
    driver = webdriver.Chrome(service=Service(executable_path=require_tool("chromedriver", "chromium-driver")), options=options)
    yield driver
    driver.quit()


def open_page(driver, url: str) -> None:
    """Load `url` and wait for its script to say it has drawn (body data-ready)."""
    driver.get(url)
    ready = WebDriverWait(driver, 20).until(
        lambda d: d.execute_script("return document.body && ['true', 'error'].includes(document.body.dataset.ready) "
                                   "? document.body.dataset.ready : null"), f"{url} never said it had drawn")
    assert ready == "true", driver.execute_script("return document.getElementById('error').textContent")


def wait_ready(driver, address_part: str) -> None:
    """Wait for the page whose address holds `address_part` to say it has drawn (after a click)."""
    WebDriverWait(driver, 20).until(lambda d: d.execute_script(
        "return document.body.dataset.ready === 'true' && location.href.includes(arguments[0])", address_part))


def drawn(driver, selector: str) -> list[dict]:
    """The data attributes and text of every element matching `selector`, read in one round trip
    (an SVG group's text: its own <text> labels joined by |, without its tooltip)."""
    return driver.execute_script(
        "return [...document.querySelectorAll(arguments[0])].map(e => ({...e.dataset, text: e.tagName === 'g' "
        "? [...e.children].filter(c => c.tagName === 'text').map(c => c.textContent).join('|') : e.textContent}))",
        selector)


# ---- the services ----------------------------------------------------------------------------------------------

def live_env(data_dir: Path, root: Path, port: int) -> dict[str, str]:
    # 200 simulations: a tree of about 200 nodes, so the collapse rule has something to leave out
    return {"MICRO_DATA_DIR": str(data_dir), "CHECKPOINT_DIR": str(root), "LIVE_PORT": str(port),
            "LIVE_SIMULATIONS": "200", "LIVE_REPLAY_BARS_PER_SECOND": "20", "LIVE_MODEL_WAIT_SECONDS": "0.5",
            "LIVE_MAX_DAILY_LOSS_PIPS": "100000"}


@pytest.fixture
def serve():
    """Serve an app on a free port in this process; yields a function that starts one and returns its URL."""
    servers = []

    def start_app(app: FastAPI) -> str:
        port = free_port()
        server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        servers.append((server, thread))
        deadline = time.time() + 10
        while not server.started and time.time() < deadline:
            time.sleep(0.05)
        return f"http://127.0.0.1:{port}"

    yield start_app
    for server, thread in servers:
        server.should_exit = True
        thread.join(timeout=10)


# ---- what the page must draw, worked out from the JSON --------------------------------------------------------------

def expected_tree(decision: dict, max_depth: int, min_visits: int):
    """(node id -> (kind, visits, value, hidden), chosen node ids, chosen edges as (parent, child)) under the
    page's collapse rule: a child is drawn at most max_depth edges from the root, with at least min_visits visits."""
    nodes: dict[int, tuple] = {}
    kept_children: dict[int, list[dict]] = {}

    def visit(node: dict, depth: int) -> None:
        children = node.get("children", [])
        kept = [e for e in children if e["child"]["visits"] >= min_visits] if depth < max_depth else []
        nodes[node["node"]] = (node["kind"], node["visits"], node["value"], len(children) - len(kept))
        kept_children[node["node"]] = kept
        for edge in kept:
            visit(edge["child"], depth + 1)

    root = decision["tree"]
    visit(root, 0)
    path, edges = [root["node"]], []
    step = next((e for e in kept_children[root["node"]] if e["action"] == decision["chosen_action"]), None)
    while step is not None:
        edges.append((path[-1], step["child"]["node"]))
        path.append(step["child"]["node"])
        kept = kept_children[path[-1]]
        step = max(kept, key=lambda e: e["child"]["visits"]) if kept else None  # max keeps the first of equals
    return nodes, set(path), set(edges)


def check_decision_page(driver, decision: dict, *, max_depth: int, min_visits: int) -> int:
    """Compare the drawn page with its JSON; returns the number of tree nodes drawn."""
    nodes, chosen_nodes, chosen_edges = expected_tree(decision, max_depth, min_visits)
    seen = drawn(driver, "svg.tree g.node")
    assert {int(n["node"]) for n in seen} == set(nodes), "every node the collapse rule keeps is drawn, no other"
    for n in seen:
        kind, visits, value, hidden = nodes[int(n["node"])]
        assert (n["kind"], int(n["visits"]), int(n["hidden"])) == (kind, visits, hidden)
        assert float(n["value"]) == pytest.approx(value)
        assert n["text"].startswith(f"n {visits} · v {value:.2f}"), n["text"]
    assert {int(n["node"]) for n in seen if n.get("chosen") == "true"} == chosen_nodes

    edges = drawn(driver, "svg.tree g.edge")
    assert len(edges) == len(nodes) - 1
    assert {(int(e["parent"]), int(e["child"])) for e in edges if e.get("chosen") == "true"} == chosen_edges
    root = decision["tree"]["node"]
    root_edges = {int(e["action"]): e for e in edges if int(e["parent"]) == root}
    visited = [a for a, n in enumerate(decision["visit_counts"]) if n >= min_visits]
    assert sorted(root_edges) == visited
    for a, e in root_edges.items():
        assert int(e["visits"]) == decision["visit_counts"][a]
        assert float(e["prior"]) == pytest.approx(decision["prior"][a], abs=1e-6)
        assert float(e["q"]) == pytest.approx(decision["q_values"][a], abs=1e-6)
        name = decision["actions"][a]
        assert e["actionName"] == name
        assert e["text"] == f"{name} · p {decision['prior'][a]:.2f} · Q {decision['q_values'][a]:.2f}"
    for e in edges:
        if e["edge"] == "outcome":
            assert e["outcomeName"] == decision["outcomes"][int(e["outcome"])]
            assert e["text"].startswith(f"{e['outcomeName']} {100 * float(e['prior']):.0f}%")

    table = drawn(driver, "table.root-actions tr[data-action]")
    assert [r["actionName"] for r in table] == decision["actions"]

    window = len(decision["features"]["window"])
    series = driver.execute_script("return [...document.querySelectorAll('svg.features g.series')]"
                                   ".map(g => [g.dataset.series, g.querySelector('polyline').points.numberOfItems])")
    assert series == [["close", window]] + [[name, window] for name in decision["features"]["names"]]
    statics = drawn(driver, "table.static tr[data-static]")
    assert [s["static"] for s in statics] == decision["static"]["names"]

    def field(name: str) -> str:
        return driver.execute_script(f"return document.querySelector('[data-field=\"{name}\"]').textContent")

    for key in ("model_version", "checkpoint_sha256", "feature_spec", "input_hash"):
        assert field(key) == decision[key]
    assert field("episode") == str(decision["episode"])
    assert field("status") == decision["status"]
    if decision["order"] is not None:
        assert field("order.status") == decision["order"]["status"]
        assert float(field("order.fill_price")) == decision["order"]["fill_price"]
    settings = {s["setting"]: s["text"] for s in drawn(driver, "[data-setting]")}
    assert settings["simulations"] == str(decision["search"]["simulations"])
    return len(seen)


def screenshot(driver) -> None:
    """The whole page, the tree unscrolled, to $DECISION_PAGE_SCREENSHOT (when set)."""
    path = os.environ.get("DECISION_PAGE_SCREENSHOT")
    if path:
        height = driver.execute_script("document.querySelector('.tree-scroll').style.maxHeight = 'none';"
                                       "return document.body.scrollHeight")
        driver.set_window_size(1600, min(height + 140, 8000))
        driver.save_screenshot(path)
        driver.set_window_size(1600, 1400)


# ---- the tests --------------------------------------------------------------------------------------------------------

def test_the_live_services_last_order_is_explained_in_a_browser(browser, data_dir, features, tmp_path):
    """A paper run until a few orders; then the same volume and journal served again with the model withdrawn,
    so nothing changes while the browser looks (and what explains a decision outlives a restart)."""
    promote_checkpoint(tmp_path, trading_checkpoint(features, tmp_path, 64, prefer=(0.5, 1.0, -0.5, 0.0)), 64)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    service = start("services.live", live_env(data_dir, tmp_path, port), tmp_path / "live.log")
    try:
        wait_for(f"{url}/decisions?orders=only", lambda r: r.status_code == 200 and r.json()["total"] >= 3,
                 process=service, timeout=90)
    finally:
        service.terminate()
        service.wait(timeout=30)
    (tmp_path / "promoted" / "CURRENT").unlink()
    service = start("services.live", live_env(data_dir, tmp_path, port), tmp_path / "live.log")
    try:
        wait_for(f"{url}/health", process=service, timeout=60)
        assert httpx.get(f"{url}/decisions/view").status_code == 200, \
            "the live app serves no decision pages: build_app calls add_decision_pages(app) before add_decision_api"
        last = httpx.get(f"{url}/decisions?orders=only").json()["decisions"][0]
        decision = httpx.get(f"{url}/decisions/{last['id']}").json()
        assert decision["order"] is not None and decision["tree"] is not None

        open_page(browser, f"{url}/decisions/{last['id']}/view")
        min_visits = max(1, decision["tree"]["visits"] // 100)
        assert min_visits > 1, "a tree big enough for the collapse rule to leave something out"
        shown = check_decision_page(browser, decision, max_depth=DEFAULT_DEPTH, min_visits=min_visits)
        screenshot(browser)
        # the whole tree, nothing collapsed: every node the search made, with its visits and value
        open_page(browser, f"{url}/decisions/{last['id']}/view?depth=64&min_visits=1")
        assert check_decision_page(browser, decision, max_depth=64, min_visits=1) > max(shown, 100)

        def listed(query: str) -> list[str]:
            return [d["id"] for d in httpx.get(f"{url}/decisions?{query}").json()["decisions"]]

        open_page(browser, f"{url}/decisions/view?limit=5")
        rows = drawn(browser, "#decisions tbody tr")
        assert [r["id"] for r in rows] == listed("limit=5&offset=0&orders=all")
        assert browser.find_element("id", "newer").get_attribute("disabled")
        browser.find_element("id", "older").click()
        wait_ready(browser, "offset=5")
        assert [r["id"] for r in drawn(browser, "#decisions tbody tr")] == listed("limit=5&offset=5&orders=all")
        browser.find_element("css selector", "select[name=orders] option[value=only]").click()
        wait_ready(browser, "orders=only")  # the filter is in the address: a view can be shared
        only = drawn(browser, "#decisions tbody tr")
        assert [r["id"] for r in only] == listed("limit=5&offset=0&orders=only")
        assert only[0]["id"] == last["id"]
        browser.find_element("css selector", f"tr[data-id='{last['id']}'] a").click()
        wait_ready(browser, f"/decisions/{last['id']}/view")
        assert drawn(browser, "[data-field='order.status']")[0]["text"] == decision["order"]["status"]
    finally:
        service.terminate()
        service.wait(timeout=30)


def test_a_decision_with_nothing_kept_shows_what_is_known_as_text(browser, serve):
    """A skipped bar (or one past the retention): no inputs, no tree, no order. Its strings reach the page
    as text, never as markup; the static route serves the page's own files and nothing else."""
    hostile = '<img src=x onerror="document.body.dataset.owned=1">'
    skipped = {"id": "mm-d-skipped", "instrument": "GBPJPY", "bar_ts": "2024-03-18T14:03:00",
               "decided_at": "2024-03-18T14:04:00.1", "model_version": "ep00000064-f7d7fc7befef", "action": "HOLD",
               "position_before": 0, "order_units": 0, "status": "skipped", "reason": hostile,
               "visit_counts": None, "root_value": None, "order": None, "actions": ["HOLD", "BUY", "SELL", "CLOSE"],
               "outcomes": ["down", "neutral", "up"], "tree": None, "tree_kept": False, "inputs_kept": False}
    app = FastAPI()
    add_decision_pages(app)  # before /decisions/{decision_id}, which would take "view" for an id

    @app.get("/decisions")
    def listing(limit: int = 50, offset: int = 0, orders: str = "all"):
        row = {k: skipped[k] for k in ("id", "instrument", "bar_ts", "action", "status", "order_units",
                                       "model_version", "tree_kept")}
        return {"decisions": [row] if orders != "only" else [], "limit": limit, "offset": offset,
                "total": int(orders != "only")}

    @app.get("/decisions/{decision_id}")
    def one(decision_id: str):
        if decision_id != skipped["id"]:
            raise HTTPException(404, f"no decision {decision_id}")
        return skipped

    url = serve(app)
    open_page(browser, f"{url}/decisions/{skipped['id']}/view")
    for absent in ("[data-root=absent]", "[data-tree=absent]", "[data-features=absent]", "[data-order=none]"):
        assert drawn(browser, absent), absent
    assert drawn(browser, "[data-field=reason]")[0]["text"] == hostile
    assert not drawn(browser, "img") and "owned" not in browser.execute_script("return {...document.body.dataset}")
    open_page(browser, f"{url}/decisions/view")
    assert [r["id"] for r in drawn(browser, "#decisions tbody tr")] == [skipped["id"]]

    assert httpx.get(f"{url}/static/live/tree.js").headers["content-type"].startswith("text/javascript")
    for name in ("pages.py", "..%2Fpages.py", "%2E%2E%2Fpages.py", ".hidden.js", "missing.js", "..", "%2e%2e"):
        assert httpx.get(f"{url}/static/live/{name}").status_code == 404, name
