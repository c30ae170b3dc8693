"""Thumbnails per second and the server's peak memory: a 12-megapixel JPEG -> 256 px WebP, cold and cached.

    .venv/bin/python bench/thumbnails.py                    # 12 photos, 1 worker, 10 s cached runs
    .venv/bin/python bench/thumbnails.py --photos 24 --workers 2 --duration 15 --json /tmp/thumbs.json

Starts ``stowage serve`` on a free 127.0.0.1 port with a throw-away data folder, signs up a user, makes a
personal access token, uploads ``--photos`` distinct 4000x3000 JPEGs (made here with libvips: a smooth
gradient plus grain, about 2-4 MB each, like a phone photo) and a 4 KiB file, then measures:

1. **cold**: one ``GET /api/v1/nodes/{id}/thumbnail?w=256&h=256&format=webp`` per photo, ``--concurrency``
   at a time — every request decodes (shrink-on-load), resizes, encodes and stores a derivative;
   thumbnails per second = photos / wall time, with each request's latency;
2. **cached**: the same URL for one photo, again and again, with wrk (64 connections, ``--duration`` s):
   the derivative is served from the cache (hot-read lane, pathsend), requests per second and p50/p99;
3. **W1 reference**: the same wrk run on ``GET /api/v1/nodes/{id}/content`` of the 4 KiB file, so the
   cached thumbnail can be compared with a small download on the same server at the same moment.
   Phases 2 and 3 alternate ``--reps`` times (default 3) and the medians are reported, because the
   shared machine's load changes from run to run.

The server's RSS (the Granian main process and its workers, sum of ``VmRSS``) is sampled every 100 ms
and its kernel peak (``VmHWM``, reset per phase) read at the end of each phase, as ``bench/memory.py``
does. The server's CPU use is shown per phase (% of one core). Honour the shared machine's lock: the
script refuses to run while ``/tmp/bench.lock`` exists unless it is ours (``--lock-name``).
Not part of the tests.
"""

# A command-line script: it prints its report and starts the server it measures.
# ruff: noqa: T201, S603, S607, PLR0912, PLR0915

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import pyvips

sys.path.insert(0, str(Path(__file__).resolve().parent))
from memory import Sampler, free_port, measure, reset_peaks, server_pids

ROOT = Path(__file__).resolve().parent.parent
PASSWORD = "correct horse battery staple"  # noqa: S105 - a throw-away account on a throw-away server
THUMB_QUERY = "w=256&h=256&fit=cover&format=webp"
LOCK = Path("/tmp/bench.lock")  # noqa: S108 - the shared machine's agreed lock file


def photo(seed: int, width: int = 4000, height: int = 3000) -> bytes:
    """A photo-like 12-megapixel JPEG: a colour gradient (different per seed) with grain, quality 90."""
    x = pyvips.Image.xyz(width, height)
    red = (x[0] * (255 / width) + seed * 13) % 256
    green = (x[1] * (255 / height) + seed * 29) % 256
    blue = ((x[0] + x[1]) * (255 / (width + height)) + seed * 7) % 256
    grain = pyvips.Image.gaussnoise(width, height, sigma=12, mean=0)
    image = (red.bandjoin([green, blue]) + grain).cast("uchar").copy(interpretation="srgb")
    return bytes(image.write_to_buffer(".jpg", Q=90))


