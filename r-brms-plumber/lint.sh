#!/bin/sh
# lintr over the whole R tree of r-brms-plumber (lint_package: R/, tests/, inst/; plus run.R), with the
# settings in .lintr. Exits 1 on any lint. The package is loaded first (pkgload) so that lintr 3.0's
# object_usage_linter sees the package's own functions. Usage: sh r-brms-plumber/lint.sh (from anywhere)
set -eu
cd "$(dirname "$0")"
exec Rscript --no-save --no-restore -e '
pkgload::load_all(".", export_all = FALSE, helpers = FALSE, attach_testthat = FALSE, quiet = TRUE)
lints <- list(lintr::lint_package("."), lintr::lint("run.R"))
n <- sum(lengths(lints))
for (l in lints) if (length(l)) print(l)
cat(sprintf("lintr: %d lint(s)\n", n))
quit(status = if (n > 0) 1L else 0L, save = "no")
'
