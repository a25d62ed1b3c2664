"""Engines that run a build's work: local process pool (default) or Ray (`--engine ray`)."""

from etl.engines.base import ENGINES, Engine, make_engine

__all__ = ["ENGINES", "Engine", "make_engine"]
