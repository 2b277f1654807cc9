"""compare.py's mockbank part: the Mockbank as the target of an app's load
test, and its memory with many linked entities.

One leanproxy with its embedded Mockbank (no upstream configured; `[proxy]
workers = 0`, a runtime worker per CPU, as a load test against it wants) links
`no_otp_user` (the stable test user) and is loaded on three Lean calls:
`GET /data/v2/accounts`, a page of 50 of `GET /data/v2/accounts/{id}/transactions`
and `POST /data/v1/balance`:

- `mockbank`: straight to the Mockbank's own listener (with the Mockbank's app
  token);
- `via leanproxy`: through the proxy, which adds the credentials, inspects,
  logs and records the exchange on its way to the embedded Mockbank;
- `wiremock`: WireMock standalone serving the very answers the Mockbank gave
  (fetched once, byte for byte) as static stubs matched on method, path, query
  and JSON body, with its request journal (1,000 entries).

Then, on a fresh leanproxy, 10,000 customers each link the stable user, and
the process's resident memory is read before and after.
"""

from __future__ import annotations

import http.client
import json
import subprocess
import time
from pathlib import Path

import peers
from common import (
    CONNECTIONS,
    HOST,
    THREADS,
    alone,
    Proxy,
    leanproxy_serve,
    fmt_mib,
    fmt_time,
    free_ports,
    log,
    measure,
    medians,
    ratio,
    round_order,
    start,
    status_field,
    stop,
    vm_hwm_kib,
    wait_port,
    wrk,
)

APP_TOKEN = "mockbank-app-token"  # the Mockbank's documented sandbox token, not a secret
USER = "no_otp_user"
ENTITIES = 10_000


def start_embedded(binary: Path, dir: Path) -> tuple[subprocess.Popen, int, int]:
    """leanproxy in front of its embedded Mockbank: (process, proxy port, Mockbank port)."""
    dir.mkdir(parents=True, exist_ok=True)
    ports = free_ports(4)
    proxy, bank = ports[0], ports[3]
    cmd, env = leanproxy_serve(binary, dir, ports, None)
    # One runtime worker per CPU, as for a load test against the Mockbank
    # (the proxy's default is one: the Mockbank would have a single core).
    config = dir / "leanproxy.toml"
    config.write_text("[proxy]\nworkers = 0\n")
    cmd += ["--config", str(config)]
    proc = start(cmd, env=env, stdout=open(dir / "stdout.log", "wb"), stderr=open(dir / "stderr.log", "wb"))
    wait_port(proxy, proc, "leanproxy", timeout=30)
    wait_port(bank, proc, "the Mockbank", timeout=30)
    return proc, proxy, bank


class Client:
    """One keep-alive connection, JSON in and out."""

    def __init__(self, port: int, headers: dict | None = None):
        self.conn = http.client.HTTPConnection(HOST, port, timeout=30)
        self.headers = headers or {}

    def call(self, method: str, path: str, body: dict | None = None) -> tuple[int, bytes]:
        headers = dict(self.headers)
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["content-type"] = "application/json"
        self.conn.request(method, path, body=data, headers=headers)
        r = self.conn.getresponse()
        return r.status, r.read()

    def json(self, method: str, path: str, body: dict | None = None):
        status, raw = self.call(method, path, body)
        if status >= 300:
            raise RuntimeError(f"{method} {path}: {status} {raw[:300]!r}")
        return json.loads(raw)


def link(proxy: Client, bank: Client, password: str, n: int) -> str:
    """A customer created through the proxy links the stable user: its entity id."""
    customer = proxy.json("POST", "/customers/v1/", {"app_user_id": f"bench-{n}"})["customer_id"]
    linked = bank.json(
        "POST", "/_mockbank/link/connect", {"customer_id": customer, "username": USER, "password": password}
    )
    return linked["id"]


def password(bank: Client) -> str:
    users = bank.json("GET", "/_mockbank/users")
    users = users.get("users", users) if isinstance(users, dict) else users
    for u in users:
        if u.get("username") == USER:
            return u["password"]
    raise RuntimeError(f"the Mockbank lists no {USER}")


