"""The engine as a long-lived process: HTTP over a Unix socket, for the R service (r-brms-plumber) only.

    python -m growth_engine serve --socket /path/engine.sock

The service starts one at start-up and sends it small JSON commands naming files; the data themselves never
pass through the service's R process as values. Started once, the process pays the interpreter, NumPy/JAX
import and XLA compilation once instead of per request, and keeps the last fits' states in memory, so
predict_prob reads nothing from disk.

    GET  /health   -> {"status": "ok", "pid", "fits_in_memory"}
    POST /fit      {"run_id", "input": {"path", "format": "arrow"|"json"}, "settings": {"iter", "chains",
                    "seed", "family", "observation_model"}, "out_dir", "response_format": "arrow"|"json"}
                   -> writes out_dir/state.npz and out_dir/response.{arrow,json}; answers {"response_path",
                      "n_students", "n_rows", "week_center", "fitted_at", "engine_seconds"}
    POST /predict  {"run_id", "fit_dir", "input": {"path", "format"}, "predictive", "out_path",
                    "response_format"} -> writes out_path; answers {"n_targets", "engine_seconds"}
    POST /observation  {"input": {"path", "format"}, "observation_model"} -> the observation model a fit of
                    these rows uses (kappa estimated exactly as /fit estimates it), for the brms engine;
                    answers {"observation": Observation.describe(), "observation_json": the same as the JSON
                    text a fit response carries, "n_rows", "engine_seconds"}

Errors answer {"error": message} with 400 (bad input), 404 (no fit state) or 500. One fit at a time (a fit
uses every core); predictions and observation models run beside it.
"""

from __future__ import annotations

import collections
import ctypes
import datetime as dt
import http.server
import json
import os
import socketserver
import sys
import threading
import time
from typing import Any

import numpy as np

from . import columnar
from .cli import RESPONSE_FILE, STATE_FILE, _atomic_write, _read_json, dumps, to_jsonable
from .request import GrowthInputError, validate_data, validate_observation_model, validate_settings
from .state import FitState, load_state

ARROW_RESPONSE_FILE = "response.arrow"
#: the latest fit's state, for predict_prob right after the fit. Only one, and forgotten when the next fit
#: starts: at a million students a state is ~0.3 GB that a fit's own peak need not carry, and reading it
#: back from disk costs 0.3 s
FITS_IN_MEMORY = 1


class EngineError(Exception):
    """An answer other than 200: ``status`` and a message."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


class FitCache:
    """The last few fits' states by run_id (thread-safe). Keyed by run_id, not by folder: the service
    renames a fit's staging folder into place after the fit, so predict_prob names another path."""

    def __init__(self, size: int = FITS_IN_MEMORY):
        self._states: collections.OrderedDict[str, FitState] = collections.OrderedDict()
        self._size = size
        self._lock = threading.Lock()

    def put(self, run_id: str, state: FitState) -> None:
        with self._lock:
            self._states[run_id] = state
            while len(self._states) > self._size:
                self._states.popitem(last=False)

    def get(self, run_id: str, fit_dir: str) -> FitState:
        """The state of ``run_id``: from memory, else from ``fit_dir`` (e.g. after a restart)."""
        with self._lock:
            state = self._states.get(run_id)
        if state is not None:
            return state
        path = os.path.join(fit_dir, STATE_FILE)
        if not os.path.isfile(path):
            raise EngineError(404, f"no fit state found in {fit_dir}")
        state = load_state(path)
        self.put(run_id, state)
        return state

    def clear(self) -> None:
        with self._lock:
            self._states.clear()

    def __len__(self) -> int:
        return len(self._states)


def utc_now() -> str:
    """As the R service writes times (store.R's utc_now)."""
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _fit_input(spec: dict[str, Any]) -> columnar.FitColumns:
    path, fmt = spec["path"], spec.get("format", "json")
    if fmt == "arrow":
        return columnar.read_fit_columns(path)
    body = _read_json(path, "request")
    student, week, score, n = validate_data(body.get("data") if isinstance(body, dict) else None)
    return columnar.FitColumns(student, None, week, score, n)


