"""The workbench under 50 staff at once: page times, outcomes written per second, none lost or duplicated.

    .venv/bin/python benchmarks/bench_workbench.py                       # SQLite, then PostgreSQL
    .venv/bin/python benchmarks/bench_workbench.py --db sqlite --sessions 50 --rounds 8

Generates a county in small villages (--households, many townships), lists it
by the rule baseline (tests/workbench_fixtures.py, no training needed), imports
both of its last quarters into a fresh database, adds one township account per
session, and starts `relapse web` on a free loopback port. PostgreSQL is a
private cluster started for the run (Debian's postgresql), or --postgres-url.

Each of --sessions concurrent sessions (aiohttp, one cookie jar each) signs in
and then, --rounds times: opens its township's visit list, a household's page,
the visit form, saves an outcome (the form post, CSRF token and all), and opens
the household page it is sent back to. Browsing starts once every session has
signed in (sign-in is timed apart: Argon2 is slow on purpose, and staff sign in
once a day). One post in --resend is sent twice with
the same form, as a double tap on a bad connection would. At the end the
database must hold exactly one visit and one first revision per form sent,
and each visit must be the one its form said.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import re
import socket
import subprocess
import sys
import time
from collections import defaultdict
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import httpx
import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # the rule-baseline run and the private PostgreSQL of the tests

from workbench_fixtures import private_postgres, rule_baseline_run  # noqa: E402

PASSWORD = "bench password 2026"
TOKEN = re.compile(r'name="(csrf_token|client_key)" value="([^"]+)"')


@dataclass
class Timings:
    pages: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    errors: list[str] = field(default_factory=list)
    sent: dict[str, tuple[str, str]] = field(default_factory=dict)
    """client_key -> (household_id, visitor) of every form posted."""
    signed_in: int = 0
    everyone_signed_in: asyncio.Event = field(default_factory=asyncio.Event)
    browsing_from: float = 0.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def county(work: Path, households: int, seed: int) -> Path:
    from relapse_risk.generator.config import CountyConfig
    from relapse_risk.generator.run import generate

    folder = work / f"county-h{households}-s{seed}"
    if not (folder / "policy.json").exists():
        config = CountyConfig(
            households=households, months=36, seed=seed, households_per_village=(30, 60),
            villages_per_township=(3, 5),
        )  # fmt: skip
        generate(config, folder)
    return folder


def fill(url: str, folder: Path, work: Path, sessions: int) -> list[tuple[str, str]]:
    """Import two quarters, add one township account per session; (username, township) of each."""
    from relapse_risk.features.contract import format_month, month_index, month_start
    from relapse_risk.features.policy import read_policy
    from relapse_risk.serving.workbench.command import add_user, import_runs

    end = read_policy(folder / "policy.json").data_end
    latest, earlier = format_month(end), format_month(month_start(month_index(end) - 3))
    runs = work / "runs"
    for as_of, days in ((earlier, 110), (latest, 20)):
        run = runs / as_of
        if not (run / "scores.parquet").exists():
            rule_baseline_run(folder, run, as_of)
        import_runs(url, run, None, dt.date.today() - dt.timedelta(days=days))
    scores = pd.read_parquet(runs / latest / "scores.parquet")
    townships = sorted(scores.loc[scores["in_visit_list"], "township_code"].unique())
    accounts = []
    for i in range(sessions):
        township = townships[i % len(townships)]
        add_user(url, f"staff{i:02d}", "township", township, PASSWORD)
        accounts.append((f"staff{i:02d}", township))
    return accounts


async def _timed(timings: Timings, name: str, call) -> aiohttp.ClientResponse:  # noqa: ANN001 - a coroutine
    started = time.perf_counter()
    response = await call
    await response.read()
    timings.pages[name].append(time.perf_counter() - started)
    return response


async def staff_session(base: str, username: str, township: str, rounds: int, resend: int, index: int,
                        sessions: int, timings: Timings, rng: np.random.Generator) -> None:  # fmt: skip
    jar = aiohttp.CookieJar(unsafe=True)
    async with aiohttp.ClientSession(base, cookie_jar=jar) as http:
        credentials = {"username": username, "password": PASSWORD}
        login = await _timed(timings, "sign-in", http.post("/api/login", json=credentials))
        if login.status != 200:
            timings.errors.append(f"{username}: sign-in {login.status}")
        # Browsing starts when all have signed in: 50 Argon2 verifications at once take seconds on
        # 2 cores, and the figures of the pages should not be those of the sign-in queue.
        timings.signed_in += 1
        if timings.signed_in == sessions:
            timings.browsing_from = time.perf_counter()
            timings.everyone_signed_in.set()
        await timings.everyone_signed_in.wait()
        if login.status != 200:
            return
        for r in range(rounds):
            listing = await _timed(
                timings, "visit list", http.get("/api/visit_list", params={"township": township})
            )
            households = [h["household_id"] for h in json.loads(await listing.read())["households"]]
            await _timed(timings, "visit list page", http.get("/visit-list", params={"township": township}))
            household = households[int(rng.integers(len(households)))]
            await _timed(timings, "household page", http.get(f"/households/{household}"))
            form = await _timed(timings, "visit form", http.get(f"/households/{household}/visits/new"))
            tokens = dict(TOKEN.findall((await form.read()).decode()))
            visitor = f"{username}-r{r}"
            body = {**tokens, "visit_date": dt.date.today().isoformat(), "visitor": visitor,
                    "outcome": ["confirmed", "no_risk", "not_home"][r % 3], "measures": "medical_assistance",
                    "note": f"round {r}"}  # fmt: skip
            timings.sent[tokens["client_key"]] = (household, visitor)
            times = 2 if resend and (index * rounds + r) % resend == 0 else 1
            for _ in range(times):
                post = http.post(f"/households/{household}/visits", data=body, allow_redirects=False)
                saved = await _timed(timings, "save outcome", post)
                if saved.status != 303:
                    timings.errors.append(f"{username}: save {saved.status}")
            await _timed(timings, "household page", http.get(f"/households/{household}?saved=1"))


def audit(url: str, timings: Timings) -> dict[str, int]:
    """Count what the database holds against what was sent."""
    from relapse_risk.serving.workbench.db import Visit, VisitRevision, make_engine, session_factory
    from sqlalchemy import func, select

    engine = make_engine(url)
    with session_factory(engine)() as session:
        rows = [(v.client_key, v.household_id, v.visitor) for v in session.scalars(select(Visit))]
        first_revisions = int(session.scalar(select(func.count()).where(VisitRevision.version == 1)) or 0)
    engine.dispose()
    visits = {key: (household, visitor) for key, household, visitor in rows}
    # Every form has its own visitor text: two rows of one (household, visitor) are one form saved twice.
    per_form = pd.Series([(household, visitor) for _, household, visitor in rows]).value_counts()
    return {
        "forms_sent": len(timings.sent),
        "visits_in_database": len(rows),
        "first_revisions": first_revisions,
        "lost": sum(1 for key in timings.sent if key not in visits),
        "duplicated": int((per_form - 1).sum()),
        "not_as_sent": sum(1 for key, sent in timings.sent.items() if visits.get(key, sent) != sent),
        "unexpected": sum(1 for key in visits if key not in timings.sent),
    }


def run(backend: str, url: str, folder: Path, work: Path, args: argparse.Namespace) -> dict[str, object]:
    accounts = fill(url, folder, work, args.sessions)
    port = _free_port()
    relapse = Path(sys.executable).with_name("relapse")
    log = (work / f"server-{backend}.log").open("w")
    server = subprocess.Popen([str(relapse), "web", "--db", url, "--port", str(port)], stdout=log, stderr=log)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(200):
            try:
                if httpx.get(f"{base}/login", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.3)
        rng = np.random.default_rng(args.seed)

        async def everyone() -> tuple[Timings, float]:
            timings = Timings()
            await asyncio.gather(*(
                staff_session(base, user, township, args.rounds, args.resend, i, len(accounts), timings, rng)
                for i, (user, township) in enumerate(accounts)
            ))  # fmt: skip
            return timings, time.perf_counter() - timings.browsing_from

        timings, seconds = asyncio.run(everyone())
    finally:
        server.terminate()
        server.wait(timeout=30)
        log.close()
    saves = timings.pages["save outcome"]
    result = {
        "backend": backend,
        "sessions": args.sessions,
        "rounds": args.rounds,
        "browsing_seconds": round(seconds, 1),
        "outcomes_per_second": round(len(timings.sent) / seconds, 1),
        "requests": sum(len(v) for v in timings.pages.values()),
        "errors": timings.errors[:10],
        "error_count": len(timings.errors),
        "pages_ms": {
            name: {
                "n": len(v),
                "p50": round(1000 * float(np.percentile(v, 50)), 1),
                "p95": round(1000 * float(np.percentile(v, 95)), 1),
            }
            for name, v in sorted(timings.pages.items())
        },  # fmt: skip
        "all_pages_p95_ms": round(
            1000
            * float(np.percentile([t for n, v in timings.pages.items() if n != "sign-in" for t in v], 95)),
            1,
        ),  # fmt: skip
        "saves": len(saves),
        "audit": audit(url, timings),
    }
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", choices=("sqlite", "postgresql", "both"), default="both")
    parser.add_argument("--households", type=int, default=6000)
    parser.add_argument("--seed", type=int, default=5)
    parser.add_argument("--sessions", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=6, help="Outcomes each session records.")
    parser.add_argument("--resend", type=int, default=10, help="Every Nth form is posted twice (0: never).")
    parser.add_argument(
        "--postgres-url", default="", help="postgresql+psycopg://USER@HOST:PORT/ (a new database is made)"
    )
    parser.add_argument("--work", default=str(ROOT / "build" / "bench-workbench"))
    parser.add_argument("--out", default="", help="JSON file for the results.")
    args = parser.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    folder = county(work, args.households, args.seed)
    results = []
    with ExitStack() as stack:
        for backend in ("sqlite", "postgresql") if args.db == "both" else (args.db,):
            if backend == "sqlite":
                database = work / "bench.db"
                for suffix in ("", "-wal", "-shm"):
                    Path(f"{database}{suffix}").unlink(missing_ok=True)
                url = f"sqlite:///{database}"
            else:
                from workbench_fixtures import new_postgres_database

                server = args.postgres_url or stack.enter_context(private_postgres())
                url = new_postgres_database(server)
            result = run(backend, url, folder, work, args)
            results.append(result)
            print(json.dumps(result, indent=2, ensure_ascii=False), flush=True)
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()
