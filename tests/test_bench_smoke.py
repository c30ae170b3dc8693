"""Smoke test of the HTTP benchmark: ``bench/run.sh --quick --peers ""`` runs to the end without errors.

A tiny run (2 s per workload, one run each, no warm-up, a 200-file listing folder) of Stowage alone,
with every extra. It checks that every workload produced a number and that no request failed; it
asserts nothing about speed, because the machine is shared and a slow run is not a broken one.
"""

from __future__ import annotations

import math
import os
import shutil
import signal
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pytest

from conftest import require_capability, require_tool

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
RUN_SH = ROOT / "bench" / "run.sh"
# The shared benchmark scripts (peers.sh) live outside the project: next to the checkout normally, or
# where BENCH_DIR says; a clone elsewhere (CI's, for one) falls back to the workspace's copy.
SHARED_BENCH_CANDIDATES = [
    *([Path(os.environ["BENCH_DIR"])] if os.environ.get("BENCH_DIR") else []),
    ROOT.parent / "shared" / "bench",
    Path("/work/shared/bench"),
]
# workload -> (peer that records it, its main metrics)
EXPECTED = {
    "W1": ("stowage", ["req_s", "p99_ms"]),
    "W3": ("stowage", ["mib_s"]),
    "W4": ("stowage", ["req_s", "p99_ms"]),
    "W5": ("stowage", ["mib_s"]),
    "HZ": ("stowage", ["req_s", "p50_ms", "p99_ms"]),
    "BARE": ("bare-litestar", ["req_s", "p50_ms", "p99_ms"]),
    "W1ID": ("stowage", ["req_s", "p50_ms", "p99_ms"]),
    "J1": ("stowage", ["req_s", "p50_ms", "p99_ms"]),
    "J2": ("stowage", ["req_s", "p50_ms", "p99_ms"]),
    "MIX": ("stowage", ["get_req_s", "get_p99_ms", "put_req_s", "put_p99_ms"]),
}
# Knobs of bench/run.sh and peers.sh that a developer's shell may have exported; the test sets its own.
# fmt: off
BENCH_KNOBS = {
    "PEERS", "EXTRAS", "WORKLOADS", "WORKERS", "REPS", "DUR", "WARMUP", "QUIET_WAIT", "QUIET_MAX", "OUT_DIR",
    "RESULTS", "KEEP_SCRATCH", "SCRATCH_BASE", "PIN", "PIN_SERVER", "NAME", "BENCH_DATABASE_URL", "COMPARE",
    "COMPARE_NAME", "LISTING_FILES", "BENCH_DIR", "VENV", "HOST", "PORT", "AUTH", "SETUP",
}
# fmt: on


def is_number(value: str) -> bool:
    try:
        return math.isfinite(float(value))
    except ValueError:
        return False


def test_quick_benchmark_runs_without_errors(tmp_path: Path) -> None:
    for tool, package in [("wrk", "wrk"), ("taskset", "util-linux"), ("openssl", "openssl"), ("curl", "curl")]:
        require_tool(tool, package=package)
    shared_bench = next((path for path in SHARED_BENCH_CANDIDATES if (path / "peers.sh").is_file()), None)
    missing = None if shared_bench else "no peers.sh in " + ", ".join(map(str, SHARED_BENCH_CANDIDATES))
    require_capability("the shared benchmark scripts", missing)
    assert shared_bench is not None

    out = tmp_path / "out"
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("STOWAGE_") and k not in BENCH_KNOBS}
    env.update(
        DUR="2",
        REPS="1",
        QUIET_WAIT="1",
        WARMUP="0",
        LISTING_FILES="200",
        SCRATCH_BASE=str(scratch),
        VENV=sys.prefix,
        BENCH_DIR=str(shared_bench),
    )
    # Its own session, so that a timeout can stop the script and everything it started: TERM first,
    # which runs the script's clean-up (servers stopped, data deleted), then KILL whatever is left.
    process = subprocess.Popen(
        ["bash", str(RUN_SH), "--quick", "--peers", "", "--out", str(out)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        stdout, stderr = process.communicate(timeout=900)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.communicate(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.communicate()
    result = subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)
    report = f"exit {result.returncode}\n--- stdout\n{result.stdout[-6000:]}\n--- stderr\n{result.stderr[-4000:]}"

    assert result.returncode == 0, report
    assert "WARNING" not in result.stdout, report  # Stowage exited, or its log has errors
    rows = [line.split("\t") for line in (out / "peers.tsv").read_text().splitlines() if line]
    assert all(len(row) == 6 for row in rows), report
    values: dict[tuple[str, str, str], list[str]] = defaultdict(list)
    for peer, workload, metric, _run, value, _unit in rows:
        values[peer, workload, metric].append(value)

    not_numbers = {key: v for key, v in values.items() if not all(is_number(x) for x in v)}
    assert not not_numbers, f"{not_numbers}\n{report}"
    for workload, (peer, metrics) in EXPECTED.items():
        for metric in metrics:
            assert values.get((peer, workload, metric)), f"no {peer} {workload} {metric}\n{report}"
    failed = {key: v for key, v in values.items() if key[2] == "errors" and any(float(x) > 0 for x in v)}
    assert not failed, f"requests failed: {failed}\n{report}"
    for table in ("table.md", "extras.md", "targets.md"):
        assert (out / table).read_text().startswith("|"), table
    # The data folder and the peers' scratch were made under SCRATCH_BASE and are gone.
    assert list(scratch.iterdir()) == [], list(scratch.iterdir())
    shutil.rmtree(out)
