"""The Strategist (a Decision Transformer) as a model family (issue 26): trained offline on the rule
experts' trajectories, written to the volume as any candidate, validated and gated like the other
families, paper-traded by live with its episode carried from bar to bar."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import datetime, timezone

import numpy as np
import pytest
import torch

from shared.config import GateConfig, RiskConfig, TrainingConfig, ValidationConfig
from shared.config.challengers import DTConfig
from shared.core.feature_spec import INDICATOR_FEATURES, INDICATORS_SPEC_VERSION
from shared.model.dt import DecisionTransformer
from shared.model.dt_policy import StrategistContext, decide
from shared.training.strategist import StrategistTrainer
from shared.validation.gate import gate
from shared.validation.validator import validate
from shared.volume.candidates import load_candidate
from shared.volume.checkpoints import ReadySignal, signal_name
from tests.helpers import one_torch_thread  # noqa: F401 - the fixture, used by pytestmark

pytestmark = pytest.mark.usefixtures("one_torch_thread")

TINY = DTConfig(context_steps=8, hidden=16, layers=1, heads=2, dropout=0.0, batch_size=16, steps_per_iteration=2,
                checkpoint_interval_steps=4, expert_epsilons=(0.0, 0.3), expert_sessions=40)
CHECKPOINT = "ckpt-ep00000004.pt"


def _config() -> TrainingConfig:
    return TrainingConfig(model="dt", dt=TINY)


@pytest.fixture(scope="module")
def trained(features, tmp_path_factory):
    """Two iterations of a tiny Strategist: one candidate at step 4."""
    root = tmp_path_factory.mktemp("dt")
    trainer = StrategistTrainer(features, root, _config())
    reports = [trainer.run_iteration() for _ in range(2)]
    trainer.close()
    return root, reports, trainer


def _always_buying(root):
    candidate = load_candidate(root / "training" / CHECKPOINT)
    with torch.no_grad():  # BUY far above the rest at every step, then HOLD (where BUY is not legal: long)
        candidate.model.head.bias.copy_(torch.tensor([25.0, 50.0, 0.0, 0.0]))
    return candidate


def test_the_experts_play_train_sessions_only_and_the_newest_are_held_out(trained, features):
    _, _, trainer = trained
    train = np.sort(features.sessions["train"])[-TINY.expert_sessions:]
    held = max(1, int(len(train) * TINY.holdout_share))
    # momentum and the oracle (the demo market has a known drift), each as tuned and with random actions
    experts = 2 * len(TINY.expert_epsilons)
    assert len(trainer.learn.episode_start) == experts * (len(train) - held)
    assert len(trainer.holdout_trajectories.episode_start) == experts * held
    assert len(trainer.learn.actions) == experts * (len(train) - held) * trainer.env.steps_per_episode
    assert trainer.learn.states.shape[1] == len(INDICATOR_FEATURES) + 1
    # the target: a quantile of the learning episodes' discounted returns, within what the experts made
    assert trainer.expert_returns["mean"] <= trainer.target_return_pips <= trainer.expert_returns["max"]


def test_a_candidate_is_written_signalled_and_loads_as_its_family(trained):
    root, reports, trainer = trained
    assert [r.checkpoint for r in reports] == [None, CHECKPOINT]
    assert "action" in reports[0].losses and "holdout" in reports[1].losses
    signal = ReadySignal.read(root / "training" / signal_name(4))
    assert signal.feature_spec_version == INDICATORS_SPEC_VERSION
    candidate = load_candidate(root / "training" / signal.checkpoint, signal.sha256)
    assert candidate.family == "dt" and isinstance(candidate.model, DecisionTransformer)
    assert candidate.config.dt == replace(TINY, num_actions=4)
    strategist = candidate.payload["strategist"]
    assert strategist["target_return_pips"] == trainer.target_return_pips
    assert strategist["holdout_loss"] > 0 and 0 <= strategist["expert_agreement"] <= 1


def test_the_context_carries_the_return_still_wanted_and_its_own_actions():
    config = replace(TINY, context_steps=3, discount=0.5, reward_scale=2.0, return_scale=10.0)
    context = StrategistContext(2, config, target_return_pips=20.0, max_units=1)
    context.advance(np.array([0.0, 0.0]), np.array([0, 1]))
    context.chose(np.array([1, 3]))
    context.advance(np.array([4.0, -2.0]), np.array([1, 0]))          # the first step earned 4 and -2 pips
    packed = context.packed()
    k = config.context_steps
    rtg, actions, positions, real = (packed[:, i * k : (i + 1) * k] for i in range(4))
    # R_0 = 20 pips x 2, then R_1 = (R_0 - 2 x pips) / 0.5; fed / 10
    np.testing.assert_allclose(rtg[:, 1:], [[4.0, (40 - 8) / 0.5 / 10], [4.0, (40 + 4) / 0.5 / 10]])
    assert actions[:, 1:].tolist() == [[1, 0], [3, 0]] and positions[:, 1:].tolist() == [[0, 1], [1, 0]]
    assert real.tolist() == [[0, 1, 1], [0, 1, 1]]
    context.restart(np.array([1]))
    assert context.steps.tolist() == [2, 0] and not context.packed()[1].any()


def test_a_decision_reads_only_its_episodes_real_steps():
    torch.manual_seed(0)
    model = DecisionTransformer(replace(TINY, context_steps=4, state_inputs=3)).eval()
    context = StrategistContext(1, model.config, target_return_pips=10.0, max_units=1)
    legal = np.ones((1, 4), bool)
    window = np.random.default_rng(0).normal(size=(1, 4, 2)).astype(np.float32)
    context.advance(np.zeros(1), np.zeros(1))
    first, _ = decide(model, window, context.packed(), legal, 1)
    other = window.copy()
    other[:, :3] = 99.0  # bars before the episode's first step: not its steps, never read
    assert decide(model, other, context.packed(), legal, 1)[0] == first
    legal[0, first] = False
    assert decide(model, window, context.packed(), legal, 1)[0] != first  # an illegal action is never chosen


def test_validation_plays_the_strategist_and_the_gate_judges_it(trained, features):
    root, _, _ = trained
    candidate = load_candidate(root / "training" / CHECKPOINT)
    seen: list[float] = []
    report = validate(candidate, features, ValidationConfig(max_sessions=4, mc_runs=20), progress=seen.append)
    assert report.family == "dt" and report.sessions == 4 and len(report.session_pnl) == 4
    assert set(report.baselines) == {"random", "flat"} and report.search_beats_raw is None
    assert report.calibration is None and seen == sorted(seen) and seen[-1] == 1.0
    # its results and the baselines' per regime of the sessions (shared/validation/regimes.py)
    by_regime = report.regimes["by_regime"]
    assert sum(r["sessions"] for r in by_regime.values()) == 4
    assert sum(r["candidate"] for r in by_regime.values()) == pytest.approx(report.stats.total_pips, abs=0.5)
    assert all(set(r) == {"sessions", "candidate", "random", "flat"} for r in by_regime.values())
    assert report.regimes["rules"]["horizon_bars"] == 60 and report.regimes["rules"]["volatility_threshold"] > 0
    assert isinstance(gate(report, None, GateConfig()), list)
    buying = validate(_always_buying(root), features, ValidationConfig(max_sessions=4, mc_runs=20))
    assert buying.stats.trades == 4 and buying.stats.action_share[1] > 0  # long once a session, closed at its end


def test_a_strategists_action_reads_no_later_bar(trained, features):
    from shared.data.bars import Bars
    from shared.env import TradingEnv
    from shared.env.rollout import evaluate
    from shared.validation.strategist import strategist_policy

    root, _, _ = trained
    candidate = load_candidate(root / "training" / CHECKPOINT)
    start = int(features.sessions["validation"][0])
    cut = start + 50
    bars = features.bars
    changed = replace(features, bars=Bars(bars.ts, *(np.concatenate([a[: cut + 1], a[cut + 1 :] * 1.5])
                                                   for a in (bars.open, bars.high, bars.low, bars.close, bars.volume))))
    def actions_on(fs) -> list[int]:
        env = TradingEnv(fs, candidate.env_config)
        policy, actions = strategist_policy(candidate, fs, env), []

        def recording(obs):
            actions.append(int(policy(obs)[0]))
            return np.array([actions[-1]])

        evaluate(env, recording, np.array([start]))
        return actions

    played = [actions_on(features), actions_on(changed)]
    assert played[0][:51] == played[1][:51]


def test_a_restart_resumes_the_strategist_where_it_stopped(trained, features, tmp_path):
    import shutil

    root, _, _ = trained
    shutil.copytree(root, tmp_path / "ck")
    again = StrategistTrainer(features, tmp_path / "ck", _config())
    assert again.resumed and again.episode == 4 and again.checkpoints_written == 1
    saved = torch.load(root / "training" / "latest.pt", weights_only=True)["model_state"]
    for name, value in again.model.state_dict().items():
        assert torch.equal(value, saved[name]), name
    assert again.run_iteration().learner_steps == 6
    again.close()
    from shared.training.forecaster import ForecasterTrainer
    from tests.test_tft_family import _config as tft_config

    with pytest.raises(ValueError, match="another model family's run"):
        ForecasterTrainer(features, tmp_path / "ck", tft_config())


def _paper_trader(candidate, features, tmp_path, risk=RiskConfig()):
    """A paper trader of `candidate` on the test split's replayed bars, and a function deciding the next bar."""
    from shared.live.brokers.paper import PaperBroker
    from shared.live.feeds import ReplayFeed
    from shared.live.journal import Journal
    from shared.live.provenance import TreeStore
    from shared.live.trader import LiveTrader

    feed = ReplayFeed(features.bars, int(features.sessions["test"][0]))
    broker = PaperBroker(tmp_path / "paper.json", spread_pips=4.0, pip_size=0.01)
    trader = LiveTrader("GBPJPY", broker, Journal(tmp_path / "journal.duckdb"), candidate, feed.history(),
                        control_dir=tmp_path / "control", trees=TreeStore(tmp_path / "trees", 100), risk=risk)
    trader.reconcile()

    def bar(**kwargs):
        return trader.on_bar(feed.next_bars(), datetime.fromtimestamp(feed.now_ns() / 1e9, timezone.utc), **kwargs)

    return trader, bar


