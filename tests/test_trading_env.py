"""The trading environment against hand-computed episodes."""

from __future__ import annotations

import numpy as np
import pytest

from shared.config import EnvConfig
from shared.env import TradingEnv
from shared.env.actions import BUY, CLOSE, HOLD, HOLD_BUY_SELL_CLOSE, SELL, SIZED_POSITIONS
from tests.helpers import bars_from_closes, feature_set_from_bars

WARM = [170.0] * 40  # history for the 32-bar window


def _env(closes, reward="pnl", episodes=1):
    fs = feature_set_from_bars(bars_from_closes(WARM + closes))
    env = TradingEnv(fs, EnvConfig(reward=reward, episode_bars=len(closes)))
    env.reset(np.full(episodes, len(WARM)))
    return env, fs


def test_pnl_rewards_sum_to_the_trade_after_costs():
    env, _ = _env([170.00, 170.10, 170.30, 170.20, 170.20])
    rewards = []
    for action in (BUY, HOLD, CLOSE, HOLD):
        result = env.step(np.array([action]))
        rewards.append(float(result.reward[0]))
    assert rewards == pytest.approx([10 - 2, 20, -2, 0])
    assert result.done
    assert env.stats[0].trades_pips == pytest.approx([26.0])  # 30 pips less the 4-pip spread
    assert env.stats[0].pnl_pips == pytest.approx(26.0)


def test_amddp1_rewards():
    env, _ = _env([170.00, 170.10, 170.30, 170.20, 170.20], reward="amddp1")
    rewards = [float(env.step(np.array([a])).reward[0]) for a in (BUY, HOLD, CLOSE, HOLD)]
    assert rewards == pytest.approx([1.0, 0.0, 26.0, -0.05])


def test_amddp1_close_pays_for_drawdown():
    # short at 169.98 (bid); +12, then -28 from the peak, close at 170.00 mid -> 170.02 ask
    env, _ = _env([170.00, 169.84, 170.12, 170.00, 170.00], reward="amddp1")
    rewards = [float(env.step(np.array([a])).reward[0]) for a in (SELL, HOLD, HOLD, CLOSE)]
    trade = (170.00 - 170.00) / 0.01 - 4  # flat move less the spread
    max_dd = (169.98 - 169.84) / 0.01 - (169.98 - 170.12) / 0.01  # 14 peak to -14
    assert rewards[:3] == pytest.approx([1.0, 0.0, 0.0])
    assert rewards[3] == pytest.approx(trade - 0.01 * max_dd)


def test_open_position_is_closed_at_the_end_of_the_session():
    env, _ = _env([170.00, 170.10, 170.20])
    r0 = env.step(np.array([SELL])).reward[0]
    r1 = env.step(np.array([HOLD]))
    assert r0 == pytest.approx(-10 - 2)
    assert r1.reward[0] == pytest.approx(-10 - 2) and r1.done
    assert env.stats[0].trades_pips == pytest.approx([-24.0])
    assert env.position[0] == 0


def test_legal_masks_and_illegal_actions():
    env, _ = _env([170.0] * 5, episodes=2)
    obs = env.observe()
    assert obs.legal.tolist() == [[True, True, True, False]] * 2  # flat: no CLOSE
    env.step(np.array([BUY, HOLD]))
    assert env.observe().legal.tolist() == [[True, False, False, True], [True, True, True, False]]
    with pytest.raises(ValueError, match="illegal action BUY"):
        env.step(np.array([BUY, HOLD]))


def test_observation_window_and_position_features():
    env, fs = _env([170.00, 170.10, 170.30, 170.20, 170.20])
    obs = env.observe()
    start = len(WARM)
    assert obs.temporal.shape == (1, 32, 9) and obs.temporal.dtype == np.float32
    np.testing.assert_array_equal(obs.temporal[0], fs.features[start - 31 : start + 1])
    assert obs.static.tolist() == [[0.0] * 6]
    env.step(np.array([BUY]))
    static = env.observe().static[0]
    assert static[0] == 1.0 and static[1] == pytest.approx(np.tanh(8 / 100), rel=1e-5)  # 170.10 vs 170.02 ask


def test_outcome_is_the_next_bars_market_outcome():
    env, fs = _env([170.00, 170.10, 170.30, 170.20, 170.20])
    start = len(WARM)
    for k in range(4):
        assert env.step(np.array([HOLD])).outcome[0] == fs.outcomes[start + k + 1]


def test_action_spaces_are_tables():
    position = np.array([-1, 0, 1], dtype=np.int8)
    assert HOLD_BUY_SELL_CLOSE.next_position(position, np.array([HOLD, SELL, CLOSE])).tolist() == [-1, -1, 0]
    sized = SIZED_POSITIONS
    assert sized.num_actions == 7 and sized.max_units == 3
    assert sized.next_position(np.array([2, -3]), np.array([4, 0])).tolist() == [-1, 0]
    assert sized.legal_mask(np.array([0])).all()
    # the search's table: position indices, -1 where illegal (flat cannot CLOSE, long cannot BUY)
    table = HOLD_BUY_SELL_CLOSE.transitions()
    assert table[CLOSE].tolist() == [1, -1, 1] and table[HOLD].tolist() == [0, 1, 2]
    assert table[BUY].tolist() == [-1, 2, -1]
    with pytest.raises(ValueError, match="position 3 is not one of"):
        HOLD_BUY_SELL_CLOSE.legal_mask(np.array([0, 3]))


def test_bad_env_config():
    with pytest.raises(ValueError, match="reward"):
        EnvConfig(reward="sharpe")
    with pytest.raises(ValueError, match="action_space"):
        EnvConfig(action_space="options")
