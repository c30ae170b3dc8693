"""Bounded-memory check: upload and download one big file through Stowage, watching the server's RSS.

    .venv/bin/python bench/memory.py                 # 4 GiB, 1 worker
    .venv/bin/python bench/memory.py --size 512MiB --workers 2 --json /tmp/memory.json
    .venv/bin/python bench/memory.py --blob-store s3 --size 1GiB --curve /tmp/rss.tsv   # on moto's S3
    .venv/bin/python bench/memory.py --blob-store s3 --s3-endpoint http://127.0.0.1:9000 --s3-bucket b

Starts ``stowage serve`` on a free 127.0.0.1 port with a throw-away data folder, signs up a user and
makes a personal access token, then:

1. samples the server's RSS while idle (baseline);
2. uploads ONE file of ``--size`` bytes with ``PUT /api/v1/content/bench/big.bin``, streamed with httpx
   from a generator (one random 1 MiB block made once, each chunk stamped with its counter, so the
   content never repeats and is never held in memory) with a Content-Length, hashing it on the way;
3. downloads it with ``GET`` streaming and hashing, and checks that the SHA-256 matches.

The server's CPU use (utime + stime of its processes, % of one core) is shown per phase: 100 means the
server was the bottleneck, much less means the client (this script: httpx + hashing in Python) was.
The RSS of the server (the Granian main process plus its worker processes: the sum of ``VmRSS`` in
``/proc/<pid>/status``) is sampled every 100 ms in a thread. Each phase also resets the kernel's
peak-RSS counter (``/proc/<pid>/clear_refs`` = 5) and reads ``VmHWM`` at its end, which catches
spikes shorter than the sampling interval. Exit status 1 if the digests differ or a request fails.

With ``--blob-store s3`` the server keeps its blobs in an S3 bucket: on the server at ``--s3-endpoint``
(credentials from ``STOWAGE_S3_ACCESS_KEY_ID``/``STOWAGE_S3_SECRET_ACCESS_KEY``), or by default on moto's
S3 server started here in its own process (moto keeps objects in memory and joins a multipart upload's
parts in RAM: its own memory grows with the file, which is not the server's RSS measured here).
``--curve FILE`` writes every RSS sample (seconds since the first, phase, MiB) as TSV.

This takes a few minutes at 4 GiB and needs the size in free disk space; it is not part of the tests.
"""

# A command-line script: it prints its report, starts the server it measures and has one long main().
# ruff: noqa: T201, S603, PLR0912, PLR0915, TRY301

from __future__ import annotations

import argparse
import atexit
import contextlib
import hashlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
CHUNK = 1 << 20
MIB = 1 << 20
PASSWORD = "correct horse battery staple"  # noqa: S105 - a throw-away account on a throw-away server
UNITS = {"": 1, "b": 1, "k": 1 << 10, "kib": 1 << 10, "m": 1 << 20, "mib": 1 << 20, "g": 1 << 30, "gib": 1 << 30}


def parse_size(text: str) -> int:
    match = re.fullmatch(r"\s*(\d+)\s*([a-zA-Z]*)\s*", text)
    if not match or match.group(2).lower() not in UNITS:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (e.g. 4GiB, 512MiB, 1048576)")
    return int(match.group(1)) * UNITS[match.group(2).lower()]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# --- server processes and their memory ------------------------------------------------------------


def server_pids(main: int) -> list[int]:
    """The main process and its direct children (the Granian workers)."""
    pids = [main]
    with contextlib.suppress(OSError):
        for task in Path(f"/proc/{main}/task").iterdir():
            pids.extend(int(p) for p in (task / "children").read_text().split())
    return pids


def status_kib(pid: int, key: str) -> int:
    try:
        with Path(f"/proc/{pid}/status").open() as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def reset_peaks(main: int) -> bool:
    """Reset VmHWM of every server process (Linux >= 4.0, needs write access to clear_refs)."""
    ok = True
    for pid in server_pids(main):
        try:
            Path(f"/proc/{pid}/clear_refs").write_text("5")
        except OSError:
            ok = False
    return ok