def calls(entity: str, account: str) -> list[tuple[str, str, str, dict | None]]:
    """(name, method, path, JSON body) of the three calls measured."""
    return [
        ("GET accounts (v2)", "GET", f"/data/v2/accounts?entity_id={entity}", None),
        (
            "GET transactions, 50 (v2)",
            "GET",
            f"/data/v2/accounts/{account}/transactions?entity_id={entity}&page=0&size=50",
            None,
        ),
        ("POST balance (v1)", "POST", "/data/v1/balance", {"entity_id": entity, "account_id": account}),
    ]


def wrk_args(dir: Path, i: int, method: str, body: dict | None, token: bool) -> tuple[str, ...]:
    """wrk options for a call: a Lua script for a POST, the app token header."""
    args: list[str] = []
    if token:
        args += ["-H", f"lean-app-token: {APP_TOKEN}"]
    if method == "POST":
        script = dir / f"call{i}.lua"
        script.write_text(
            f'wrk.method = "POST"\nwrk.body = {json.dumps(json.dumps(body))}\n'
            'wrk.headers["Content-Type"] = "application/json"\n'
        )
        args += ["-s", str(script)]
    return tuple(args)


def stub(method: str, path: str, body: dict | None, answer: bytes) -> dict:
    """A WireMock stub answering `answer` to exactly this call."""
    url, _, query = path.partition("?")
    request: dict = {"method": method, "urlPath": url}
    if query:
        request["queryParameters"] = {
            k: {"equalTo": v} for k, v in (kv.split("=", 1) for kv in query.split("&"))
        }
    if body is not None:
        request["bodyPatterns"] = [{"equalToJson": body}]
    return {
        "request": request,
        "response": {"status": 200, "headers": {"content-type": "application/json"}, "body": answer.decode()},
    }


def run(binary: Path, tmp: Path, rounds: int, seconds: int) -> str:
    dir = tmp / "mockbank"
    proc, proxy_port, bank_port = start_embedded(binary, dir / "leanproxy")
    proxy, bank = Client(proxy_port), Client(bank_port, {"lean-app-token": APP_TOKEN})
    entity = link(proxy, bank, password(bank), 0)
    accounts = bank.json("GET", f"/data/v2/accounts?entity_id={entity}")
    account = accounts["data"]["accounts"][0]["account_id"]
    wm_dir = dir / "wiremock"
    (wm_dir / "mappings").mkdir(parents=True, exist_ok=True)
    measured = calls(entity, account)
    for i, (_, method, path, body) in enumerate(measured):
        status, answer = bank.call(method, path, body)
        if status != 200:
            raise RuntimeError(f"the Mockbank answered {status} to {method} {path}: {answer[:300]!r}")
        (wm_dir / "mappings" / f"call{i}.json").write_text(json.dumps(stub(method, path, body, answer)))
    (wm_port,) = free_ports(1)
    wm = Proxy("wiremock", wm_port, peers.start_wiremock(wm_dir, wm_port), warmup=5)
    wait_port(wm_port, wm.proc, "wiremock", timeout=60)
    targets = {
        "mockbank": (Proxy("mockbank", bank_port, proc), True),
        "via leanproxy": (Proxy("via leanproxy", proxy_port, proc), False),
        "wiremock": (wm, False),
    }
    results: dict[str, dict[str, list]] = {name: {t: [] for t in targets} for name, *_ in measured}
    for i, (name, method, path, body) in enumerate(measured):
        for t, (p, token) in targets.items():
            args = wrk_args(dir, i, method, body, token)
            status, answer = Client(p.port, {"lean-app-token": APP_TOKEN} if token else {}).call(method, path, body)
            if status != 200:
                raise RuntimeError(f"{t} answered {status} to {name}: {answer[:300]!r}")
            wrk(p.port, path, p.warmup, args)
        for r in range(rounds):
            for t in round_order(targets, r):
                p, token = targets[t]
                with alone(p, [q for q, _ in targets.values()]):
                    s = measure(p, path, seconds, wrk_args(dir, i, method, body, token))
                results[name][t].append(s)
                log(f"mockbank {name} round {r + 1} {t:<13} {s.rps:>8,.0f} req/s p99 {fmt_time(s.p99)}")
    stop(wm.proc)
    stop(proc)
    return report(results, rounds, seconds) + memory(binary, tmp / "mockbank-entities")


