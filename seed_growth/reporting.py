"""Figures and tables for the Dagster UI: PNGs embedded in markdown metadata (the UI renders them)."""

from __future__ import annotations

import base64
import io
import itertools

import matplotlib

matplotlib.use("Agg")  # no display on servers
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pyarrow as pa
from matplotlib.figure import Figure


def rounded(value: float, decimals: int = 4) -> float:
    """A float for metadata: four decimals are what anyone reads (``max_rhat 1.0059``, not 1.00586399...)."""
    return round(float(value), decimals)


def markdown_image(fig: Figure, alt: str) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    return f"![{alt}](data:image/png;base64,{base64.b64encode(buffer.getvalue()).decode()})"


def observed_weekly_means(scores: pa.Table) -> pd.DataFrame:
    """Per week of the rows, the mean score (the growth curve's dots)."""
    means = scores.group_by("week").aggregate([("score", "mean")]).to_pandas()
    return means.rename(columns={"score_mean": "mean_score"}).sort_values("week", ignore_index=True)


def growth_curve_markdown(posterior_summary: dict, week_center: float, weekly_means: pd.DataFrame, weeks: int) -> str:
    """The population growth line with its 95% interval, the 95% spread between students, and the
    observed weekly mean scores. The interval is computed at the week centre, where the population
    intercept and slope are close to uncorrelated."""
    centred = posterior_summary.get("centered", {})
    level = centred.get("Intercept", {}).get("estimate")
    level_se = centred.get("Intercept", {}).get("error")
    if level is None:  # fall back to the week-0 intercept
        level = posterior_summary["Intercept"]["estimate"] + posterior_summary["week"]["estimate"] * week_center
        level_se = posterior_summary["Intercept"]["error"]
    slope, slope_se = posterior_summary["week"]["estimate"], posterior_summary["week"]["error"]
    sd0 = centred.get("sd_Intercept", posterior_summary["sd_Intercept"])["estimate"]
    rho = centred.get("cor_Intercept_week", posterior_summary["cor_Intercept_week"])["estimate"]
    sd1 = posterior_summary["sd_week"]["estimate"]

    t = np.linspace(0, max(weeks - 1, 1), 100)
    x = t - week_center
    mean = level + slope * x
    half = 1.96 * np.sqrt(level_se**2 + (x * slope_se) ** 2)
    spread = 1.96 * np.sqrt(np.maximum(sd0**2 + (x * sd1) ** 2 + 2 * x * rho * sd0 * sd1, 0))

    fig, ax = plt.subplots(figsize=(6, 3.2))
    ax.fill_between(t, mean - spread, mean + spread, color="tab:blue", alpha=0.12, label="95% of students")
    ax.fill_between(t, mean - half, mean + half, color="tab:blue", alpha=0.35, label="95% interval of the mean")
    ax.plot(t, mean, color="tab:blue", label="population growth")
    if len(weekly_means):
        ax.scatter(
            weekly_means["week"],
            weekly_means["mean_score"],
            color="black",
            s=14,
            zorder=3,
            label="observed weekly mean",
        )
    ax.set_xlabel("week of the window")
    ax.set_ylabel("score (linear predictor)")
    ax.legend(fontsize=7, loc="best")
    ax.grid(alpha=0.3)
    return markdown_image(fig, "population growth curve")


def histogram_markdown(values: np.ndarray, *, bins: int = 10, label: str = "P") -> str:
    """A histogram image and the same counts as a table (the table survives where images do not)."""
    counts, edges = np.histogram(np.asarray(values, dtype=float), bins=bins, range=(0.0, 1.0))
    fig, ax = plt.subplots(figsize=(5, 2.6))
    ax.bar(edges[:-1], counts, width=np.diff(edges), align="edge", color="tab:green", edgecolor="white")
    ax.set_xlabel(label)
    ax.set_ylabel("students")
    ax.grid(alpha=0.3, axis="y")
    table = pd.DataFrame({label: [f"[{lo:.1f}, {hi:.1f})" for lo, hi in itertools.pairwise(edges)], "students": counts})
    return markdown_image(fig, f"distribution of {label}") + "\n\n" + table.to_markdown(index=False)


def reliability_markdown(reliability: pd.DataFrame) -> str:
    """Reliability diagram (mean P against observed rate per bin, with +-2 se) and its table."""
    fig, ax = plt.subplots(figsize=(4.2, 4.2))
    ax.plot([0, 1], [0, 1], color="grey", linestyle="--", linewidth=1, label="perfect calibration")
    # distinct colour, marker and line style per method, and a small horizontal offset, so that one
    # method's line never hides the other's where the two agree
    styles = [("tab:blue", "o", "-"), ("tab:orange", "s", "--"), ("tab:green", "^", ":")]
    methods = list(reliability.groupby("method"))
    for i, ((method, group), (colour, marker, linestyle)) in enumerate(zip(methods, styles, strict=False)):
        group = group[group["count"] > 0]
        offset = (i - (len(methods) - 1) / 2) * 0.008
        ax.errorbar(
            group["mean_P"] + offset,
            group["observed_rate"],
            yerr=2 * group["se"],
            color=colour,
            marker=marker,
            linestyle=linestyle,
            markersize=5,
            markerfacecolor="none" if i else colour,
            capsize=2,
            linewidth=1.4,
            alpha=0.9,
            label=method,
        )
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("mean P in bin")
    ax.set_ylabel("observed rate of reaching the goal")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    table = reliability[["method", "bin", "mean_P", "observed_rate", "count"]].to_markdown(index=False, floatfmt=".3f")
    return markdown_image(fig, "reliability diagram") + "\n\n" + table
