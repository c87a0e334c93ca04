# Service configuration, read once from the environment at start-up.

env_string <- function(name, default = "") {
  value <- Sys.getenv(name, unset = "")
  if (nzchar(value)) value else default
}

env_number <- function(name, default, min = -Inf, max = Inf, integer = TRUE) {
  raw <- Sys.getenv(name, unset = "")
  if (!nzchar(raw)) return(default)
  value <- suppressWarnings(as.numeric(raw))
  if (is.na(value) || value < min || value > max || (integer && value != round(value))) {
    stop(sprintf("environment variable %s=%s must be %s between %s and %s", name, raw,
                 if (integer) "an integer" else "a number", format(min), format(max)), call. = FALSE)
  }
  if (integer) as.integer(value) else value
}

# The engine's peak memory per byte of Arrow body (measured at 1,000,000 students x 12 weeks, BENCHMARKS.md)
ENGINE_BYTES_PER_ARROW_BYTE <- 12

# Default Arrow body limit: the largest body whose fit the engine holds in half of this machine's memory
# (/proc/meminfo; 1024 MB where that cannot be read).
default_arrow_body_mb <- function(meminfo = "/proc/meminfo") {
  line <- if (file.exists(meminfo)) grep("^MemTotal:", readLines(meminfo, warn = FALSE), value = TRUE) else character()
  kb <- suppressWarnings(as.numeric(gsub("[^0-9]", "", line[1])))
  if (!length(kb) || is.na(kb)) return(1024)
  floor(kb / 1024 / 2 / ENGINE_BYTES_PER_ARROW_BYTE)
}

#' The service's configuration
#'
#' Reads every setting from the environment once, at start-up (README.md, "Environment"): listen address,
#' model and fit folders, store bounds, workers and queue, limits, bearer token, warm-up families, the
#' collapsed engine's interpreter and the sampler settings.
#'
#' @return A named list of settings.
#' @export
read_config <- function() {
  model_dir <- normalizePath(
    env_string("BRMS_MODEL_DIR", file.path(Sys.getenv("HOME", tempdir()), ".cache", "r-brms-plumber")),
    mustWork = FALSE)
  fits_dir <- normalizePath(env_string("BRMS_FITS_DIR", file.path(model_dir, "fits")), mustWork = FALSE)
  warmup <- trimws(strsplit(env_string("BRMS_WARMUP_FAMILIES", ""), ",", fixed = TRUE)[[1]])
  warmup <- warmup[nzchar(warmup)]
  unknown <- setdiff(warmup, GROWTH_FAMILIES)
  if (length(unknown)) {
    stop(sprintf("BRMS_WARMUP_FAMILIES names unknown families: %s (known: %s)",
                 paste(unknown, collapse = ", "), paste(GROWTH_FAMILIES, collapse = ", ")), call. = FALSE)
  }
  list(
    host = env_string("BRMS_PLUMBER_HOST", "127.0.0.1"),
    port = env_number("BRMS_PLUMBER_PORT", 8000L, 1, 65535),
    model_dir = model_dir,
    fits_dir = fits_dir,
    fits_max = env_number("BRMS_FITS_MAX", 100L, 1, 1e6),
    fits_max_age_days = env_number("BRMS_FITS_MAX_AGE_DAYS", 90, 0, 1e5, integer = FALSE),
    workers = env_number("BRMS_WORKERS", 1L, 1, 64),
    # fits waiting (for a worker, or for the engine) beyond this are refused with 503 (the caller retries later)
    max_queue = env_number("BRMS_MAX_QUEUE", 20L, 0, 1e6),
    # a worker process is replaced after this many jobs (bounds memory growth of long-lived R sessions)
    worker_max_jobs = env_number("BRMS_WORKER_MAX_JOBS", 50L, 1, 1e6),
    # 0 = no limit; a fit running longer is stopped and answered with 500
    fit_timeout_seconds = env_number("BRMS_FIT_TIMEOUT_SECONDS", 0, 0, 1e7, integer = FALSE),
    max_body_bytes = env_number("BRMS_MAX_BODY_MB", 256, 0.001, 1e5, integer = FALSE) * 1024^2,
    max_arrow_body_bytes = env_number("BRMS_MAX_ARROW_BODY_MB", default_arrow_body_mb(), 0.001, 1e6,
                                      integer = FALSE) * 1024^2,
    token = env_string("BRMS_PLUMBER_TOKEN", ""),
    warmup_families = warmup,
    engine_python = env_string("GROWTH_ENGINE_PYTHON", "python3"),
    # 0 = no limit; the collapsed engine's fit and predict are stopped after this long
    engine_timeout_seconds = env_number("GROWTH_ENGINE_TIMEOUT_SECONDS", 0, 0, 1e7, integer = FALSE),
    sampler = list(
      adapt_delta = env_number("BRMS_ADAPT_DELTA", 0.95, 0.5, 0.9999, integer = FALSE),
      max_treedepth = env_number("BRMS_MAX_TREEDEPTH", 10L, 5, 20),
      # Above this many students always a diagonal metric; up to it a dense one where the warm-up can
      # estimate it (fit_brms.R, dense_metric_fits).
      dense_metric_max_students = env_number("BRMS_DENSE_METRIC_MAX_STUDENTS", 500L, 0, 1e6)
    )
  )
}

`%||%` <- function(x, y) if (is.null(x)) y else x
