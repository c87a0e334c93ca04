"""The statistics of seed-growth: plain functions over pandas/numpy, no Dagster."""
