"""Command-line entry points (`python -m seed_growth.cli.<name>`): the weekly graph for a plain CronJob,
and the backtest."""
