"""Command line of the engine (docs/growth-api.md, engine "collapsed"): ``serve`` is the R service's
long-lived engine process (growth_engine.server); ``fit`` and ``predict`` run one request from files.

    python -m growth_engine fit --request REQ.json --out-dir DIR
        REQ.json = {"data": {"student": [...], "week": [...], "score": [...], "n": [...]?} (or rows),
                    "iter": int, "chains": int, "seed": int|null, "family": "gaussian"}
        writes DIR/response.json (the fit response minus run_id/engine/fitted_at) and DIR/state.npz

    python -m growth_engine predict --fit-dir DIR --targets TARGETS.json
    python -m growth_engine serve --socket PATH   (the service's long-lived engine: growth_engine.server)
        TARGETS.json = {"targets": [{"student", "target_week", "goal"}, ...]}
        prints {"method": "rao_blackwell", "probabilities": [{"student", "target_week", "goal", "p", "seen"}]}

Exit codes: 0 ok; 2 bad input (HTTP 400; message on stderr); 3 no usable fit in --fit-dir (HTTP 404);
1 the fit/prediction failed (HTTP 500; message on stderr). JSON numbers at full precision, NaN -> null.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
from collections.abc import Callable
from typing import Any

import numpy as np

from .request import GrowthInputError, validate_data, validate_observation_model, validate_settings

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT, EXIT_NOT_FOUND = 0, 1, 2, 3
RESPONSE_FILE = "response.json"
STATE_FILE = "state.npz"


def to_jsonable(obj: Any) -> Any:
    """numpy -> Python, non-finite floats -> None (JSON null), recursively."""
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return to_jsonable(obj.tolist())
    if isinstance(obj, (bool, np.bool_)):
        return bool(obj)
    if isinstance(obj, (int, np.integer)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        f = float(obj)
        return f if math.isfinite(f) else None
    if isinstance(obj, np.str_):
        return str(obj)
    return obj


def dumps(obj: Any) -> str:
    return json.dumps(to_jsonable(obj), allow_nan=False, separators=(",", ":"))


def _atomic_write(path: str, write: Callable[[str], Any]) -> None:
    d = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=d, prefix=".tmp-", suffix=os.path.basename(path))
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _read_json(path: str, what: str) -> Any:
    try:
        with sys.stdin if path == "-" else open(path, encoding="utf-8") as fh:
            return json.load(fh)
    except FileNotFoundError:
        raise GrowthInputError(f"{what} file not found: {path}") from None
    except json.JSONDecodeError as e:
        raise GrowthInputError(f"{what} is not valid JSON: {e}") from None


def cmd_fit(args: argparse.Namespace) -> int:
    req = _read_json(args.request, "request")
    if not isinstance(req, dict):
        raise GrowthInputError("request must be a JSON object")
    iter_, chains, seed, _ = validate_settings(
        req.get("iter", 1000), req.get("chains", 2), req.get("seed"), req.get("family", "gaussian"), req.get("engine")
    )
    student, week, score, n = validate_data(req.get("data"))
    observation_model = validate_observation_model(req.get("observation_model"), n)
    os.makedirs(args.out_dir, exist_ok=True)

    from . import runtime

    runtime.configure()  # XLA host devices, x64, compilation cache: before JAX initialises
    from . import sampler  # imports JAX: only after the input is known to be good

    result = sampler.fit_full(
        student,
        week,
        score,
        iter=iter_,
        chains=chains,
        seed=seed,
        chain_method=args.chain_method,
        n=n,
        observation_model=observation_model,
    )
    _atomic_write(os.path.join(args.out_dir, STATE_FILE), result.state_writer())
    text = dumps(result.response)
    _atomic_write(os.path.join(args.out_dir, RESPONSE_FILE), lambda p: open(p, "w", encoding="utf-8").write(text))
    if args.print:
        sys.stdout.write(text + "\n")
    return EXIT_OK


def cmd_predict(args: argparse.Namespace) -> int:
    from .predict import METHOD, predict_prob
    from .state import load_state

    path = os.path.join(args.fit_dir, STATE_FILE)
    if not os.path.isfile(path):
        sys.stderr.write(f"no fit state found in {args.fit_dir}\n")
        return EXIT_NOT_FOUND
    req = _read_json(args.targets, "targets")
    targets = req.get("targets") if isinstance(req, dict) else req
    predictive = req.get("predictive", False) if isinstance(req, dict) else False
    if predictive is None:
        predictive = False
    if not isinstance(predictive, bool):
        raise GrowthInputError("predictive must be true or false")
    state = load_state(path)
    probs = predict_prob(state, targets, predictive=predictive)
    sys.stdout.write(dumps({"method": METHOD, "predictive": predictive, "probabilities": probs}) + "\n")
    return EXIT_OK


def cmd_serve(args: argparse.Namespace) -> int:
    from .server import serve

    return serve(args.socket)


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="python -m growth_engine", description="Collapsed MCMC engine for score ~ week + (week | student)"
    )
    sub = ap.add_subparsers(dest="command", required=True)
    f = sub.add_parser("fit", help="fit a request, write response.json and state.npz")
    f.add_argument("--request", required=True, help="request JSON file ('-' = stdin)")
    f.add_argument("--out-dir", required=True)
    f.add_argument("--chain-method", choices=["parallel", "sequential", "vectorized"], default=None)
    f.add_argument("--print", action="store_true", help="also print the response on stdout")
    f.set_defaults(func=cmd_fit)
    p = sub.add_parser("predict", help="goal probabilities from a fit directory")
    p.add_argument("--fit-dir", required=True)
    p.add_argument("--targets", required=True, help="targets JSON file ('-' = stdin)")
    p.set_defaults(func=cmd_predict)
    s = sub.add_parser("serve", help="serve fits and predictions over a Unix socket (growth_engine.server)")
    s.add_argument("--socket", required=True, help="path of the Unix socket to listen on")
    s.set_defaults(func=cmd_serve)
    return ap


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except GrowthInputError as e:
        sys.stderr.write(f"{e}\n")
        return EXIT_BAD_INPUT
    except Exception as e:  # the service answers 500 with this message
        sys.stderr.write(f"{type(e).__name__}: {e}\n")
        return EXIT_FAILED
