"""The real r-brms-plumber service for tests.

The plugin's ``plumber_url`` fixture (session scope) starts ``Rscript r-brms-plumber/run.R`` on a free port
and yields its base URL. Compiled Stan models are kept between test sessions in ``BRMS_MODEL_DIR`` =
``SEED_GROWTH_MODEL_DIR`` or ``~/.cache/seed-growth/r-brms-plumber`` (the first compile of a family takes
minutes; later ones load it from disk). Fits go to a folder of their own per session. ``PlumberService``
can also be used directly to start a service with other settings (a token, a small body limit) or to
restart one.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

REPO = Path(__file__).resolve().parents[2]
SERVICE_DIR = REPO / "r-brms-plumber"
DEFAULT_MODEL_DIR = Path.home() / ".cache" / "seed-growth" / "r-brms-plumber"
START_TIMEOUT_S = float(os.environ.get("SEED_GROWTH_PLUMBER_START_TIMEOUT", "600"))


def model_dir() -> Path:
    return Path(os.environ.get("SEED_GROWTH_MODEL_DIR") or DEFAULT_MODEL_DIR)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class PlumberService:
    """One r-brms-plumber process. ``env`` adds to (and overrides) the defaults below."""

    fits_dir: Path
    env: dict[str, str] = field(default_factory=dict)
    port: int = field(default_factory=free_port)
    log_path: Path | None = None
    process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout_s: float = START_TIMEOUT_S) -> str:
        if shutil.which("Rscript") is None:
            pytest.fail("Rscript is not installed: run r-brms-plumber/install.sh")
        env = {
            **os.environ,
            "BRMS_PLUMBER_HOST": "127.0.0.1",
            "BRMS_PLUMBER_PORT": str(self.port),
            "BRMS_MODEL_DIR": str(model_dir()),
            "BRMS_FITS_DIR": str(self.fits_dir),
            # the collapsed engine, where installed, is the one of this interpreter
            "GROWTH_ENGINE_PYTHON": os.environ.get("GROWTH_ENGINE_PYTHON", sys.executable),
            # no bearer token unless a test asks for one (a client that sends one anyway is still served)
            "BRMS_PLUMBER_TOKEN": "",
            **self.env,
        }
        if self.log_path is None:
            fd, name = tempfile.mkstemp(prefix="r-brms-plumber-", suffix=".log")
            os.close(fd)
            self.log_path = Path(name)
        log = open(self.log_path, "ab")
        self.process = subprocess.Popen(
            ["Rscript", "--no-save", "--no-restore", str(SERVICE_DIR / "run.R")],
            cwd=SERVICE_DIR,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"r-brms-plumber exited with {self.process.returncode}:\n{self.log_tail()}")
            try:
                health = httpx.get(f"{self.url}/health", timeout=5).json()
                if health.get("ready"):
                    return self.url
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        self.stop()
        pytest.fail(f"r-brms-plumber did not become ready within {timeout_s:.0f} s:\n{self.log_tail()}")

    def stop(self) -> None:
        """SIGTERM to the service's process group (the service, its workers and their children)."""
        if self.process is None or self.process.poll() is not None:
            return
        try:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=30)
        except ProcessLookupError:
            pass

    def restart(self) -> str:
        self.stop()
        return self.start()

    def log_tail(self, lines: int = 40) -> str:
        if self.log_path is None or not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


FIT_TIMEOUT = httpx.Timeout(1800.0, connect=10.0)


def service_with(fits_dir: Path, **env: str):
    """A started service with these settings and no warm-up compile (a generator for a pytest fixture:
    yields the service, stops it after)."""
    service = PlumberService(fits_dir=fits_dir, env={"BRMS_WARMUP_FAMILIES": "", **env})
    service.start()
    yield service
    service.stop()


def validation_service(fits_dir: Path, token: str):
    """A started service with a bearer token whose queue takes no fits: requests are validated, fits never
    start (a generator for a pytest fixture)."""
    yield from service_with(fits_dir, BRMS_PLUMBER_TOKEN=token, BRMS_MAX_QUEUE="0")


def post(url: str, path: str, body, **kwargs) -> httpx.Response:
    """POST a JSON body to the service, with a timeout long enough for a brms fit."""
    return httpx.post(f"{url}{path}", json=body, timeout=FIT_TIMEOUT, **kwargs)
