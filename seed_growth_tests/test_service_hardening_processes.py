"""The service's processes and its fit store under an unlucky operator: two services sharing one
BRMS_MODEL_DIR keep each other's staging folders (issue 14, item 9), and a service killed with SIGKILL
takes its workers and the collapsed engine with it (issue 15, item 6)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import threading
import time
import uuid

import httpx
import psutil
import pytest

from seed_growth_tests.support.plumber_service import PlumberService, post
from seed_growth_tests.support.simulation import simulate_growth

pytestmark = pytest.mark.service

KILL_DEADLINE_S = 20


@pytest.fixture(scope="module")
def shared_model_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("shared-model-dir")


def start_service(model_dir) -> PlumberService:
    # the fits in the model dir's default place, as two deployments sharing BRMS_MODEL_DIR have them
    service = PlumberService(
        fits_dir=model_dir / "fits", env={"BRMS_MODEL_DIR": str(model_dir), "BRMS_WARMUP_FAMILIES": ""}
    )
    service.start()
    return service


@pytest.fixture(scope="module")
def first_service(shared_model_dir):
    service = start_service(shared_model_dir)
    yield service
    service.stop()


def dead_pid() -> int:
    gone = subprocess.Popen(["true"])
    gone.wait()
    return gone.pid


def staging(fits_dir, pid: int, host: str | None = None):
    path = fits_dir / f".staging-{host or socket.gethostname()}-{pid}-{uuid.uuid4().hex}"
    path.mkdir(parents=True)
    (path / "meta.json").write_text("{}")
    return path


def test_a_second_service_keeps_the_first_ones_staging(first_service, shared_model_dir):
    fits = shared_model_dir / "fits"
    in_progress = staging(fits, first_service.process.pid)  # the running first service's fit
    leftover = staging(fits, dead_pid())  # a service that died mid-fit
    second = start_service(shared_model_dir)
    try:
        assert in_progress.exists(), "the second service removed a running service's staging folder"
        assert not leftover.exists(), "a dead service's staging folder was kept"
        # and both fit into the shared store side by side
        data = simulate_growth(n_students=8, n_weeks=4, seed=5).data
        body = {"data": data, "iter": 400, "chains": 1, "engine": "collapsed", "seed": 1}
        results: dict = {}
        threads = [
            threading.Thread(target=lambda s=s: results.update({s.port: post(s.url, "/growth/fit", body)}))
            for s in (first_service, second)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for response in results.values():
            assert response.status_code == 200, response.text
            assert (fits / response.json()["run_id"] / "meta.json").exists()
    finally:
        second.stop()
    assert in_progress.exists()


def descendants(pid: int) -> list[psutil.Process]:
    return psutil.Process(pid).children(recursive=True)


def test_kill_9_takes_the_workers_and_the_engine_with_it(first_service):
    """SIGKILL to the service mid-fit (no exit hook runs): within KILL_DEADLINE_S nothing it started is left
    (workers, the collapsed engine), so nothing goes on to write into the fit store."""
    fits = first_service.fits_dir
    data = simulate_growth(n_students=300, n_weeks=10, seed=9).data
    body = {"data": data, "iter": 20000, "chains": 4, "engine": "collapsed", "seed": 2}
    threading.Thread(target=lambda: _post_quietly(first_service.url, body), daemon=True).start()
    deadline = time.monotonic() + 120
    while not any("growth_engine" in _command(p) for p in descendants(first_service.process.pid)):
        assert time.monotonic() < deadline, "the engine never started"
        time.sleep(0.2)
    children = descendants(first_service.process.pid)
    fits_before = set(os.listdir(fits))
    os.kill(first_service.process.pid, signal.SIGKILL)
    first_service.process.wait(timeout=30)
    deadline = time.monotonic() + KILL_DEADLINE_S
    while _alive(children):
        if time.monotonic() > deadline:
            left = [f"{p.pid} {_command(p)[:120]}" for p in _alive(children)]
            for p in _alive(children):
                p.kill()
            pytest.fail(f"still running {KILL_DEADLINE_S} s after kill -9 of the service:\n" + "\n".join(left))
        time.sleep(0.2)
    time.sleep(2)
    committed = {f for f in set(os.listdir(fits)) - fits_before if not f.startswith(".")}
    assert not committed, f"fits committed after the service died: {committed}"


def _command(process: psutil.Process) -> str:
    try:
        return " ".join(process.cmdline())
    except psutil.Error:
        return ""


def _alive(processes: list[psutil.Process]) -> list[psutil.Process]:
    out = []
    for p in processes:
        try:
            if p.is_running() and p.status() != psutil.STATUS_ZOMBIE:
                out.append(p)
        except psutil.NoSuchProcess:
            pass
    return out


def _post_quietly(url: str, body: dict) -> None:
    try:
        httpx.post(f"{url}/growth/fit", json=body, timeout=600)
    except httpx.HTTPError:
        pass  # the service is killed while this waits
