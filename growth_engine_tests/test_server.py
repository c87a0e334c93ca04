"""The engine process the service talks to (growth_engine.server): Arrow and JSON in, Arrow and JSON out,
the same numbers as the engine in-process, errors that name the problem, and predictions from memory."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.ipc as ipc
import pytest

from growth_engine import columnar
from growth_engine.predict import predict_columns, prediction_draws
from growth_engine.simulate import simulate
from growth_engine.state import load_state

pytest.importorskip("numpyro")

SETTINGS = {"iter": 400, "chains": 2, "seed": 3}


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory):
    socket = str(tmp_path_factory.mktemp("engine") / "engine.sock")
    proc = subprocess.Popen([sys.executable, "-m", "growth_engine", "serve", "--socket", socket])
    client = httpx.Client(transport=httpx.HTTPTransport(uds=socket), base_url="http://engine", timeout=600)
    deadline = time.monotonic() + 120
    while True:
        try:
            client.get("/health")
            break
        except httpx.TransportError:
            assert proc.poll() is None and time.monotonic() < deadline, "the engine did not start"
            time.sleep(0.2)
    yield client
    proc.terminate()
    proc.wait(30)


@pytest.fixture(scope="module")
def cohort():
    d = simulate(300, 8, p_missing=0.2, seed=21)
    n = np.random.default_rng(4).integers(1, 30, d["week"].shape[0])
    return {"student": d["student"], "week": d["week"].astype(np.int64), "score": d["score"], "n": n}


def write_arrow(path: Path, columns: dict) -> str:
    table = pa.table(columns)
    with pa.OSFile(str(path), "wb") as sink, ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table, max_chunksize=1000)  # several record batches, as large bodies arrive
    return str(path)


def read_arrow(path: str) -> tuple[pa.Table, dict]:
    table = ipc.open_stream(pa.memory_map(path)).read_all()
    return table, json.loads(table.schema.metadata[columnar.METADATA_KEY])


def fit(engine: httpx.Client, tmp_path: Path, body: str, fmt: str, response_format: str, **settings) -> httpx.Response:
    command = {"run_id": "r" + tmp_path.name[-8:], "input": {"path": body, "format": fmt},
               "settings": {**SETTINGS, **settings}, "out_dir": str(tmp_path / "fit"),
               "response_format": response_format}  # fmt: skip
    return engine.post("/fit", json=command)


def test_arrow_and_json_bodies_give_the_same_fit(engine, cohort, tmp_path):
    arrow_body = write_arrow(
        tmp_path / "body.arrow", {**cohort, "student": pa.array(cohort["student"]).dictionary_encode()}
    )
    json_body = tmp_path / "body.json"
    json_body.write_text(json.dumps({"data": {k: np.asarray(v).tolist() for k, v in cohort.items()}}))
    (tmp_path / "a").mkdir()
    (tmp_path / "j").mkdir()
    by_arrow = fit(engine, tmp_path / "a", arrow_body, "arrow", "arrow")
    by_json = fit(engine, tmp_path / "j", str(json_body), "json", "json")
    assert by_arrow.status_code == 200 and by_json.status_code == 200, (by_arrow.text, by_json.text)
    table, meta = read_arrow(by_arrow.json()["response_path"])
    answer = json.loads(Path(by_json.json()["response_path"]).read_text())
    assert meta["engine"] == "collapsed" and meta["run_id"] and meta["fitted_at"]
    assert meta["posterior_summary"] == answer["posterior_summary"]
    assert meta["model"]["observation"] == answer["model"]["observation"]
    assert meta["model"]["observation"]["name"] == "attempts"
    students = table.to_pandas()
    records = {s["student"]: s for s in answer["students"]}
    assert list(students["student"]) == sorted(records)  # the order np.unique gives the ids
    for row in students.itertuples(index=False):
        assert row._asdict() == records[row.student]  # to the bit


def test_observation_is_the_model_a_fit_of_the_same_body_uses(engine, cohort, tmp_path):
    """/observation (the brms engine's kappa) on a JSON body: the record the collapsed fit of that body
    reports, to the bit, and the JSON text it writes; no n: the plain model, or a 400 when attempts is asked."""
    json_body = tmp_path / "body.json"
    data = {k: np.asarray(v).tolist() for k, v in cohort.items()}
    json_body.write_text(json.dumps({"data": data, "engine": "brms"}))  # settings beside data are not read
    answer = engine.post("/observation", json={"input": {"path": str(json_body), "format": "json"},
                                               "observation_model": "attempts"})  # fmt: skip
    assert answer.status_code == 200, answer.text
    observed = answer.json()
    (tmp_path / "j").mkdir()
    fitted = fit(engine, tmp_path / "j", str(json_body), "json", "json")
    assert fitted.status_code == 200, fitted.text
    text = Path(fitted.json()["response_path"]).read_text()
    record = json.loads(text)["model"]["observation"]
    assert observed["observation"] == record and record["name"] == "attempts" and 0 < record["kappa"] < 1
    assert observed["observation_json"] in text and observed["n_rows"] == len(data["week"])
    # each row's residual variance over sigma^2, in the body's row order (brms's offsets)
    scale = np.asarray(observed["row_scale"])
    assert scale.shape == (len(data["week"]),) and np.mean(scale) == pytest.approx(1.0)
    g = scale * record["gbar"] - record["kappa"]  # v_i / n_j: one v per student
    v = pd.Series(g * np.asarray(data["n"])).groupby(np.asarray(data["student"])).agg(["min", "max"])
    np.testing.assert_allclose(v["min"], v["max"], rtol=1e-9)
    default = engine.post("/observation", json={"input": {"path": str(json_body), "format": "json"}}).json()
    assert default["observation"] == record  # omitted: attempts, as data.n is given
    without_n = tmp_path / "no-n.json"
    without_n.write_text(json.dumps({"data": {k: v for k, v in data.items() if k != "n"}}))
    plain = engine.post("/observation", json={"input": {"path": str(without_n), "format": "json"}})
    assert plain.json()["observation"] == {"name": "plain", "formula": "sigma"} and plain.json()["row_scale"] is None
    refused = engine.post(
        "/observation", json={"input": {"path": str(without_n), "format": "json"}, "observation_model": "attempts"}
    )
    assert refused.status_code == 400 and "needs data.n" in refused.json()["error"]


def test_ids_arrive_in_any_arrow_shape(engine, cohort, tmp_path):
    """Plain text, large text, a dictionary with repeated labels, integers: one and the same fit."""
    ids = pa.array(cohort["student"])
    repeated = pa.DictionaryArray.from_arrays(  # two codes for each label: the engine must re-encode
        pa.array(np.arange(len(ids)) % 2 + 2 * np.unique(cohort["student"], return_inverse=True)[1]),
        pa.array(np.repeat(np.unique(cohort["student"]), 2)),
    )
    shapes = {"text": ids, "large": ids.cast(pa.large_string()), "repeated": repeated}
    summaries = {}
    for name, column in shapes.items():
        (tmp_path / name).mkdir()
        body = write_arrow(tmp_path / f"{name}.arrow", {**cohort, "student": column})
        answer = fit(engine, tmp_path / name, body, "arrow", "arrow")
        assert answer.status_code == 200, answer.text
        table, meta = read_arrow(answer.json()["response_path"])
        summaries[name] = (meta["posterior_summary"], table.column("slope_mean").to_pylist())
        assert table.column("student").to_pylist() == sorted(set(cohort["student"].tolist()))
    assert summaries["text"] == summaries["large"] == summaries["repeated"]
    codes = np.unique(cohort["student"], return_inverse=True)[1]
    (tmp_path / "ints").mkdir()
    answer = fit(
        engine, tmp_path / "ints", write_arrow(tmp_path / "i.arrow", {**cohort, "student": codes}), "arrow", "arrow"
    )
    table, meta = read_arrow(answer.json()["response_path"])
    assert table.column("student").type == pa.int64() and meta["posterior_summary"] == summaries["text"][0]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"week": None}, "data.week is missing"),
        ({"score": pa.array(["a"] * 3)}, "data.score must contain numbers"),
        ({"score": pa.array([0.5, None, 0.5])}, "data.score has 1 null value(s)"),
        ({"student": pa.array([1.5, 2.5, 3.5])}, "data.student must contain strings or integers"),
        ({"score": pa.array([0.5, 1.5, 0.5])}, "data.score must lie in [0, 1]"),
        ({"week": pa.array([1, 1, 1])}, "at least 2 distinct weeks"),
        ({"n": pa.array([3, 0, 3])}, "data.n must contain integers in 1..100000"),
    ],
)
def test_bad_arrow_bodies_are_400_naming_the_column(engine, tmp_path, change, message):
    columns = {"student": pa.array(["a", "b", "c"]), "week": pa.array([0, 1, 2]), "score": pa.array([0.5] * 3),
               "n": pa.array([3, 3, 3])}  # fmt: skip
    columns.update(change)
    body = write_arrow(tmp_path / "bad.arrow", {k: v for k, v in columns.items() if v is not None})
    answer = fit(engine, tmp_path, body, "arrow", "arrow")
    assert answer.status_code == 400 and message in answer.json()["error"], answer.text


def test_a_body_that_is_not_arrow_is_400(engine, tmp_path):
    (tmp_path / "junk.arrow").write_bytes(b'{"data": []}')
    answer = fit(engine, tmp_path, str(tmp_path / "junk.arrow"), "arrow", "arrow")
    assert answer.status_code == 400 and "not an Arrow IPC stream" in answer.json()["error"]


def test_predict_from_memory_equals_the_engine_in_process(engine, cohort, tmp_path):
    body = write_arrow(tmp_path / "body.arrow", cohort)
    answer = fit(engine, tmp_path, body, "arrow", "arrow")
    assert answer.status_code == 200, answer.text
    assert engine.get("/health").json()["fits_in_memory"] >= 1
    targets = {"student": pa.array([*cohort["student"][:50].tolist(), "nobody"]), "target_week": np.full(51, 12.0),
               "goal": np.linspace(0.2, 0.8, 51)}  # fmt: skip
    run_id = "r" + tmp_path.name[-8:]  # the fit's (see fit())
    command = {"run_id": run_id, "fit_dir": str(tmp_path / "fit"), "predictive": True,
               "input": {"path": write_arrow(tmp_path / "t.arrow", targets), "format": "arrow"}}  # fmt: skip
    arrow = engine.post("/predict", json={**command, "out_path": str(tmp_path / "p.arrow"), "response_format": "arrow"})
    as_json = engine.post("/predict", json={**command, "out_path": str(tmp_path / "p.json"), "response_format": "json"})
    assert arrow.status_code == 200 and as_json.status_code == 200, (arrow.text, as_json.text)
    table, meta = read_arrow(str(tmp_path / "p.arrow"))
    assert meta == {"run_id": run_id, "method": "rao_blackwell", "predictive": True}
    state = load_state(tmp_path / "fit" / "state.npz")
    p, seen = predict_columns(state, targets["student"], targets["target_week"], targets["goal"], predictive=True)
    assert table.column("p").to_numpy().tolist() == p.tolist()  # to the bit
    assert table.column("seen").to_pylist() == [True] * 50 + [False] == seen.tolist()
    records = json.loads((tmp_path / "p.json").read_text())["probabilities"]
    assert [r["p"] for r in records] == p.tolist() and records[-1]["student"] == "nobody"


def test_predict_right_after_a_fit_reads_its_state_from_memory(engine, cohort, tmp_path):
    """The service renames the fit's staging folder into place: predict_prob names the new folder, and
    finds the state by run_id in memory (here the file is gone, so only memory can answer)."""
    answer = fit(engine, tmp_path, write_arrow(tmp_path / "body.arrow", cohort), "arrow", "arrow")
    assert answer.status_code == 200, answer.text
    committed = tmp_path / "committed"
    (tmp_path / "fit").rename(committed)
    (committed / "state.npz").unlink()
    targets = {
        "student": pa.array(cohort["student"][:5].tolist()),
        "target_week": np.full(5, 12.0),
        "goal": np.full(5, 0.5),
    }
    command = {"run_id": "r" + tmp_path.name[-8:], "fit_dir": str(committed), "predictive": False,
               "input": {"path": write_arrow(tmp_path / "t.arrow", targets), "format": "arrow"},
               "out_path": str(tmp_path / "p.arrow"), "response_format": "arrow"}  # fmt: skip
    predicted = engine.post("/predict", json=command)
    assert predicted.status_code == 200, predicted.text
    assert read_arrow(str(tmp_path / "p.arrow"))[0].column("seen").to_pylist() == [True] * 5
    unknown = engine.post("/predict", json={**command, "run_id": "another"})
    assert unknown.status_code == 404 and "no fit state" in unknown.json()["error"]


def test_a_new_fit_forgets_the_state_held_in_memory(engine, cohort, tmp_path):
    """Only the latest fit's state is held, and none while a fit runs (memory at a million students):
    predict_prob of an earlier fit reads its state from disk."""
    body = write_arrow(tmp_path / "body.arrow", cohort)
    for run_id in ("first", "second"):
        command = {"run_id": run_id, "input": {"path": body, "format": "arrow"}, "settings": SETTINGS,
                   "out_dir": str(tmp_path / run_id), "response_format": "arrow"}  # fmt: skip
        assert engine.post("/fit", json=command).status_code == 200
    targets = {"student": pa.array(cohort["student"][:3].tolist()), "target_week": np.full(3, 12.0),
               "goal": np.full(3, 0.5)}  # fmt: skip
    command = {"run_id": "first", "fit_dir": str(tmp_path / "first"), "predictive": False,
               "input": {"path": write_arrow(tmp_path / "t.arrow", targets), "format": "arrow"},
               "out_path": str(tmp_path / "p.arrow"), "response_format": "arrow"}  # fmt: skip
    (tmp_path / "first" / "state.npz").rename(tmp_path / "first-state.npz")
    gone = engine.post("/predict", json=command)
    assert gone.status_code == 404, gone.text  # not in memory: the second fit replaced it
    (tmp_path / "first-state.npz").rename(tmp_path / "first" / "state.npz")
    assert engine.post("/predict", json=command).status_code == 200  # read from disk
    second = {**command, "run_id": "second", "fit_dir": str(tmp_path / "nowhere")}
    assert engine.post("/predict", json=second).status_code == 404  # reading "first" replaced "second"


def test_predict_without_a_fit_is_404(engine, tmp_path):
    command = {"run_id": "never-fitted", "fit_dir": str(tmp_path / "none"), "input": {"path": "x", "format": "arrow"},
               "out_path": str(tmp_path / "p.arrow"), "response_format": "arrow"}  # fmt: skip
    answer = engine.post("/predict", json=command)
    assert answer.status_code == 404 and "no fit state" in answer.json()["error"]


def test_huge_target_sets_average_over_a_subset_of_draws():
    """Above PREDICT_CELLS cells P uses an evenly spaced subset of at least MIN_PREDICT_DRAWS draws; here the
    subset moves P by far less than the posterior's own spread would (a wrong subset, e.g. one chain's
    warm-up end, would not)."""
    from growth_engine import predict
    from growth_engine.sampler import fit_full

    d = simulate(400, 8, p_missing=0.1, seed=8)
    state = fit_full(d["student"], d["week"], d["score"], iter=2000, chains=2, seed=1).state
    assert prediction_draws(state, 10)["beta0"].shape[0] == 2000
    many = predict.PREDICT_CELLS // predict.MIN_PREDICT_DRAWS * 2
    subset = prediction_draws(state, many)["beta0"][:, 0]
    assert subset.shape[0] == predict.MIN_PREDICT_DRAWS
    assert set(subset) <= set(state.draws["beta0"]) and len(set(subset)) == predict.MIN_PREDICT_DRAWS
    students, weeks, goals = d["student"][:400], np.full(400, 10.0), np.full(400, 0.45)
    full, _ = predict_columns(state, students, weeks, goals)
    cells, predict.PREDICT_CELLS = predict.PREDICT_CELLS, 1  # force the subset on a small set
    try:
        sub, _ = predict_columns(state, students, weeks, goals)
    finally:
        predict.PREDICT_CELLS = cells
    assert np.max(np.abs(sub - full)) < 0.02 and not np.array_equal(sub, full)


def test_columns_round_trip_through_an_ipc_stream(tmp_path):
    path = str(tmp_path / "x.arrow")
    columnar.write_stream(path, {"student": pa.array(["a", "b"]), "p": np.array([0.25, 1 / 3])}, {"run_id": "x"})
    table, meta = read_arrow(path)
    assert meta == {"run_id": "x"} and table.column("p").to_pylist() == [0.25, 1 / 3]
    assert io.BytesIO(Path(path).read_bytes()).read(4) != b"ARRO"  # a stream, not the file format
