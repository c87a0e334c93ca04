# Code that runs inside the worker processes (see pool.R).

# Initialise a worker: load the service's R files and brms (once per process, not per fit).
growth_worker_init <- function(r_dir) {
  for (f in sort(list.files(r_dir, pattern = "[.]R$", full.names = TRUE))) sys.source(f, envir = globalenv())
  suppressPackageStartupMessages({
    library(brms)
    library(rstan)
  })
  rstan::rstan_options(auto_write = FALSE)
  options(mc.cores = 1L, warn = 1L)
  invisible(TRUE)
}

# Run a job and never throw: -> list(ok = TRUE, value) or list(ok = FALSE, status, message). Errors that
# are not growth_http_error conditions are internal failures (500).
growth_worker_run <- function(fn, args) {
  tryCatch(
    list(ok = TRUE, value = get(fn, envir = globalenv(), mode = "function")(args)),
    error = function(e) {
      status <- error_status(e)
      if (status >= 500L) log_line(fn, " failed: ", conditionMessage(e))
      list(ok = FALSE, status = status, message = conditionMessage(e))
    }
  )
}
