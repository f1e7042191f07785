"""How fast the case-management API answers, measured from a separate client process on loopback.

    .venv/bin/python benchmarks/bench_api.py --data COUNTY --tracking-uri sqlite:///.../mlflow.db
    .venv/bin/python benchmarks/bench_api.py --data COUNTY --url http://127.0.0.1:3000 --key-file KEYS

Without ``--url`` it starts ``relapse serve`` itself on a free loopback port
(policy from the dataset folder, the registry's champion, a throw-away key)
and stops it at the end. Requests are real ``POST /score`` bodies built from
the dataset folder at ``--as-of`` (serving/api/folder_payloads.py), one household
each, then batches of ``--batch-size``.

Reports, for single households, p50, p95 and p99 latency at each ``--concurrency``
(each level a fixed number of requests, bounded by ``--max-seconds``), and
households per second for batches; and the CPU time per request of the
server's processes (when the benchmark started it) and of this client, which
shares the machine's cores, and the resident memory of all the server's
processes after each level. ``--relapse`` starts the server with another
checkout's ``relapse`` (its own virtual environment), so two trees can be
measured one after the other on the same requests. Everything stays on
127.0.0.1; request counts and time are bounded so the benchmark never floods
a shared machine.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import aiohttp
import duckdb
import httpx
import numpy as np
import psutil
from relapse_risk.features.contract import parse_month
from relapse_risk.serving.api.folder_payloads import score_entries
from rich.console import Console
from rich.table import Table

WARM_UP_REQUESTS_PER_CLIENT = 8
"""BentoML's adaptive batching learns its latency model from the first requests, and the first batches
of a size compile nothing but fill caches: this many per client at the highest concurrency, not timed."""


@dataclass(frozen=True)
class LevelResult:
    scenario: str
    concurrency: int
    households_per_request: int
    requests: int
    errors: int
    seconds: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    mean_ms: float
    households_per_second: float
    client_cpu_ms_per_request: float
    """This process's CPU time per request: what the load generator takes from the cores."""
    server_cpu_ms_per_request: float
    """CPU time per request of the server's processes (worker and scoring process); nan with --url."""
    server_rss_mb: float
    """Resident memory of all the server's processes at the end of the level, in MB; nan with --url."""


def _percentile(values: Sequence[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q)) if values else float("nan")


def _process_tree_sum(root: psutil.Process | None, measure: Callable[[psutil.Process], float]) -> float:
    """``measure`` summed over a process and its descendants (those still running); nan without one."""
    if root is None:
        return float("nan")
    total = 0.0
    for process in [root, *root.children(recursive=True)]:
        with contextlib.suppress(psutil.NoSuchProcess):
            total += measure(process)
    return total


def _process_tree_seconds(root: psutil.Process | None) -> float:
    """CPU seconds (user + system) of a process and its descendants so far; nan without one."""
    return _process_tree_sum(root, lambda p: (times := p.cpu_times()).user + times.system)


def _process_tree_rss_mb(root: psutil.Process | None) -> float:
    """Resident memory of a process and its descendants, in MB; nan without one."""
    return _process_tree_sum(root, lambda p: p.memory_info().rss / 1e6)


@contextlib.asynccontextmanager
async def _score_poster(
    client: str, url: str, headers: dict[str, str], concurrency: int
) -> AsyncIterator[Callable[[bytes], Awaitable[int]]]:
    """``post(body) -> status`` of ``POST /score`` over ``concurrency`` kept-alive connections.

    aiohttp by default: on loopback the client shares the server's cores, and at concurrency 32
    httpx spends 1.2-1.3 ms of CPU per request to aiohttp's 0.19 ("client CPU" in the table), a
    third of a core taken from the server it measures.
    """
    if client == "httpx":
        limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
        async with httpx.AsyncClient(base_url=url, limits=limits, timeout=300, headers=headers) as http:

            async def post_httpx(body: bytes) -> int:
                return (await http.post("/score", content=body)).status_code

            yield post_httpx
        return
    connector = aiohttp.TCPConnector(limit=concurrency)
    timeout = aiohttp.ClientTimeout(total=300)
    async with aiohttp.ClientSession(url, connector=connector, timeout=timeout, headers=headers) as session:

        async def post_aiohttp(body: bytes) -> int:
            async with session.post("/score", data=body) as response:
                await response.read()
                return response.status

        yield post_aiohttp


