# The collapsed engine (gaussian only), run by the engine process (engine_server.R). The request body goes
# to it as the file it was written to, JSON or Arrow, never parsed and re-serialized here; the engine writes
# the fit's state and its response into the fit's folder, and the service answers that file as it is.

ARROW_MEDIA_TYPE <- "application/vnd.apache.arrow.stream"

stderr_tail <- function(text, n = 20L) {
  lines <- strsplit(trimws(text %||% ""), "\n", fixed = TRUE)[[1]]
  paste(utils::tail(lines, n), collapse = "\n")
}

# An answer that is a file the engine wrote: Arrow bytes or JSON text, as they are.
engine_file_answer <- function(path, format) {
  if (identical(format, "arrow")) {
    return(structure(readBin(path, "raw", file.size(path)), class = "growth_arrow"))
  }
  json_text(readChar(path, file.size(path), useBytes = TRUE))
}

# Worker job. args: run_id, input (list(path, format)), settings (iter, chains, seed, family,
# observation_model), response_format ("arrow" or "json"), socket, timeout, fits_dir
fit_collapsed_job <- function(args) {
  started <- Sys.time()
  dir <- store_begin(args$fits_dir, args$run_id)
  ok <- FALSE
  on.exit(if (!ok) store_abort(args$fits_dir, args$run_id), add = TRUE)
  command <- list(run_id = args$run_id, input = args$input, settings = args$settings,
                  out_dir = file.path(dir, "engine"), response_format = args$response_format)
  answer <- engine_request(args$socket, "/fit", command, timeout = args$timeout)
  response <- file.path("engine", basename(answer$response_path))
  write_json_file(list(run_id = args$run_id, engine = "collapsed", family = "gaussian",
                       fitted_at = answer$fitted_at, week_center = answer$week_center,
                       n_students = answer$n_students, response = response,
                       response_format = args$response_format),
                  file.path(dir, "meta.json"))
  final <- store_commit(args$fits_dir, args$run_id)
  ok <- TRUE
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
  promises::finally(
    promises::then(
      engine_request_async(.service$engine_server$socket, "/predict", command, cfg$engine_timeout_seconds),
      function(answer) engine_file_answer(out_path, request$response_format)),
    function() unlink(out_path))
}
