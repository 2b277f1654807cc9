"""What the load scripts share: starting and stopping the processes they
measure, reading their CPU time and memory from /proc, running wrk, and
formatting the figures. Standard library only; 127.0.0.1 only.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import random
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
HOST = "127.0.0.1"  # the only address these scripts ever send traffic to
CONNECTIONS = 64
THREADS = 1
TTFB_SAMPLES = 50
CLK_TCK = os.sysconf("SC_CLK_TCK")

# Everything the scripts started, stopped at exit whatever happens.
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
    """SIGTERM, then SIGKILL to the process group this script created; then
    forgotten, so that no later cleanup signals a group id the kernel may
    have handed to someone else."""
    if p in _STARTED:
        _STARTED.remove(p)
    signal_group(p, signal.SIGCONT)  # one paused by `alone` must be able to exit
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


def signal_group(p: subprocess.Popen, sig: int) -> None:
    """`sig` to the process group of `p`, a process this script started."""
    if p.poll() is None:
        try:
            os.killpg(p.pid, sig)
        except ProcessLookupError:
            pass


@contextlib.contextmanager
def alone(measured: "Proxy", targets):
    """Stops (SIGSTOP) the processes of every one of `targets` but `measured`
    for the length of the block, and continues them (SIGCONT) after: nothing
    another target does in the background, a JVM's garbage collection or JIT
    compilation above all, lands on the measured run. Idle targets lose
    nothing by it; the upstream and the load generator are never stopped."""
    paused = []
    for other in targets:
        p = other.proc
        if p is None or p is measured.proc or any(p is q for q in paused) or p.poll() is not None:
            continue
        signal_group(p, signal.SIGSTOP)
        paused.append(p)
    try:
        yield
    finally:
        for p in paused:
            signal_group(p, signal.SIGCONT)


def stop_all() -> None:
    while _STARTED:
        stop(_STARTED[-1])


def stop_at_exit() -> None:
    """Stops everything started, at exit and on SIGINT, SIGTERM or SIGHUP."""
    atexit.register(stop_all)
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, _on_signal)


def _on_signal(signum, _frame):
    raise SystemExit(128 + signum)


def group(pid: int) -> list[int]:
    """The processes of the process group led by `pid` (the leader first):
    nginx's master and workers, a JVM, a Python interpreter. Every process is
    started in its own session, so its group holds only what it forked."""
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            stat = Path(f"/proc/{d}/stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        if int(fields[2]) == pid:  # field 5, pgrp
            out.append(int(d))
    return sorted(out, key=lambda p: p != pid)


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
    warmup: float = 1  # seconds of load before the first measured run (a JVM needs more)

    def pids(self) -> list[int]:
        if self.proc is None:
            return []
        return group(self.proc.pid)

    def alive(self) -> bool:
        return self.proc is None or self.proc.poll() is None


def apt_install(tools: dict[str, str]) -> None:
    """Installs from Debian's packages the ones of `tools` (command -> package)
    whose command is missing; `apt-get update` first."""
    missing = sorted({pkg for cmd, pkg in tools.items() if not shutil.which(cmd)})
    if not missing:
        return
    log(f"installing from Debian's packages: {', '.join(missing)}")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    # apt's chatter goes to stderr: stdout carries only the report.
    subprocess.run(["apt-get", "update"], check=True, env=env, timeout=600, stdout=sys.stderr)
    subprocess.run(
        ["apt-get", "install", "-y", "--no-install-recommends", *missing],
        check=True,
        env=env,
        timeout=900,
        stdout=sys.stderr,
    )
    for cmd in tools:
        if not shutil.which(cmd):
            sys.exit(f"load: {cmd} still missing after apt-get install")


def existing_binary(path: str, what: str) -> Path:
    found = Path(path).resolve()
    if not found.is_file():
        sys.exit(f"load: no {what} binary at {found}")
    return found


def cargo_release(what: list[str], path: str, profile: str = "release") -> Path:
    """`cargo build --profile <profile> <what>` in the repository (`release`
    unless told, or `profiling`: the same with line tables); the built file at
    `path` under `$CARGO_TARGET_DIR` (default `target`) `/<profile>`."""
    log(f"building: cargo build --profile {profile} {' '.join(what)}")
    subprocess.run(
        ["cargo", "build", "--profile", profile, *what],
        cwd=REPO,
        check=True,
        timeout=1800,
    )
    target = Path(os.environ.get("CARGO_TARGET_DIR", REPO / "target"))
    if not target.is_absolute():
        target = REPO / target
    return target / profile / path


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
        sys.exit(f"load: nginx rejects {conf}:\n{check.stderr}")
    return start(
        cmd,
        stdout=open(dir / "stdout.log", "wb"),
        stderr=open(dir / "stderr.log", "wb"),
    )


def wait_port(port: int, proc: subprocess.Popen, what: str, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            sys.exit(f"load: {what} exited with {proc.returncode} before listening")
        try:
            socket.create_connection((HOST, port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    sys.exit(f"load: {what} not listening on {HOST}:{port} after {timeout}s")



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
    rss_after_kib: int | None = None
    ttfb: float | None = None  # seconds (512 KiB only)


def wrk(port: int, path: str, seconds: float, args: tuple[str, ...] = ()) -> Sample:
    """`wrk -t1 -c64 --latency` for `seconds`; `args`: more of wrk's options
    (a header, a Lua script for a POST)."""
    cmd = [
        "wrk", f"-t{THREADS}", f"-c{CONNECTIONS}", f"-d{max(1, round(seconds))}s", "--latency",
        *args, f"http://{HOST}:{port}{path}",
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


def measure(proxy: Proxy, path: str, seconds: int, wrk_args: tuple[str, ...] = ()) -> Sample:
    """One wrk run against `proxy`, with its processes' CPU time per request and
    peak memory over the run; for a 512 KiB file, the time to first byte after."""
    pids = proxy.pids()
    for pid in pids:
        reset_peak(pid)
    before = sum(cpu_seconds(p) for p in pids)
    s = wrk(proxy.port, path, seconds, wrk_args)
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
    if path.startswith("/512k.json"):
        s.ttfb = ttfb(proxy.port, path)
    settle(proxy)
    return s


ORDER_SEED = int(os.environ.get("LEANPROXY_BENCH_SEED", "22"))


def round_order(targets, r: int) -> list:
    """The targets in round `r`'s order: shuffled, a different order each round,
    the same for the same seed ($LEANPROXY_BENCH_SEED, default 22) so a run can
    be repeated. A rotation kept each target's neighbours: leanproxy, last in
    the list, ran right after WireMock in every round."""
    order = list(targets)
    random.Random(ORDER_SEED * 1000 + r).shuffle(order)
    return order


QUIET_SHARE = 0.05  # of one core: below it, a target has settled after its run
QUIET_WINDOW = 0.5  # seconds per look
SETTLE_LIMIT = 30.0  # seconds: the most waited for one target


def settle(proxy: Proxy) -> float:
    """Waits until `proxy`'s processes use under QUIET_SHARE of a core over a
    QUIET_WINDOW, at most SETTLE_LIMIT seconds; returns the seconds waited.

    Called after every measured run: work a target goes on doing after its
    load ends (a JVM's garbage collection and JIT compilation, memory given
    back) must not land on the next target's run. Without it, leanproxy, which
    followed WireMock in every round, paid for WireMock's clean-up (its 1 KiB
    p99 was 4.0-4.1 ms in the full runs and 2.9 ms without WireMock running;
    benches/README.md)."""
    pids = proxy.pids()
    if not pids:
        return 0.0
    t0 = time.monotonic()
    while True:
        live = [p for p in pids if Path(f"/proc/{p}").exists()]
        before = sum(cpu_seconds(p) for p in live)
        time.sleep(QUIET_WINDOW)
        used = sum(cpu_seconds(p) for p in live if Path(f"/proc/{p}").exists()) - before
        waited = time.monotonic() - t0
        if used < QUIET_SHARE * QUIET_WINDOW:
            if waited > 2 * QUIET_WINDOW:
                log(f"{proxy.name} settled {waited:.1f}s after its run")
            return waited
        if waited >= SETTLE_LIMIT:
            log(f"warning: {proxy.name} still busy {waited:.0f}s after its run ({used / QUIET_WINDOW:.0%} of a core)")
            return waited


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


def medians(samples: list[Sample]) -> dict:
    """The medians across rounds of a target's samples, by the report's names."""
    return dict(
        rps=med(s.rps for s in samples),
        p50=med(s.p50 for s in samples),
        p99=med(s.p99 for s in samples),
        cpu=med(s.cpu_per_req for s in samples),
        rss=med(s.peak_kib for s in samples),
        ttfb=med(s.ttfb for s in samples),
    )


def ratio(a, b) -> str:
    if a is None or b is None or b == 0:
        return "–"
    return f"{a / b:.2f}"




def leanproxy_serve(binary: Path, dir: Path, ports: list[int], up: int | None) -> tuple[list[str], dict]:
    """`leanproxy serve` on `ports` (proxy, admin, webhooks[, Mockbank]) in front
    of 127.0.0.1:`up`, or of its embedded Mockbank when `up` is None; and an
    environment without the caller's LEANPROXY_* settings or RUST_LOG, so that
    leanproxy runs with its defaults."""
    cmd = [
        str(binary), "serve",
        "--listen", f"{HOST}:{ports[0]}",
        "--admin-listen", f"{HOST}:{ports[1]}",
        "--webhooks-listen", f"{HOST}:{ports[2]}",
        "--data-dir", str(dir / "data"),
    ]  # fmt: skip
    if up is not None:
        cmd += ["--upstream", f"http://{HOST}:{up}"]
    if len(ports) > 3:
        cmd += ["--mockbank-listen", f"{HOST}:{ports[3]}"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEANPROXY_")}
    env.pop("RUST_LOG", None)  # leanproxy's default level (info)
    return cmd, env


def start_leanproxy(
    binary: Path, dir: Path, up: int, ports: list[int], off: bool, redis: str | None = None
) -> subprocess.Popen:
    dir.mkdir(parents=True, exist_ok=True)
    port = ports[0]
    cmd, env = leanproxy_serve(binary, dir, ports, up)
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


def start_floor(binary: Path, dir: Path, up: int, port: int) -> subprocess.Popen:
    dir.mkdir(parents=True, exist_ok=True)
    cmd = [str(binary), f"{HOST}:{port}", f"{HOST}:{up}"]
    out = dir / "stdout.log"
    proc = start(cmd, stdout=open(out, "wb"), stderr=open(dir / "stderr.log", "wb"))
    wait_port(port, proc, "hyper_floor")
    return proc


def leanproxy_binary(arg: str | None) -> Path:
    """`arg`, else $LEANPROXY_BIN, else a `cargo build --release` of this checkout."""
    explicit = arg or os.environ.get("LEANPROXY_BIN")
    if explicit:
        return existing_binary(explicit, "leanproxy")
    return cargo_release(["--bin", "leanproxy"], "leanproxy")


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
