import dagster as dg

# The platform's source: not materialized here, declared so that lineage shows what the assets read.
attempt = dg.AssetSpec(
    "attempt",
    group_name="sources",
    kinds={"postgres"},
    description=(
        "The platform's attempt view (ATTEMPT_RELATION; columns ATTEMPT_USER_COLUMN, ATTEMPT_CORRECT_COLUMN, "
        "ATTEMPT_TIME_COLUMN): one row per answered question. Read by weekly_scores and by the backtest."
    ),
)
