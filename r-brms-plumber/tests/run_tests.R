#!/usr/bin/env Rscript
# Unit tests of the service's pure functions (no brms, no server): Rscript tests/run_tests.R
file_arg <- grep("^--file=", commandArgs(trailingOnly = FALSE), value = TRUE)
here <- if (length(file_arg)) dirname(normalizePath(sub("^--file=", "", file_arg[1]))) else getwd()
root <- dirname(here)
env <- new.env(parent = globalenv())
for (f in sort(list.files(file.path(root, "R"), pattern = "[.]R$", full.names = TRUE))) sys.source(f, envir = env)
results <- testthat::test_dir(file.path(here, "testthat"), env = env, reporter = testthat::ProgressReporter$new(show_praise = FALSE),
                              stop_on_failure = FALSE)
df <- as.data.frame(results)
failed <- sum(df$failed) + sum(df$error)
cat(sprintf("%d passed, %d failed\n", sum(df$nb) - sum(df$failed), failed))
quit(status = if (failed > 0) 1L else 0L, save = "no")