def cpu_seconds(main: int) -> float:
    """utime + stime of the server processes so far."""
    ticks = 0
    for pid in server_pids(main):
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
            ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def hwm_mib(main: int) -> float:
    return sum(status_kib(p, "VmHWM") for p in server_pids(main)) / 1024


class Sampler(threading.Thread):
    """Samples the summed VmRSS of the server processes every ``interval`` seconds into the current phase."""

    def __init__(self, main: int, interval: float = 0.1) -> None:
        super().__init__(daemon=True)
        self.main = main
        self.interval = interval
        self.phase = "start"
        self.samples: dict[str, list[float]] = {}
        self.curve: list[tuple[float, str, float]] = []  # (seconds since start, phase, MiB)
        self._curve_start = time.monotonic()
        self.per_process_peak: dict[int, float] = {}
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.is_set():
            total = 0
            for pid in server_pids(self.main):
                kib = status_kib(pid, "VmRSS")
                total += kib
                self.per_process_peak[pid] = max(self.per_process_peak.get(pid, 0), kib / 1024)
            self.samples.setdefault(self.phase, []).append(total / 1024)
            self.curve.append((time.monotonic() - self._curve_start, self.phase, total / 1024))
            self._halt.wait(self.interval)

    def stop(self) -> None:
        self._halt.set()
        self.join()


@dataclass
class Phase:
    name: str
    seconds: float = 0.0
    rss_start: float = 0.0
    rss_peak: float = 0.0
    rss_end: float = 0.0
    hwm: float | None = None
    cpu_pct: float = 0.0
    samples: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


def measure(sampler: Sampler, name: str, fn: Any, *, hwm_ok: bool) -> Phase:
    if hwm_ok:
        reset_peaks(sampler.main)
    sampler.phase = name
    c0 = cpu_seconds(sampler.main)
    t0 = time.perf_counter()
    extra = fn() or {}
    seconds = time.perf_counter() - t0
    cpu = cpu_seconds(sampler.main) - c0
    time.sleep(sampler.interval * 2)  # at least one sample after the end
    values = sampler.samples.get(name, [0.0])
    sampler.phase = "between"
    return Phase(
        name=name,
        seconds=seconds,
        rss_start=values[0],
        rss_peak=max(values),
        rss_end=values[-1],
        hwm=hwm_mib(sampler.main) if hwm_ok else None,
        cpu_pct=100 * cpu / seconds,
        samples=len(values),
        extra=extra,
    )


# --- the file ------------------------------------------------------------------------------------