def test_live_paper_trades_the_strategist_and_carries_its_episode(trained, features, tmp_path):
    from shared.live.provenance import decision_detail

    root, _, _ = trained
    trader, bar = _paper_trader(_always_buying(root), features, tmp_path)
    broker, journal, trees = trader.broker, trader.journal, trader.trees
    decisions = [bar() for _ in range(5)]
    assert decisions[0].action == "BUY" and decisions[0].status == "FILLED"
    assert [d.status for d in decisions[1:]] == ["no_order"] * 4  # long: BUY is no longer legal, HOLD
    assert broker.snapshot("GBPJPY").units == trader.position == 1 == journal.filled_units()
    episode = trader.strategist
    context = episode.context
    assert context.steps[0] == 5 and context.actions[0, -5] == 1  # one episode, its first action BUY
    k = TINY.context_steps
    assert context.positions[0, -5:].tolist() == [0, 1, 1, 1, 1]
    # the return still wanted follows the book: the target less what the episode earned so far
    earned = float(trader.book.equity_pips()[0]) - episode.start_equity_pips
    assert earned != 0.0 and context.earned_before[0] == pytest.approx(earned)

    frame = journal.frame()
    order = frame[frame.status == "FILLED"].client_id.iloc[0]
    detail = decision_detail(journal.con, trees, order, list(trader.space.actions), [])
    assert detail["tree"]["family"] == "dt" and detail["tree"]["probabilities"]["BUY"] > 0.99
    assert detail["tree"]["steps_in_context"] == 1
    assert detail["feature_spec"] == INDICATORS_SPEC_VERSION and "error" not in detail["features"]
    assert len(detail["features"]["window"]) == k
    assert len(detail["static"]["names"]) == len(detail["static"]["values"]) == 4 * k
    assert detail["static"]["names"][k - 1] == "return_to_go_t-0"

    # a bar not decided (a guard: the spread too wide) ends the episode: the next decision begins a new one
    skipped = bar(spread_pips=1e6)
    assert skipped.status == "skipped" and context.steps[0] == 5
    bar()
    assert context.steps[0] == 1 and context.positions[0, -1] == 1


