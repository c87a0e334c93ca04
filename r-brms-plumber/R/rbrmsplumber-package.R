#' rbrmsplumber: the growth-fitting HTTP service of seed-growth
#'
#' Fits `score ~ week + (week | student)` with brms (rstan) or the collapsed Python engine `growth_engine`
#' and answers goal probabilities, over the HTTP contract of `docs/growth-api.md`. The API is
#' `inst/plumber/growth/` ([api_file()]); `run.R` starts it: [read_config()], [service_start()],
#' [build_router()]. Fits run in long-lived `callr` worker processes (`R/pool.R`, `R/worker.R`), each of
#' which loads this package itself.
#'
#' @keywords internal
#' @importFrom R6 R6Class
#' @importFrom callr r_session
"_PACKAGE"
