"""Query engines: each translates the query model for one execution backend."""

from flowatlas.engines.base import Engine, EngineError

__all__ = ["Engine", "EngineError"]
