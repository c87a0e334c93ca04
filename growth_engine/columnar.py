"""Arrow IPC in and out of the engine (docs/growth-api.md, "Arrow bodies"): the fit's rows and predict's
targets as columns, the per-student summaries and the probabilities back, each an Arrow IPC stream whose
schema metadata ``growth_response`` carries the rest of the answer as JSON.

Student ids are coded once: a ``dictionary<utf8>`` column (or a plain text one, encoded here) becomes integer
codes per row plus one label per student, so a million students x 12 weeks never exist as 11 million strings.
Codes are ranks of the sorted labels, so students come out in the order ``np.unique`` gives the labels.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc  # its kernels by name (pc.call_function): the stubs do not list them
import pyarrow.ipc as ipc

from .request import GrowthInputError

MEDIA_TYPE = "application/vnd.apache.arrow.stream"
METADATA_KEY = b"growth_response"


@dataclass(frozen=True)
class FitColumns:
    """The fit's rows: ``student`` codes into ``labels`` (or the ids themselves when they are integers and
    ``labels`` is None), ``week``, ``score`` and ``n`` (None when the body has no attempts column)."""

    student: np.ndarray
    labels: np.ndarray | None
    week: np.ndarray
    score: np.ndarray
    n: np.ndarray | None


@dataclass(frozen=True)
class TargetColumns:
    """predict_prob's targets; ``student`` as sent (an Arrow array, or a list from a JSON body)."""

    student: Any
    target_week: np.ndarray
    goal: np.ndarray


def read_stream(path: str, what: str) -> pa.Table:
    """The Arrow IPC stream in ``path`` (memory-mapped: the columns are read in place, not copied)."""
    try:
        return ipc.open_stream(pa.memory_map(path)).read_all()
    except (pa.ArrowInvalid, OSError) as exc:
        raise GrowthInputError(f"the {what} body is not an Arrow IPC stream ({exc})") from None


def _column(table: pa.Table, name: str, prefix: str, required: bool = True) -> pa.ChunkedArray | None:
    if name not in table.column_names:
        if required:
            raise GrowthInputError(f"{prefix}.{name} is missing (the Arrow table has {table.column_names})")
        return None
    column = table.column(name)
    if column.null_count:
        raise GrowthInputError(f"{prefix}.{name} has {column.null_count} null value(s)")
    return column


def _numbers(column: pa.ChunkedArray, name: str) -> np.ndarray:
    if not (pa.types.is_integer(column.type) or pa.types.is_floating(column.type)):
        raise GrowthInputError(f"{name} must contain numbers (the Arrow column is {column.type})")
    return column.to_numpy()


def _dictionary(column: pa.ChunkedArray) -> pa.DictionaryArray:
    """One dictionary array with distinct, used-or-not labels (re-encoded when the sender's had repeats)."""
    if pa.types.is_dictionary(column.type):
        column = column.unify_dictionaries() if column.num_chunks > 1 else column
        combined = column.combine_chunks()
        if pc.call_function("count_distinct", [combined.dictionary]).as_py() == len(combined.dictionary):
            return combined
        column = combined.cast(combined.type.value_type)
    return pc.call_function("dictionary_encode", [column]).combine_chunks()


def student_codes(column: pa.ChunkedArray, name: str = "data.student") -> tuple[np.ndarray, np.ndarray | None]:
    """``(codes, labels)``: per row an integer code into the sorted distinct labels; integer ids are kept as
    they are (labels None)."""
    if pa.types.is_dictionary(column.type) and pa.types.is_integer(column.type.value_type):
        column = column.cast(column.type.value_type)
    value_type = column.type.value_type if pa.types.is_dictionary(column.type) else column.type
    if pa.types.is_integer(value_type):
        return column.to_numpy().astype(np.int64), None
    if not (pa.types.is_string(value_type) or pa.types.is_large_string(value_type)):
        raise GrowthInputError(f"{name} must contain strings or integers (the Arrow column is {column.type})")
    encoded = _dictionary(column)
    order = pc.call_function("array_sort_indices", [encoded.dictionary]).to_numpy()
    rank = np.empty(order.shape[0], dtype=np.int64)
    rank[order] = np.arange(order.shape[0])
    codes = rank[encoded.indices.to_numpy(zero_copy_only=False)]
    labels = encoded.dictionary.take(pa.array(order)).to_numpy(zero_copy_only=False)
    return codes, labels


def read_fit_columns(path: str) -> FitColumns:
    """The fit's rows from an Arrow IPC stream (columns student, week, score, optional n)."""
    table = read_stream(path, "fit")
    if table.num_rows == 0:
        raise GrowthInputError("data is empty")
    student, labels = student_codes(_column(table, "student", "data"))  # type: ignore[arg-type]
    week = _numbers(_column(table, "week", "data"), "data.week")  # type: ignore[arg-type]
    score = _numbers(_column(table, "score", "data"), "data.score")  # type: ignore[arg-type]
    n_column = _column(table, "n", "data", required=False)
    n = None if n_column is None else _numbers(n_column, "data.n")
    return FitColumns(student, labels, week, score, n)


def read_target_columns(path: str) -> TargetColumns:
    """predict_prob's targets from an Arrow IPC stream (columns student, target_week, goal)."""
    table = read_stream(path, "predict_prob")
    if table.num_rows == 0:
        raise GrowthInputError("targets must be a non-empty array")
    student = _column(table, "student", "targets").combine_chunks()  # type: ignore[union-attr]
    weeks = _numbers(_column(table, "target_week", "targets"), "targets.target_week").astype(np.float64)  # type: ignore[arg-type]
    goals = _numbers(_column(table, "goal", "targets"), "targets.goal").astype(np.float64)  # type: ignore[arg-type]
    if not (np.all(np.isfinite(weeks)) and np.all(np.isfinite(goals))):
        raise GrowthInputError("targets.target_week and targets.goal must be finite numbers")
    return TargetColumns(student, weeks, goals)


def write_stream(path: str, columns: dict[str, Any], metadata: dict[str, Any]) -> None:
    """``columns`` as one Arrow IPC stream at ``path``, ``metadata`` as JSON under ``growth_response``."""
    table = pa.table(columns)
    meta = json.dumps(metadata, allow_nan=False, separators=(",", ":")).encode()
    table = table.replace_schema_metadata({METADATA_KEY: meta})
    with pa.OSFile(path, "wb") as sink, ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table, max_chunksize=1 << 20)
