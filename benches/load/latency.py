"""compare.py's latency part: the latency each proxy adds at a steady,
realistic rate rather than at saturation.

For each rate (1,000 and 5,000 requests/second of the 1 KiB answer), every
target in turn gets `oha -q RATE -c 64 --latency-correction` for the run's
duration, interleaved over the rounds; p50, p99 and p99.9 (medians over the
rounds) minus direct's are what the proxy adds. `--latency-correction` measures
each request from when it was due, not from when it was sent, so a proxy that
falls behind the rate shows it instead of hiding it (coordinated omission).
A target that does not reach 95 % of the rate is marked saturated. After each
run the target is let settle (`common.settle`) before the next one starts, and
the other targets are stopped while it runs (`common.alone`).
"""

from __future__ import annotations

import json
import subprocess
import time
from dataclasses import dataclass

import peers
from common import CONNECTIONS, HOST, alone, fmt_time, log, med, round_order, settle, wrk

RATES = [1000, 5000]
PATH = "/1k.json"


@dataclass
class Steady:
    rate: float  # achieved requests/second
    p50: float  # seconds
    p99: float
    p999: float
    errors: int


def oha_run(port: int, rate: int, seconds: int) -> Steady:
    cmd = [
        str(peers.oha()), "-z", f"{seconds}s", "-q", str(rate), "-c", str(CONNECTIONS),
        "--latency-correction", "--no-tui", "--output-format", "json",
        f"http://{HOST}:{port}{PATH}",
    ]  # fmt: skip
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60)
    if out.returncode != 0:
        raise RuntimeError(f"oha failed ({out.returncode}): {out.stderr[-1000:]}")
    report = json.loads(out.stdout)
    pct = report["latencyPercentiles"]
    if pct.get("p50") is None:
        raise RuntimeError(f"oha completed no request on :{port} at {rate}/s")
    codes = report.get("statusCodeDistribution", {})
    # Requests still in flight when the duration ends are "aborted due to
    # deadline": the end of the run, not a failure.
    errors = sum(n for what, n in report.get("errorDistribution", {}).items() if "deadline" not in what) + sum(
        n for code, n in codes.items() if not str(code).startswith("2")
    )
    return Steady(report["summary"]["requestsPerSec"], pct["p50"], pct["p99"], pct["p99.9"], errors)


def steady(start_all, stop_all, rounds: int, seconds: int) -> str:
    """`start_all(label)` starts fresh processes of every target (a dict name ->
    Proxy, "direct" included); `stop_all(proxies)` stops them."""
    proxies = start_all("latency")
    targets = list(proxies)
    budget = len(RATES) * rounds * len(targets) * (seconds + 2) * 2 + 120
    deadline = time.monotonic() + budget
    log(f"latency: {len(RATES)} rates x {rounds} rounds x {len(targets)} targets x {seconds}s")
    for p in proxies.values():
        wrk(p.port, PATH, p.warmup)
    runs: dict[int, dict[str, list[Steady]]] = {r: {t: [] for t in targets} for r in RATES}
    for rate in RATES:
        for r in range(rounds):
            for t in round_order(targets, r):
                if time.monotonic() > deadline:
                    raise RuntimeError("latency: over its time budget")
                with alone(proxies[t], proxies.values()):
                    s = oha_run(proxies[t].port, rate, seconds)
                    settle(proxies[t])
                runs[rate][t].append(s)
                log(
                    f"latency {rate}/s round {r + 1} {t:<12} {s.rate:>7,.0f}/s p50 {fmt_time(s.p50)} "
                    f"p99 {fmt_time(s.p99)} p99.9 {fmt_time(s.p999)}" + (f" errors {s.errors}" if s.errors else "")
                )
    stop_all(proxies)
    return report(runs, targets, rounds, seconds)


def report(runs, targets: list[str], rounds: int, seconds: int) -> str:
    out = [
        "## Latency added at a steady rate",
        "",
        f"- `oha -z {seconds}s -q RATE -c {CONNECTIONS} --latency-correction` on {PATH}, "
        f"{rounds} rounds, targets interleaved (the others stopped during each run, each let "
        "settle after its run), fresh processes "
        "(not those of the throughput part); medians over the rounds; *added* = the target's percentile minus direct's",
        "",
    ]
    for rate, by_target in runs.items():
        m = {
            t: dict(
                rate=med(s.rate for s in ss),
                p50=med(s.p50 for s in ss),
                p99=med(s.p99 for s in ss),
                p999=med(s.p999 for s in ss),
                errors=sum(s.errors for s in ss),
            )
            for t, ss in by_target.items()
        }
        d = m["direct"]
        out += [
            f"### {rate:,} requests/second",
            "",
            "| target | achieved/s | p50 | p99 | p99.9 | added p50 | added p99 | added p99.9 | errors |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for t in targets:
            x = m[t]
            note = " (saturated)" if x["rate"] < 0.95 * rate else ""
            out.append(
                f"| {t}{note} | {x['rate']:,.0f} | {fmt_time(x['p50'])} | {fmt_time(x['p99'])} | "
                f"{fmt_time(x['p999'])} | {fmt_time(x['p50'] - d['p50'])} | "
                f"{fmt_time(x['p99'] - d['p99'])} | {fmt_time(x['p999'] - d['p999'])} | {x['errors']} |"
            )
        lp = m["leanproxy"]["p99"] - d["p99"]
        beaten = [t for t in peers.SAME_JOB if t in m and lp > m[t]["p99"] - d["p99"]]
        out += [
            "",
            f"leanproxy's added p99 at {rate:,}/s: {fmt_time(lp)}; "
            + (
                "at most every same-job peer's."
                if not beaten
                else "more than " + ", ".join(f"{t}'s ({fmt_time(m[t]['p99'] - d['p99'])})" for t in beaten) + "."
            ),
            "",
        ]
    return "\n".join(out) + "\n"
