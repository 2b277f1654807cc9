#!/usr/bin/env python3
"""Load comparison: leanproxy against the tools a user would run instead of it
for the same job, in one run, on 127.0.0.1.

Three parts, all in the default run (`--only` picks some):

- **throughput**: every proxy in front of the same upstream (a 1-worker nginx
  serving fixed Lean-shaped JSON answers of 1 KiB and 512 KiB), measured
  interleaved over several rounds (order shuffled each round) with
  `wrk -t1 -c64 --latency`: requests/second, p50/p99, CPU time per request and
  peak resident memory of each proxy's processes, TTFB of the 512 KiB answer.
  Targets: direct (no proxy), the same-job peers of peers.py (nginx with a JSON
  access log, HAProxy, Caddy, mitmproxy, WireMock), the references (bare nginx,
  the hyper floor: examples/hyper_floor.rs) and leanproxy with its defaults
  (everything on);
- **latency** (latency.py): the latency each proxy adds at a steady rate (1,000
  and 5,000 requests/second of 1 KiB answers, `oha -q`), p50/p99/p99.9 minus
  direct's;
- **mockbank** (mockbank_load.py): the Mockbank as a load-test target, direct
  and through leanproxy, against WireMock serving the same answers as static
  stubs; and the Mockbank's memory with 10,000 linked entities.

It installs what it needs (wrk, nginx, haproxy, caddy, mitmproxy from Debian's
packages; WireMock's jar from PyPI; oha with cargo), runs every process from
config files in a temp directory (the peers' configs: benches/load/peers/),
sends traffic to 127.0.0.1 only, is bounded in time and stops only the
processes it started. Not part of the test suite.

    python3 benches/load/compare.py [--quick] [--duration S] [--rounds N]
                                    [--binary PATH] [--out FILE] [--only PART]
    python3 benches/load/compare.py --soak 300 [--soak-connections 1000]
    python3 benches/load/compare.py --baseline PATH   # A/B: adds another build
    python3 benches/load/compare.py --off             # adds leanproxy with its features off
    python3 benches/load/compare.py --only latency --targets hyper-floor,nginx-log --off
                                            # a few targets only (direct and leanproxy always)
    python3 benches/load/compare.py --paired PATH --rounds 16 --duration 3
    python3 benches/load/compare.py --storm 5000 [--baseline PATH]
    python3 benches/load/compare.py --paired PATH --redis redis://127.0.0.1:6390

Each answer size is measured on fresh proxy processes, so one size's memory
does not show in the other's. `--soak` instead runs one leanproxy under 1,000
keep-alive connections and samples its memory every 5 s. `--paired` instead
measures leanproxy against another build only, the two alternating, and
reports the median of the per-round ratios: rounds move by 10-20 % on a shared
machine, pairs much less. `--storm N` instead opens N keep-alive connections to
a fresh leanproxy (each with two exchanges in flight at once across all), closes
them, and reports its resident memory idle, at the peak and each second for
--storm-settle seconds after (with --baseline, the other build too, after it).

`--redis URL` (with `--paired`, a Redis on 127.0.0.1) runs A with `[state]
backend = "redis"` at URL (its own key prefix) and B with the memory backend,
1 KiB answers only, each request naming an entity (`?entity_id=bench`), so
every exchange reads the reconnect registry: A/B is the Redis backend's cost.

The leanproxy binary: --binary, else $LEANPROXY_BIN, else `cargo build
--release` in the repository and `$CARGO_TARGET_DIR` (default `target`)
`/release/leanproxy`.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import latency
import mockbank_load
import modes
import peers
from common import (
    CONNECTIONS,
    HOST,
    ORDER_SEED,
    REPO,
    THREADS,
    TTFB_SAMPLES,
    PEER_BODY,
    UPSTREAM_BODY,
    Proxy,
    alone,
    stop_at_exit,
    apt_install,
    cargo_release,
    existing_binary,
    fmt_mib,
    fmt_time,
    free_ports,
    lean_answer,
    leanproxy_binary,
    log,
    measure,
    med,
    medians,
    ratio,
    round_order,
    start_floor,
    start_leanproxy,
    start_nginx,
    status_field,
    stop,
    stop_all,
    ttfb,
    wait_port,
    wrk,
    write_nginx_conf,
)

SIZES = {"1k": 1024, "512k": 512 * 1024}
REFERENCES = ["direct", "nginx", "hyper-floor"]
TARGETS = REFERENCES + peers.SAME_JOB + ["leanproxy"]
BASELINE = "baseline"  # with --baseline: another leanproxy build, everything on
OFF = "leanproxy-off"  # with --off: leanproxy with its log ring and inspection off
PARTS = ["throughput", "latency", "mockbank"]


def ensure_tools(parts: list[str]) -> None:
    """wrk and nginx always; the peers for the comparison; oha for latency."""
    apt_install({"wrk": "wrk", "nginx": "nginx"})
    if parts:
        peers.ensure_peers()
    if "latency" in parts:
        peers.oha()


def facts(binary: Path) -> list[str]:
    def run(cmd, **kw):
        try:
            r = subprocess.run(cmd, capture_output=True, text=True, timeout=10, **kw)
            return (r.stdout + r.stderr).strip()
        except OSError as e:
            return f"({e})"

    commit = run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"])
    if run(["git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=no"]):
        commit += " (work tree has uncommitted changes)"
    cpu = ""
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    wrk_version = run(["wrk", "-v"]).splitlines()[0]
    return [
        f"- date: {dt.datetime.now().astimezone().isoformat(timespec='seconds')}",
        "- command: `" + " ".join(["python3 benches/load/compare.py", *sys.argv[1:]]) + "`",
        f"- machine: {os.cpu_count()} CPUs ({cpu}), kernel {platform.release()}, "
        f"load average at start {os.getloadavg()[0]:.2f}",
        f"- {run(['nginx', '-v'])}; {wrk_version}",
        f"- leanproxy: {binary}, built "
        f"{dt.datetime.fromtimestamp(binary.stat().st_mtime).astimezone().isoformat(timespec='seconds')}"
        f"; repository HEAD {commit}",
    ]


def versions() -> str:
    """The peers' own version lines."""

    def first(cmd: list[str]) -> str:
        try:
            r = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
        except OSError as e:
            return f"({e})"
        lines = (r.stdout + r.stderr).strip().splitlines()
        return lines[0].strip() if lines else "?"

    jar = peers.wiremock_jar().name
    return "; ".join(
        [
            first(["nginx", "-v"]),
            first(["haproxy", "-v"]),
            "caddy " + first(["caddy", "version"]),
            "mitmdump " + first(["mitmdump", "--version"]),
            f"{jar} on " + first(["java", "-version"]),
            first(["wrk", "-v"]),
        ]
    )