def run_fit(command: dict[str, Any], cache: FitCache) -> dict[str, Any]:
    """Fit what ``command`` names and write its state and response (see the module doc)."""
    from . import runtime
    from .sampler import fit_prepared, prepare

    t0 = time.perf_counter()
    settings = command.get("settings", {})
    iter_, chains, seed, _ = validate_settings(
        settings.get("iter", 1000), settings.get("chains", 2), settings.get("seed"), settings.get("family")
    )
    cache.clear()  # see FITS_IN_MEMORY
    data = _fit_input(command["input"])
    observation_model = validate_observation_model(settings.get("observation_model"), data.n)
    with runtime.float64():
        prepared = prepare(data.student, data.week, data.score, n=data.n, observation_model=observation_model,
                           student_labels=data.labels)  # fmt: skip
    del data  # the rows (and the memory-mapped body): the chains need only the students' statistics
    result = fit_prepared(prepared, iter_, chains, seed)
    out_dir = command["out_dir"]
    os.makedirs(out_dir, exist_ok=True)
    _atomic_write(os.path.join(out_dir, STATE_FILE), result.state_writer())
    fitted_at = utc_now()
    head = {"run_id": command["run_id"], "engine": "collapsed", "fitted_at": fitted_at}
    result.summary["diagnostics"]["total_seconds"] = time.perf_counter() - t0
    if command.get("response_format") == "arrow":
        path = os.path.join(out_dir, ARROW_RESPONSE_FILE)
        students = {k: (v if k != "student" else _id_column(v)) for k, v in result.students.items()}
        columnar.write_stream(path, students, to_jsonable({**head, **result.summary}))
    else:
        path = os.path.join(out_dir, RESPONSE_FILE)
        text = dumps({**head, **result.response})
        _atomic_write(path, lambda p: open(p, "w", encoding="utf-8").write(text))
    cache.put(command["run_id"], result.state)
    model = result.summary["model"]
    return {"response_path": path, "n_students": model["n_students"], "n_rows": model["n_rows"],
            "week_center": model["week_center"], "fitted_at": fitted_at,
            "engine_seconds": time.perf_counter() - t0}  # fmt: skip


def run_observation(command: dict[str, Any]) -> dict[str, Any]:
    """The observation model a collapsed fit of the rows ``command`` names would use, by the code its
    :func:`growth_engine.sampler.prepare` uses (the brms engine fits the attempts model with it, so both
    engines fit one model to the same data)."""
    from .sampler import observed_rows

    t0 = time.perf_counter()
    data = _fit_input(command["input"])
    student, _, _, obs = observed_rows(
        data.student, data.week, data.score, n=data.n, observation_model=command.get("observation_model")
    )
    record = obs.describe()
    scale = obs.row_scale
    return {"observation": to_jsonable(record), "observation_json": dumps(record),
            "row_scale": None if scale is None else scale.tolist(), "n_rows": int(student.shape[0]),
            "engine_seconds": time.perf_counter() - t0}  # fmt: skip


def _id_column(ids: Any) -> Any:
    """Student ids as an Arrow column: as they came (Arrow), integers, or else text."""
    import pyarrow as pa

    if isinstance(ids, (pa.Array, pa.ChunkedArray)):
        return ids
    ids = np.asarray(ids)
    if ids.dtype.kind in "iu":
        return pa.array(ids, type=pa.int64())
    return pa.array([str(v) for v in ids.tolist()], type=pa.large_string())


def _json_targets(path: str) -> columnar.TargetColumns:
    from .request import validate_targets

    body = _read_json(path, "request")
    students, weeks, goals = validate_targets(body.get("targets") if isinstance(body, dict) else None)
    return columnar.TargetColumns(students, np.asarray(weeks), np.asarray(goals))  # type: ignore[arg-type]


def run_predict(command: dict[str, Any], cache: FitCache) -> dict[str, Any]:
    """predict_prob for what ``command`` names, written to its ``out_path``."""
    from .predict import METHOD, predict_columns

    t0 = time.perf_counter()
    predictive = command.get("predictive", False)
    if not isinstance(predictive, bool):
        raise GrowthInputError("predictive must be true or false")
    state = cache.get(command["run_id"], command["fit_dir"])
    spec, out_path = command["input"], command["out_path"]
    arrow_in = spec.get("format") == "arrow"
    t = columnar.read_target_columns(spec["path"]) if arrow_in else _json_targets(spec["path"])
    p, seen = predict_columns(state, t.student, t.target_week, t.goal, predictive=predictive)
    head = {"run_id": command["run_id"], "method": METHOD, "predictive": predictive}
    columns = {"student": t.student, "target_week": t.target_week, "goal": t.goal, "p": p, "seen": seen}
    if command.get("response_format") == "arrow":
        columnar.write_stream(out_path, {**columns, "student": _id_column(t.student)}, head)
    else:
        values = [_values(v) for v in columns.values()]
        records = [dict(zip(columns, row, strict=True)) for row in zip(*values, strict=True)]
        text = dumps({**head, "probabilities": records})
        _atomic_write(out_path, lambda path: open(path, "w", encoding="utf-8").write(text))
    return {"n_targets": int(p.shape[0]), "engine_seconds": time.perf_counter() - t0}


