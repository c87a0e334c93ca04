# The worker pool starts its processes on demand (R/pool.R). These tests start real R processes (the
# package loaded in each, as in the service), with the parser's light initialisation.

# Live processes this R process started as pool workers (they carry R_BRMS_PLUMBER_WORKER).
worker_processes <- function() {
  is_worker <- function(p) {
    tryCatch(ps::ps_status(p) != "zombie" && !is.na(ps::ps_environ(p)["R_BRMS_PLUMBER_WORKER"]),
             error = function(e) FALSE)
  }
  Filter(is_worker, ps::ps_children(ps::ps_handle()))
}

light_pool <- function(max_jobs) {
  WorkerPool$new(size = 1L, init_fun = growth_worker_bootstrap,
                 init_args = list(package = package_name(), path = package_source_dir(), init = "growth_parser_init"),
                 max_jobs = max_jobs)
}

predict_body <- function(text) {
  path <- tempfile("body-", fileext = ".json")
  writeLines(text, path)
  path
}

parse_job <- function(pool, path) {
  pool$submit("parse_request_job", list(path = path, validator = "validate_predict_request"))
}

wait_for <- function(condition, seconds = 30) {
  deadline <- Sys.time() + seconds
  while (!condition() && Sys.time() < deadline) later::run_now(0.1)
  condition()
}

test_that("a pool starts no process until a job comes; a one-job process ends after its job", {
  before <- length(worker_processes())
  pool <- light_pool(max_jobs = 1L)
  on.exit(pool$shutdown())
  later::run_now(0.3)
  st <- pool$status()
  expect_equal(c(st$workers, st$ready, st$busy, st$starting, st$not_started), c(1L, 0L, 0L, 0L, 1L))
  expect_length(worker_processes(), before)

  ok <- predict_body('{"run_id": "abc", "targets": [{"student": "s1", "target_week": 3, "goal": 0.5}]}')
  on.exit(unlink(ok), add = TRUE)
  request <- settle(parse_job(pool, ok), 120)
  expect_equal(request$run_id, "abc")
  expect_equal(request$targets$student, "s1")
  # replaced after its one job by a worker that is not started: no process is left
  st <- pool$status()
  expect_equal(c(st$ready, st$busy, st$starting, st$not_started, st$queued), c(0L, 0L, 0L, 1L, 0L))
  expect_true(wait_for(function() length(worker_processes()) == before))

  # the next job starts a new process; bad input is still the job's 400
  bad <- predict_body('{"run_id": "abc"}')
  on.exit(unlink(bad), add = TRUE)
  refused <- settle(parse_job(pool, bad), 120)
  expect_s3_class(refused, "growth_http_error")
  expect_equal(refused$status, 400L)
  expect_equal(pool$status()$not_started, 1L)
})

test_that("a started worker stays for its next jobs, which queue while it is busy", {
  pool <- light_pool(max_jobs = 50L)
  on.exit(pool$shutdown())
  ok <- predict_body('{"run_id": "abc", "targets": [{"student": "s1", "target_week": 3, "goal": 0.5}]}')
  on.exit(unlink(ok), add = TRUE)
  first <- parse_job(pool, ok)
  second <- parse_job(pool, ok)
  expect_equal(pool$status()$queued, 2L)
  expect_equal(settle(first, 120)$run_id, "abc")
  expect_equal(settle(second, 120)$run_id, "abc")
  st <- pool$status()
  expect_equal(c(st$ready, st$busy, st$not_started), c(1L, 0L, 0L))
})

test_that("/health before any job: workers configured, none started, and ready to take a fit", {
  saved <- as.list(.service)
  on.exit({
    rm(list = ls(.service, all.names = TRUE), envir = .service)
    list2env(saved, envir = .service)
  })
  .service$cfg <- list(model_dir = tempfile("models-"))
  .service$versions <- list(R = "4")
  # checked just now: /health does not look again
  .service$engine <- list(available = FALSE, detail = "not started", checked_at = Sys.time(), checking = FALSE)
  .service$engine_server <- NULL
  .service$pool <- light_pool(max_jobs = 1L)
  on.exit(.service$pool$shutdown(), add = TRUE, after = FALSE)
  .service$collapsed <- collapsed_queue()
  health <- handle_health()
  expect_equal(health$status, "ok")
  expect_true(health$ready)
  expect_false(health$busy)
  expect_equal(health$workers, list(total = 1L, ready = 0L, busy = 0L, starting = 0L, not_started = 1L))
  expect_equal(health$queued, 0L)
  expect_length(health$running, 0L)
})
