"""Why a live decision was taken: its inputs are journaled before its order leaves, its
search tree is kept, and `python -m shared.live.explain` replays it bit for bit (or says
plainly why it cannot). The API serving them while the service runs is tested with the
live process in test_live_service.py's manner at the end."""

from __future__ import annotations

import json
import signal
from datetime import datetime, timezone

import duckdb
import httpx
import numpy as np
import pandas as pd
import pytest

from shared.config import RiskConfig
from shared.live.brokers.paper import PaperBroker
from shared.live.explain import main as explain
from shared.live.feeds import ReplayFeed
from shared.live.journal import Journal
from shared.live.provenance import TreeStore, decision_detail, decision_list
from shared.live.trader import LiveTrader
from tests.live_helpers import load, promote_checkpoint, trading_checkpoint
from tests.service_helpers import free_port, start, wait_for


class JournalFirstBroker(PaperBroker):
    """A paper broker that checks, at every order, that the journal already explains it."""

    journal: Journal

    def market_order(self, instrument, units, client_id, *, reduce_only=False):
        if not client_id.startswith("mm-f-"):  # a flatten is no searched decision
            self.journal._flush()
            found = self.journal.con.execute("SELECT count(*) FROM decision_inputs WHERE client_id = ?",
                                             [client_id]).fetchall()[0][0]
            assert found == 1, f"order {client_id} left before its inputs were journaled"
        return super().market_order(instrument, units, client_id, reduce_only=reduce_only)


def _paper_run(features, tmp_path, bars: int = 40, trees_kept: int = 5):
    root = tmp_path / "volume"
    # HOLD as likely as BUY from flat and as CLOSE when long: orders on some bars, none on others
    checkpoint = trading_checkpoint(features, root, 64, prefer=(3, 3, -20, 3))
    model = load(checkpoint)
    feed = ReplayFeed(features.bars, int(features.sessions["test"][0]))
    journal = Journal(root / "live" / "journal.duckdb")
    broker = JournalFirstBroker(tmp_path / "paper.json", spread_pips=4.0, pip_size=0.01)
    broker.journal = journal
    trees = TreeStore(root / "live" / "trees", trees_kept)
    trader = LiveTrader("GBPJPY", broker, journal, model, feed.history(), simulations=8,
                        control_dir=tmp_path / "control", risk=RiskConfig(max_daily_loss_pips=1e6), trees=trees)
    trader.reconcile()
    for _ in range(bars):
        trader.on_bar(feed.next_bars(), datetime.fromtimestamp(feed.now_ns() / 1e9, timezone.utc))
    return root, journal, trees, checkpoint


def test_every_searched_decision_is_explained_and_replays_bit_for_bit(features, tmp_path, capsys):
    root, journal, trees, checkpoint = _paper_run(features, tmp_path)
    frame = journal.frame()
    searched = frame[frame.status != "skipped"]
    orders = searched[searched.order_units != 0]
    assert len(orders) >= 3 and len(searched) > len(orders)
    inputs = journal.con.execute("SELECT * FROM decision_inputs").df()
    assert set(inputs.client_id) == set(searched.client_id)
    row = inputs.iloc[0]
    assert row.episode == 64 and row.feature_spec == "micro-v1" and len(row.input_hash) == 64
    assert json.loads(row.search)["simulations"] == 8 and json.loads(row.search)["seed"] == 0
    # trees: every order's, and only the newest `keep` of the others
    assert all(trees.has(c) for c in orders.client_id)
    assert len(list(trees.recent.glob("*.json.gz"))) == min(5, len(searched) - len(orders))

    detail = decision_detail(journal.con, trees, orders.client_id.iloc[-1], ["HOLD", "BUY", "SELL", "CLOSE"],
                             ["down", "neutral", "up"])
    tree = detail["tree"]
    assert tree["kind"] == "decision" and tree["visits"] == 9  # the root's own visit and 8 simulations
    visits = [0] * 4
    for edge in tree["children"]:
        visits[edge["action"]] = edge["child"]["visits"]
        assert edge["child"]["kind"] == "chance"
        assert detail["q_values"][edge["action"]] == pytest.approx(edge["child"]["value"]) or not visits[edge["action"]]
        for outcome in edge["child"].get("children", []):
            assert 0.0 <= outcome["prior"] <= 1.0  # a chance outcome's probability
    assert visits == detail["visit_counts"]
    assert len(detail["features"]["window"]) == 32 and len(detail["features"]["window"][0]) == 9
    assert detail["order"]["status"] == "FILLED" and detail["order"]["fill_price"] > 0
    assert decision_list(journal.con, trees, limit=5, offset=0, orders="only")["total"] == len(orders)
    journal.close()

    for decision in (orders.client_id.iloc[-1], searched[searched.order_units == 0].client_id.iloc[0]):
        assert explain([decision, "--root", str(root)]) == 0
        assert capsys.readouterr().out.startswith("matches:")

    # a bar changed after the fact: the input no longer hashes the same, and explain says so
    with duckdb.connect(str(root / "live" / "journal.duckdb")) as con:
        last_bar = con.execute("SELECT max(ts) FROM bars").fetchall()[0][0]
        con.execute("UPDATE bars SET close = close + 0.5 WHERE ts = ?", [last_bar])
    last_decision = searched.client_id.iloc[-1]
    assert explain([last_decision, "--root", str(root), "--json"]) == 2
    assert "hashes to" in json.loads(capsys.readouterr().out)["error"]

    # the checkpoint pruned by training (and never promoted): said plainly
    checkpoint.unlink()
    assert explain([orders.client_id.iloc[0], "--root", str(root)]) == 2
    assert "no longer on the volume" in capsys.readouterr().out
    assert explain(["mm-no-such-decision", "--root", str(root)]) == 2
    assert "no decision" in capsys.readouterr().out


