#!/usr/bin/env python3
"""Instructions per exchange, in user space, under callgrind: leanproxy (its
defaults, everything on) against the hyper floor (examples/hyper_floor.rs), both
in front of the same 1-worker nginx serving a 1 KiB Lean answer.

Unlike seconds, an instruction count does not depend on what else the machine
is doing: the same binary and the same traffic give the same count, so this is
the figure to profile against on a shared machine. For each target: start it
under `valgrind --tool=callgrind`, send 200 requests to warm up, zero the
counters (`callgrind_control -z`), send N requests over 4 keep-alive
connections, dump (`callgrind_control -d`) and divide the dump's total by N.
With --annotate, the top inclusive entries of each dump follow.

    python3 benches/load/instructions.py [--requests 2000] [--binary PATH] [--annotate 25]

The leanproxy binary is --binary, else $LEANPROXY_BIN, else a release build of
this checkout (with --by-file, always a `profiling` build of this checkout).

Installs valgrind and nginx from Debian's packages when missing; 127.0.0.1
only; stops what it started. Not part of the test suite.
"""

from __future__ import annotations

import argparse
import collections
import http.client
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from common import (
    HOST,
    REPO,
    UPSTREAM_BODY,
    apt_install,
    cargo_release,
    free_ports,
    lean_answer,
    leanproxy_binary,
    log,
    start,
    start_nginx,
    stop,
    stop_all,
    stop_at_exit,
    leanproxy_serve,
    wait_port,
    write_nginx_conf,
)

CLIENTS = 4
WARMUP = 200