def test_the_regime_guard_holds_back_an_entry_where_the_champion_lost(trained, features, tmp_path):
    """LIVE_REGIME_GUARD=on: no new position in a regime where the promoted model's validation
    report shows it losing; elsewhere, or with the guard off, it trades."""
    from shared.model.regimes import REGIMES, label
    from shared.validation.regimes import regime_rules

    root, _, _ = trained
    rules = regime_rules(features)
    guard = RiskConfig(regime_guard=True)

    def promoted(losing: set[str]):
        candidate = _always_buying(root)
        candidate.promoted_metrics = {"regimes": {"rules": rules, "by_regime": {
            r: {"sessions": 3, "candidate": -12.5 if r in losing else 8.0, "flat": 0.0} for r in REGIMES}}}
        return candidate

    trader, bar = _paper_trader(promoted(set(REGIMES)), features, tmp_path / "everywhere", guard)
    held = bar()
    assert held.action == "BUY" and held.status == "no_order" and held.reason.startswith("regime_guard: ")
    assert "-12.5 pips" in held.reason and trader.position == 0 == trader.broker.snapshot("GBPJPY").units
    events = trader.journal.con.execute("SELECT kind FROM events").fetchall()
    assert ("regime_guard",) in events and ("account_cap",) not in events

    # losing only in the regimes the market is not in at the decided bar (the replay's first): it trades
    now = str(label(features.bars.close, np.array([int(features.sessions["test"][0])]), rules)[0])
    trader, bar = _paper_trader(promoted(set(REGIMES) - {now}), features, tmp_path / "elsewhere", guard)
    assert bar().status == "FILLED"
    trader, bar = _paper_trader(promoted(set(REGIMES)), features, tmp_path / "off", RiskConfig())
    assert bar().status == "FILLED"  # the guard off: the losses do not matter


