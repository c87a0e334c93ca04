"""JAX settings of the engine, made by the entry point (the CLI, the benchmark), never on import.

:func:`configure` sets, for the whole process, what the sampler benefits from: one XLA host device per
chain-able CPU core (``XLA_FLAGS``; effective only before JAX initialises its backend), 64-bit floats, and a
persistent compilation cache. Fits that run without it still run in float64: :func:`float64` enables
64-bit types for the calling thread only, and raises a clear error if it cannot.

``GROWTH_ENGINE_JAX_CACHE``: cache directory (default ``~/.cache/growth_engine/jax-<version>``); ``off``
disables it. A later fit of a similar size then loads the compiled sampler (~3 s saved).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

_DEVICE_FLAG = "--xla_force_host_platform_device_count"
_OFF = ("", "0", "off", "none", "false")
_cache_dir: str | None = None


def default_cache_dir() -> str | None:
    """``GROWTH_ENGINE_JAX_CACHE``, or ``$XDG_CACHE_HOME`` (``~/.cache``)/growth_engine/jax-<version>;
    None when disabled."""
    path = os.environ.get("GROWTH_ENGINE_JAX_CACHE")
    if path is None:
        import jax

        base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        path = os.path.join(base, "growth_engine", "jax-" + jax.__version__)
    return None if path.strip().lower() in _OFF else path


def configure(host_devices: int | None = None, cache_dir: str | None = None) -> str | None:
    """Set up JAX for fitting: XLA host devices, x64, compilation cache. Returns the cache directory used.

    ``host_devices``: XLA CPU devices (default: one per core; ``XLA_FLAGS`` naming a count already wins).
    ``cache_dir``: compilation cache directory (default :func:`default_cache_dir`; ``"off"`` disables it).
    Call it before anything initialises JAX's backend, or the device count has no effect.
    """
    global _cache_dir
    n = host_devices or max(os.cpu_count() or 1, 1)
    flags = os.environ.get("XLA_FLAGS", "")
    if _DEVICE_FLAG not in flags:
        os.environ["XLA_FLAGS"] = f"{flags} {_DEVICE_FLAG}={int(n)}".strip()
    import jax

    jax.config.update("jax_enable_x64", True)
    path = default_cache_dir() if cache_dir is None else cache_dir
    _cache_dir = None if path is None or path.strip().lower() in _OFF else _enable_cache(path)
    return _cache_dir


def _enable_cache(path: str) -> str | None:
    import jax

    try:
        os.makedirs(path, exist_ok=True)
        jax.config.update("jax_compilation_cache_dir", path)
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.2)
    except Exception:  # pragma: no cover - an unwritable cache must never break a fit
        return None
    return path


def cache_dir() -> str | None:
    """The compilation cache set by :func:`configure` (None if it was not called or the cache is off)."""
    return _cache_dir


@contextlib.contextmanager
def float64() -> Iterator[None]:
    """Run the block with JAX's 64-bit types: as configured, or enabled for this thread only."""
    if x64_enabled():
        yield
        return
    with _x64_context():
        if not x64_enabled():  # pragma: no cover - a JAX whose context manager did not switch
            raise RuntimeError("growth_engine needs 64-bit floats: call growth_engine.runtime.configure() first")
        yield


def x64_enabled() -> bool:
    """Whether JAX's 64-bit types are on (in this thread)."""
    import jax

    return bool(jax.config.read("jax_enable_x64"))


def _x64_context() -> contextlib.AbstractContextManager:
    import jax
    import jax.experimental

    # older JAX: jax.experimental.enable_x64; newer: jax.enable_x64 (a config state, callable)
    factory = getattr(jax.experimental, "enable_x64", None) or getattr(jax, "enable_x64", None)
    if factory is None:  # pragma: no cover
        raise RuntimeError("growth_engine needs 64-bit floats: call growth_engine.runtime.configure() first")
    return factory(True)