def report(samples: dict, rounds: int, seconds: int, targets: list[str]) -> str:
    out = ["## Throughput: every proxy at full load", ""]
    out += [
        f"- load: `wrk -t{THREADS} -c{CONNECTIONS} -d{seconds}s --latency`, {rounds} rounds, "
        f"targets interleaved (order shuffled each round, seed {ORDER_SEED}), the others stopped (SIGSTOP) during each "
        "run and each let settle after its run (under 5 % of a core); upstream: a 1-worker nginx "
        "on 127.0.0.1 serving fixed files",
        "- same-job peers (configs in benches/load/peers/): nginx-log (1 worker, JSON access "
        "log per request, X-Forwarded-*, request id), haproxy (httplog line per request to a "
        "file, same headers, one thread per CPU), caddy (reverse_proxy, JSON access log, "
        "request id), mitmproxy (mitmdump reverse mode, one line per flow, the last 1,000 flows "
        "kept), wiremock (standalone, --proxy-all, a journal of 1,000 requests; 5 s warm-up); "
        "references: nginx (1 worker, no log), hyper-floor (examples/hyper_floor.rs: hyper "
        "alone); leanproxy: defaults (inspection, request log ring, metrics, a log line per "
        "exchange at RUST_LOG info)"
        + (f"; {BASELINE}: the --baseline build, defaults" if BASELINE in targets else "")
        + (f"; {OFF}: `[log] ring = 0`, `[reconnect] inspect_limit = 1`, RUST_LOG=warn" if OFF in targets else ""),
        "- CPU/req: utime+stime of all the proxy's processes over the wrk run / requests "
        "completed; peak RSS: VmHWM reset before each run, summed over the processes; TTFB: "
        f"median of {TTFB_SAMPLES} sequential requests, new connection each, after the wrk "
        "run; medians across rounds. A ratio below 1.00 in the `leanproxy/peer` rows means "
        "leanproxy has less of it (for req/s, that it is slower)",
        "",
    ]
    for size, nbytes in SIZES.items():
        out += [f"### {size} answer ({nbytes} bytes)", ""]
        head = "| target | req/s | of direct | p50 | p99 | CPU/req | peak RSS | errors |"
        sep = "|---|---:|---:|---:|---:|---:|---:|---:|"
        if size == "512k":
            head += " TTFB |"
            sep += "---:|"
        out += [head, sep]
        m = {}
        direct_rps = med(s.rps for s in samples[size]["direct"])
        for t in targets:
            ss = samples[size][t]
            m[t] = medians(ss)
            row = (
                f"| {t} | {m[t]['rps']:,.0f} | {ratio(m[t]['rps'], direct_rps)} | "
                f"{fmt_time(m[t]['p50'])} | {fmt_time(m[t]['p99'])} | "
                f"{fmt_time(m[t]['cpu'])} | {fmt_mib(m[t]['rss'])} | {sum(s.errors for s in ss)} |"
            )
            if size == "512k":
                row += f" {fmt_time(m[t]['ttfb'])} |"
            out.append(row)
        out += ["", "| leanproxy / | req/s | p50 | p99 | CPU/req | peak RSS | target met |", "|---|---:|---:|---:|---:|---:|---|"]
        others = [t for t in targets if t not in ("direct", "leanproxy")]
        for b in others:
            a = m["leanproxy"]
            verdict = ""
            if b in peers.SAME_JOB:
                ok = a["rps"] >= m[b]["rps"] and a["cpu"] <= m[b]["cpu"] and a["p99"] <= m[b]["p99"]
                verdict = "yes" if ok else "**no**"
            elif b == "hyper-floor" and size == "1k":
                verdict = "yes" if a["cpu"] <= 1.2 * m[b]["cpu"] else "**no** (CPU/req ≤ 1.2×)"
            out.append(
                f"| {b} | {ratio(a['rps'], m[b]['rps'])} | {ratio(a['p50'], m[b]['p50'])} | "
                f"{ratio(a['p99'], m[b]['p99'])} | {ratio(a['cpu'], m[b]['cpu'])} | "
                f"{ratio(a['rss'], m[b]['rss'])} | {verdict} |"
            )
        out.append("")
    out += ["### Raw per-round numbers", ""]
    out += [
        "| size | round | target | req/s | p50 | p99 | requests | errors | CPU/req | peak RSS "
        "| RSS after | TTFB |",
        "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for size in SIZES:
        for r in range(rounds):
            for t in targets:
                ss = samples[size][t]
                if r >= len(ss):
                    continue
                s = ss[r]
                out.append(
                    f"| {size} | {r + 1} | {t} | {s.rps:,.0f} | {fmt_time(s.p50)} | "
                    f"{fmt_time(s.p99)} | {s.requests} | {s.errors} | "
                    f"{fmt_time(s.cpu_per_req)} | {fmt_mib(s.peak_kib)} | "
                    f"{fmt_mib(s.rss_after_kib)} | {fmt_time(s.ttfb)} |"
                )
    total_errors = sum(s.errors for size in SIZES for t in targets for s in samples[size][t])
    if total_errors:
        out += ["", f"**{total_errors} socket errors or non-2xx answers** (see the raw rows)."]
    return "\n".join(out) + "\n"


def start_proxies(
    binary: Path, tmp: Path, up: int, label: str, targets: list[str], baseline: Path | None, floor: Path
) -> dict[str, Proxy]:
    """Fresh processes of every target (so that each answer size, and each
    part of the run, is measured on processes that have seen nothing else)."""
    proxies = {"direct": Proxy("direct", up, None)}
    for t in targets:
        dir = tmp / label / t
        if t == "nginx":
            (port,) = free_ports(1)
            proc = start_nginx(dir, write_nginx_conf(dir, PEER_BODY.format(host=HOST, port=port, up=up)))
            wait_port(port, proc, "nginx proxy")
            proxies[t] = Proxy(t, port, proc)
        elif t == "hyper-floor":
            (port,) = free_ports(1)
            proxies[t] = Proxy(t, port, start_floor(floor, dir, up, port))
        elif t in peers.SAME_JOB:
            (port,) = free_ports(1)
            proxies[t] = peers.start_peer(t, dir, up, port)
        elif t in ("leanproxy", BASELINE, OFF):
            ports = free_ports(3)
            build = baseline if t == BASELINE else binary
            proxies[t] = Proxy(t, ports[0], start_leanproxy(build, dir, up, ports, off=t == OFF))
    return proxies


def stop_proxies(proxies: dict[str, Proxy]) -> None:
    for p in proxies.values():
        if p.proc is not None:
            stop(p.proc)


def throughput(binary, tmp, up, targets, baseline, floor, rounds, seconds, facts_) -> str:
    runs = rounds * len(SIZES) * len(targets)
    expected = runs * (seconds + 0.7) + len(SIZES) * (len(targets) * 2 + 20)
    log(f"throughput: {rounds} rounds x {len(SIZES)} sizes x {len(targets)} targets x {seconds}s: about {expected / 60:.1f} min")
    deadline = time.monotonic() + expected * 2 + 60  # a hard stop, whatever happens
    samples = {size: {t: [] for t in targets} for size in SIZES}
    for name in SIZES:
        proxies = start_proxies(binary, tmp, up, name, targets, baseline, floor)
        if name == next(iter(SIZES)):
            facts_.append(
                f"- threads at start: leanproxy {status_field(proxies['leanproxy'].proc.pid, 'Threads')} "
                "(tokio multi-thread runtime), nginx 1 worker process"
            )
        path = f"/{name}.json"
        for t in targets:  # every target answers before any load
            ttfb(proxies[t].port, path, n=1)
        log(f"{name}: fresh proxies up in {tmp / name}; warming up")
        for t in targets:
            wrk(proxies[t].port, path, proxies[t].warmup)
        for r in range(rounds):
            for t in round_order(targets, r):
                if time.monotonic() > deadline:
                    raise RuntimeError("throughput: over its time budget")
                with alone(proxies[t], proxies.values()):
                    s = measure(proxies[t], path, seconds)
                samples[name][t].append(s)
                log(
                    f"round {r + 1}/{rounds} {name:>4} {t:<13} {s.rps:>9,.0f} req/s "
                    f"p50 {fmt_time(s.p50):>9} p99 {fmt_time(s.p99):>9} "
                    f"cpu/req {fmt_time(s.cpu_per_req):>7} rss {fmt_mib(s.peak_kib):>9}"
                    + (f" ttfb {fmt_time(s.ttfb)}" if s.ttfb is not None else "")
                    + (f" errors {s.errors}" if s.errors else "")
                )
        stop_proxies(proxies)
    return report(samples, rounds, seconds, targets)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--duration", type=int, default=10, help="seconds per measured run (default 10)")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds (default 3)")
    ap.add_argument("--quick", action="store_true", help="3 s x 2 rounds")
    ap.add_argument(
        "--only", action="append", choices=PARTS, help="run only this part (repeatable; default: all three)"
    )
    ap.add_argument("--binary", help="prebuilt leanproxy (default: $LEANPROXY_BIN, else build)")
    ap.add_argument("--out", help="also write the Markdown report to this file")
    ap.add_argument("--keep-tmp", action="store_true", help="keep the temp dir (configs, logs)")
    ap.add_argument("--off", action="store_true", help=f"also measure `{OFF}`: log ring and inspection off")
    ap.add_argument(
        "--targets",
        metavar="A,B",
        help="measure only these of " + ", ".join(TARGETS[1:-1]) + " (direct and leanproxy always): "
        "a quicker look at a few; the full comparison is every target",
    )
    ap.add_argument(
        "--soak",
        type=int,
        metavar="SECONDS",
        help="instead of the comparison: leanproxy's memory over SECONDS (60..900) "
        "with --soak-connections keep-alive connections",
    )
    ap.add_argument("--soak-connections", type=int, default=1000, help="(default 1000)")
    ap.add_argument(
        "--storm",
        type=int,
        metavar="N",
        help="instead of the comparison: leanproxy's memory idle, with N (1..10000) "
        "keep-alive connections open, and after they close (with --baseline: both builds)",
    )
    ap.add_argument("--storm-settle", type=int, default=20, help="seconds sampled after closing (default 20)")
    ap.add_argument(
        "--baseline",
        metavar="PATH",
        help="another leanproxy build (say, the previous commit's), measured in the same "
        "rounds as the target `baseline` with everything on, for an A/B comparison",
    )
    ap.add_argument(
        "--paired",
        metavar="PATH",
        help="instead of the comparison: leanproxy against the build at PATH only, "
        "alternating, --rounds pairs per size (up to 40), the median of each pair's ratios",
    )
    ap.add_argument(
        "--redis",
        metavar="URL",
        help="with --paired: A keeps its state on the Redis at URL (127.0.0.1 only), "
        "B in memory; 1 KiB answers, each request naming an entity",
    )
    args = ap.parse_args()
    if args.redis is not None and (
        args.paired is None or not re.fullmatch(r"redis://127\.0\.0\.1:\d+(/\d+)?", args.redis)
    ):
        ap.error("--redis needs --paired and a URL like redis://127.0.0.1:6390")
    if args.quick:
        args.duration, args.rounds = 3, 2
    most_rounds = 40 if args.paired else 10
    if not (1 <= args.duration <= 120 and 1 <= args.rounds <= most_rounds):
        ap.error(f"--duration must be 1..120 and --rounds 1..{most_rounds}")
    if args.soak is not None and not (60 <= args.soak <= 900 and 1 <= args.soak_connections <= 5000):
        ap.error("--soak must be 60..900 seconds and --soak-connections 1..5000")
    if args.storm is not None and not (1 <= args.storm <= 10000 and 1 <= args.storm_settle <= 120):
        ap.error("--storm must be 1..10000 connections and --storm-settle 1..120 seconds")
    other_mode = args.paired is not None or args.soak is not None or args.storm is not None
    parts = [] if other_mode else (args.only or PARTS)

    stop_at_exit()

    ensure_tools(parts)
    binary = leanproxy_binary(args.binary)
    baseline = existing_binary(args.baseline, "baseline") if args.baseline else None
    chosen = TARGETS
    if args.targets:
        asked = {t.strip() for t in args.targets.split(",") if t.strip()}
        unknown = asked - set(TARGETS)
        if unknown:
            ap.error(f"--targets: unknown {', '.join(sorted(unknown))}; the targets are {', '.join(TARGETS)}")
        chosen = [t for t in TARGETS if t in asked or t in ("direct", "leanproxy")]
    targets = chosen + ([BASELINE] if baseline else []) + ([OFF] if args.off else [])
    floor = None
    if set(parts) & {"throughput", "latency"}:
        floor = cargo_release(["--example", "hyper_floor"], "examples/hyper_floor")

    tmp = Path(tempfile.mkdtemp(prefix="leanproxy-load-"))
    # nginx's workers run as an unprivileged user (www-data) and must read the files.
    tmp.chmod(0o755)
    try:
        www = tmp / "www"
        www.mkdir()
        for name, size in SIZES.items():
            (www / f"{name}.json").write_bytes(lean_answer(size))
        (up,) = free_ports(1)
        up_dir = tmp / "upstream"
        up_proc = start_nginx(up_dir, write_nginx_conf(up_dir, UPSTREAM_BODY.format(host=HOST, port=up, www=www)))
        wait_port(up, up_proc, "upstream nginx")

        facts_ = facts(binary)
        sections = []
        if args.paired is not None:
            other = existing_binary(args.paired, "paired")
            sizes = ["1k"] if args.redis else list(SIZES)
            title = "paired A/B"
            sections.append(modes.paired(binary, other, tmp, up, args.rounds, args.duration, sizes, args.redis))
        elif args.soak is not None:
            title = "memory soak"
            sections.append(modes.soak(binary, tmp, up, args.soak, args.soak_connections))
        elif args.storm is not None:
            builds = [("leanproxy", binary)] + ([("baseline", baseline)] if baseline else [])
            title = "connection storm"
            sections.append(modes.storm(builds, tmp, up, args.storm, args.storm_settle))
        else:
            title = "load comparison with the tools that do the same job"
            facts_.append(f"- peers: {versions()}")
            if "throughput" in parts:
                sections.append(
                    throughput(binary, tmp, up, targets, baseline, floor, args.rounds, args.duration, facts_)
                )
            if "latency" in parts:
                start_all = lambda label: start_proxies(binary, tmp, up, label, targets, baseline, floor)  # noqa: E731
                sections.append(latency.steady(start_all, stop_proxies, args.rounds, args.duration))
            if "mockbank" in parts:
                sections.append(mockbank_load.run(binary, tmp, args.rounds, args.duration))
        facts_.append(f"- load average at the end: {os.getloadavg()[0]:.2f}")
        text = f"# leanproxy: {title}\n\n" + "\n".join(facts_) + "\n\n" + "\n".join(sections)
        print(text)
        if args.out:
            Path(args.out).write_text(text)
            log(f"report written to {args.out}")
        return 0
    finally:
        stop_all()
        if args.keep_tmp:
            log(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
