"""The simulator over many seeds, sizes and spans (issue 18.7: some seeds ended in a
``StopIteration`` raised by ``Planted.add``)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flowatlas.simulate import ScenarioConfig, SimConfig, Simulation
from flowatlas.simulate.flows import empty
from flowatlas.simulate.scenarios.planted import Planted

END = datetime(2026, 1, 15, tzinfo=UTC)


def _check(sim: Simulation) -> None:
    """Every chunk comes out, within the window, with at least the planted rows."""
    rows = 0
    for batch in sim.batches():
        starts = batch.column("time_start").cast("int64").to_numpy()
        assert (starts >= sim.config.start_us).all() and (starts < sim.config.end_us).all()
        rows += batch.num_rows
    assert rows >= sim.truth.flows["planted_records"]
    for scenario in sim.truth.relays:
        assert scenario["cover"]["observed_records"] <= scenario["cover"]["records"]


def test_the_reported_seed_plants() -> None:
    """`simulate --flows 300000 --days 3 --seed 11` (planting is where it crashed)."""
    sim = Simulation(SimConfig(seed=11, flows=300_000, days=3, end=END))
    assert sim.truth.flows["planted_records"] > 0


def test_equal_counters_stay_distinct() -> None:
    """Two truth records that compare equal are still two records: rows count to their own."""
    planted = Planted()
    a: dict[str, int] = {"sessions": 0}
    b: dict[str, int] = {"sessions": 0}
    planted.add(empty(2), a)
    planted.add(empty(3), b)
    planted.add(empty(1), a)
    _, tags = planted.columns()
    assert tags.tolist() == [0, 0, 1, 1, 1, 0]
    planted.count(tags[[0, 2, 5]])
    assert (a["records"], a["observed_records"]) == (3, 2)
    assert (b["records"], b["observed_records"]) == (3, 1)


scenarios = st.builds(ScenarioConfig, c2=st.integers(0, 3), victims=st.integers(1, 8),
                      relays=st.integers(0, 4), max_hops=st.integers(1, 6),
                      cover=st.integers(0, 3), enterprise=st.integers(0, 2),
                      talkers=st.integers(0, 6))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**31), days=st.floats(0.05, 10), scen=scenarios)
def test_any_seed_plants(seed: int, days: float, scen: ScenarioConfig) -> None:
    Simulation(SimConfig(seed=seed, flows=300_000, days=days, end=END, scenarios=scen))


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**31), flows=st.integers(0, 3_000), days=st.floats(0.05, 4),
       scen=scenarios)
def test_any_seed_and_size_generates(seed: int, flows: int, days: float,
                                     scen: ScenarioConfig) -> None:
    _check(Simulation(SimConfig(seed=seed, flows=flows, days=days, end=END, scenarios=scen,
                                chunk_rows=1_000)))


@pytest.mark.slow
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**31), flows=st.integers(0, 400_000), days=st.floats(0.05, 30),
       exporters=st.integers(1, 16))
def test_larger_sweep(seed: int, flows: int, days: float, exporters: int) -> None:
    _check(Simulation(SimConfig(seed=seed, flows=flows, days=days, end=END,
                                exporters=exporters, chunk_rows=100_000)))
