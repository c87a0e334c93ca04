"""Per-student sufficient statistics for the gaussian growth model.

For student i with rows (t_ij, y_ij), t = week - c (c = the global week centre),
the collapsed likelihood needs only

    n, st = sum t, stt = sum t^2, sy = sum y, sty = sum t*y, syy = sum y^2.

With per-row precision weights w (the observation model's, :mod:`growth_engine.observation`: row j's
residual variance is sigma^2 / w_j) every sum is weighted (n = sum w, st = sum w t, ...), and the
likelihood's normalizing constant also needs the row count ``n_rows`` and ``log_w`` = sum log w.
Without weights w = 1: n = n_rows and log_w = 0.

Raw power sums cancel badly when they are combined later (e.g. sum (y - mu)^2 =
syy - 2 mu sy + n mu^2), so alongside them we keep the *within-student centred*
equivalents, computed with a second pass over the rows in float64:

    tbar = st/n, ybar = sy/n,
    stt_c = sum w (t - tbar)^2, sty_c = sum w (t - tbar)(y - ybar), syy_c = sum w (y - ybar)^2.

``(n, tbar, ybar, stt_c, sty_c, syy_c)`` carry exactly the same information as the raw
six sums and are what :mod:`growth_engine.collapsed` uses.

Everything is vectorized (``np.unique`` + ``np.bincount``); there is no Python loop over rows.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

#: Keys of the mapping consumed by :func:`growth_engine.collapsed.marginal_loglik`.
CENTRED_KEYS = ("n", "tbar", "ybar", "stt_c", "sty_c", "syy_c")
RAW_KEYS = ("n", "st", "stt", "sy", "sty", "syy")
#: Keys of the likelihood's constant under weights (optional: default n_rows = n, log_w = 0).
WEIGHT_KEYS = ("n_rows", "log_w")
_ARRAY_FIELDS = ("ids", "n", "st", "stt", "sy", "sty", "syy", "tbar", "ybar", "stt_c", "sty_c", "syy_c", "n_weeks",
                 "n_rows", "log_w", "noise_scale")  # fmt: skip


@dataclass
class StudentStats:
    """Sufficient statistics, one entry per distinct student (sorted as ``np.unique`` sorts ids).

    Attributes
    ----------
    ids : (N,) array of the distinct student ids.
    center : the week centre c (time used in all sums is ``week - center``).
    n, st, stt, sy, sty, syy : raw per-student sums (float64; t centred at c), weighted.
    tbar, ybar, stt_c, sty_c, syy_c : within-student centred versions (see module doc).
    n_weeks : (N,) int, number of *distinct* weeks observed for the student.
    n_rows, log_w : (N,) rows and sum of log weights (the likelihood's constant).
    noise_scale : (N,) mean over the student's rows of 1 / w: a typical week's residual variance is
        sigma^2 * noise_scale (1 without weights; used by predictive probabilities).
    """

    ids: np.ndarray
    center: float
    n: np.ndarray
    st: np.ndarray
    stt: np.ndarray
    sy: np.ndarray
    sty: np.ndarray
    syy: np.ndarray
    tbar: np.ndarray
    ybar: np.ndarray
    stt_c: np.ndarray
    sty_c: np.ndarray
    syy_c: np.ndarray
    n_weeks: np.ndarray
    n_rows: np.ndarray
    log_w: np.ndarray
    noise_scale: np.ndarray
    _index: Any = field(default=None, repr=False, compare=False)  # ids as Arrow text, for lookup

    @property
    def n_students(self) -> int:
        return int(self.ids.shape[0])

    def arrays(self) -> dict:
        """The mapping of float64 arrays used by :mod:`growth_engine.collapsed`."""
        return {k: getattr(self, k) for k in (*CENTRED_KEYS, *WEIGHT_KEYS)}

    def subset(self, idx: Any) -> StudentStats:
        """Statistics of the students at integer positions ``idx``."""
        idx = np.asarray(idx)
        return StudentStats(center=self.center, **{k: getattr(self, k)[idx] for k in _ARRAY_FIELDS})

    def lookup(self, students: Any) -> np.ndarray:
        """Positions of ``students`` in ``ids`` (-1 where unknown). Ids are matched as text (``str()``), by a
        hash join (Arrow), so a million targets take well under a second."""
        import pyarrow.compute as pc

        if self._index is None:
            self._index = _as_text(self.ids)
        found = pc.call_function("index_in", [_as_text(students)], pc.SetLookupOptions(self._index))
        return found.fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int64)

    def to_npz_dict(self, prefix: str = "stats_") -> dict:
        out = {prefix + k: getattr(self, k) for k in _ARRAY_FIELDS if k != "ids"}
        ids = self.ids
        if ids.dtype == object:
            ids = ids.astype(str)
        out[prefix + "ids"] = ids
        out[prefix + "center"] = np.float64(self.center)
        return out

    @classmethod
    def from_npz_dict(cls, d: Any, prefix: str = "stats_") -> StudentStats:
        kw: dict[str, Any] = {k: np.asarray(d[prefix + k]) for k in _ARRAY_FIELDS if prefix + k in d}
        unweighted = {"n_rows": kw["n"], "log_w": np.zeros_like(kw["n"]), "noise_scale": np.ones_like(kw["n"])}
        for k, v in unweighted.items():  # states saved before weights existed
            kw.setdefault(k, v)
        return cls(center=float(d[prefix + "center"]), **kw)


def _as_text(values: Any) -> Any:
    """``values`` (an Arrow array, a numpy array, a list of str/int) as an Arrow array of text."""
    import pyarrow as pa

    if isinstance(values, (pa.Array, pa.ChunkedArray)):
        return values.cast(pa.large_string())
    if isinstance(values, np.ndarray) and values.dtype.kind in "iuUS":
        return pa.array(values).cast(pa.large_string())
    return pa.array([str(v) for v in values], type=pa.large_string())


def _checked_rows(student: Any, week: Any, score: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    student = np.asarray(student)
    week = np.asarray(week, dtype=np.float64)
    y = np.asarray(score, dtype=np.float64)
    if student.ndim != 1 or week.shape != student.shape or y.shape != student.shape:
        raise ValueError("student, week and score must be 1-d arrays of the same length")
    if student.size == 0:
        raise ValueError("no rows")
    if not (np.all(np.isfinite(week)) and np.all(np.isfinite(y))):
        raise ValueError("week and score must be finite numbers")
    if student.dtype == object:
        student = student.astype(str)
    return student, week, y


def _within_week_spread(
    week: np.ndarray, w: np.ndarray | None, inv: np.ndarray, n: np.ndarray, bsum: Callable
) -> tuple[np.ndarray, ...]:
    """Time design: (wbar, dt = week - wbar per row, stt_c), weighted by ``w`` (None: 1). For integer
    weeks and integer weights the sums are exact integers in float64, so wbar and stt_c are computed
    exactly-rounded and are bitwise identical for students with the same design
    (growth_engine.stats.design_groups relies on that to pool them)."""
    ww = week if w is None else w * week
    sw, sww = bsum(ww), bsum(ww * week)
    wbar = sw / n
    exact = bool(np.all(week == np.round(week))) and float(np.max(np.abs(week))) < 2.0**20
    exact = exact and (w is None or bool(np.all(w == np.round(w))))
    dt = week - wbar[inv]
    wdt = dt if w is None else w * dt
    if exact:
        num = n * sww - sw * sw  # = n * sum w (t - wbar)^2, exact while < 2^53
        ok = (n * sww) < 2.0**52
        stt_c = np.where(ok, num / n, bsum(wdt * dt))
    else:
        dt -= (bsum(wdt) / n)[inv]
        stt_c = bsum((dt if w is None else w * dt) * dt)
    return wbar, dt, stt_c


def _distinct_weeks(week: np.ndarray, inv: np.ndarray, N: int) -> np.ndarray:
    step, same = np.diff(inv), np.diff(week)
    if np.all((step > 0) | ((step == 0) & (same >= 0))):  # rows come sorted (as the service sends them)
        si, sw = inv, week
    else:
        order = np.lexsort((week, inv))
        si, sw = inv[order], week[order]
    del step, same
    new = np.ones(si.shape[0], dtype=bool)
    new[1:] = (si[1:] != si[:-1]) | (sw[1:] != sw[:-1])
    return np.bincount(si[new], minlength=N).astype(np.int64)


def _checked_weights(weight: Any, size: int) -> np.ndarray | None:
    if weight is None:
        return None
    w = np.asarray(weight, dtype=np.float64)
    if w.shape != (size,):
        raise ValueError("weight must be a 1-d array as long as the rows")
    if not (np.all(np.isfinite(w)) and np.all(w > 0)):
        raise ValueError("weights must be finite and > 0")
    return w


def student_stats(student: Any, week: Any, score: Any, center: float | None = None, weight: Any = None) -> StudentStats:
    """Build :class:`StudentStats` from row-level data.

    Parameters
    ----------
    student : (R,) ids (strings or integers).
    week : (R,) numeric weeks on the caller's scale.
    score : (R,) numeric responses.
    center : week centre c; default ``mean(week)`` over all rows (the contract's ``week_center``).
    weight : (R,) precision weights (row j's residual variance is sigma^2 / w_j); default 1.
    """
    student, week, y = _checked_rows(student, week, score)
    w = _checked_weights(weight, student.shape[0])
    c = float(np.mean(week)) if center is None else float(center)
    t = week - c

    ids, inv = np.unique(student, return_inverse=True)
    inv = inv.reshape(-1)
    N = ids.shape[0]

    def bsum(v: np.ndarray) -> np.ndarray:
        return np.bincount(inv, weights=v, minlength=N)

    # every row-level temporary is dropped as soon as its sums are taken: at 11 million rows each is 87 MB
    n_rows = np.bincount(inv, minlength=N).astype(np.float64)
    n = n_rows if w is None else bsum(w)
    wy = y if w is None else w * y
    sy, syy = bsum(wy), bsum(wy * y)
    del wy
    wt = t if w is None else w * t
    st, stt, sty = bsum(wt), bsum(wt * t), bsum(wt * y)
    del wt, t
    ybar = sy / n
    dy = y - ybar[inv]
    dy -= (bsum(dy if w is None else w * dy) / n)[inv]  # second pass removes the first pass' rounding error
    wbar, dt, stt_c = _within_week_spread(week, w, inv, n, bsum)
    wdy = dy if w is None else w * dy
    sty_c, syy_c = bsum(dt * wdy), bsum(dy * wdy)
    del dt, dy, wdy
    return StudentStats(
        ids=ids, center=c, n=n, st=st, stt=stt, sy=sy, sty=sty, syy=syy,
        tbar=wbar - c, ybar=ybar, stt_c=stt_c, sty_c=sty_c, syy_c=syy_c,
        n_weeks=_distinct_weeks(week, inv, N), n_rows=n_rows,
        log_w=np.zeros(N) if w is None else bsum(np.log(w)),
        noise_scale=np.ones(N) if w is None else bsum(1.0 / w) / n_rows,
    )  # fmt: skip


def centred_from_raw(d: Any, xp: Any = np) -> dict[str, Any]:
    """Derive the centred keys from a mapping holding only the raw sums (less accurate: cancellation)."""
    n = d["n"]
    tbar = d["st"] / n
    ybar = d["sy"] / n
    return {
        "n": n,
        "tbar": tbar,
        "ybar": ybar,
        "stt_c": xp.maximum(d["stt"] - d["st"] * tbar, 0.0),
        "sty_c": d["sty"] - d["st"] * ybar,
        "syy_c": xp.maximum(d["syy"] - d["sy"] * ybar, 0.0),
    }


@dataclass
class DesignGroups:
    """Students pooled by identical time design (n, tbar, stt_c).

    Given the population parameters, the collapsed likelihood and the conditional normal of (a_i, b_i)
    depend on a student's data only through the design and the pair (ybar, sty_c) (plus syy_c for the
    likelihood), linearly/quadratically. Students sharing a design can therefore be summed exactly with
    per-group moments, so the sampler's cost is O(#designs) per gradient instead of O(#students)
    (12 possible weeks -> at most 4096 designs, whatever the number of students).

    Per group: ``count``; design ``n, tbar, stt_c``; ``ybar``/``sty_c`` = mean over its students;
    ``qyy, qys, qss`` = centred scatter sums of (ybar, sty_c) over its students; ``syy_c`` = sum over its
    students; ``n_rows``, ``log_w`` = sums over its students (the likelihood's constant). ``group`` maps each
    student (StudentStats order) to its group.
    """

    count: np.ndarray
    n: np.ndarray
    tbar: np.ndarray
    stt_c: np.ndarray
    ybar: np.ndarray
    sty_c: np.ndarray
    qyy: np.ndarray
    qys: np.ndarray
    qss: np.ndarray
    syy_c: np.ndarray
    n_rows: np.ndarray
    log_w: np.ndarray
    group: np.ndarray

    KEYS = ("count", "n", "tbar", "stt_c", "ybar", "sty_c", "qyy", "qys", "qss", "syy_c", "n_rows", "log_w")

    @property
    def n_groups(self) -> int:
        return int(self.count.shape[0])

    def arrays(self) -> dict:
        return {k: getattr(self, k) for k in self.KEYS}


def design_groups(stats: StudentStats) -> DesignGroups:
    """Pool students with bitwise-identical (n, tbar, stt_c); exact (see :class:`DesignGroups`)."""
    key = np.stack([stats.n, stats.tbar, stats.stt_c], axis=1)
    _, first, g = np.unique(key, axis=0, return_index=True, return_inverse=True)
    g = g.reshape(-1)
    G = first.shape[0]
    cnt = np.bincount(g, minlength=G).astype(np.float64)

    def gsum(w):
        return np.bincount(g, weights=w, minlength=G)

    yb = gsum(stats.ybar) / cnt
    sc = gsum(stats.sty_c) / cnt
    dy = stats.ybar - yb[g]
    ds = stats.sty_c - sc[g]
    yb += gsum(dy) / cnt
    sc += gsum(ds) / cnt
    dy = stats.ybar - yb[g]
    ds = stats.sty_c - sc[g]
    return DesignGroups(
        count=cnt,
        n=stats.n[first],
        tbar=stats.tbar[first],
        stt_c=stats.stt_c[first],
        ybar=yb,
        sty_c=sc,
        qyy=gsum(dy * dy),
        qys=gsum(dy * ds),
        qss=gsum(ds * ds),
        syy_c=gsum(stats.syy_c),
        n_rows=gsum(stats.n_rows),
        log_w=gsum(stats.log_w),
        group=g,
    )