def send(port: int, n: int) -> None:
    """`n` GETs of /1k.json over CLIENTS keep-alive connections, each answer read whole."""

    def client(count: int) -> None:
        conn = http.client.HTTPConnection(HOST, port, timeout=60)
        for _ in range(count):
            conn.request("GET", "/1k.json")
            r = conn.getresponse()
            body = r.read()
            if r.status != 200 or len(body) != 1024:
                raise RuntimeError(f"unexpected answer: {r.status}, {len(body)} bytes")
        conn.close()

    shares = [n // CLIENTS + (1 if i < n % CLIENTS else 0) for i in range(CLIENTS)]
    with ThreadPoolExecutor(CLIENTS) as pool:
        for done in [pool.submit(client, share) for share in shares]:
            done.result()  # a client's failure is the run's


def self_cost_by_file(dump: Path) -> collections.Counter[str]:
    """Instructions spent in each source file's own code in a callgrind dump,
    inlined code counted against the file it was written in. Read here from
    valgrind's documented "callgrind format": callgrind_annotate sums by
    function only, and in a Rust proxy most of the cost is inlined into a few
    big `poll` functions."""
    names: dict[tuple[str, str], str] = {}

    def name(kind: str, rest: str) -> str:
        # "(id) name" defines a compressed name, "(id)" uses it.
        m = re.match(r"\((\d+)\)(?: (.*))?", rest)
        if not m:
            return rest
        if m.group(2) is not None:
            names[(kind, m.group(1))] = m.group(2)
        return names.get((kind, m.group(1)), "?")

    cost: collections.Counter[str] = collections.Counter()
    file = inlined = None
    after_calls = False
    for line in dump.read_text(errors="replace").splitlines():
        if line.startswith("fl="):
            file, inlined = name("fl", line[3:]), None
        elif line.startswith(("fi=", "fe=")):
            inlined = name("fl", line[3:])
        elif line.startswith("fn="):
            name("fn", line[3:])
            inlined = None
        elif line.startswith(("cfl=", "cfi=")):
            name("fl", line[4:])
        elif line.startswith("cfn="):
            name("fn", line[4:])
        elif line.startswith("calls="):
            after_calls = True  # the next cost line is the call's, inclusive
        elif line[:1].isdigit() or line[:1] in ("+", "-", "*"):
            parts = line.split()
            if after_calls:
                after_calls = False
            elif len(parts) > 1 and file is not None:
                cost[inlined or file] += int(parts[1])
    return cost


def short_path(path: str) -> str:
    """A source path without the registry's, the toolchain's or this checkout's prefix."""
    path = re.sub(r"^.*/registry/src/[^/]+/", "", path)
    path = re.sub(r"^/rustc/[0-9a-f]+/library/", "std/", path)
    path = re.sub(r"^.*/out/build/", "jemalloc/", path)
    path = path.replace(str(REPO) + "/", "")
    return os.path.normpath(re.sub(r"^\./", "glibc/", path))


def by_file_table(lean: collections.Counter[str], floor: collections.Counter[str], n: int, top: int) -> str:
    """leanproxy's and the floor's own instructions per exchange by source file,
    the files with the most extra first."""
    files = set(lean) | set(floor)
    extra = sorted(files, key=lambda f: floor[f] - lean[f])
    rows = "".join(
        f"| {short_path(f)} | {lean[f] / n:,.0f} | {floor[f] / n:,.0f} | {(lean[f] - floor[f]) / n:+,.0f} |\n"
        for f in extra[:top]
    )
    total = (sum(lean.values()) - sum(floor.values())) / n
    return (
        f"\n#### Where leanproxy's extra instructions are ({total:+,.0f} per exchange), by source file\n\n"
        "| source file | leanproxy | floor | extra |\n|---|---:|---:|---:|\n" + rows
    )


def count(
    name: str, cmd: tuple[list[str], dict | None], port: int, dir: Path, n: int, annotate: int
) -> tuple[float, str, Path]:
    dir.mkdir(parents=True, exist_ok=True)
    out = dir / "callgrind.out"
    cmd, env = cmd
    proc = start(
        ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}.%p", *cmd],
        env=env,
        stdout=open(dir / "stdout.log", "wb"),
        stderr=open(dir / "stderr.log", "wb"),
    )
    wait_port(port, proc, name, timeout=120)
    send(port, WARMUP)
    subprocess.run(["callgrind_control", "-z", str(proc.pid)], check=True, capture_output=True, timeout=60)
    t0 = time.monotonic()
    send(port, n)
    took = time.monotonic() - t0
    for f in dir.glob("callgrind.out.*"):
        f.unlink()
    subprocess.run(["callgrind_control", "-d", str(proc.pid)], check=True, capture_output=True, timeout=60)
    time.sleep(1)
    dumps = sorted(dir.glob("callgrind.out.*"))
    if not dumps:
        raise RuntimeError(f"{name}: callgrind wrote no dump")
    total = 0
    for d in dumps:
        m = re.search(r"^(?:summary|totals):\s+(\d+)", d.read_text(errors="replace"), re.M)
        total += int(m.group(1)) if m else 0
    stop(proc)
    log(f"{name}: {total / n:,.0f} instructions per exchange ({n} in {took:.1f}s under valgrind)")
    text = ""
    if annotate:
        ann = subprocess.run(
            ["callgrind_annotate", "--inclusive=yes", str(dumps[-1])], capture_output=True, text=True, timeout=120
        ).stdout
        lines = [l for l in ann.splitlines() if re.match(r"^\s*[\d,]+ \(", l)]
        text = f"\n#### {name}: top {annotate} inclusive\n\n```\n" + "\n".join(lines[:annotate]) + "\n```\n"
    return total / n, text, dumps[-1]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--requests", type=int, default=2000, help="exchanges counted (default 2000)")
    ap.add_argument("--binary", help="leanproxy binary (default: $LEANPROXY_BIN, else cargo build --release)")
    ap.add_argument("--annotate", type=int, default=0, metavar="N", help="print each dump's top N inclusive entries")
    ap.add_argument(
        "--by-file",
        type=int,
        default=0,
        metavar="N",
        help="build both with line tables and print the N source files with the most extra instructions",
    )
    args = ap.parse_args()
    if not 100 <= args.requests <= 100_000:
        ap.error("--requests must be 100..100000")
    if args.by_file and (args.binary or os.environ.get("LEANPROXY_BIN")):
        ap.error("--by-file builds leanproxy with line tables itself: drop --binary / LEANPROXY_BIN")
    stop_at_exit()
    apt_install({"valgrind": "valgrind", "callgrind_control": "valgrind", "nginx": "nginx"})
    profile = "profiling" if args.by_file else "release"
    if args.by_file:
        binary = cargo_release(["--bin", "leanproxy"], "leanproxy", profile)
    else:
        binary = leanproxy_binary(args.binary)
    floor = cargo_release(["--example", "hyper_floor"], "examples/hyper_floor", profile)
    tmp = Path(tempfile.mkdtemp(prefix="leanproxy-instr-"))
    tmp.chmod(0o755)
    try:
        www = tmp / "www"
        www.mkdir()
        (www / "1k.json").write_bytes(lean_answer(1024))
        (up,) = free_ports(1)
        up_proc = start_nginx(tmp / "up", write_nginx_conf(tmp / "up", UPSTREAM_BODY.format(host=HOST, port=up, www=www)))
        wait_port(up, up_proc, "upstream nginx")
        lp = free_ports(3)
        lean_cmd = leanproxy_serve(binary, tmp / "lp", lp, up)
        (fp,) = free_ports(1)
        results = {}
        dumps = {}
        notes = ""
        for name, cmd, port in [
            ("leanproxy", lean_cmd, lp[0]),
            ("hyper-floor", ([str(floor), f"{HOST}:{fp}", f"{HOST}:{up}"], None), fp),
        ]:
            results[name], text, dumps[name] = count(name, cmd, port, tmp / name, args.requests, args.annotate)
            notes += text
        if args.by_file:
            notes += by_file_table(
                self_cost_by_file(dumps["leanproxy"]),
                self_cost_by_file(dumps["hyper-floor"]),
                args.requests,
                args.by_file,
            )
        print(
            "| target | instructions / 1 KiB exchange |\n|---|---:|\n"
            + "".join(f"| {k} | {v:,.0f} |\n" for k, v in results.items())
            + f"| **leanproxy/hyper-floor** | {results['leanproxy'] / results['hyper-floor']:.2f} |\n"
            + notes
        )
        return 0
    finally:
        stop_all()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
