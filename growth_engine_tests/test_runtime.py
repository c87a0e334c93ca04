"""Importing the engine changes no global state; JAX is set up by the entry point (runtime.configure), and a
fit without it still runs in float64."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

_IMPORTS = """
import json, os, sys
before = os.environ.get("XLA_FLAGS")
import growth_engine
from growth_engine import sampler, model, chains, laplace, summaries, response
import jax
print(json.dumps({"before": before, "after": os.environ.get("XLA_FLAGS"), "x64": bool(jax.config.jax_enable_x64),
                  "cache": jax.config.jax_compilation_cache_dir}))
"""


def _run(code: str, **env: str) -> dict:
    environ = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "JAX_ENABLE_X64")}
    r = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env={**environ, **env}, timeout=600
    )
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout.strip().splitlines()[-1])


def test_importing_the_engine_leaves_xla_flags_x64_and_the_cache_alone():
    pytest.importorskip("numpyro")
    out = _run(_IMPORTS)
    assert out["before"] is None and out["after"] is None
    assert out["x64"] is False and out["cache"] is None
    out = _run(_IMPORTS, XLA_FLAGS="--xla_cpu_enable_fast_math=false")
    assert out["after"] == out["before"] == "--xla_cpu_enable_fast_math=false"


def test_configure_sets_devices_x64_and_cache(tmp_path):
    pytest.importorskip("jax")
    code = f"""
import json, os
from growth_engine import runtime
path = runtime.configure(host_devices=3, cache_dir={str(tmp_path / "cache")!r})
import jax
print(json.dumps({{"flags": os.environ["XLA_FLAGS"], "x64": bool(jax.config.jax_enable_x64), "path": path,
                  "cache": jax.config.jax_compilation_cache_dir, "devices": jax.local_device_count()}}))
"""
    out = _run(code)
    assert out["flags"] == "--xla_force_host_platform_device_count=3" and out["devices"] == 3
    assert out["x64"] is True and out["path"] == out["cache"] == str(tmp_path / "cache")
    off = _run("import json; from growth_engine import runtime; print(json.dumps(runtime.configure(cache_dir='off')))")
    assert off is None


def test_chains_compiled_in_the_background_run_in_float64_without_configure():
    """JAX's x64 switch is per thread: the chain program compiled in its own thread must still be float64."""
    pytest.importorskip("numpyro")
    code = """
import json
import numpy as np
import jax
from growth_engine import chains, runtime, simulate, student_stats, design_groups
d = simulate(30, 6, p_missing=0.2, seed=1)
data = chains.pad_groups(design_groups(student_stats(d["student"], d["week"], d["score"])))
with runtime.float64():
    program = chains.ChainProgram(data, 1, 20, 30, "sequential").start()
    mode = np.array([0.4, 0.02, -2.8, -4.8, 0.0, -3.2])
    outs, _, _ = program.run(1, np.zeros((1, 6)), mode, 0.01 * np.eye(6))
print(json.dumps({"dtype": str(outs[0].dtype), "x64_after": bool(jax.config.jax_enable_x64)}))
"""
    out = _run(code)
    assert out == {"dtype": "float64", "x64_after": False}
