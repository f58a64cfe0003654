"""``flowatlas simulate``: a deterministic generator of internet flow telemetry with planted,
labelled investigations (C2 victims, relay chains, an enterprise talking to a bad host)."""

from flowatlas.simulate.config import ConfigError, ScenarioConfig, SimConfig
from flowatlas.simulate.generator import Simulation, simulate
from flowatlas.simulate.truth import GroundTruth, load

__all__ = ["ConfigError", "GroundTruth", "ScenarioConfig", "SimConfig", "Simulation", "load",
           "simulate"]