def test_the_retention_drops_explanations_never_decisions(features, tmp_path):
    root, journal, trees, _ = _paper_run(features, tmp_path, bars=20)
    decisions = len(journal.frame())
    bar_times = journal.con.execute("SELECT bar_ts FROM decision_inputs ORDER BY bar_ts").df().bar_ts
    middle = pd.Timestamp(bar_times.iloc[len(bar_times) // 2])
    dropped, _ = journal.prune_inputs(middle)
    assert dropped == len(bar_times) // 2
    assert len(journal.frame()) == decisions
    kept_first = journal.con.execute("SELECT min(buffer_first_ts) FROM decision_inputs").fetchall()[0][0]
    assert journal.con.execute("SELECT min(ts) FROM bars").fetchall()[0][0] == kept_first  # what they still need
    order_trees, recent = len(list(trees.orders.glob("*.json.gz"))), len(list(trees.recent.glob("*.json.gz")))
    assert order_trees and trees.prune_before(float("inf")) == order_trees
    assert not list(trees.orders.glob("*.json.gz")) and len(list(trees.recent.glob("*.json.gz"))) == recent
    journal.close()


def test_the_live_api_serves_decisions_while_it_trades_and_explain_asks_it(data_dir, features, tmp_path, capsys):
    promote_checkpoint(tmp_path, trading_checkpoint(features, tmp_path, 64), 64)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {"MICRO_DATA_DIR": str(data_dir), "CHECKPOINT_DIR": str(tmp_path), "LIVE_PORT": str(port),
           "LIVE_SIMULATIONS": "4", "LIVE_REPLAY_BARS_PER_SECOND": "20", "LIVE_MODEL_WAIT_SECONDS": "0.5",
           "LIVE_MAX_DAILY_LOSS_PIPS": "100000", "LIVE_TREES_KEPT": "3"}
    service = start("services.live", env, tmp_path / "live.log")
    try:
        wait_for(f"{url}/ready", process=service, timeout=90)
        found = wait_for(f"{url}/decisions?orders=only&limit=5",
                         ok=lambda r: r.status_code == 200 and r.json()["total"] >= 3, timeout=60).json()
        # the second newest: a decision's tree is written just after its order, so the newest
        # one's may still be on its way; by the next bar's decision it is written
        newest = found["decisions"][1]
        assert newest["order_units"] != 0 and newest["tree_kept"] and newest["inputs_kept"]
        detail = httpx.get(f"{url}/decisions/{newest['id']}").json()
        assert detail["tree"]["children"] and detail["search"]["simulations"] == 4
        assert np.isfinite(detail["features"]["window"]).all()
        assert httpx.get(f"{url}/decisions/mm-nothing").status_code == 404
        assert httpx.get(f"{url}/decisions?orders=sometimes").status_code == 422
        # the journal is held by the service: no other process may open it, even to read; its
        # Parquet copy can be read
        with pytest.raises(duckdb.IOException):
            duckdb.connect(str(tmp_path / "live" / "journal.duckdb"), read_only=True)
        copies = tmp_path / "live" / "export"
        for table in ("decisions", "events", "decision_inputs"):
            assert duckdb.sql(f"SELECT count(*) FROM '{copies / table}.parquet'").fetchall()[0][0] >= 0
        # the journal is held by the service: explain asks its API, and the replay matches
        assert explain([newest["id"], "--root", str(tmp_path), "--url", url]) == 0
        assert capsys.readouterr().out.startswith("matches:")
    finally:
        service.send_signal(signal.SIGTERM)
        service.wait(timeout=60)
    # stopped: explain reads the journal itself
    assert explain([newest["id"], "--root", str(tmp_path)]) == 0