def test_the_training_service_trains_the_strategist_when_told(data_dir, tmp_path):
    """`TRAINING_MODEL=dt python -m services.training`: a candidate signalled, /status and /metrics
    name the family and its loss."""
    import httpx

    from tests.service_helpers import free_port, start, wait_for

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {"MICRO_DATA_DIR": str(data_dir), "CHECKPOINT_DIR": str(tmp_path / "ck"), "TRAINING_PORT": str(port),
           "TRAINING_MODEL": "dt", "TRAINING_DT__CONTEXT_STEPS": "8", "TRAINING_DT__HIDDEN": "16",
           "TRAINING_DT__LAYERS": "1", "TRAINING_DT__HEADS": "2", "TRAINING_DT__BATCH_SIZE": "16",
           "TRAINING_DT__STEPS_PER_ITERATION": "2", "TRAINING_DT__CHECKPOINT_INTERVAL_STEPS": "4",
           "TRAINING_DT__EXPERT_SESSIONS": "20", "TRAINING_DT__EXPERT_EPSILONS": "[0.0]"}
    service = start("services.training", env, tmp_path / "training.log")
    try:
        wait_for(f"{url}/status", lambda r: r.json()["checkpoints_written"] >= 1, process=service, timeout=300)
        status = httpx.get(f"{url}/status").json()
        assert status["model"] == "dt" and status["finished"] is None
        assert 'micro_training_loss{component="action"}' in httpx.get(f"{url}/metrics").text
    finally:
        service.terminate()
        service.wait(timeout=60)
    assert list((tmp_path / "ck" / "training").glob("*.ready"))  # the newest (older ones pruned as it goes on)
    log = (tmp_path / "training.log").read_text()
    assert "dt strategist" in log and json.dumps("dt")  # what it trained on, in its start line


