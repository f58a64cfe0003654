"""Schemathesis against the served OpenAPI document: no input makes the server fail (5xx)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from service_fixtures import Service, build_service

# Schemathesis is a peer tool, and its run is the slowest part of the suite.
pytestmark = [pytest.mark.peers, pytest.mark.slow]

BIG = {
    "requests_per_second": 100_000,
    "burst": 100_000,
    "lookups_per_day": 10**9,
    "rows_per_day": 10**12,
}


@pytest.fixture(scope="module")
def svc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    yield from build_service(
        tmp_path_factory.mktemp("fuzz"), {name: BIG for name in ("ops", "soc", "acme", "watch")}
    )


@pytest.mark.parametrize("tenant", ["ops", "acme"])
def test_schemathesis_finds_no_server_errors(svc: Service, tenant: str, tmp_path: Path) -> None:
    exe = Path(sys.executable).with_name("schemathesis")
    cmd = [
        str(exe),
        "run",
        f"{svc.url}/openapi.json",
        "--checks",
        "not_a_server_error",
        "--max-examples",
        "15",
        "--seed",
        "1",
        "--generation-database",
        "none",
        "--request-timeout",
        "30",
        "-H",
        f"Authorization: Bearer {svc.keys[tenant]}",
        "-H",
        "X-Purpose: fuzzing",
    ]
    env = {**os.environ, "SCHEMATHESIS_HOOKS": "", "NO_COLOR": "1"}
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-2000:]
    passed = re.search(r"\d+ generated, (\d+) passed", done.stdout)
    assert passed and int(passed.group(1)) > 100, done.stdout[-3000:]
    print(done.stdout[-1500:])
