"""Slow clients (issue 9): connections that trickle their headers or body a byte at a time.

gunicorn's gthread worker reads a request on a worker thread, so against `serve --workers 2` alone such
connections take every thread and legitimate calls time out. The deployment we ship puts nginx in front
(docker/nginx/): nginx reads each request whole before it reaches gunicorn and drops a client that is too
slow. This test runs the shipped nginx.conf, limits.conf and proxy.conf (paths, ports and upstream
substituted) in front of `serve --workers 2` and attacks both."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest
import requests
import yaml

from .conftest import TEST_ISS
from .fixtures import patients
from .helpers import hook_request, prefetch_from
from .own_servers import free_port, serve_workers, wait_up

PUBLIC = "https://cds.slow.example"
NGINX_DIR = Path(__file__).resolve().parent.parent / "docker" / "nginx"
PATH = "/cds-services/her2-order-select"
HEADER_TRICKLERS = 48
BODY_TRICKLERS = 16
TICK = 0.3  # seconds between two bytes of one slow connection


def _nginx() -> str:
    found = shutil.which("nginx") or next((p for p in ("/usr/sbin/nginx",) if Path(p).exists()), None)
    if found:
        return found
    if os.environ.get("CI"):
        pytest.fail("nginx is required under CI (.ci/run installs Debian's nginx)")
    pytest.skip("nginx not installed on this machine (runs under CI)")


class Trickler:
    """Slow connections that send one byte per TICK and open again when the server drops them."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.dropped = 0
        self._stop = threading.Event()
        self._begun = threading.Event()  # every slow connection is open and has sent a first byte
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _open(self, body: bool) -> tuple[socket.socket, bytes]:
        sock = socket.create_connection(("127.0.0.1", self.port), timeout=2)
        sock.setblocking(False)
        if body:
            sock.sendall(
                f"POST {PATH} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                f"Content-Length: 100000\r\n\r\n".encode()
            )
            return sock, b"{" + b" " * 99_999
        return sock, f"POST {PATH} HTTP/1.1\r\nHost: x\r\nX-Slow: {'a' * 4000}\r\n".encode()

    def _run(self) -> None:
        conns = [
            [*self._open(i < BODY_TRICKLERS), i < BODY_TRICKLERS] for i in range(HEADER_TRICKLERS + BODY_TRICKLERS)
        ]
        rounds = 0
        while not self._stop.wait(TICK):
            rounds += 1
            if rounds == 2:
                self._begun.set()
            for conn in conns:
                sock, rest, body = conn
                try:
                    if sock.recv(1024) == b"":
                        raise ConnectionResetError  # the server closed it (nginx: a timeout, or 408)
                except BlockingIOError:
                    pass
                except OSError:
                    self.dropped += 1
                    sock.close()
                    conn[0], conn[1] = self._open(body)
                    continue
                try:
                    sock.send(conn[1][:1])
                    conn[1] = conn[1][1:]
                except BlockingIOError:
                    pass
                except OSError:
                    self.dropped += 1
                    sock.close()
                    conn[0], conn[1] = self._open(body)
        for sock, _, _ in conns:
            sock.close()

    def __enter__(self) -> Trickler:
        self._thread.start()
        # every slow connection open and begun (on a busy machine opening 64 of them takes its time), then a tick
        assert self._begun.wait(timeout=20), "the slow connections did not open"
        time.sleep(TICK)
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


@pytest.fixture
def service(tmp_path: Path, jwks):
    port = free_port()
    cfg = {
        "public_base_url": PUBLIC,
        "auth": {"required": True, "issuers": [{"iss": TEST_ISS, "jwks": jwks}]},
        "storage": {"database_url": f"sqlite:///{tmp_path}/fb.db"},
    }
    (tmp_path / "svc.yaml").write_text(yaml.safe_dump(cfg))
    proc = serve_workers(str(tmp_path / "svc.yaml"), port, tmp_path)
    wait_up(f"http://127.0.0.1:{port}", what="serve --workers 2")
    yield port
    proc.terminate()
    proc.wait(timeout=20)


