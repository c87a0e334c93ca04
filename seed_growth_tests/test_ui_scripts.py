"""scripts/ui.sh as a user starts it, in the background (`bash scripts/ui.sh &`): SIGTERM stops it with
everything it started, dagster dev (webserver, daemon, code server) and the fitting service."""

from __future__ import annotations

import os
import signal
import subprocess
import time

import httpx
import psutil
import pytest

from seed_growth_tests.support.ui import REPO, free_port, wait_for


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=5).status_code == 200
    except httpx.HTTPError:
        return False


@pytest.mark.service
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_ui_script_stops_with_its_children_on_a_signal(database_url, tmp_path, sig):
    ui_port, plumber_port = free_port(), free_port()
    (tmp_path / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BRMS_", "DAGSTER_"))}
    env.update(
        {
            "DATABASE_URL": database_url,
            "DAGSTER_HOME": str(tmp_path),
            "DAGSTER_UI_PORT": str(ui_port),
            "BRMS_PLUMBER_PORT": str(plumber_port),
            "BRMS_PLUMBER_URL": f"http://127.0.0.1:{plumber_port}",
            "BRMS_MODEL_DIR": str(tmp_path / "models"),
        }
    )
    log = (tmp_path / "ui.log").open("w")
    # a shell's background job: its own process group, not the test's (like `bash scripts/ui.sh &`)
    script = subprocess.Popen(
        ["bash", "scripts/ui.sh"], cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, process_group=0
    )
    started: list[psutil.Process] = []
    try:
        wait_for("the webserver", lambda: _answers(f"http://127.0.0.1:{ui_port}/server_info"), 400, 2)
        started = psutil.Process(script.pid).children(recursive=True)
        commands = [" ".join(p.cmdline()) for p in started]
        assert any("run.R" in c for c in commands), commands  # the fitting service
        assert any("dagster_webserver" in c for c in commands), commands  # dagster dev's webserver
        script.send_signal(sig)
        deadline = time.monotonic() + 60
        script.wait(timeout=60)
        _gone, alive = psutil.wait_procs(started, timeout=max(1, deadline - time.monotonic()))
        assert not alive, f"still running after {sig.name}: {[' '.join(p.cmdline()) for p in alive]}"
        assert not _answers(f"http://127.0.0.1:{ui_port}/server_info")
        assert not _answers(f"http://127.0.0.1:{plumber_port}/health")
    finally:
        for process in [psutil.Process(script.pid)] if script.poll() is None else []:
            os.killpg(process.pid, signal.SIGKILL)
        for process in started:
            try:
                process.kill()
            except psutil.NoSuchProcess:
                pass
        log.close()
        print((tmp_path / "ui.log").read_text()[-3000:])