async def run_level(
    url: str,
    key: str,
    bodies: Sequence[dict[str, object]],
    *,
    scenario: str,
    concurrency: int,
    requests: int,
    max_seconds: float,
    client: str = "aiohttp",
    server: psutil.Process | None = None,
) -> LevelResult:
    """Send ``requests`` bodies (cycling through ``bodies``) with ``concurrency`` clients at once."""
    latencies: list[float] = []
    errors = 0
    next_index = 0
    deadline = time.perf_counter() + max_seconds
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    encoded = [json.dumps(b).encode("utf-8") for b in bodies]
    async with _score_poster(client, url, headers, concurrency) as post:

        async def worker() -> None:
            nonlocal next_index, errors
            while next_index < requests and time.perf_counter() < deadline:
                body = encoded[next_index % len(encoded)]
                next_index += 1
                started = time.perf_counter()
                status = await post(body)
                latencies.append(time.perf_counter() - started)
                if status != 200:
                    errors += 1

        client_cpu = time.process_time()
        server_cpu = _process_tree_seconds(server)
        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        seconds = time.perf_counter() - started
        client_cpu = time.process_time() - client_cpu
        server_cpu = _process_tree_seconds(server) - server_cpu
    per_request = len(bodies[0]["households"])  # type: ignore[arg-type]
    milliseconds = [x * 1000 for x in latencies]
    done = max(len(latencies), 1)
    return LevelResult(
        scenario=scenario,
        concurrency=concurrency,
        households_per_request=per_request,
        requests=len(latencies),
        errors=errors,
        seconds=round(seconds, 3),
        p50_ms=round(_percentile(milliseconds, 50), 1),
        p95_ms=round(_percentile(milliseconds, 95), 1),
        p99_ms=round(_percentile(milliseconds, 99), 1),
        mean_ms=round(float(np.mean(milliseconds)) if milliseconds else float("nan"), 1),
        households_per_second=round(len(latencies) * per_request / seconds, 2) if seconds else float("nan"),
        client_cpu_ms_per_request=round(client_cpu * 1000 / done, 2),
        server_cpu_ms_per_request=round(server_cpu * 1000 / done, 2),
        server_rss_mb=round(_process_tree_rss_mb(server), 1),
    )


def scored_household_ids(data: Path, runs: Path | None, limit: int, seed: int) -> list[str]:
    """Households to send: a run's scored ones when a run is given, else any; sampled with ``seed``."""
    if runs is not None and (runs / "scores.parquet").is_file():
        query = "SELECT household_id FROM read_parquet(?) WHERE status = 'scored' ORDER BY household_id"
        ids = [r[0] for r in duckdb.execute(query, [str(runs / "scores.parquet")]).fetchall()]
    else:
        query = "SELECT household_id FROM read_parquet(?) ORDER BY household_id"
        ids = [r[0] for r in duckdb.execute(query, [str(data / "households.parquet")]).fetchall()]
    rng = np.random.default_rng(seed)
    return [str(x) for x in rng.permutation(ids)[:limit]]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def start_server(
    data: Path, tracking_uri: str, runs: Path | None, work: Path, workers: int, relapse: Path
) -> tuple[subprocess.Popen[bytes], str, str]:
    key = secrets.token_urlsafe(32)
    keys = work / "api-keys"
    keys.write_text(key + "\n", encoding="utf-8")
    port = _free_port()
    command = [
        str(relapse), "serve", "--host", "127.0.0.1", "--port", str(port),
        "--policy", str(data / "policy.json"), "--api-keys-file", str(keys), "--tracking-uri", tracking_uri,
        "--request-log", str(work / "requests.jsonl"), "--workers", str(workers),
    ]  # fmt: skip
    if runs is not None:
        command += ["--runs", str(runs)]
    environment = {k: v for k, v in os.environ.items() if not k.startswith("RELAPSE_")}
    log = (work / "server.log").open("wb")
    process = subprocess.Popen(
        command, env=environment, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}; see {work / 'server.log'}")
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return process, url, key
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    stop_server(process)
    raise RuntimeError(f"server not ready after 300 s; see {work / 'server.log'}")


def stop_server(process: subprocess.Popen[bytes]) -> None:
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