def _values(column: Any) -> list[Any]:
    return column.to_pylist() if hasattr(column, "to_pylist") else np.asarray(column).tolist()


class EngineHandler(http.server.BaseHTTPRequestHandler):
    server: EngineServer
    protocol_version = "HTTP/1.1"

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        """Not every request: the log (which the service reads when the engine fails) keeps errors only."""

    def log_message(self, format: str, *args: Any) -> None:
        sys.stderr.write(f"growth_engine serve: {format % args}\n")

    def _answer(self, status: int, payload: dict[str, Any]) -> None:
        body = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        if self.path != "/health":
            return self._answer(404, {"error": f"no route GET {self.path}"})
        self._answer(200, {"status": "ok", "pid": os.getpid(), "fits_in_memory": len(self.server.cache)})

    def do_POST(self) -> None:
        routes = {"/fit": self.server.fit, "/predict": self.server.predict, "/observation": self.server.observation}
        handler = routes.get(self.path)
        if handler is None:
            return self._answer(404, {"error": f"no route POST {self.path}"})
        try:
            command = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)))
            self._answer(200, handler(command))
        except GrowthInputError as exc:
            self._answer(400, {"error": str(exc)})
        except EngineError as exc:
            self._answer(exc.status, {"error": str(exc)})
        except Exception as exc:  # the service answers 500 with this message
            self._answer(500, {"error": f"{type(exc).__name__}: {exc}"})


class EngineServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True

    def __init__(self, socket_path: str):
        self.cache = FitCache()
        self._fit_lock = threading.Lock()
        if os.path.exists(socket_path):
            os.unlink(socket_path)
        super().__init__(socket_path, EngineHandler)
        os.chmod(socket_path, 0o600)

    def get_request(self) -> tuple[Any, Any]:
        request, _ = super().get_request()
        return request, ("unix", 0)  # BaseHTTPRequestHandler expects a (host, port) client address

    def fit(self, command: dict[str, Any]) -> dict[str, Any]:
        with self._fit_lock:
            try:
                return run_fit(command, self.cache)
            finally:
                release_memory()

    def predict(self, command: dict[str, Any]) -> dict[str, Any]:
        try:
            return run_predict(command, self.cache)
        finally:
            release_memory()

    def observation(self, command: dict[str, Any]) -> dict[str, Any]:
        """Not behind the fit lock: a brms fit's kappa (seconds at most) need not wait for a collapsed fit."""
        try:
            return run_observation(command)
        finally:
            release_memory()


def release_memory() -> None:
    """Give freed heap back to the system after a request (glibc keeps it otherwise: a long-lived engine
    would hold its largest fit's peak for good)."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: nothing to do
        pass


#: glibc's mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD, _M_ARENA_MAX = -1, -3, -8
#: arrays from this size on get pages of their own, given back when freed
MMAP_THRESHOLD_BYTES = 4 << 20
#: free space kept at the heap's top during a request (fixing the mmap threshold also fixes this one at
#: 128 kB, and blocks of a few hundred kB would then be given back and faulted in again at every turn:
#: predict_prob took twice as long); release_memory gives it back after the request
TRIM_THRESHOLD_BYTES = 256 << 20


def limit_heap_growth() -> None:
    """Keep a long-lived engine's heap from growing fit after fit. By default glibc raises its mmap threshold
    each time a large block is freed (up to 32 MB), after which large arrays come from the heap, whose freed
    space is fragmented and cannot all be given back; and every thread may get an arena of its own. A fixed
    threshold and two arenas keep the heap to the small objects (at a million students the engine's peak
    grew by ~0.3 GB a fit without them)."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)
        libc.mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES)
        libc.mallopt(_M_ARENA_MAX, 2)
    except (OSError, AttributeError):  # not glibc: nothing to do
        pass


def serve(socket_path: str) -> int:
    """Serve until killed. JAX is set up and imported before the socket exists, so a caller that sees the
    socket answer finds the engine ready."""
    from . import runtime

    limit_heap_growth()
    runtime.configure()
    from . import sampler  # noqa: F401 - import JAX and NumPyro now, not in the first fit

    with EngineServer(socket_path) as server:
        sys.stderr.write(f"growth_engine serve: ready on {socket_path} (pid {os.getpid()})\n")
        server.serve_forever()
    return 0
