"""compare.py's modes that measure leanproxy alone or against another build of
itself: `--paired` (A/B in alternating pairs), `--soak` (memory under many
keep-alive connections for minutes) and `--storm` (memory through a connection
storm). Each returns its Markdown report.
"""

from __future__ import annotations

import re
import resource
import socket
import statistics
import subprocess
import time
from pathlib import Path

from common import (
    CONNECTIONS,
    HOST,
    THREADS,
    alone,
    Proxy,
    fmt_mib,
    fmt_time,
    free_ports,
    log,
    measure,
    start,
    start_leanproxy,
    status_field,
    stop,
    ttfb,
    vm_hwm_kib,
    wrk,
)


def paired(
    binary: Path, other: Path, tmp: Path, up: int, rounds: int, seconds: int, sizes: list[str], redis: str | None
) -> str:
    """leanproxy (`binary`) against `other`, both with everything on, measured
    in pairs (A B, then B A, ...) on fresh processes per size; the medians of
    the per-pair ratios A/B, and how many pairs each side won. With `redis`,
    A keeps its state there and every request names an entity."""
    query = "?entity_id=bench" if redis else ""
    budget = len(sizes) * (rounds * 2 * (seconds + 1.5) + 30) * 2 + 60
    deadline = time.monotonic() + budget
    log(f"paired: {rounds} pairs x {len(sizes)} sizes x {seconds}s, at most {budget / 60:.0f} min")
    out = [
        f"A: `{binary}`; B: `{other}`. {rounds} pairs of {seconds} s per size, "
        f"`wrk -t{THREADS} -c{CONNECTIONS}`, everything on in both"
        + (f"; A on Redis ({redis}), B in memory, requests `?entity_id=bench`." if redis else "."),
        "",
        "| size | rate A/B | CPU/req A/B | p99 A/B | A faster | A cheaper |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name in sizes:
        ports = free_ports(6)  # one call: no port twice
        ports_a, ports_b = ports[:3], ports[3:]
        a = Proxy("A", ports_a[0], start_leanproxy(binary, tmp / name / "a", up, ports_a, off=False, redis=redis))
        b = Proxy("B", ports_b[0], start_leanproxy(other, tmp / name / "b", up, ports_b, off=False))
        for p in (a, b):
            wrk(p.port, f"/{name}.json{query}", 1)
        rate, cpu, p99 = [], [], []
        for r in range(rounds):
            pair = {}
            for p in (a, b) if r % 2 == 0 else (b, a):
                if time.monotonic() > deadline:
                    raise RuntimeError(f"over the time budget of {budget:.0f}s")
                with alone(p, (a, b)):
                    pair[p.name] = measure(p, f"/{name}.json{query}", seconds)
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
        # Not once the load has ended (or is closing its connections): that
        # sample is memory after the load, not under it.
        if load.poll() is not None or time.monotonic() - t0 >= seconds:
            break
        samples.append((time.monotonic() - t0, status_field(proc.pid, "VmRSS")))
    out, _ = load.communicate(timeout=60)
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    peak = vm_hwm_kib(proc.pid)
    stop(proc)
    # Memory settles while the pools fill; flatness is judged after the first
    # minute (the first fifth of a shorter soak).
    settle = min(60, seconds / 5)
    settled = [kib for t, kib in samples if t >= settle]
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
        f"- after the first {settle:.0f} s: min {fmt_mib(lo)}, median {fmt_mib(mid)}, max {fmt_mib(hi)}: "
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
