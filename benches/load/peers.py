"""The tools a user would run instead of leanproxy for the same job, started
for the load comparison from the configs in benches/load/peers/, each in front
of the same upstream and on 127.0.0.1 only:

- `nginx-log`: nginx 1.22 with a JSON access log, X-Forwarded-* and a request id;
- `haproxy`: HAProxy 2.6 with an HTTP log line per exchange and the same headers;
- `caddy`: Caddy 2.6 `reverse_proxy` with its JSON access log and a request id;
- `mitmproxy`: mitmdump in reverse mode keeping the last 1,000 flows;
- `wiremock`: WireMock standalone (the jar the PyPI package `wiremock` ships)
  proxying everything, with its request journal (1,000 entries).

`nginx` (bare, no log) and the upstream are compare.py's own.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

from common import HOST, Proxy, apt_install, log, start, start_nginx, wait_port

HERE = Path(__file__).resolve().parent
CONFIGS = HERE / "peers"
SAME_JOB = ["nginx-log", "haproxy", "caddy", "mitmproxy", "wiremock"]
# Downloads (the WireMock jar, oha) are kept here between runs.
CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "leanproxy-bench"
WIREMOCK_PYPI = "wiremock==2.7.0"  # ships wiremock-standalone-2.35.1.jar
OHA_VERSION = "1.16.0"  # pinned: latency.py reads its JSON report's keys
JOURNAL = 1000  # WireMock's and mitmproxy's kept exchanges, as leanproxy's `log.ring`


def ensure_peers() -> None:
    """Debian's haproxy, caddy, mitmproxy and a Java runtime; the WireMock jar."""
    apt_install(
        {"haproxy": "haproxy", "caddy": "caddy", "mitmdump": "mitmproxy", "java": "openjdk-17-jre-headless"}
    )
    wiremock_jar()


def wiremock_jar() -> Path:
    """The standalone jar inside the PyPI package `wiremock`, downloaded once
    (`pip download`, no install) and unpacked into the cache."""
    found = sorted(CACHE.glob("wiremock-standalone-*.jar"))
    if found:
        return found[-1]
    CACHE.mkdir(parents=True, exist_ok=True)
    log(f"downloading {WIREMOCK_PYPI} from PyPI for its standalone jar")
    wheels = CACHE / "wheels"
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", str(wheels), WIREMOCK_PYPI],
        check=True,
        timeout=600,
        stdout=sys.stderr,
    )
    for wheel in wheels.glob("wiremock-*.whl"):
        with zipfile.ZipFile(wheel) as z:
            for name in z.namelist():
                if name.endswith(".jar") and "standalone" in name:
                    target = CACHE / Path(name).name
                    target.write_bytes(z.read(name))
                    return target
    sys.exit(f"load: no WireMock standalone jar in {WIREMOCK_PYPI}")


def oha() -> Path:
    """oha (a constant-rate HTTP load generator) at OHA_VERSION, `cargo
    install`ed into the cache once; Debian has no package of it. One on the
    PATH is used only when it is that version."""
    on_path = shutil.which("oha")
    if on_path and _version(Path(on_path)) == OHA_VERSION:
        return Path(on_path)
    binary = CACHE / "bin" / "oha"
    if _version(binary) != OHA_VERSION:
        log("installing oha with cargo (once; a few minutes)")
        subprocess.run(
            ["cargo", "install", "--locked", "--force", "--root", str(CACHE), "oha", "--version", f"={OHA_VERSION}"],
            check=True,
            timeout=3600,
            stdout=sys.stderr,
        )
    return binary


def _version(binary: Path) -> str | None:
    """The version `binary --version` prints (`oha 1.16.0`), None if it cannot run."""
    if not binary.is_file():
        return None
    out = subprocess.run([str(binary), "--version"], capture_output=True, text=True, timeout=30)
    words = out.stdout.split()
    return words[-1] if out.returncode == 0 and words else None


def fill(template: str, dir: Path, port: int, up: int) -> str:
    return (
        (CONFIGS / template)
        .read_text()
        .replace("@DIR@", str(dir))
        .replace("@LISTEN@", f"{HOST}:{port}")
        .replace("@HOST@", HOST)
        .replace("@UPSTREAM@", f"{HOST}:{up}")
    )


def _logs(dir: Path) -> dict:
    dir.mkdir(parents=True, exist_ok=True)
    return dict(stdout=open(dir / "stdout.log", "wb"), stderr=open(dir / "stderr.log", "wb"))


def start_peer(name: str, dir: Path, up: int, port: int) -> Proxy:
    """Starts peer `name` in `dir`, in front of 127.0.0.1:`up`, listening on
    127.0.0.1:`port`; returns once it accepts connections."""
    dir.mkdir(parents=True, exist_ok=True)
    warmup = 1.0
    if name == "nginx-log":
        conf = dir / "nginx.conf"
        conf.write_text(fill("nginx-log.conf", dir, port, up))
        proc = start_nginx(dir, conf)
    elif name == "haproxy":
        conf = dir / "haproxy.cfg"
        conf.write_text(fill("haproxy.cfg", dir, port, up))
        check = subprocess.run(["haproxy", "-c", "-q", "-f", str(conf)], capture_output=True, text=True)
        if check.returncode != 0:
            sys.exit(f"load: haproxy rejects {conf}:\n{check.stderr}{check.stdout}")
        proc = start(["haproxy", "-db", "-f", str(conf)], **_logs(dir))
    elif name == "caddy":
        conf = dir / "Caddyfile"
        conf.write_text(fill("Caddyfile", dir, port, up))
        # Caddy's own files (autosave, certificates) go under `dir`, not $HOME.
        env = dict(os.environ, HOME=str(dir), XDG_DATA_HOME=str(dir), XDG_CONFIG_HOME=str(dir))
        cmd = ["caddy", "run", "--config", str(conf), "--adapter", "caddyfile"]
        proc = start(cmd, env=env, **_logs(dir))
    elif name == "mitmproxy":
        cmd = [
            "mitmdump", "--mode", f"reverse:http://{HOST}:{up}",
            "--listen-host", HOST, "--listen-port", str(port),
            "--set", f"confdir={dir / 'conf'}", "--set", "flow_detail=1",
            "-s", str(CONFIGS / "mitm_ring.py"),
        ]  # fmt: skip
        proc, warmup = start(cmd, **_logs(dir)), 2.0
    elif name == "wiremock":
        proc, warmup = start_wiremock(dir, port, proxy_to=up), 5.0
    else:
        raise ValueError(f"unknown peer {name!r}")
    wait_port(port, proc, name, timeout=60)
    return Proxy(name, port, proc, warmup=warmup)


def start_wiremock(dir: Path, port: int, proxy_to: int | None = None) -> subprocess.Popen:
    """WireMock standalone on 127.0.0.1:`port` with its request journal (the
    last 1,000 requests), its stubs under `dir`/mappings; with `proxy_to`, it
    proxies every request to that port. The JVM's defaults otherwise."""
    (dir / "mappings").mkdir(parents=True, exist_ok=True)
    (dir / "__files").mkdir(exist_ok=True)
    cmd = [
        "java", "-jar", str(wiremock_jar()),
        "--bind-address", HOST, "--port", str(port), "--root-dir", str(dir),
        "--max-request-journal-entries", str(JOURNAL), "--disable-banner",
    ]  # fmt: skip
    if proxy_to is not None:
        cmd += ["--proxy-all", f"http://{HOST}:{proxy_to}"]
    return start(cmd, **_logs(dir))
