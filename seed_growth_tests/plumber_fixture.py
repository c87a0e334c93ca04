"""The real r-brms-plumber service for tests, and simulated data with known growth.

``plumber_url`` (session scope) starts ``Rscript r-brms-plumber/run.R`` on a free port and yields its base
URL. Compiled Stan models are kept between test sessions in ``BRMS_MODEL_DIR`` = ``SEED_GROWTH_MODEL_DIR``
or ``~/.cache/seed-growth/r-brms-plumber`` (the first compile of a family takes minutes; later ones load
it from disk). Fits go to a folder of their own per session. ``PlumberService`` can also be used directly
to start a service with other settings (a token, a small body limit) or to restart one.
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
import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
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
            cwd=SERVICE_DIR, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
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


_shared: PlumberService | None = None
_users = 0


def _acquire(tmp_path_factory: pytest.TempPathFactory) -> PlumberService:
    """The session's one service, started on first use. Reference-counted, so that it is one process even
    when the fixtures below are registered more than once (a conftest import and a test module's import each
    make their own fixture definitions), and either fixture works without the other."""
    global _shared, _users
    if _shared is None:
        # the deployment compiles gaussian at start-up too; binomial compiles on its first fit
        _shared = PlumberService(fits_dir=tmp_path_factory.mktemp("plumber-fits"),
                                 env={"BRMS_WARMUP_FAMILIES": "gaussian"})
        _shared.start()
    _users += 1
    return _shared


def _release() -> None:
    global _shared, _users
    _users -= 1
    if _users == 0 and _shared is not None:
        _shared.stop()
        _shared = None


@pytest.fixture(scope="session")
def plumber_service(tmp_path_factory: pytest.TempPathFactory):
    """The session's running r-brms-plumber (a PlumberService: url, restart(), log_tail())."""
    service = _acquire(tmp_path_factory)
    try:
        yield service
    finally:
        _release()


@pytest.fixture(scope="session")
def plumber_url(tmp_path_factory: pytest.TempPathFactory):
    """Base URL of the session's running r-brms-plumber."""
    service = _acquire(tmp_path_factory)
    try:
        yield service.url
    finally:
        _release()


@dataclass
class Simulated:
    data: dict[str, list]            # columnar, as the Dagster side sends it
    intercepts: np.ndarray           # true a_i (level at week 0)
    slopes: np.ndarray               # true b_i
    beta0: float
    beta1: float


def simulate_growth(n_students: int = 40, n_weeks: int = 8, *, beta0: float = 0.45, beta1: float = 0.03,
                    sd0: float = 0.1, sd1: float = 0.01, rho: float = 0.2, sigma: float = 0.05,
                    attempts: tuple[int, int] = (5, 30), family: str = "gaussian", seed: int = 1) -> Simulated:
    """Weekly scores with known growth: student i's expected score at week t is a_i + b_i t (gaussian:
    plus N(0, sigma^2) noise, clipped to [0, 1]) or inv_logit(a_i + b_i t) (binomial: correct answers out
    of n attempts; beta0/sd0/beta1/sd1 are then on the logit scale)."""
    rng = np.random.default_rng(seed)
    cov = [[sd0**2, rho * sd0 * sd1], [rho * sd0 * sd1, sd1**2]]
    ab = rng.multivariate_normal([beta0, beta1], cov, size=n_students)
    students = np.repeat([f"stu-{i:03d}" for i in range(n_students)], n_weeks)
    weeks = np.tile(np.arange(n_weeks), n_students)
    eta = ab[:, 0].repeat(n_weeks) + ab[:, 1].repeat(n_weeks) * weeks
    n = rng.integers(attempts[0], attempts[1] + 1, size=eta.size)
    if family == "gaussian":
        score = np.clip(eta + rng.normal(0, sigma, size=eta.size), 0, 1)
    else:
        correct = rng.binomial(n, 1 / (1 + np.exp(-eta)))
        score = correct / n
    data = {"student": students.tolist(), "week": weeks.tolist(), "score": score.tolist(), "n": n.tolist()}
    return Simulated(data=data, intercepts=ab[:, 0], slopes=ab[:, 1], beta0=beta0, beta1=beta1)
