# Code that runs inside the worker processes (see pool.R).

# Where the package's sources are when it was loaded with pkgload::load_all() (a development checkout), so
# that workers load the same code; "" when it is installed (workers then load it from the library).
package_source_dir <- function() {
  pkg <- package_name()
  if (isNamespaceLoaded("pkgload") && pkgload::is_dev_package(pkg)) {
    normalizePath(getNamespaceInfo(asNamespace(pkg), "path"))
  } else {
    ""
  }
}

# The first call in a new worker process. callr runs it with the global environment as its enclosure, so it
# names everything it uses: it loads this package (from `path` when not "", else the installed one) and
# runs `init` (growth_worker_init() for fit workers, growth_parser_init() for the parser) from its namespace.
growth_worker_bootstrap <- function(package, path, init = "growth_worker_init") {
  if (nzchar(path)) {
    pkgload::load_all(path, export_all = FALSE, helpers = FALSE, attach_testthat = FALSE, quiet = TRUE)
  } else {
    loadNamespace(package)
  }
  get(init, envir = asNamespace(package), mode = "function")()
}

# Every job call in a worker: run `fn(args)`, fn a function of the package, by name (see growth_worker_run).
growth_worker_call <- function(package, fn, args) {
  get("growth_worker_run", envir = asNamespace(package), mode = "function")(fn, args)
}

# Initialise a worker: attach brms and rstan (once per process, not per fit). Attached with what they depend
# on (Rcpp, StanHeaders), not only loaded: rstan's compiled-model objects (Rcpp modules) look some of their
# functions up on the search path. This happens in the worker process only, never in the service's.
growth_worker_init <- function() {
  suppressPackageStartupMessages({
    for (pkg in c("brms", "rstan")) library(pkg, character.only = TRUE)
  })
  rstan::rstan_options(auto_write = FALSE)
  options(mc.cores = 1L, warn = 1L)
  invisible(TRUE)
}

# Initialise the parser process (large request bodies, see parsed_request()): no brms, no Stan.
growth_parser_init <- function() {
  options(warn = 1L)
  invisible(TRUE)
}

# Parser job: the raw body of a request (in the file args$path) parsed, then checked by `validator`
# (validate_fit_request or validate_predict_request). -> the validated request; bad input is a 400 like in
# the service's process.
parse_request_job <- function(args) {
  validator <- match.arg(args$validator, c("validate_fit_request", "validate_predict_request"))
  body <- parse_json_raw(readBin(args$path, "raw", file.size(args$path)))
  without_engine_data(match.fun(validator)(body))
}

# The collapsed engine reads a fit's rows from the body itself: its validated copy is not carried back.
without_engine_data <- function(request) {
  if (!identical(request$engine, "collapsed")) return(request)
  request$n_rows <- nrow(request$data)
  request$data <- NULL
  request
}

# Run a job and never throw: -> list(ok = TRUE, value) or list(ok = FALSE, status, message). Errors that
# are not growth_http_error conditions are internal failures (500).
growth_worker_run <- function(fn, args) {
  tryCatch(
    list(ok = TRUE, value = get(fn, envir = asNamespace(package_name()), mode = "function")(args)),
    error = function(e) {
      status <- error_status(e)
      if (status >= 500L) log_line(fn, " failed: ", conditionMessage(e))
      list(ok = FALSE, status = status, message = conditionMessage(e))
    }
  )
}