async def benchmark(
    url: str, key: str, data: Path, as_of: dt.date, args: argparse.Namespace, server: psutil.Process | None
) -> list[LevelResult]:
    needed = max(args.single_households, args.batch_size * args.batches)
    ids = scored_household_ids(data, args.runs, needed, args.seed)
    entries = score_entries(data, ids, as_of)
    singles = [{"households": [e]} for e in entries[: args.single_households]]
    batches = [
        {"households": [entries[(b * args.batch_size + i) % len(entries)] for i in range(args.batch_size)]}
        for b in range(args.batches)
    ]
    busiest = max(args.concurrency)
    await run_level(url, key, singles, scenario="warm-up", concurrency=busiest, client=args.client,
                    requests=WARM_UP_REQUESTS_PER_CLIENT * busiest, max_seconds=args.max_seconds)  # fmt: skip
    results = []
    for concurrency in args.concurrency:
        # Enough that p99 is not just the slowest of a few.
        requests = max(args.requests_per_level, 32 * concurrency)
        results.append(
            await run_level(
                url,
                key,
                singles,
                scenario="single household",
                concurrency=concurrency,
                requests=requests,
                max_seconds=args.max_seconds,
                client=args.client,
                server=server,
            )  # fmt: skip
        )
    if batches:
        results.append(
            await run_level(
                url,
                key,
                batches,
                scenario=f"batch of {args.batch_size}",
                concurrency=1,
                requests=args.batches,
                max_seconds=args.max_seconds,
                client=args.client,
                server=server,
            )  # fmt: skip
        )
    return results


def parse_arguments(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", type=Path, required=True, help="dataset folder the requests are built from")
    parser.add_argument("--as-of", default="2024-06", help="as-of month of every request (YYYY-MM)")
    parser.add_argument("--url", help="a running server; without it one is started")
    parser.add_argument("--key-file", type=Path, help="file whose first line is an API key (with --url)")
    parser.add_argument("--tracking-uri", help="MLflow store of the champion (without --url)")
    parser.add_argument("--runs", type=Path, help="a batch run folder: village figures and scored households")
    parser.add_argument("--workers", type=int, default=1, help="server workers when the benchmark starts it")
    parser.add_argument(
        "--relapse",
        type=Path,
        default=Path(sys.executable).with_name("relapse"),
        help="the relapse command that starts the server (default: this environment's)",
    )
    parser.add_argument("--concurrency", type=lambda s: [int(x) for x in s.split(",")], default=[1, 32])
    parser.add_argument(
        "--requests-per-level", type=int, default=200, help="at least 32 x concurrency are sent"
    )
    parser.add_argument("--single-households", type=int, default=200, help="distinct single-household bodies")
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--batches", type=int, default=5, help="0 skips the batch level")
    parser.add_argument("--max-seconds", type=float, default=180, help="time bound of each level")
    parser.add_argument(
        "--client", choices=["aiohttp", "httpx"], default="aiohttp", help="the load generator's HTTP client"
    )
    parser.add_argument("--seed", type=int, default=20241123)
    parser.add_argument("--json-out", type=Path, help="also write the results here as JSON")
    args = parser.parse_args(argv)
    if args.url is None and args.tracking_uri is None:
        parser.error("give --url (with --key-file) or --tracking-uri to start a server")
    if args.url is not None and args.key_file is None:
        parser.error("--url needs --key-file")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_arguments(argv)
    console = Console()
    as_of = parse_month(args.as_of)
    with tempfile.TemporaryDirectory(prefix="bench-api-") as folder:
        process = None
        if args.url is None:
            console.print(f"starting {args.relapse} serve on a free loopback port ...")
            process, url, key = start_server(
                args.data, args.tracking_uri, args.runs, Path(folder), args.workers, args.relapse
            )
        else:
            url, key = args.url, args.key_file.read_text(encoding="utf-8").splitlines()[0].strip()
        try:
            server = psutil.Process(process.pid) if process is not None else None
            results = asyncio.run(benchmark(url, key, args.data, as_of, args, server))
        finally:
            if process is not None:
                stop_server(process)
    table = Table(title=f"POST /score on {url} ({os.cpu_count()} cores, {args.client} client)")
    for column in (
        "scenario",
        "concurrency",
        "requests",
        "errors",
        "p50 ms",
        "p95 ms",
        "p99 ms",
        "mean ms",
        "households/s",
        "server CPU ms/req",
        "client CPU ms/req",
        "server RSS MB",
    ):
        table.add_column(column, justify="right")
    for r in results:
        figures = (r.p50_ms, r.p95_ms, r.p99_ms, r.mean_ms, r.households_per_second)
        cpu = (r.server_cpu_ms_per_request, r.client_cpu_ms_per_request)
        table.add_row(
            r.scenario,
            str(r.concurrency),
            str(r.requests),
            str(r.errors),
            *(f"{x:,.1f}" for x in figures),
            *(f"{x:,.2f}" for x in cpu),
            f"{r.server_rss_mb:,.0f}",
        )
    console.print(table)
    if args.json_out is not None:
        args.json_out.write_text(json.dumps([asdict(r) for r in results], indent=2) + "\n", encoding="utf-8")
    return 1 if any(r.errors for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
