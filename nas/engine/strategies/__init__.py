"""Search strategies (Optuna NSGA-II, TPE, random) behind one ask/tell interface."""

from __future__ import annotations

from nas.engine.strategies.base import STRATEGIES, Strategy, StrategyConfig, make_strategy, register_strategy

__all__ = ["STRATEGIES", "Strategy", "StrategyConfig", "make_strategy", "register_strategy"]
