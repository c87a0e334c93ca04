"""The r-brms-plumber fitting service, as a Dagster resource wrapping an httpx client.

Fits take minutes, so the read timeout is long; connection errors and 5xx answers are retried with
exponential backoff (never 4xx: the request itself is wrong and would fail again), and every retry is
logged as a warning in the run. A 401 or 403 is a configuration error (BRMS_PLUMBER_TOKEN), raised as
:class:`PlumberAuthError`, which is not a :class:`PlumberError`: callers that fall back when the service is
down must not fall back on a wrong token. Every answer is validated against the contract
(docs/growth-api.md) before anyone uses it; every message is redacted of secrets.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Sequence
from typing import Any

import dagster as dg
import httpx
import pandas as pd
import tenacity
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from seed_growth.resources.redaction import redact

TOKEN_VARIABLE = "BRMS_PLUMBER_TOKEN"
# the start-up check's request: a route behind the token, with a body the service refuses (400/404)
TOKEN_CHECK_ENDPOINT = "/growth/predict_prob"
TOKEN_CHECK_BODY: dict[str, Any] = {"run_id": "seed-growth-token-check", "targets": []}


class PlumberError(RuntimeError):
    """The service answered with an error, or with a body that breaks the contract."""

    def __init__(self, endpoint: str, message: str, status: int | None = None):
        self.endpoint, self.status, self.message = endpoint, status, message
        where = f"{endpoint} answered {status}" if status is not None else endpoint
        super().__init__(redact(f"r-brms-plumber {where}: {message}"))


class PlumberUnavailable(PlumberError):
    """The service could not be reached (connection refused, timed out, or 5xx after retries)."""


class PlumberAuthError(RuntimeError):
    """The service refused the bearer token (401/403): BRMS_PLUMBER_TOKEN is unset or wrong. A
    configuration error, not an outage, so deliberately not a :class:`PlumberError`."""

    def __init__(self, endpoint: str, status: int, message: str, *, token_sent: bool):
        self.endpoint, self.status = endpoint, status
        what = "is wrong" if token_sent else "is not set, but the service requires one"
        super().__init__(redact(f"{TOKEN_VARIABLE} {what}: r-brms-plumber {endpoint} answered {status} ({message})"))


class _Lenient(BaseModel):
    model_config = ConfigDict(extra="allow")


class Estimate(_Lenient):
    estimate: float
    error: float
    q2_5: float = Field(alias="q2.5")
    q97_5: float = Field(alias="q97.5")


class PosteriorSummary(_Lenient):
    Intercept: Estimate
    week: Estimate
    sd_Intercept: Estimate
    sd_week: Estimate
    cor_Intercept_week: Estimate
    sigma: Estimate | None = None


class StudentSummary(_Lenient):
    student: str
    intercept_mean: float
    intercept_sd: float = Field(ge=0)
    slope_mean: float
    slope_sd: float = Field(ge=0)
    cor: float = Field(ge=-1, le=1)
    n_weeks: int = Field(ge=0)


class Diagnostics(_Lenient):
    max_rhat: float
    min_ess_bulk: float
    min_ess_tail: float
    divergent_transitions: int = Field(ge=0)
    max_treedepth_hits: int = Field(ge=0)
    sampling_seconds: float = Field(ge=0)
    compile_seconds: float = 0.0
    total_seconds: float | None = None
    parameters: dict[str, dict[str, float | None]] = Field(default_factory=dict)


class FitModel(_Lenient):
    formula: str
    family: str
    link: str
    iter: int
    chains: int
    week_center: float
    n_students: int
    n_rows: int


class FitResponse(_Lenient):
    run_id: str = Field(min_length=1)
    engine: str
    fitted_at: str | None = None
    model: FitModel
    posterior_summary: PosteriorSummary
    students: list[StudentSummary]
    diagnostics: Diagnostics

    def students_frame(self) -> pd.DataFrame:
        return pd.DataFrame([s.model_dump(include=set(StudentSummary.model_fields)) for s in self.students])


class Probability(_Lenient):
    student: str
    target_week: float
    goal: float
    p: float = Field(ge=0, le=1)
    seen: bool = True

    @field_validator("p")
    @classmethod
    def _finite(cls, value: float) -> float:
        if not math.isfinite(value):
            raise ValueError("p is not finite")
        return value


class PredictResponse(_Lenient):
    run_id: str
    method: str = "posterior_draws"
    predictive: bool = False
    probabilities: list[Probability]


def _retryable(exc: BaseException) -> bool:
    if isinstance(exc, httpx.TransportError):
        return True
    return isinstance(exc, httpx.HTTPStatusError) and exc.response.status_code >= 500


def _is_auth_status(status: int) -> bool:
    return status in (401, 403)


def retry_warning(endpoint: str, exc: BaseException | None, attempt: int, max_attempts: int, wait_s: float) -> str:
    """The run's warning before a retry: what went wrong (status or connection error), which attempt."""
    if isinstance(exc, httpx.HTTPStatusError):
        what = f"answered {exc.response.status_code} ({_error_message(exc.response)})"
    else:
        what = f"could not be reached ({type(exc).__name__}: {exc})"
    return redact(
        f"r-brms-plumber {endpoint} {what} on attempt {attempt} of {max_attempts}; retrying in {wait_s:.1f} s"
    )