def generated(size: int, digest: Any) -> Iterator[bytes]:
    """``size`` bytes in 1 MiB chunks: one random block, each copy stamped with its counter; hashed as sent."""
    block = os.urandom(CHUNK)
    sent = 0
    counter = 0
    while sent < size:
        n = min(CHUNK, size - sent)
        chunk = (counter.to_bytes(16, "big") + block[16:])[:n]
        digest.update(chunk)
        sent += n
        counter += 1
        yield chunk


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def wait_for(url: str, seconds: float = 30.0) -> None:
    """Wait until ``url`` answers at all (a started helper server)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.TransportError):
            httpx.get(url, timeout=1.0)
            return
        time.sleep(0.1)
    raise SystemExit(f"no answer from {url} within {seconds:.0f} s")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=parse_size, default=4 << 30, help="file size (default 4GiB)")
    parser.add_argument("--workers", type=int, default=1, help="Granian workers (default 1)")
    parser.add_argument("--interval", type=float, default=0.1, help="RSS sampling interval, s (default 0.1)")
    parser.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    parser.add_argument("--keep", action="store_true", help="keep the data folder")
    parser.add_argument("--blob-store", choices=("local", "s3"), default="local", help="where blobs go")
    parser.add_argument("--s3-endpoint", help="an existing S3 server (default with s3: start moto's)")
    parser.add_argument("--s3-bucket", default="stowage-memory", help="bucket (created if missing)")
    parser.add_argument("--curve", type=Path, help="write every RSS sample to this TSV file")
    args = parser.parse_args()
    moto: subprocess.Popen[bytes] | None = None
    s3_env: dict[str, str] = {}
    if args.blob_store == "s3":
        endpoint = args.s3_endpoint
        if endpoint is None:
            moto_port = free_port()
            moto = subprocess.Popen(
                [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(moto_port)],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            atexit.register(_stop, moto)  # whatever happens below, the helper server does not outlive us
            endpoint = f"http://127.0.0.1:{moto_port}"
            wait_for(endpoint + "/moto-api/")
        s3_env = {
            "STOWAGE_BLOB_STORE": "s3",
            "STOWAGE_S3_ENDPOINT_URL": endpoint,
            "STOWAGE_S3_BUCKET": args.s3_bucket,
            "STOWAGE_S3_CREATE_BUCKET": "true",
            "STOWAGE_S3_ADDRESSING_STYLE": "path",
            "STOWAGE_S3_ACCESS_KEY_ID": os.environ.get("STOWAGE_S3_ACCESS_KEY_ID", "bench"),
            "STOWAGE_S3_SECRET_ACCESS_KEY": os.environ.get("STOWAGE_S3_SECRET_ACCESS_KEY", "bench-secret"),
        }

    stowage = ROOT / ".venv" / "bin" / "stowage"
    data_dir = Path(tempfile.mkdtemp(prefix="stowage-memory-"))
    port = free_port()
    env = dict(
        os.environ,
        STOWAGE_DATA_DIR=str(data_dir),
        STOWAGE_LOG_LEVEL="warning",
        STOWAGE_RATE_LIMIT_AUTH_PER_IP="100000",
        STOWAGE_DEFAULT_QUOTA_BYTES=str(1 << 40),
        **s3_env,
    )
    log = (data_dir.parent / f"{data_dir.name}.log").open("wb")  # closed in finally
    cmd = [str(stowage), "serve", "--host", "127.0.0.1", "--port", str(port), "--workers", str(args.workers)]
    server = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    sampler: Sampler | None = None
    failed = False
    try:
        with httpx.Client(base_url=base, timeout=httpx.Timeout(30.0, read=1800.0, write=1800.0)) as client:
            for _ in range(300):
                if server.poll() is not None:
                    raise SystemExit(f"stowage exited with {server.returncode}; log: {log.name}")
                with contextlib.suppress(httpx.TransportError):
                    if client.get("/healthz").status_code == 200:
                        break
                time.sleep(0.1)
            else:
                raise SystemExit(f"stowage did not become ready; log: {log.name}")
            r = client.post("/api/v1/auth/signup", json={"email": "memory@example.com", "password": PASSWORD})
            r.raise_for_status()
            access = r.json()["access_token"]
            r = client.post(
                "/api/v1/me/tokens",
                json={"name": "bench", "scopes": ["read", "write"]},
                headers={"authorization": f"Bearer {access}"},
            )
            r.raise_for_status()
            auth = {"authorization": f"Bearer {r.json()['token']}"}
            # one small request per worker-ish, so the baseline is a server that has handled traffic
            for _ in range(4 * args.workers):
                client.get("/api/v1/me", headers=auth).raise_for_status()

            time.sleep(1.0)
            pids = server_pids(server.pid)
            hwm_ok = reset_peaks(server.pid)
            sampler = Sampler(server.pid, args.interval)
            sampler.start()
            baseline = measure(sampler, "baseline", lambda: time.sleep(2.0), hwm_ok=hwm_ok)

            up_digest = hashlib.sha256()
            path = "/api/v1/content/bench/big.bin"

            def upload() -> dict[str, Any]:
                r = client.put(
                    path,
                    content=generated(args.size, up_digest),
                    headers={**auth, "content-length": str(args.size), "content-type": "application/octet-stream"},
                )
                body = r.json() if r.headers.get("content-type", "").endswith("json") else r.text[:500]
                if r.status_code != 201:
                    raise RuntimeError(f"upload: HTTP {r.status_code}: {body}")
                return {"status": r.status_code, "response": body}

            up = measure(sampler, "upload", upload, hwm_ok=hwm_ok)
            after_upload = measure(sampler, "idle after upload", lambda: time.sleep(2.0), hwm_ok=hwm_ok)

            down_digest = hashlib.sha256()

            def download() -> dict[str, Any]:
                got = 0
                with client.stream("GET", path, headers=auth) as r:
                    if r.status_code != 200:
                        raise RuntimeError(f"download: HTTP {r.status_code}: {r.read()[:500]!r}")
                    for chunk in r.iter_raw(CHUNK):
                        down_digest.update(chunk)
                        got += len(chunk)
                    headers = {k: v for k, v in r.headers.items() if k in ("content-length", "etag", "content-type")}
                return {"status": r.status_code, "bytes": got, "headers": headers}

            down = measure(sampler, "download", download, hwm_ok=hwm_ok)
            after_download = measure(sampler, "idle after download", lambda: time.sleep(2.0), hwm_ok=hwm_ok)
            sampler.stop()
    except BaseException:
        failed = True
        raise
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
        if moto is not None:
            _stop(moto)
        if not args.keep:
            shutil.rmtree(data_dir, ignore_errors=True)
        if failed or args.keep:
            print(f"server log: {log.name}", file=sys.stderr)
        else:
            Path(log.name).unlink(missing_ok=True)

    ok = up_digest.hexdigest() == down_digest.hexdigest() and down.extra["bytes"] == args.size
    phases = [baseline, up, after_upload, down, after_download]
    print(
        f"# bench/memory.py {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())}: size {args.size} bytes "
        f"({args.size / MIB:.0f} MiB), workers {args.workers}, server processes {pids}, "
        f"RSS = sum of VmRSS over those, sampled every {args.interval * 1000:.0f} ms; blob store: "
        f"{args.blob_store}{' at ' + s3_env['STOWAGE_S3_ENDPOINT_URL'] if s3_env else ''}"
    )
    print(
        f"{'phase':<22}{'seconds':>9}{'MiB/s':>8}{'srv CPU%':>9}{'RSS start':>11}{'RSS peak':>10}{'RSS end':>9}"
        f"{'VmHWM':>8}  (MiB)"
    )
    for p in phases:
        rate = f"{args.size / MIB / p.seconds:.0f}" if p.name in ("upload", "download") else "-"
        hwm = f"{p.hwm:.1f}" if p.hwm is not None else "n/a"
        print(
            f"{p.name:<22}{p.seconds:>9.2f}{rate:>8}{p.cpu_pct:>9.0f}{p.rss_start:>11.1f}{p.rss_peak:>10.1f}"
            f"{p.rss_end:>9.1f}{hwm:>8}  ({p.samples} samples)"
        )
    if sampler is not None:
        per = ", ".join(f"{pid}: {mib:.1f}" for pid, mib in sorted(sampler.per_process_peak.items()))
        print(f"peak VmRSS per process (MiB): {per}")
    print(f"upload   sha256 {up_digest.hexdigest()}  (HTTP {up.extra['status']})")
    print(f"download sha256 {down_digest.hexdigest()}  ({down.extra['bytes']} bytes, {down.extra['headers']})")
    print("digests match" if ok else "MISMATCH: the downloaded file differs from the uploaded one")
    if args.curve and sampler is not None:
        args.curve.write_text(
            "seconds\tphase\trss_mib\n" + "".join(f"{t:.2f}\t{ph}\t{mib:.1f}\n" for t, ph, mib in sampler.curve)
        )
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "size": args.size,
                    "workers": args.workers,
                    "pids": pids,
                    "phases": [p.__dict__ for p in phases],
                    "per_process_peak_mib": sampler.per_process_peak if sampler else {},
                    "sha256_upload": up_digest.hexdigest(),
                    "sha256_download": down_digest.hexdigest(),
                    "match": ok,
                },
                indent=2,
                default=str,
            )
        )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
