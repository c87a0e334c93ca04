#!/bin/sh
# Start r-brms-plumber; configuration comes from the environment (README.md).
set -eu
cd "$(dirname "$0")"
exec Rscript --no-save --no-restore run.R
