"""Failure handling of the plumber client, with a fake transport (the real service is tested elsewhere)."""

import json

import httpx
import pandas as pd
import pytest

from seed_growth.resources.plumber import PlumberError, PlumberResource, PlumberUnavailable

SCORES = pd.DataFrame(
    {"student": ["a", "a", "b"], "week": [0, 1, 0], "score": [0.5, 0.6, 0.4], "n_attempts": [10, 8, 5]}
)
ESTIMATE = {"estimate": 0.01, "error": 0.002, "q2.5": 0.006, "q97.5": 0.014}
FIT = {
    "run_id": "r1",
    "engine": "collapsed",
    "fitted_at": "2026-11-23T04:31:00Z",
    "model": {
        "formula": "score ~ week + (week | student)",
        "family": "gaussian",
        "link": "identity",
        "iter": 1000,
        "chains": 2,
        "week_center": 0.33,
        "n_students": 2,
        "n_rows": 3,
    },
    "posterior_summary": {
        k: ESTIMATE for k in ("Intercept", "week", "sd_Intercept", "sd_week", "cor_Intercept_week", "sigma")
    },
    "students": [
        {
            "student": s,
            "intercept_mean": 0.5,
            "intercept_sd": 0.05,
            "slope_mean": 0.01,
            "slope_sd": 0.005,
            "cor": -0.2,
            "n_weeks": 2,
        }
        for s in ("a", "b")
    ],
    "diagnostics": {
        "max_rhat": 1.001,
        "min_ess_bulk": 900,
        "min_ess_tail": 800,
        "divergent_transitions": 0,
        "max_treedepth_hits": 0,
        "sampling_seconds": 3.2,
    },
}


class FakePlumber(PlumberResource):
    """The real client over a scripted transport: each request gets the next answer."""

    def set_answers(self, answers):
        self._answers, self._requests = list(answers), []

    def _client(self) -> httpx.Client:
        def handle(request: httpx.Request) -> httpx.Response:
            self._requests.append(request)
            answer = self._answers.pop(0)
            if isinstance(answer, Exception):
                raise answer
            return answer

        return httpx.Client(base_url=self.base_url, transport=httpx.MockTransport(handle))


def plumber(*answers, **config) -> FakePlumber:
    client = FakePlumber(base_url="http://plumber.test", backoff_initial_s=0, **config)
    client.set_answers(answers)
    return client


def fit(client):
    return client.fit(SCORES, iter=1000, chains=2, family="gaussian", engine="collapsed", seed=1)


def test_valid_fit_is_parsed_and_data_go_columnar():
    client = plumber(httpx.Response(200, json=FIT), transport="json")
    result = fit(client)
    assert result.run_id == "r1" and result.posterior_summary.week.q97_5 == 0.014
    assert list(result.students_frame()["student"]) == ["a", "b"]
    body = json.loads(client._requests[0].content)
    assert body["data"] == {"student": ["a", "a", "b"], "week": [0, 1, 0], "score": [0.5, 0.6, 0.4], "n": [10, 8, 5]}
    assert (body["iter"], body["chains"], body["family"], body["engine"], body["seed"]) == (
        1000,
        2,
        "gaussian",
        "collapsed",
        1,
    )


def test_connection_errors_and_5xx_are_retried_then_succeed():
    client = plumber(
        httpx.ConnectError("refused"), httpx.Response(503, json={"error": "warming up"}), httpx.Response(200, json=FIT)
    )
    assert fit(client).run_id == "r1"
    assert len(client._requests) == 3


def test_gives_up_after_max_attempts_naming_endpoint_and_status():
    client = plumber(*[httpx.Response(500, json={"error": "Stan: chain 1 failed"})] * 3, max_attempts=3)
    with pytest.raises(PlumberUnavailable, match=r"/growth/fit answered 500: Stan: chain 1 failed"):
        fit(client)
    assert len(client._requests) == 3


def test_unreachable_service():
    client = plumber(*[httpx.ConnectError("Connection refused")] * 2, max_attempts=2)
    with pytest.raises(PlumberUnavailable, match=r"cannot reach http://plumber\.test after 2 tries"):
        fit(client)


def test_4xx_is_never_retried_and_carries_the_message():
    client = plumber(httpx.Response(400, json={"error": "scores must be in [0, 1]: row 3 has 1.2"}))
    with pytest.raises(
        PlumberError, match=r"/growth/fit answered 400: scores must be in \[0, 1\]: row 3 has 1.2"
    ) as error:
        fit(client)
    assert not isinstance(error.value, PlumberUnavailable) and error.value.status == 400
    assert len(client._requests) == 1


def test_timeout_is_unavailable():
    client = plumber(httpx.ReadTimeout("timed out"), max_attempts=1)
    with pytest.raises(PlumberUnavailable):
        fit(client)


@pytest.mark.parametrize(
    "body, where",
    [
        ({**FIT, "run_id": ""}, "run_id"),
        ({k: v for k, v in FIT.items() if k != "diagnostics"}, "diagnostics"),
        (
            {**FIT, "posterior_summary": {**FIT["posterior_summary"], "week": {"estimate": "fast"}}},
            "posterior_summary.week",
        ),
        ({**FIT, "students": [{**FIT["students"][0], "cor": 3}]}, "students.cor: 1 of 1 rows"),
    ],
)
def test_malformed_fit_answers_are_refused(body, where):
    with pytest.raises(PlumberError, match=f"breaks the contract at {where}"):
        fit(plumber(httpx.Response(200, json=body)))


def test_non_json_body():
    with pytest.raises(PlumberError, match="not JSON"):
        fit(plumber(httpx.Response(200, text="<html>proxy error</html>")))


def test_predict_prob_must_answer_every_student():
    targets = pd.DataFrame({"student": ["a", "b"], "target_week": [11, 11], "goal": [0.8, 0.8]})
    answer = {"run_id": "r1", "probabilities": [{"student": "a", "target_week": 11, "goal": 0.8, "p": 0.4}]}
    with pytest.raises(PlumberError, match="1 probabilities for 2 students"):
        plumber(httpx.Response(200, json=answer)).predict_prob("r1", targets)
    answer["probabilities"].append({"student": "b", "target_week": 11, "goal": 0.8, "p": 1.4})
    with pytest.raises(PlumberError, match=r"probabilities\.p: 1 of 2 rows"):
        plumber(httpx.Response(200, json=answer)).predict_prob("r1", targets)
    answer["probabilities"][1]["p"] = 0.9
    answered = plumber(httpx.Response(200, json=answer)).predict_prob("r1", targets).probabilities_frame()
    assert answered["p"].tolist() == [0.4, 0.9]


def test_token_is_sent_as_bearer(growth_env):
    growth_env.setenv("BRMS_PLUMBER_TOKEN", "s3cret")
    client = PlumberResource(base_url="http://plumber.test")
    assert client._client().headers["Authorization"] == "Bearer s3cret"
    growth_env.delenv("BRMS_PLUMBER_TOKEN")
    assert "Authorization" not in client._client().headers
