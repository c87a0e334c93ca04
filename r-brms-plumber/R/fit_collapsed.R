# The collapsed engine (gaussian only), run by the engine process (engine_server.R). The request body goes
# to it as the file it was written to, JSON or Arrow, never parsed and re-serialized here; the engine writes
# the fit's state and its response into the fit's folder, and the service answers that file as it is.
# Fits and predictions are sent from the service's own process without blocking it (no worker process).

ARROW_MEDIA_TYPE <- "application/vnd.apache.arrow.stream"

stderr_tail <- function(text, n = 20L) {
  lines <- strsplit(trimws(text %||% ""), "\n", fixed = TRUE)[[1]]
  paste(utils::tail(lines, n), collapse = "\n")
}

# An answer that is a file the engine wrote, Arrow or JSON, as it is: httpuv streams it from disk, so it is
# never read into R (a million students' answer would otherwise be held twice, by R and by httpuv).
# owned = TRUE: httpuv removes the file once it has opened it.
engine_file_answer <- function(path, format, owned = FALSE) {
  structure(list(file = path, owned = owned), class = "growth_file", format = format)
}

# Collapsed fits are sent to the engine from the service's own process, one at a time: no worker process
# (R with brms loaded, ~0.4 GB) sits beside the engine's memory for a fit that is all the engine's work, and
# the engine fits one at a time anyway, so a fit's GROWTH_ENGINE_TIMEOUT_SECONDS counts from when the
# engine has it, not while it waits behind another.
collapsed_queue <- function() {
  queue <- new.env(parent = emptyenv())
  queue$tail <- promises::promise_resolve(NULL)   # settles when the last fit queued is done
  queue$queued <- 0L
  queue$running <- NULL
  queue
}

# fit_collapsed_async(args) once the fits queued before it are done -> promise of its result.
collapsed_submit <- function(queue, args, label) {
  queue$queued <- queue$queued + 1L
  fitted <- promises::then(queue$tail, function(value) {
    queue$queued <- queue$queued - 1L
    queue$running <- list(job = label, started = Sys.time())
    fit_collapsed_async(args)
  })
  done <- function(value) queue$running <- NULL
  queue$tail <- promises::then(fitted, onFulfilled = done, onRejected = done)
  fitted
}

# For /health: list(queued, running = list(list(job, seconds)) or none).
collapsed_status <- function(queue) {
  if (is.null(queue)) return(list(queued = 0L, running = list()))
  running <- queue$running
  list(queued = queue$queued, running = if (is.null(running)) list() else
    list(list(job = running$job, seconds = as.numeric(difftime(Sys.time(), running$started, units = "secs")))))
}

# args: run_id, input (list(path, format)), settings (iter, chains, seed, family, observation_model),
# response_format ("arrow" or "json"), socket, timeout, fits_dir -> promise of list(path, format, log).
# The engine writes into the fit's staging folder, renamed into the store once meta.json is there too.
fit_collapsed_async <- function(args) {
  started <- Sys.time()
  dir <- store_begin(args$fits_dir, args$run_id)
  command <- list(run_id = args$run_id, input = args$input, settings = args$settings,
                  out_dir = file.path(dir, "engine"), response_format = args$response_format)
  committed <- promises::then(
    engine_request_async(args$socket, "/fit", command, args$timeout, wait = ENGINE_READY_SECONDS),
    function(answer) collapsed_commit(args, dir, answer, started))
  promises::catch(committed, function(e) {
    store_abort(args$fits_dir, args$run_id)
    stop(e)
  })
}

collapsed_commit <- function(args, dir, answer, started) {
  response <- file.path("engine", basename(answer$response_path))
  write_json_file(list(run_id = args$run_id, engine = "collapsed", family = "gaussian",
                       fitted_at = answer$fitted_at, week_center = answer$week_center,
                       n_students = answer$n_students, response = response,
                       response_format = args$response_format),
                  file.path(dir, "meta.json"))
  final <- store_commit(args$fits_dir, args$run_id)
  list(path = file.path(final, response), format = args$response_format,
       log = sprintf("collapsed fit %s: %d rows, %d students, engine %.1f s, in all %.1f s", args$run_id,
                     as.integer(answer$n_rows), as.integer(answer$n_students), answer$engine_seconds,
                     as.numeric(difftime(Sys.time(), started, units = "secs"))))
}

# predict_prob for a collapsed fit, answered by the engine process without blocking the service.
# request: run_id, predictive, input (list(path, format)), response_format -> promise of the answer
predict_collapsed <- function(meta, request, cfg) {
  out_path <- tempfile("predict-", fileext = if (request$response_format == "arrow") ".arrow" else ".json")
  command <- list(run_id = request$run_id, fit_dir = file.path(meta$dir, "engine"), input = request$input,
                  predictive = request$predictive, out_path = out_path,
                  response_format = request$response_format)
  answered <- promises::then(
    engine_request_async(.service$engine_server$socket, "/predict", command, cfg$engine_timeout_seconds),
    # the answer's file is httpuv's from here: it removes it once it has opened it
    function(answer) engine_file_answer(out_path, request$response_format, owned = TRUE))
  promises::catch(answered, function(e) {
    unlink(out_path)
    stop(e)
  })
}