def wrk(url: str, token: str, duration: int, connections: int = 64) -> dict[str, float]:
    """One wrk run: requests per second and latency percentiles (ms)."""
    out = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{duration}s", "--latency", "-H", f"Authorization: Bearer {token}", url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    non_2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)

    def percentile(label: str) -> float:
        match = re.search(rf"\s{label}%\s+([\d.]+)(us|ms|s)", out)
        if match is None:
            return float("nan")
        value, unit = float(match.group(1)), match.group(2)
        return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value

    return {
        "rps": rps,
        "p50_ms": percentile("50"),
        "p99_ms": percentile("99"),
        "non_2xx": int(non_2xx.group(1)) if non_2xx else 0,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--photos", type=int, default=12, help="distinct 12 MP photos for the cold run (default 12)")
    parser.add_argument("--concurrency", type=int, default=4, help="concurrent cold requests (default 4)")
    parser.add_argument("--workers", type=int, default=1, help="Granian workers (default 1)")
    parser.add_argument("--duration", type=int, default=10, help="seconds per wrk run (default 10)")
    parser.add_argument("--reps", type=int, default=3, help="alternating cached / W1 wrk runs (default 3)")
    parser.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    parser.add_argument("--lock-name", default="images", help="who holds /tmp/bench.lock while this runs")
    args = parser.parse_args()
    if LOCK.exists() and LOCK.read_text().strip() != args.lock_name:
        print(f"{LOCK} is held by {LOCK.read_text().strip()!r}: wait for it to go", file=sys.stderr)
        return 2
    if shutil.which("wrk") is None:
        print("wrk is needed (apt-get install wrk)", file=sys.stderr)
        return 2

    print(f"# making {args.photos} 12-megapixel JPEGs", file=sys.stderr)
    photos = [photo(seed) for seed in range(args.photos)]
    data_dir = Path(tempfile.mkdtemp(prefix="stowage-thumbs-"))
    port = free_port()
    env = dict(
        os.environ,
        STOWAGE_DATA_DIR=str(data_dir),
        STOWAGE_LOG_LEVEL="warning",
        STOWAGE_RATE_LIMIT_AUTH_PER_IP="100000",
        STOWAGE_DEFAULT_QUOTA_BYTES=str(1 << 40),
    )
    log = (data_dir.parent / f"{data_dir.name}.log").open("wb")  # closed in finally
    cmd = [str(ROOT / ".venv/bin/stowage"), "serve", "--host", "127.0.0.1", "--port", str(port)]
    server = subprocess.Popen([*cmd, "--workers", str(args.workers)], env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    sampler: Sampler | None = None
    load_before = os.getloadavg()
    try:
        with httpx.Client(base_url=base, timeout=120) as client:
            for _ in range(300):
                with contextlib.suppress(httpx.TransportError):
                    if client.get("/healthz").status_code == 200:
                        break
                time.sleep(0.1)
            else:
                raise SystemExit(f"stowage did not become ready; log: {log.name}")
            r = client.post("/api/v1/auth/signup", json={"email": "thumbs@example.com", "password": PASSWORD})
            r.raise_for_status()
            session = {"authorization": f"Bearer {r.json()['access_token']}"}
            r = client.post("/api/v1/me/tokens", json={"name": "bench", "scopes": ["read", "write"]}, headers=session)
            r.raise_for_status()
            token = r.json()["token"]
            auth = {"authorization": f"Bearer {token}"}
            ids = []
            for i, data in enumerate(photos):
                r = client.put(f"/api/v1/content/bench/photo{i}.jpg", content=data, headers=auth)
                r.raise_for_status()
                ids.append(r.json()["id"])
            small = client.put("/api/v1/content/bench/small.bin", content=os.urandom(4096), headers=auth)
            small.raise_for_status()
            small_id = small.json()["id"]

            time.sleep(1.0)
            hwm_ok = reset_peaks(server.pid)
            sampler = Sampler(server.pid)
            sampler.start()
            baseline = measure(sampler, "baseline", lambda: time.sleep(2.0), hwm_ok=hwm_ok)
            latencies: list[float] = []

            def one(node_id: str) -> None:
                t0 = time.perf_counter()
                response = client.get(f"/api/v1/nodes/{node_id}/thumbnail?{THUMB_QUERY}", headers=auth)
                latencies.append(time.perf_counter() - t0)
                if response.status_code != 200 or response.headers["content-type"] != "image/webp":
                    raise RuntimeError(f"thumbnail: HTTP {response.status_code}: {response.text[:300]}")

            def cold() -> dict[str, Any]:
                with concurrent.futures.ThreadPoolExecutor(args.concurrency) as pool:
                    list(pool.map(one, ids))
                return {}

            cold_phase = measure(sampler, "cold", cold, hwm_ok=hwm_ok)
            thumb_url = f"{base}/api/v1/nodes/{ids[0]}/thumbnail?{THUMB_QUERY}"
            w1_url = f"{base}/api/v1/nodes/{small_id}/content"
            cached_runs: list[dict[str, float]] = []
            w1_runs: list[dict[str, float]] = []
            # Alternating runs: on a shared machine the load changes between runs; the medians compare.
            for _ in range(args.reps):
                cached_phase = measure(
                    sampler, "cached", lambda: cached_runs.append(wrk(thumb_url, token, args.duration)), hwm_ok=hwm_ok
                )
                w1_phase = measure(
                    sampler, "W1 4 KiB by id", lambda: w1_runs.append(wrk(w1_url, token, args.duration)), hwm_ok=hwm_ok
                )
            cached_figures = {k: statistics.median(r[k] for r in cached_runs) for k in cached_runs[0]}
            w1_figures = {k: statistics.median(r[k] for r in w1_runs) for k in w1_runs[0]}
            pids = server_pids(server.pid)
            sampler.stop()
    finally:
        if sampler is not None and sampler.is_alive():
            sampler.stop()
        if server.poll() is None:
            server.send_signal(signal.SIGTERM)
            try:
                server.wait(60)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()
        log.close()
        shutil.rmtree(data_dir, ignore_errors=True)
        Path(log.name).unlink(missing_ok=True)

    cold_rate = len(ids) / cold_phase.seconds
    print(
        f"# bench/thumbnails.py {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())}: {len(ids)} photos 4000x3000 "
        f"JPEG ({sum(map(len, photos)) / len(photos) / 2**20:.1f} MiB average) -> 256x256 WebP; workers "
        f"{args.workers}; cold concurrency {args.concurrency}; server processes {pids}; load average before "
        f"{load_before[0]:.2f} {load_before[1]:.2f} {load_before[2]:.2f}; {os.cpu_count()} cores"
    )
    print(f"{'phase':<18}{'rate/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'srv CPU%':>9}{'RSS peak':>10}{'VmHWM':>8}  (MiB)")
    rows = [
        ("baseline", baseline, None, None, None),
        ("cold", cold_phase, cold_rate, statistics.median(latencies) * 1000, max(latencies) * 1000),
        ("cached", cached_phase, cached_figures["rps"], cached_figures["p50_ms"], cached_figures["p99_ms"]),
        ("W1 4 KiB by id", w1_phase, w1_figures["rps"], w1_figures["p50_ms"], w1_figures["p99_ms"]),
    ]
    for name, phase, rate, p50, p99 in rows:
        hwm = f"{phase.hwm:.1f}" if phase.hwm is not None else "n/a"
        print(
            f"{name:<18}{'-' if rate is None else f'{rate:.1f}':>9}{'-' if p50 is None else f'{p50:.1f}':>9}"
            f"{'-' if p99 is None else f'{p99:.1f}':>9}{phase.cpu_pct:>9.0f}{phase.rss_peak:>10.1f}{hwm:>8}"
        )
    print("(cold p99 column: the slowest request; cached and W1: medians of "
          f"{args.reps} alternating wrk runs, 64 connections; req/s per run cached "
          f"{[round(r['rps']) for r in cached_runs]}, W1 {[round(r['rps']) for r in w1_runs]}; ratio of medians "
          f"{cached_figures['rps'] / w1_figures['rps']:.2f}; non-2xx {cached_figures['non_2xx']:.0f} / "
          f"{w1_figures['non_2xx']:.0f})")  # fmt: skip
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "photos": len(ids),
                    "workers": args.workers,
                    "cold": {"thumbnails_per_s": cold_rate, "latencies_s": latencies, "hwm_mib": cold_phase.hwm},
                    "cached": {**cached_figures, "runs": cached_runs, "hwm_mib": cached_phase.hwm},
                    "w1": {**w1_figures, "runs": w1_runs, "hwm_mib": w1_phase.hwm},
                    "baseline_hwm_mib": baseline.hwm,
                    "load_before": load_before,
                },
                indent=2,
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