def _run_logger() -> logging.Logger:
    """The run's logger inside a Dagster run (its messages are events of the run), a plain one elsewhere."""
    return dg.get_dagster_logger("seed_growth.plumber")


class PlumberResource(dg.ConfigurableResource):
    """Client of r-brms-plumber (``BRMS_PLUMBER_URL``, optional bearer ``BRMS_PLUMBER_TOKEN``)."""

    base_url: str = Field(description="base URL of r-brms-plumber, e.g. http://127.0.0.1:8000")
    token: str | None = Field(
        default=None,
        description="bearer token the service expects; unset: BRMS_PLUMBER_TOKEN from the run's environment, if any",
    )
    connect_timeout_s: float = Field(default=10.0)
    read_timeout_s: float = Field(default=3600.0, description="a fit of a large cohort takes minutes")
    max_attempts: int = Field(default=4, ge=1, description="tries per call on connection errors and 5xx")
    backoff_initial_s: float = Field(default=2.0, ge=0)

    def _token(self) -> str | None:
        # read at run time (not an EnvVar field) because the token is optional and EnvVar must be set
        return self.token or os.environ.get(TOKEN_VARIABLE) or None

    def _client(self) -> httpx.Client:
        """A fresh client per call; tests of failure handling override this with a fake transport."""
        token = self._token()
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        timeout = httpx.Timeout(self.read_timeout_s, connect=self.connect_timeout_s)
        return httpx.Client(base_url=self.base_url, headers=headers, timeout=timeout)

    def _call(self, method: str, endpoint: str, body: dict[str, Any] | None = None) -> Any:
        def warn(state: tenacity.RetryCallState) -> None:
            exc = state.outcome.exception() if state.outcome else None
            wait_s = state.next_action.sleep if state.next_action else 0.0
            _run_logger().warning(retry_warning(endpoint, exc, state.attempt_number, self.max_attempts, wait_s))

        retrying = tenacity.Retrying(
            retry=tenacity.retry_if_exception(_retryable),
            stop=tenacity.stop_after_attempt(self.max_attempts),
            wait=tenacity.wait_exponential(multiplier=self.backoff_initial_s, max=60),
            before_sleep=warn,
            reraise=True,
        )
        try:
            with self._client() as client:
                for attempt in retrying:
                    with attempt:
                        response = client.request(method, endpoint, json=body)
                        response.raise_for_status()
        except httpx.HTTPStatusError as exc:
            status = exc.response.status_code
            if _is_auth_status(status):
                message = _error_message(exc.response)
                raise PlumberAuthError(endpoint, status, message, token_sent=self._token() is not None) from None
            error = PlumberUnavailable if status >= 500 else PlumberError
            raise error(endpoint, _error_message(exc.response), status) from None
        except httpx.TransportError as exc:
            raise PlumberUnavailable(
                endpoint, f"cannot reach {self.base_url} after {self.max_attempts} tries: {exc!r}"
            ) from None
        try:
            return response.json()
        except ValueError:
            raise PlumberError(endpoint, f"answered a body that is not JSON: {response.text[:200]!r}") from None

    def health(self) -> dict[str, Any]:
        return self._call("GET", "/health")

    def check_token(self) -> None:
        """Raise :class:`PlumberAuthError` if the service refuses our bearer token (``/health`` does not
        need one, so this asks a route that does, with a body it refuses without side effects: any other
        4xx means the token was accepted); :class:`PlumberUnavailable` if it cannot be asked."""
        try:
            self._call("POST", TOKEN_CHECK_ENDPOINT, TOKEN_CHECK_BODY)
        except PlumberUnavailable:
            raise
        except PlumberError:
            return  # 400/404: past the token filter, the body was refused as intended

    def fit(
        self,
        scores: pd.DataFrame,
        *,
        iter: int,
        chains: int,
        family: str,
        engine: str,
        seed: int | None = None,
        observation_model: str | None = None,
    ) -> FitResponse:
        """Fit the growth model to ``scores`` (columns student, week, score, n_attempts). The data go
        columnar: at 100k students a row per object triples the body. ``observation_model``: the gaussian
        model's ('attempts' or 'plain'; None: the service's default for the data)."""
        body = {
            "data": {
                "student": scores["student"].astype(str).tolist(),
                "week": scores["week"].astype(int).tolist(),
                "score": scores["score"].astype(float).tolist(),
                "n": scores["n_attempts"].astype(int).tolist(),
            },
            "iter": iter,
            "chains": chains,
            "family": family,
            "engine": engine,
            "seed": seed,
            **({"observation_model": observation_model} if observation_model else {}),
        }
        return _validated(FitResponse, self._call("POST", "/growth/fit", body), "/growth/fit")

    def predict_prob(self, run_id: str, targets: pd.DataFrame, *, predictive: bool = False) -> PredictResponse:
        """P(expected score at target_week >= goal) per row of ``targets`` (student, target_week, goal);
        with ``predictive``, P(observed score that week >= goal), given the week's attempts (column n)."""
        columns = ["student", "target_week", "goal"] + (["n"] if "n" in targets else [])
        rows = targets[columns].to_dict(orient="records")
        body = {
            "run_id": run_id,
            "predictive": predictive,
            "targets": [
                {
                    "student": str(r["student"]),
                    "target_week": int(r["target_week"]),
                    "goal": float(r["goal"]),
                    **({"n": int(r["n"])} if "n" in r else {}),
                }
                for r in rows
            ],
        }
        endpoint = "/growth/predict_prob"
        answer = _validated(PredictResponse, self._call("POST", endpoint, body), endpoint)
        _check_complete(answer.probabilities, targets["student"], endpoint)
        if bool(answer.predictive) != predictive:
            raise PlumberError(
                endpoint, f"asked for predictive={predictive} but the answer says predictive={answer.predictive}"
            )
        return answer


def _validated(model: type[BaseModel], payload: Any, endpoint: str) -> Any:
    try:
        return model.model_validate(payload)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise PlumberError(
            endpoint,
            f"answer breaks the contract at {where or 'top level'}: {first['msg']} ({exc.error_count()} problems)",
        ) from None


def _check_complete(probabilities: Sequence[Probability], students: pd.Series, endpoint: str) -> None:
    if len(probabilities) != len(students) or {p.student for p in probabilities} != set(map(str, students)):
        raise PlumberError(endpoint, f"answered {len(probabilities)} probabilities for {len(students)} students")


def _error_message(response: httpx.Response) -> str:
    try:
        payload = response.json()
    except ValueError:
        return response.text[:300] or response.reason_phrase
    if isinstance(payload, dict) and "error" in payload:
        error = payload["error"]
        return error if isinstance(error, str) else str(error)
    return str(payload)[:300]
