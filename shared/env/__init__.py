"""The trading environment: action spaces as tables, E episodes in lockstep."""

from shared.env.actions import ACTION_SPACES, HOLD_BUY_SELL_CLOSE, ActionSpace
from shared.env.trading import StepResult, TradingEnv

__all__ = ["ActionSpace", "ACTION_SPACES", "HOLD_BUY_SELL_CLOSE", "StepResult", "TradingEnv"]