@pytest.fixture
def proxy(service: int, tmp_path: Path):
    """The shipped nginx files, with the include directory, the listening port and the upstream substituted."""
    nginx = _nginx()
    conf_dir = tmp_path / "nginx"
    conf_dir.mkdir()
    for name in ("limits.conf", "proxy.conf"):
        shutil.copy(NGINX_DIR / name, conf_dir / name)
    port = free_port()
    text = (NGINX_DIR / "nginx.conf").read_text()
    substitutions = (
        ("/etc/nginx/her2-cds/", f"{conf_dir}/"),
        ("server her2-cds:8080;", f"server 127.0.0.1:{service};"),
        ("listen 8080;", f"listen 127.0.0.1:{port};"),
        ("/dev/stdout", f"{conf_dir}/access.log"),
    )
    for old, new in substitutions:
        assert old in text, f"docker/nginx/nginx.conf no longer has {old!r}"
        text = text.replace(old, new)
    (conf_dir / "nginx.conf").write_text(text)
    globals_ = f"daemon off; pid {conf_dir}/nginx.pid;" + (" user root;" if os.geteuid() == 0 else "")
    proc = subprocess.Popen(
        [nginx, "-p", str(conf_dir), "-c", str(conf_dir / "nginx.conf"), "-e", "stderr", "-g", globals_],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 10
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            break
        except OSError:
            assert proc.poll() is None and time.time() < deadline, "nginx did not start"
            time.sleep(0.05)
    yield port, conf_dir
    proc.terminate()
    proc.wait(timeout=10)


def _legitimate(port: int, make_token, n: int, timeout: float) -> list[tuple[int, float]]:
    """n hook calls one after another: (status or 0 for no answer, seconds)."""
    body = hook_request("order-select", prefetch=prefetch_from(patients.bell()))
    out = []
    for _ in range(n):
        started = time.monotonic()
        try:
            resp = requests.post(
                f"http://127.0.0.1:{port}{PATH}",
                json=body,
                timeout=timeout,
                headers={"Authorization": f"Bearer {make_token(PUBLIC + PATH)}"},
            )
            out.append((resp.status_code, time.monotonic() - started))
        except requests.RequestException:
            out.append((0, time.monotonic() - started))
        time.sleep(0.3)
    return out


def test_slow_clients_do_not_starve_the_service_behind_the_shipped_nginx(service, proxy, make_token):
    """The attack against gunicorn alone (the control: it starves) is tests/benchmarks/slow_clients_control.py,
    run by hand: whether, and how long, bare gunicorn starves depends on how busy the machine is."""
    nginx_port, conf_dir = proxy
    assert [s for s, _ in _legitimate(service, make_token, 3, 5)] == [200] * 3  # a healthy start

    with Trickler(nginx_port) as attack:
        proxied = _legitimate(nginx_port, make_token, 24, 5)
        time.sleep(max(0.0, 6.5 - 24 * 0.3))
    print(f"behind nginx: max {max(t for _, t in proxied) * 1000:.0f} ms, {attack.dropped} slow connections dropped")
    assert [s for s, _ in proxied] == [200] * 24
    assert max(t for _, t in proxied) < 1.0
    # limits.conf: client_header_timeout 5s drops the header tricklers (a 4 kB header at 1 byte per 0.3 s)
    assert attack.dropped >= HEADER_TRICKLERS
    log = (conf_dir / "access.log").read_text()
    assert '"status":408' in log and '"path":"/cds-services/her2-order-select"' in log


@pytest.mark.parametrize("kb", [8, 12, 16])
def test_tokens_of_8_to_16_kb_work_end_to_end_behind_the_shipped_nginx(service, proxy, make_token, kb):
    """An EHR's JWT with a long x5c chain in its header (ignored: the issuer's keys are pinned): nginx and gunicorn
    both take the header; the hook call answers 200."""
    nginx_port, _ = proxy
    token = make_token(PUBLIC + PATH, headers={"x5c": ["A" * (kb * 1024 * 3 // 4)]})
    assert kb * 1024 <= len(token) < (kb + 1) * 1024
    body = hook_request("order-select", prefetch=prefetch_from(patients.bell()))
    resp = requests.post(
        f"http://127.0.0.1:{nginx_port}{PATH}", json=body, timeout=10, headers={"Authorization": f"Bearer {token}"}
    )
    assert resp.status_code == 200, resp.text[:200]