def report(results, rounds: int, seconds: int) -> str:
    out = [
        "## The Mockbank as a load-test target",
        "",
        f"- `wrk -t{THREADS} -c{CONNECTIONS} -d{seconds}s`, {rounds} rounds interleaved per call, "
        "the other process stopped during each run, each let settle after it; "
        f"`{USER}` linked; leanproxy with `[proxy] workers = 0` (a runtime worker per CPU); "
        "mockbank: the Mockbank's own listener; "
        "via leanproxy: through the proxy (everything on) to the embedded Mockbank, in the "
        "same process; wiremock: the same answers, byte for byte, as static stubs. CPU/req "
        "and peak RSS: the process serving (for mockbank and via leanproxy the same "
        "leanproxy process)",
        "",
        "| call | target | req/s | p50 | p99 | CPU/req | peak RSS | errors |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    verdicts = []
    for name, by_target in results.items():
        m = {}
        for t, ss in by_target.items():
            m[t] = medians(ss)
            out.append(
                f"| {name} | {t} | {m[t]['rps']:,.0f} | {fmt_time(m[t]['p50'])} | {fmt_time(m[t]['p99'])} "
                f"| {fmt_time(m[t]['cpu'])} | {fmt_mib(m[t]['rss'])} | {sum(s.errors for s in ss)} |"
            )
        for t in ("mockbank", "via leanproxy"):
            w = m["wiremock"]
            ok = w["rps"] and w["p99"] and m[t]["rps"] >= 5 * w["rps"] and m[t]["p99"] <= w["p99"]
            verdicts.append(
                f"| {name} | {t} | {ratio(m[t]['rps'], w['rps'])} | {ratio(m[t]['p99'], w['p99'])} "
                f"| {ratio(m[t]['cpu'], w['cpu'])} "
                f"| {'yes' if ok else '**no**'} |"
            )
    out += [
        "",
        "| call | / wiremock | req/s | p99 | CPU/req | target met (≥ 5× rate, p99 ≤ 1×) |",
        "|---|---|---:|---:|---:|---|",
        *verdicts,
        "",
    ]
    return "\n".join(out) + "\n"


def memory(binary: Path, dir: Path) -> str:
    """Resident memory of a fresh leanproxy + Mockbank before and after
    10,000 customers each link the stable user."""
    proc, proxy_port, bank_port = start_embedded(binary, dir)
    proxy, bank = Client(proxy_port), Client(bank_port, {"lean-app-token": APP_TOKEN})
    secret = password(bank)
    link(proxy, bank, secret, 0)
    before = status_field(proc.pid, "VmRSS")
    t0 = time.monotonic()
    for n in range(1, ENTITIES + 1):
        link(proxy, bank, secret, n)
    took = time.monotonic() - t0
    time.sleep(1)
    after = status_field(proc.pid, "VmRSS")
    listed = bank.json("GET", "/_mockbank/entities")
    count = len(listed.get("entities", listed) if isinstance(listed, dict) else listed)
    peak = vm_hwm_kib(proc.pid)
    stop(proc)
    return "\n".join(
        [
            f"### Memory with {ENTITIES:,} linked entities",
            "",
            f"- a fresh leanproxy + embedded Mockbank; {ENTITIES:,} customers created through the proxy, "
            f"each linking `{USER}` (`POST /_mockbank/link/connect`), one after the other in "
            f"{took:.0f} s; the Mockbank then lists {count:,} entities",
            f"- resident memory with one entity {fmt_mib(before)}, with {count:,} {fmt_mib(after)} "
            f"({(after - before) / max(count - 1, 1):.1f} KiB per entity); peak {fmt_mib(peak)}",
            "",
        ]
    )
