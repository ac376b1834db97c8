"""PostgreSQL and Redis instances a test owns: started on a free loopback port, stopped by their PID, never
the machine's shared servers. Used by the tests that take a server away under load."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve_workers(
    config: Path, port: int, cwd: Path, output: Any = subprocess.DEVNULL, workers: int = 2, **env_extra: str
) -> subprocess.Popen[bytes]:
    """`her2-cds serve --workers N` on 127.0.0.1:port with a configuration file (its metrics in a directory of its
    own); output (a file, or DEVNULL) gets both streams; env_extra is added to its environment."""
    env = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"} | env_extra
    argv = [
        sys.executable,
        "-m",
        "cds_service.cli",
        "serve",
        "--config",
        str(config),
        "--workers",
        str(workers),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]
    return subprocess.Popen(argv, env=env, cwd=cwd, stdout=output, stderr=subprocess.STDOUT)


def wait_up(base: str, seconds: float = 30.0, path: str = "/healthz", what: str = "the service") -> None:
    """Wait until GET base+path answers 200 (a server this test started), or fail saying what did not start."""
    import requests

    deadline = time.monotonic() + seconds
    while True:
        try:
            if requests.get(base + path, timeout=3).status_code == 200:
                return
        except requests.RequestException:
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not answer {path} within {seconds:.0f} s")
        time.sleep(0.1)


def _wait_accepting(port: int, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"nothing accepts on 127.0.0.1:{port} after {seconds} s") from None
            time.sleep(0.02)


def _wait_gone(pid: int, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.02)
    raise RuntimeError(f"process {pid} still running after {seconds} s")


class OwnRedis:
    """redis-server without persistence (as docker/compose.yaml runs it)."""

    def __init__(self, directory: Path) -> None:
        self.port = free_port()
        self.dir = directory
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.dir),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        _wait_accepting(self.port, 10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
        self.proc = None


class OwnPostgres:
    """A fresh cluster (initdb, trust on loopback) in a directory of its own; run as the `postgres` user when
    the tests run as root, since PostgreSQL refuses to run as root."""

    def __init__(self) -> None:
        self.bin = self._bindir()
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="her2-cds-pg-"))
        self.data = self.dir / "data"
        self.proc: subprocess.Popen[bytes] | None = None
        self._as: list[str] = []
        if os.geteuid() == 0:
            shutil.chown(self.dir, "postgres")
            self._as = ["runuser", "-u", "postgres", "--"]
        subprocess.run(
            [*self._as, str(self.bin / "initdb"), "-D", str(self.data), "-A", "trust", "-U", "postgres", "--no-sync"],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    @staticmethod
    def _bindir() -> Path:
        candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))  # Debian keeps them off PATH
        found = shutil.which("initdb")
        if found:
            candidates.append(Path(found))
        if not candidates:
            raise RuntimeError("PostgreSQL server binaries (initdb, postgres) are not installed")
        return candidates[0].parent

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [
                *self._as,
                str(self.bin / "postgres"),
                "-D",
                str(self.data),
                "-p",
                str(self.port),
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                f"unix_socket_directories={self.dir}",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        _wait_accepting(self.port, 20)
        deadline = time.monotonic() + 20
        while subprocess.run([str(self.bin / "pg_isready"), "-q", "-h", "127.0.0.1", "-p", str(self.port)]).returncode:
            if time.monotonic() > deadline:
                raise RuntimeError("PostgreSQL accepts connections but is not ready")
            time.sleep(0.05)

    def postmaster_pid(self) -> int:
        return int((self.data / "postmaster.pid").read_text().split()[0])

    def stop(self) -> None:
        """Fast shutdown by PID (SIGINT): open transactions are rolled back, committed ones are kept."""
        if self.proc is None:
            return
        pid = self.postmaster_pid()
        os.kill(pid, signal.SIGINT)
        _wait_gone(pid, 20)
        self.proc.wait(timeout=5)
        self.proc = None

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)
