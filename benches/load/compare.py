#!/usr/bin/env python3
"""Load comparison: leanproxy against nginx as reverse proxies, in one run.

Both proxies sit in front of the same loopback upstream (a 1-worker nginx
serving two fixed Lean-shaped JSON answers, 1 KiB and 512 KiB). The targets are
measured interleaved, several rounds (direct, nginx, leanproxy, leanproxy-off,
then the next round in a rotated order), with `wrk -t1 -c64 --latency`.

Per target and answer size it reports requests/second, p50/p99 latency, CPU
time per request and peak resident memory of the proxy process(es), time to
first byte of the 512 KiB answer, and the ratios leanproxy/nginx and
leanproxy(all on)/leanproxy(off).

Standard library only. It installs wrk and nginx from Debian's packages if
they are missing, runs its own nginx processes from config files in a temp
directory, sends traffic to 127.0.0.1 only, is bounded in time and stops only
the processes it started. Not part of the test suite.

    python3 benches/load/compare.py [--quick] [--duration S] [--rounds N]
                                    [--binary PATH] [--out FILE]
    python3 benches/load/compare.py --soak 300 [--soak-connections 1000]
    python3 benches/load/compare.py --baseline PATH   # A/B: adds another build
    python3 benches/load/compare.py --floor           # adds a bare hyper proxy
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
import atexit
import datetime as dt
import json
import os
import platform
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
HOST = "127.0.0.1"  # the only address this script ever sends traffic to
CONNECTIONS = 64
THREADS = 1
SIZES = {"1k": 1024, "512k": 512 * 1024}
TARGETS = ["direct", "nginx", "leanproxy", "leanproxy-off"]
BASELINE = "baseline"  # with --baseline: another leanproxy build, everything on
FLOOR = "hyper-floor"  # with --floor: examples/hyper_floor.rs, hyper and nothing else
TTFB_SAMPLES = 50
WARMUP_SECONDS = 1
CLK_TCK = os.sysconf("SC_CLK_TCK")
# With --redis: side A's Redis, and the query every request carries.
REDIS: str | None = None
QUERY = ""

# Everything this script started, stopped at exit whatever happens.
_STARTED: list[subprocess.Popen] = []


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------
# Processes


def start(cmd: list[str], **kw) -> subprocess.Popen:
    """Starts a process in its own session (so its children can be found and
    stopped as one group without touching anything else) and records it."""
    p = subprocess.Popen(cmd, start_new_session=True, **kw)
    _STARTED.append(p)
    return p


def stop(p: subprocess.Popen) -> None:
    """SIGTERM, then SIGKILL to the process group this script created."""
    if p.poll() is None:
        try:
            p.terminate()
            p.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
    # The group id is the pid of the leader we started; it also holds nginx's
    # workers. Killing it touches nothing we did not start.
    try:
        os.killpg(p.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    try:
        p.wait(timeout=5)
    except subprocess.TimeoutExpired:
        pass


def stop_all() -> None:
    while _STARTED:
        stop(_STARTED.pop())


def _on_signal(signum, _frame):
    raise SystemExit(128 + signum)


def children(pid: int) -> list[int]:
    """Direct children of `pid` (nginx's workers), by scanning /proc."""
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            stat = Path(f"/proc/{d}/stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        if int(fields[1]) == pid:
            out.append(int(d))
    return out


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process (all its threads), in seconds."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    # After "pid (comm) ": field 3 (state) is index 0, so utime (14) is 11.
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def status_field(pid: int, name: str) -> int:
    """A number from /proc/<pid>/status (VmHWM, VmRSS in KiB; Threads)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(name + ":"):
            return int(line.split()[1])
    return 0


def vm_hwm_kib(pid: int) -> int:
    return status_field(pid, "VmHWM")


def reset_peak(pid: int) -> bool:
    """Resets VmHWM to the current RSS (Linux >= 4.0), so the peak read after a
    run is that run's peak. Only ever written for processes we started."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
        return True
    except OSError:
        return False


@dataclass
class Proxy:
    name: str
    port: int
    proc: subprocess.Popen | None  # None for the direct baseline
    multi: bool = False  # nginx: master + workers

    def pids(self) -> list[int]:
        if self.proc is None:
            return []
        return [self.proc.pid] + (children(self.proc.pid) if self.multi else [])

    def alive(self) -> bool:
        return self.proc is None or self.proc.poll() is None


# --------------------------------------------------------------------------
# Setup


def ensure_tools() -> None:
    missing = [t for t in ("wrk", "nginx") if not shutil.which(t)]
    if not missing:
        return
    log(f"installing wrk and nginx from Debian's packages (missing: {', '.join(missing)})")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    # apt's chatter goes to stderr: stdout carries only the report.
    subprocess.run(["apt-get", "update"], check=True, env=env, timeout=600, stdout=sys.stderr)
    subprocess.run(
        ["apt-get", "install", "-y", "--no-install-recommends", "wrk", "nginx"],
        check=True,
        env=env,
        timeout=900,
        stdout=sys.stderr,
    )
    for t in ("wrk", "nginx"):
        if not shutil.which(t):
            sys.exit(f"compare.py: {t} still missing after apt-get install")


def leanproxy_binary(arg: str | None) -> Path:
    explicit = arg or os.environ.get("LEANPROXY_BIN")
    if explicit:
        return existing_binary(explicit, "leanproxy")
    return cargo_release(["--bin", "leanproxy"], "leanproxy")


def existing_binary(path: str, what: str) -> Path:
    found = Path(path).resolve()
    if not found.is_file():
        sys.exit(f"compare.py: no {what} binary at {found}")
    return found


def cargo_release(what: list[str], path: str) -> Path:
    """`cargo build --release <what>` in the repository; the built file at
    `path` under `$CARGO_TARGET_DIR` (default `target`) `/release`."""
    log(f"building: cargo build --release {' '.join(what)}")
    subprocess.run(
        ["cargo", "build", "--release", *what],
        cwd=REPO,
        check=True,
        timeout=1800,
    )
    target = Path(os.environ.get("CARGO_TARGET_DIR", REPO / "target"))
    if not target.is_absolute():
        target = REPO / target
    return target / "release" / path


def free_ports(n: int) -> list[int]:
    """Ports the kernel hands out for 127.0.0.1:0, all held until all are
    picked so that none repeats."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind((HOST, 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def lean_answer(size: int) -> bytes:
    """A Lean v2 transactions answer of exactly `size` bytes."""
    head = (
        '{"status":"OK","results_id":"2ab8c57a-011b-418f-9419-968155e600dd",'
        '"message":"Data successfully retrieved","meta":null,'
        '"timestamp":"2026-05-13T19:42:30.487549603Z","status_detail":null,'
        '"type":"transactions","data":{"transactions":['
    )
    tail = "]}}"
    items = []
    n = 0
    length = len(head) + len(tail)
    while True:
        item = json.dumps(
            {
                "transaction_id": f"e7323898-c6c8-4493-80b0-{n:012d}",
                "transaction_information": "CARREFOUR 1647 DUBAI ARE",
                "transaction_reference": f"REF{n:08d}",
                "amount": {"currency": "AED", "amount": round(10 + n * 1.37, 2)},
                "credit_debit_indicator": "DEBIT",
                "status": "BOOKED",
                "booking_date_time": "2026-05-12T08:15:00Z",
                "value_date_time": "2026-05-12T08:15:00Z",
            },
            separators=(",", ":"),
        )
        extra = len(item) + (1 if items else 0)
        if length + extra > size:
            break
        items.append(item)
        length += extra
        n += 1
    body = head + ",".join(items) + tail
    # Pad to the exact size with JSON whitespace before the closing braces.
    body = body[: -len(tail)] + " " * (size - len(body)) + tail
    assert len(body) == size, (len(body), size)
    json.loads(body)
    return body.encode()


NGINX_COMMON = """\
worker_processes 1;
daemon off;
master_process on;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
worker_rlimit_nofile 16384;
events {{ worker_connections 8192; }}
http {{
    access_log off;
    types {{ application/json json; }}
    default_type application/json;
    client_body_temp_path {dir}/client_body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    keepalive_timeout 65;
    keepalive_requests 1000000;
{body}
}}
"""

UPSTREAM_BODY = """\
    sendfile on;
    tcp_nopush on;
    server {{
        listen {host}:{port};
        root {www};
        location / {{ }}
    }}
"""

PEER_BODY = """\
    upstream lean {{
        server {host}:{up};
        keepalive 64;
        keepalive_requests 1000000;
    }}
    server {{
        listen {host}:{port};
        location / {{
            proxy_pass http://lean;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }}
    }}
"""


def write_nginx_conf(dir: Path, body: str) -> Path:
    dir.mkdir(parents=True, exist_ok=True)
    conf = dir / "nginx.conf"
    conf.write_text(NGINX_COMMON.format(dir=dir, body=body))
    return conf


def start_nginx(dir: Path, conf: Path) -> subprocess.Popen:
    # -e: the startup error log goes to our directory, not /var/log/nginx.
    cmd = ["nginx", "-e", str(dir / "startup.log"), "-c", str(conf), "-p", str(dir)]
    check = subprocess.run(cmd + ["-t", "-q"], capture_output=True, text=True, timeout=30)
    if check.returncode != 0:
        sys.exit(f"compare.py: nginx rejects {conf}:\n{check.stderr}")
    return start(
        cmd,
        stdout=open(dir / "stdout.log", "wb"),
        stderr=open(dir / "stderr.log", "wb"),
    )


def wait_port(port: int, proc: subprocess.Popen, what: str, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            sys.exit(f"compare.py: {what} exited with {proc.returncode} before listening")
        try:
            socket.create_connection((HOST, port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    sys.exit(f"compare.py: {what} not listening on {HOST}:{port} after {timeout}s")


def start_leanproxy(
    binary: Path, dir: Path, up: int, ports: list[int], off: bool, redis: str | None = None
) -> subprocess.Popen:
    dir.mkdir(parents=True, exist_ok=True)
    port, admin, webhooks = ports
    cmd = [
        str(binary),
        "serve",
        "--upstream", f"http://{HOST}:{up}",
        "--listen", f"{HOST}:{port}",
        "--admin-listen", f"{HOST}:{admin}",
        "--webhooks-listen", f"{HOST}:{webhooks}",
        "--data-dir", str(dir / "data"),
    ]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEANPROXY_")}
    env.pop("RUST_LOG", None)  # leanproxy's default level (info)
    if off:
        config = dir / "off.toml"
        config.write_text("[log]\nring = 0\n[reconnect]\ninspect_limit = 1\n")
        cmd += ["--config", str(config)]
        env["RUST_LOG"] = "warn"
    elif redis:
        config = dir / "redis.toml"
        config.write_text(
            f'[state]\nbackend = "redis"\nurl = "{redis}"\nprefix = "bench-{os.getpid()}-{port}:"\n'
        )
        cmd += ["--config", str(config)]
    stdout = dir / "stdout.log"
    proc = start(cmd, stdout=open(stdout, "wb"), stderr=open(dir / "stderr.log", "wb"), env=env)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            err = (dir / "stderr.log").read_text(errors="replace")[-2000:]
            sys.exit(f"compare.py: leanproxy exited with {proc.returncode}:\n{err}")
        if b"leanproxy proxy listening on" in stdout.read_bytes():
            return proc
        time.sleep(0.05)
    sys.exit("compare.py: leanproxy did not print `leanproxy proxy listening on` within 20s")


# --------------------------------------------------------------------------
# Measuring

_UNITS = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def _seconds(text: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m|h)", text)
    if not m:
        raise ValueError(f"unexpected wrk duration {text!r}")
    return float(m.group(1)) * _UNITS[m.group(2)]


@dataclass
class Sample:
    rps: float
    p50: float  # seconds
    p99: float
    requests: int
    errors: int
    cpu_per_req: float | None = None  # seconds
    peak_kib: int | None = None
    worker_peak_kib: int | None = None
    rss_after_kib: int | None = None
    ttfb: float | None = None  # seconds (512 KiB only)


def wrk(port: int, path: str, seconds: int) -> Sample:
    cmd = [
        "wrk", f"-t{THREADS}", f"-c{CONNECTIONS}", f"-d{seconds}s", "--latency",
        f"http://{HOST}:{port}{path}",
    ]  # fmt: skip
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60)
    text = out.stdout
    if out.returncode != 0:
        raise RuntimeError(f"wrk failed ({out.returncode}): {out.stderr or text}")
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))
    dist = dict(re.findall(r"^\s+(50|99)%\s+(\S+)", text, re.M))
    requests = int(re.search(r"(\d+) requests in", text).group(1))
    errors = 0
    if m := re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text):
        errors += sum(int(g) for g in m.groups())
    if m := re.search(r"Non-2xx or 3xx responses: (\d+)", text):
        errors += int(m.group(1))
    return Sample(rps, _seconds(dist["50"]), _seconds(dist["99"]), requests, errors)


def ttfb(port: int, path: str, n: int = TTFB_SAMPLES) -> float:
    """Median time from connecting to the first response byte, over `n`
    sequential requests, each on a new connection read to its end."""
    request = (
        f"GET {path} HTTP/1.1\r\nHost: {HOST}:{port}\r\n"
        "Accept: application/json\r\nConnection: close\r\n\r\n"
    ).encode()
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        with socket.create_connection((HOST, port), timeout=10) as s:
            s.sendall(request)
            first = s.recv(65536)
            t1 = time.perf_counter()
            if not first.startswith(b"HTTP/1.1 200"):
                raise RuntimeError(f"unexpected answer on :{port}{path}: {first[:80]!r}")
            while s.recv(1 << 20):
                pass
        times.append(t1 - t0)
    return statistics.median(times)


def measure(proxy: Proxy, size: str, seconds: int) -> Sample:
    pids = proxy.pids()
    for pid in pids:
        reset_peak(pid)
    before = sum(cpu_seconds(p) for p in pids)
    s = wrk(proxy.port, f"/{size}.json{QUERY}", seconds)
    if not proxy.alive():
        raise RuntimeError(f"{proxy.name} died during the run")
    pids_after = proxy.pids()
    if pids:
        if sorted(pids_after) != sorted(pids):
            log(f"warning: {proxy.name}'s processes changed during the run: {pids} -> {pids_after}")
        after = sum(cpu_seconds(p) for p in pids if Path(f"/proc/{p}").exists())
        s.cpu_per_req = (after - before) / max(s.requests, 1)
        s.peak_kib = sum(vm_hwm_kib(p) for p in pids_after)
        s.rss_after_kib = sum(status_field(p, "VmRSS") for p in pids_after)
        if proxy.multi:
            s.worker_peak_kib = max(vm_hwm_kib(p) for p in pids_after[1:] or pids_after)
    if size == "512k":
        s.ttfb = ttfb(proxy.port, f"/{size}.json{QUERY}")
    return s


# --------------------------------------------------------------------------
# Report


def fmt_time(s: float | None) -> str:
    if s is None:
        return "–"
    if s < 1e-3:
        return f"{s * 1e6:.0f} µs"
    return f"{s * 1e3:.2f} ms"


def fmt_mib(kib: float | None) -> str:
    return "–" if kib is None else f"{kib / 1024:.1f} MiB"


def med(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def ratio(a, b) -> str:
    if a is None or b is None or b == 0:
        return "–"
    return f"{a / b:.2f}"


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


def report(
    samples: dict, rounds: int, seconds: int, sizes: dict[str, int], facts_: list[str]
) -> str:
    out = ["# leanproxy vs nginx: load comparison", ""]
    out += facts_
    out += [
        f"- load: `wrk -t{THREADS} -c{CONNECTIONS} -d{seconds}s --latency`, {rounds} rounds, "
        "targets interleaved (order rotated each round); upstream: a 1-worker nginx on "
        "127.0.0.1 serving fixed files",
        "- nginx peer: 1 worker, upstream keepalive 64, HTTP/1.1 to the upstream, "
        "proxy_buffering on (default); leanproxy: defaults (inspection, request log "
        "ring buffer, metrics on; RUST_LOG info); leanproxy-off: `[log] ring = 0`, "
        "`[reconnect] inspect_limit = 1`, RUST_LOG=warn"
        + (f"; {BASELINE}: the --baseline build, defaults" if BASELINE in TARGETS else "")
        + (
            f"; {FLOOR}: examples/hyper_floor.rs (hyper alone, one upstream connection "
            "per app connection)"
            if FLOOR in TARGETS
            else ""
        ),
        "- CPU/req: utime+stime of the proxy's processes (nginx: master + worker) over the "
        "wrk run / requests completed; peak RSS: VmHWM reset before each run (nginx: "
        "master + worker summed, worker alone in the raw rows; RSS after: VmRSS when the "
        "run ends); TTFB: median of "
        f"{TTFB_SAMPLES} sequential requests, new connection each, after the wrk run; "
        "medians across rounds",
        "",
    ]
    for size, nbytes in sizes.items():
        out += [f"## {size} answer ({nbytes} bytes)", ""]
        head = "| target | req/s | of direct | p50 | p99 | CPU/req | peak RSS |"
        sep = "|---|---:|---:|---:|---:|---:|---:|"
        if size == "512k":
            head += " TTFB |"
            sep += "---:|"
        out += [head, sep]
        m = {}
        direct_rps = med(s.rps for s in samples[size]["direct"])
        for t in TARGETS:
            ss = samples[size][t]
            m[t] = dict(
                rps=med(s.rps for s in ss),
                p50=med(s.p50 for s in ss),
                p99=med(s.p99 for s in ss),
                cpu=med(s.cpu_per_req for s in ss),
                rss=med(s.peak_kib for s in ss),
                ttfb=med(s.ttfb for s in ss),
            )
            row = (
                f"| {t} | {m[t]['rps']:,.0f} | {ratio(m[t]['rps'], direct_rps)} | "
                f"{fmt_time(m[t]['p50'])} | {fmt_time(m[t]['p99'])} | "
                f"{fmt_time(m[t]['cpu'])} | {fmt_mib(m[t]['rss'])} |"
            )
            if size == "512k":
                row += f" {fmt_time(m[t]['ttfb'])} |"
            out.append(row)
        pairs = [("leanproxy", "nginx"), ("leanproxy", "leanproxy-off")]
        if BASELINE in TARGETS:
            pairs.append(("leanproxy", BASELINE))
        if FLOOR in TARGETS:
            pairs += [("leanproxy", FLOOR), (FLOOR, "nginx")]
        for a, b in pairs:
            row = (
                f"| **{a}/{b}** | {ratio(m[a]['rps'], m[b]['rps'])} | | "
                f"{ratio(m[a]['p50'], m[b]['p50'])} | {ratio(m[a]['p99'], m[b]['p99'])} | "
                f"{ratio(m[a]['cpu'], m[b]['cpu'])} | {ratio(m[a]['rss'], m[b]['rss'])} |"
            )
            if size == "512k":
                row += f" {ratio(m[a]['ttfb'], m[b]['ttfb'])} |"
            out.append(row)
        out.append("")
    out += ["## Raw per-round numbers", ""]
    out += [
        "| size | round | target | req/s | p50 | p99 | requests | errors | CPU/req | peak RSS "
        "| worker peak | RSS after | TTFB |",
        "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for size in sizes:
        for r in range(rounds):
            for t in TARGETS:
                ss = samples[size][t]
                if r >= len(ss):
                    continue
                s = ss[r]
                out.append(
                    f"| {size} | {r + 1} | {t} | {s.rps:,.0f} | {fmt_time(s.p50)} | "
                    f"{fmt_time(s.p99)} | {s.requests} | {s.errors} | "
                    f"{fmt_time(s.cpu_per_req)} | {fmt_mib(s.peak_kib)} | "
                    f"{fmt_mib(s.worker_peak_kib)} | {fmt_mib(s.rss_after_kib)} | "
                    f"{fmt_time(s.ttfb)} |"
                )
    total_errors = sum(s.errors for size in sizes for t in TARGETS for s in samples[size][t])
    if total_errors:
        out += ["", f"**{total_errors} socket errors or non-2xx answers** (see the raw rows)."]
    return "\n".join(out) + "\n"


# --------------------------------------------------------------------------


def start_floor(binary: Path, dir: Path, up: int, port: int) -> subprocess.Popen:
    dir.mkdir(parents=True, exist_ok=True)
    cmd = [str(binary), f"{HOST}:{port}", f"{HOST}:{up}"]
    out = dir / "stdout.log"
    proc = start(cmd, stdout=open(out, "wb"), stderr=open(dir / "stderr.log", "wb"))
    wait_port(port, proc, "hyper_floor")
    return proc


def start_proxies(
    binary: Path,
    tmp: Path,
    up: int,
    label: str,
    baseline: Path | None,
    floor: Path | None,
) -> dict[str, Proxy]:
    """Fresh nginx peer and leanproxy processes (so that each answer size is
    measured on processes that have seen no other size)."""
    peer, *lp = free_ports(11)
    peer_dir = tmp / label / "nginx"
    peer_proc = start_nginx(
        peer_dir,
        write_nginx_conf(peer_dir, PEER_BODY.format(host=HOST, port=peer, up=up)),
    )
    wait_port(peer, peer_proc, "nginx proxy")
    lp_proc = start_leanproxy(binary, tmp / label / "leanproxy", up, lp[0:3], off=False)
    off_proc = start_leanproxy(binary, tmp / label / "leanproxy-off", up, lp[3:6], off=True)
    proxies = {
        "direct": Proxy("direct", up, None),
        "nginx": Proxy("nginx", peer, peer_proc, multi=True),
        "leanproxy": Proxy("leanproxy", lp[0], lp_proc),
        "leanproxy-off": Proxy("leanproxy-off", lp[3], off_proc),
    }
    if baseline is not None:
        base_proc = start_leanproxy(baseline, tmp / label / BASELINE, up, lp[6:9], off=False)
        proxies[BASELINE] = Proxy(BASELINE, lp[6], base_proc)
    if floor is not None:
        floor_proc = start_floor(floor, tmp / label / FLOOR, up, lp[9])
        proxies[FLOOR] = Proxy(FLOOR, lp[9], floor_proc)
    return proxies


def paired(binary: Path, other: Path, tmp: Path, up: int, rounds: int, seconds: int) -> str:
    """leanproxy (`binary`) against `other`, both with everything on, measured
    in pairs (A B, then B A, ...) on fresh processes per size; the medians of
    the per-pair ratios A/B, and how many pairs each side won."""
    budget = len(SIZES) * (rounds * 2 * (seconds + 1.5) + 30) * 2 + 60
    deadline = time.monotonic() + budget
    log(f"paired: {rounds} pairs x {len(SIZES)} sizes x {seconds}s, at most {budget / 60:.0f} min")
    out = [
        f"A: `{binary}`; B: `{other}`. {rounds} pairs of {seconds} s per size, "
        f"`wrk -t{THREADS} -c{CONNECTIONS}`, everything on in both"
        + (f"; A on Redis ({REDIS}), B in memory, requests `?entity_id=bench`." if REDIS else "."),
        "",
        "| size | rate A/B | CPU/req A/B | p99 A/B | A faster | A cheaper |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name in SIZES:
        ports_a, ports_b = free_ports(3), free_ports(3)
        a = Proxy("A", ports_a[0], start_leanproxy(binary, tmp / name / "a", up, ports_a, off=False, redis=REDIS))
        b = Proxy("B", ports_b[0], start_leanproxy(other, tmp / name / "b", up, ports_b, off=False))
        for p in (a, b):
            wrk(p.port, f"/{name}.json", WARMUP_SECONDS)
        rate, cpu, p99 = [], [], []
        for r in range(rounds):
            pair = {}
            for p in (a, b) if r % 2 == 0 else (b, a):
                if time.monotonic() > deadline:
                    raise RuntimeError(f"over the time budget of {budget:.0f}s")
                pair[p.name] = measure(p, name, seconds)
            sa, sb = pair["A"], pair["B"]
            rate.append(sa.rps / sb.rps)
            cpu.append(sa.cpu_per_req / sb.cpu_per_req)
            p99.append(sa.p99 / sb.p99)
            log(
                f"pair {r + 1}/{rounds} {name:>4}: A {sa.rps:,.0f} req/s {fmt_time(sa.cpu_per_req)}, "
                f"B {sb.rps:,.0f} req/s {fmt_time(sb.cpu_per_req)}"
            )
        for p in (a, b):
            stop(p.proc)
        out.append(
            f"| {name} | {statistics.median(rate):.3f} | {statistics.median(cpu):.3f} "
            f"| {statistics.median(p99):.3f} | {sum(x > 1 for x in rate)}/{rounds} "
            f"| {sum(x < 1 for x in cpu)}/{rounds} |"
        )
    return "\n".join(out) + "\n"


def soak(binary: Path, tmp: Path, up: int, seconds: int, connections: int) -> str:
    """Memory of one fresh leanproxy (defaults) under `connections` keep-alive
    connections for `seconds`, 1 KiB answers, sampled every 5 s."""
    ports = free_ports(3)
    proc = start_leanproxy(binary, tmp / "soak", up, ports, off=False)
    path = "/1k.json"
    ttfb(ports[0], path, n=1)
    before = status_field(proc.pid, "VmRSS")
    cmd = [
        "wrk", f"-t{THREADS}", f"-c{connections}", f"-d{seconds}s", "--timeout", "10s",
        f"http://{HOST}:{ports[0]}{path}",
    ]  # fmt: skip
    log(f"soak: {' '.join(cmd)}")
    load = start(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    t0 = time.monotonic()
    samples: list[tuple[float, int]] = []
    while load.poll() is None and time.monotonic() - t0 < seconds + 30:
        time.sleep(5)
        if proc.poll() is not None:
            raise RuntimeError("leanproxy died during the soak")
        samples.append((time.monotonic() - t0, status_field(proc.pid, "VmRSS")))
    out, _ = load.communicate(timeout=60)
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    peak = vm_hwm_kib(proc.pid)
    stop(proc)
    # Memory settles while the pools fill; flatness is judged after the first minute.
    settled = [kib for t, kib in samples if t >= min(60, seconds / 5)]
    if not settled:
        raise RuntimeError(f"the soak ended after {len(samples)} samples: {out[-500:]}")
    lo, hi = min(settled), max(settled)
    mid = statistics.median(settled)
    lines = [
        "## Soak: memory under keep-alive load",
        "",
        f"- `{' '.join(cmd)}` against one fresh leanproxy (defaults), 1 KiB answers; "
        "VmRSS sampled every 5 s",
        f"- requests/s {float(rps.group(1)) if rps else 0:,.0f}; socket errors "
        f"{sum(int(g) for g in errors.groups()) if errors else 0}",
        f"- RSS before load {fmt_mib(before)}; peak (VmHWM) {fmt_mib(peak)}",
        f"- after the first minute: min {fmt_mib(lo)}, median {fmt_mib(mid)}, max {fmt_mib(hi)}: "
        f"{100 * (lo - mid) / mid:+.1f} % / {100 * (hi - mid) / mid:+.1f} % of the median "
        f"(last sample {fmt_mib(settled[-1])})",
        "",
        "| t (s) | RSS |",
        "|---:|---:|",
    ]
    lines += [f"| {t:.0f} | {fmt_mib(kib)} |" for t, kib in samples[::6]]
    return "\n".join(lines) + "\n"

def _read_answer(s: socket.socket) -> None:
    """Reads one answer with a content-length from `s`."""
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = s.recv(65536)
        if not chunk:
            raise RuntimeError("storm: a connection closed before its answer")
        buf += chunk
    head, _, body = buf.partition(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 200"):
        raise RuntimeError(f"storm: not a 200: {head[:80]!r}")
    length = re.search(rb"(?im)^content-length:\s*(\d+)", head)
    need = int(length.group(1)) if length else 0
    while len(body) < need:
        chunk = s.recv(65536)
        if not chunk:
            raise RuntimeError("storm: an answer was cut")
        body += chunk


def storm(targets: list[tuple[str, Path]], tmp: Path, up: int, n: int, settle: int) -> str:
    """Resident memory of fresh leanproxy processes through a storm of `n`
    keep-alive connections: idle, with all open (two rounds of one 1 KiB
    exchange on every connection, each round's requests all sent before its
    answers are read), and each second for `settle` seconds after they close."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = 2 * n + 256
    if soft < want:
        if hard != resource.RLIM_INFINITY and hard < want:
            raise RuntimeError(f"storm: {n} connections need {want} file descriptors; the limit is {hard}")
        # This process's soft limit, which leanproxy inherits: its N app and N
        # upstream connections need twice as many.
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    request = f"GET /1k.json HTTP/1.1\r\nhost: {HOST}\r\n\r\n".encode()
    lines = [
        "## Storm: memory through a connection storm",
        "",
        f"- {n:,} keep-alive connections to one fresh leanproxy (defaults; upstream: the "
        "1-worker nginx), two rounds of one 1 KiB exchange on each, all requests of a round "
        "sent before its answers are read; then every connection closed",
        f"- VmRSS read from /proc/<pid>/status; after closing, every second for {settle} s",
        "",
    ]
    table = ["| build | idle | all open | peak (VmHWM) | " + " | ".join(
        f"+{t} s" for t in range(1, settle + 1) if t in (1, 2, 5, 10, 15, 20, 30) or t == settle
    ) + " |"]
    table.append("|---|" + "---:|" * (len(table[0].split("|")) - 3))
    for name, binary in targets:
        ports = free_ports(3)
        proc = start_leanproxy(binary, tmp / f"storm-{name}", up, ports, off=False)
        ttfb(ports[0], "/1k.json", n=1)
        time.sleep(1)
        idle = status_field(proc.pid, "VmRSS")
        socks: list[socket.socket] = []
        try:
            t0 = time.monotonic()
            for _ in range(n):
                s = socket.create_connection((HOST, ports[0]), timeout=30)
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                socks.append(s)
            for _ in range(2):
                for s in socks:
                    s.sendall(request)
                for s in socks:
                    _read_answer(s)
            log(f"storm {name}: {n} connections, 2 rounds in {time.monotonic() - t0:.1f}s")
            time.sleep(0.5)
            full = status_field(proc.pid, "VmRSS")
        finally:
            for s in socks:
                s.close()
        after = []
        for _ in range(settle):
            time.sleep(1)
            after.append(status_field(proc.pid, "VmRSS"))
        peak = vm_hwm_kib(proc.pid)
        stop(proc)
        log(f"storm {name}: idle {fmt_mib(idle)}, all open {fmt_mib(full)}, after {fmt_mib(after[-1])}")
        cells = [fmt_mib(after[t - 1]) for t in range(1, settle + 1)
                 if t in (1, 2, 5, 10, 15, 20, 30) or t == settle]
        table.append(f"| {name} | {fmt_mib(idle)} | {fmt_mib(full)} | {fmt_mib(peak)} | "
                     + " | ".join(cells) + " |")
        lines.append(f"- {name} ({binary}): {settle} s after closing, {100 * after[-1] / peak:.0f} % "
                     f"of the peak, {after[-1] / idle:.1f}x idle")
    return "\n".join(lines + [""] + table) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--duration", type=int, default=10, help="seconds per wrk run (default 10)")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds (default 3)")
    ap.add_argument("--quick", action="store_true", help="3 s x 2 rounds")
    ap.add_argument("--binary", help="prebuilt leanproxy (default: $LEANPROXY_BIN, else build)")
    ap.add_argument("--out", help="also write the Markdown report to this file")
    ap.add_argument("--keep-tmp", action="store_true", help="keep the temp dir (configs, logs)")
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
        "--floor",
        action="store_true",
        help="also measure examples/hyper_floor.rs (built here), a hyper proxy that does "
        "nothing else: the least a hyper-based proxy costs",
    )
    ap.add_argument(
        "--redis",
        metavar="URL",
        help="with --paired: A keeps its state on the Redis at URL (127.0.0.1 only), "
        "B in memory; 1 KiB answers, each request naming an entity",
    )
    args = ap.parse_args()
    if args.redis is not None:
        if args.paired is None or not re.fullmatch(r"redis://127\.0\.0\.1:\d+(/\d+)?", args.redis):
            ap.error("--redis needs --paired and a URL like redis://127.0.0.1:6390")
        global REDIS, QUERY
        REDIS, QUERY = args.redis, "?entity_id=bench"
        for size in [k for k in SIZES if k != "1k"]:
            del SIZES[size]
    if args.quick:
        args.duration, args.rounds = 3, 2
    most_rounds = 40 if args.paired else 10
    if not (1 <= args.duration <= 120 and 1 <= args.rounds <= most_rounds):
        ap.error(f"--duration must be 1..120 and --rounds 1..{most_rounds}")
    if args.soak is not None and not (
        60 <= args.soak <= 900 and 1 <= args.soak_connections <= 5000
    ):
        ap.error("--soak must be 60..900 seconds and --soak-connections 1..5000")
    if args.storm is not None and not (1 <= args.storm <= 10000 and 1 <= args.storm_settle <= 120):
        ap.error("--storm must be 1..10000 connections and --storm-settle 1..120 seconds")

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    signal.signal(signal.SIGHUP, _on_signal)
    atexit.register(stop_all)

    ensure_tools()
    binary = leanproxy_binary(args.binary)
    baseline = existing_binary(args.baseline, "baseline") if args.baseline else None
    if baseline is not None:
        TARGETS.append(BASELINE)
    floor = None
    if args.floor:
        floor = cargo_release(["--example", "hyper_floor"], "examples/hyper_floor")
        TARGETS.append(FLOOR)

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
        up_proc = start_nginx(
            up_dir,
            write_nginx_conf(up_dir, UPSTREAM_BODY.format(host=HOST, port=up, www=www)),
        )
        wait_port(up, up_proc, "upstream nginx")

        # The modes that replace the comparison: a title, the facts, their report.
        other_mode = None
        if args.paired is not None:
            other = existing_binary(args.paired, "paired")
            other_mode = ("paired A/B", lambda: paired(binary, other, tmp, up, args.rounds, args.duration))
        elif args.soak is not None:
            other_mode = ("memory soak", lambda: soak(binary, tmp, up, args.soak, args.soak_connections))
        elif args.storm is not None:
            builds = [("leanproxy", binary)] + ([("baseline", baseline)] if baseline else [])
            other_mode = ("connection storm", lambda: storm(builds, tmp, up, args.storm, args.storm_settle))
        if other_mode is not None:
            title, run = other_mode
            text = f"# leanproxy: {title}\n\n" + "\n".join(facts(binary)) + "\n\n" + run()
            print(text)
            if args.out:
                Path(args.out).write_text(text)
            return 0

        runs = args.rounds * len(SIZES) * len(TARGETS)
        per_run = args.duration + 0.5  # wrk start/stop, /proc reads
        expected = (
            runs * per_run
            + args.rounds * len(TARGETS) * 1  # TTFB sampling of 512 KiB
            + len(SIZES) * len(TARGETS) * (WARMUP_SECONDS + 0.5)
            + len(SIZES) * 3  # fresh processes per size
            + 5
        )
        log(
            f"{args.rounds} rounds x {len(SIZES)} sizes x {len(TARGETS)} targets x "
            f"{args.duration}s: about {expected / 60:.1f} min in total"
        )
        budget = expected * 2 + 60  # a hard stop, whatever happens
        deadline = time.monotonic() + budget

        facts_ = facts(binary)
        samples = {size: {t: [] for t in TARGETS} for size in SIZES}
        for name in SIZES:
            proxies = start_proxies(binary, tmp, up, name, baseline, floor)
            if name == next(iter(SIZES)):
                facts_.append(
                    f"- threads at start: leanproxy "
                    f"{status_field(proxies['leanproxy'].proc.pid, 'Threads')} "
                    "(tokio multi-thread runtime), nginx 1 worker process"
                )
            for t in TARGETS:  # every target answers before any load
                ttfb(proxies[t].port, f"/{name}.json", n=1)
            log(f"{name}: fresh proxies up in {tmp / name}; warming up ({WARMUP_SECONDS}s each)")
            for t in TARGETS:
                wrk(proxies[t].port, f"/{name}.json", WARMUP_SECONDS)
            for r in range(args.rounds):
                order = TARGETS[r % len(TARGETS) :] + TARGETS[: r % len(TARGETS)]
                for t in order:
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"over the time budget of {budget:.0f}s")
                    s = measure(proxies[t], name, args.duration)
                    samples[name][t].append(s)
                    log(
                        f"round {r + 1}/{args.rounds} {name:>4} {t:<13} {s.rps:>9,.0f} req/s "
                        f"p50 {fmt_time(s.p50):>9} p99 {fmt_time(s.p99):>9} "
                        f"cpu/req {fmt_time(s.cpu_per_req):>7} rss {fmt_mib(s.peak_kib):>9}"
                        + (f" ttfb {fmt_time(s.ttfb)}" if s.ttfb is not None else "")
                    )
            for p in proxies.values():
                if p.proc is not None:
                    stop(p.proc)
        facts_.append(f"- load average at the end: {os.getloadavg()[0]:.2f}")
        text = report(samples, args.rounds, args.duration, SIZES, facts_)
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