def test_the_regime_guard_names_the_regime_as_the_champions_report_did(trained, features, tmp_path):
    """A report labelled by the champion's Guardian: live names the regime with that Guardian, not the
    rules; LIVE_REGIME_GUARD_UNITS lets a reduced position open there."""
    from shared.config.challengers import GuardianConfig
    from shared.features.indicators import indicator_features
    from shared.model.guardian import TrainedGuardian
    from shared.model.regimes import REGIMES, label
    from shared.training.guardian import train_guardian
    from shared.validation.regimes import regime_rules

    root, _, _ = trained
    small = GuardianConfig(window_bars=16, latent=4, hidden=(24,), batch_size=32, train_steps=4, clusters=4,
                           regime_horizon_bars=12)
    guardian = TrainedGuardian(train_guardian(features, indicator_features(features.bars, "fx"), small, seed=1))
    rules = regime_rules(features)
    by_rules = str(label(features.bars.close, np.array([int(features.sessions["test"][0])]), rules)[0])
    other = next(r for r in REGIMES if r != by_rules)
    guardian.names = (other,) * len(guardian.names)  # this Guardian calls every window `other`

    def promoted(labeller: str):
        candidate = _always_buying(root)
        candidate.guardian = guardian
        candidate.promoted_metrics = {"regimes": {"labeller": labeller, "rules": rules, "by_regime": {
            r: {"sessions": 3, "candidate": -12.5 if r == other else 8.0, "flat": 0.0} for r in REGIMES}}}
        return candidate

    guard = RiskConfig(regime_guard=True)
    trader, bar = _paper_trader(promoted("guardian"), features, tmp_path / "guardian", guard)
    held = bar()
    assert held.status == "no_order" and held.reason.startswith(f"regime_guard: {other} ")
    assert trader.status()["regime_guard"]["regime"] == other and trader.status()["regime_guard"]["labeller"] == "guardian"
    _, bar = _paper_trader(promoted("rules"), features, tmp_path / "rules", guard)
    assert bar().status == "FILLED"  # the rules name another regime, where the champion won
    trader, bar = _paper_trader(promoted("guardian"), features, tmp_path / "reduced",
                                RiskConfig(regime_guard=True, regime_guard_units=1))
    assert bar().status == "FILLED" and trader.position == 1  # one unit may open where it lost


@pytest.fixture(scope="module")
def muzero_file(features, tmp_path_factory):
    """A small MuZero candidate: the Strategist's third expert."""
    from shared.config import NetworkConfig
    from shared.training.trainer import Trainer

    root = tmp_path_factory.mktemp("muzero-expert")
    trainer = Trainer(features, root, TrainingConfig(network=NetworkConfig(tcn_channels=16, hidden=32, dropout=0.0),
                                                     episodes_per_iteration=2, checkpoint_interval_episodes=2))
    report = trainer.run_iteration()
    trainer.close()
    return root / "training" / report.checkpoint


def test_a_muzero_model_is_one_more_expert_when_named(muzero_file, features, tmp_path):
    config = replace(TINY, muzero_expert=muzero_file, expert_epsilons=(0.0,), expert_sessions=12)
    trainer = StrategistTrainer(features, tmp_path, TrainingConfig(model="dt", dt=config))
    train = np.sort(features.sessions["train"])[-12:]
    held = max(1, int(len(train) * TINY.holdout_share))
    assert trainer.experts[:2] == ["momentum", "oracle"] and trainer.experts[2].startswith("muzero ep")
    assert len(trainer.learn.episode_start) == 3 * (len(train) - held)  # three experts, one epsilon
    # the MuZero expert's episodes are its greedy search's: replayed, the same actions
    from shared.env import TradingEnv
    from shared.env.rollout import evaluate
    from shared.search import NetworkSearch, search_policy
    candidate = load_candidate(muzero_file)
    env = TradingEnv(features, replace(candidate.env_config, episode_bars=trainer.env.config.episode_bars))
    played = evaluate(env, search_policy(NetworkSearch(candidate.model, 256, env.space, candidate.search_config)),
                      train[:-held], batch=256)
    steps = trainer.env.steps_per_episode
    recorded = trainer.learn.actions[2 * (len(train) - held) * steps:]  # after momentum's and the oracle's
    np.testing.assert_array_equal(np.bincount(recorded, minlength=4), played.action_counts)
    trainer.iterations.close()


def test_an_expert_that_cannot_teach_is_refused_with_the_reason(muzero_file, trained, features, tmp_path):
    root, _, _ = trained
    dt_file = root / "training" / CHECKPOINT
    with pytest.raises(ValueError, match="is a dt model: the expert must be a muzero one"):
        StrategistTrainer(features, tmp_path / "a", TrainingConfig(model="dt", dt=replace(TINY, muzero_expert=dt_file)))
    from shared.config import EnvConfig
    sized = TrainingConfig(model="dt", dt=replace(TINY, muzero_expert=muzero_file),
                           env=EnvConfig(action_space="sized_positions"))
    with pytest.raises(ValueError, match="action space"):
        StrategistTrainer(features, tmp_path / "b", sized)
