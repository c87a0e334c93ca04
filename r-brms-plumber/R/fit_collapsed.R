# The collapsed engine (gaussian only): a Python package, `growth_engine`, run as a command line
#   $GROWTH_ENGINE_PYTHON -m growth_engine fit --request REQ.json --out-dir DIR
#   $GROWTH_ENGINE_PYTHON -m growth_engine predict --fit-dir DIR --targets TARGETS.json
# Exit code 2 means bad input (answered 400), any other failure 500; an interpreter or package that is
# not there is answered 503. The engine's DIR lives in the fit store as <run_id>/engine.

ENGINE_INPUT_ERROR_STATUS <- 2L
ENGINE_NOT_FOUND_STATUS <- 3L   # predict: no usable fit state in --fit-dir

engine_not_installed <- function(stderr) grepl("No module named '?growth_engine", stderr)

stderr_tail <- function(text, n = 20L) {
  lines <- strsplit(trimws(text %||% ""), "\n", fixed = TRUE)[[1]]
  paste(utils::tail(lines, n), collapse = "\n")
}

# Turn the outcome of an engine command into an error, or return nothing when it succeeded.
check_engine_result <- function(status, stderr, python, what, timed_out = FALSE, timeout = 0) {
  if (timed_out) {
    http_error(500L, sprintf("the collapsed engine's %s did not finish within %s s", what, format(timeout)))
  }
  if (identical(status, 0L)) return(invisible())
  if (engine_not_installed(stderr)) {
    http_error(503L, sprintf("the collapsed engine is not installed: '%s -m growth_engine' failed: %s",
                             python, stderr_tail(stderr, 3L)))
  }
  if (identical(status, ENGINE_INPUT_ERROR_STATUS)) http_error(400L, stderr_tail(stderr, 5L))
  if (identical(status, ENGINE_NOT_FOUND_STATUS)) {
    http_error(404L, sprintf("the collapsed engine found no usable fit state: %s", stderr_tail(stderr, 3L)))
  }
  http_error(500L, sprintf("the collapsed engine's %s failed (exit code %s): %s", what, format(status),
                           stderr_tail(stderr)))
}

engine_unavailable <- function(python, e) {
  reason <- if (nzchar(Sys.which(python))) {
    utils::tail(strsplit(trimws(conditionMessage(e)), "\n", fixed = TRUE)[[1]], 1L)
  } else {
    "no such executable"
  }
  http_error(503L, sprintf("the collapsed engine is not available: cannot run GROWTH_ENGINE_PYTHON '%s' (%s)",
                           python, reason))
}

# Insert run_id, engine and fitted_at in front of the engine's response object, keeping its text (and so
# its numbers) as written.
with_run_fields <- function(engine_json, run_id, fitted_at) {
  parsed <- tryCatch(jsonlite::parse_json(engine_json, simplifyVector = FALSE),
                     error = function(e) {
                       http_error(500L, "the collapsed engine wrote invalid JSON: ", conditionMessage(e))
                     })
  if (!is.list(parsed) || is.null(names(parsed))) {
    http_error(500L, "the collapsed engine's response is not a JSON object")
  }
  missing <- setdiff(c("model", "posterior_summary", "students", "diagnostics"), names(parsed))
  if (length(missing)) http_error(500L, "the collapsed engine's response lacks ", paste(missing, collapse = ", "))
  head <- list(run_id = run_id, engine = "collapsed", fitted_at = fitted_at)
  if (any(names(head) %in% names(parsed))) {
    return(to_json(c(head, parsed[setdiff(names(parsed), names(head))])))
  }
  body <- sub("^\\s*\\{", "", engine_json)
  if (grepl("^\\s*\\}\\s*$", body)) http_error(500L, "the collapsed engine's response is empty")
  paste0(substr(to_json(head), 1L, nchar(to_json(head)) - 1L), ",", body)
}

# Worker job. args: run_id, data, iter, chains, seed, family, observation_model, python, timeout, fits_dir,
# received_at
fit_collapsed_job <- function(args) {
  started <- Sys.time()
  dir <- store_begin(args$fits_dir, args$run_id)
  ok <- FALSE
  on.exit(if (!ok) store_abort(args$fits_dir, args$run_id), add = TRUE)
  request_path <- file.path(dir, "request.json")
  out_dir <- file.path(dir, "engine")
  dir.create(out_dir)
  d <- args$data
  columns <- list(student = d$student, week = d$week, score = d$score)
  if (!all(is.na(d$n))) columns$n <- d$n
  request <- list(data = columns, iter = args$iter, chains = args$chains, seed = args$seed, family = args$family)
  if (!is.null(args$observation_model) && !is.na(args$observation_model)) {
    request$observation_model <- args$observation_model
  }
  write_json_file(request, request_path)

  timeout <- if (args$timeout > 0) args$timeout else Inf
  res <- tryCatch(
    processx::run(args$python, c("-m", "growth_engine", "fit", "--request", request_path, "--out-dir", out_dir),
                  error_on_status = FALSE, timeout = timeout, cleanup_tree = TRUE),
    system_command_timeout_error = function(e) list(status = NA_integer_, stderr = "", timeout = TRUE),
    error = function(e) engine_unavailable(args$python, e)
  )
  check_engine_result(res$status, res$stderr, args$python, "fit", isTRUE(res$timeout), args$timeout)
  response_path <- file.path(out_dir, "response.json")
  if (!file.exists(response_path)) http_error(500L, "the collapsed engine exited 0 but wrote no response.json")
  engine_json <- paste(readLines(response_path, warn = FALSE, encoding = "UTF-8"), collapse = "\n")
  fitted_at <- utc_now()
  text <- with_run_fields(engine_json, args$run_id, fitted_at)
  unlink(request_path)
  write_json_file(json_text(text), file.path(dir, "response.json"))
  write_json_file(list(students = unique(d$student)), file.path(dir, "students.json"))
  write_json_file(list(run_id = args$run_id, engine = "collapsed", family = args$family, fitted_at = fitted_at,
                       week_center = mean(d$week), n_students = length(unique(d$student))),
                  file.path(dir, "meta.json"))
  store_commit(args$fits_dir, args$run_id)
  ok <- TRUE
  list(json = as.character(text),
       log = sprintf("collapsed fit %s: %d rows, %.1f s", args$run_id, nrow(d),
                     as.numeric(difftime(Sys.time(), started, units = "secs"))))
}

# predict_prob for a collapsed fit: runs the engine asynchronously (the service keeps answering).
# -> promise of the response list
predict_collapsed <- function(meta, request, cfg) {
  t <- request$targets
  targets <- data.frame(student = t$student, target_week = t$target_week, goal = t$goal, stringsAsFactors = FALSE)
  if (!all(is.na(t$n))) targets$n <- t$n
  path <- tempfile("targets-", fileext = ".json")
  write_json_file(list(targets = targets, predictive = request$predictive), path)
  students_path <- file.path(meta$dir, "students.json")
  known <- if (file.exists(students_path)) jsonlite::fromJSON(students_path)$students else character(0)
  python <- cfg$engine_python
  promise <- run_process_async(python, c("-m", "growth_engine", "predict", "--fit-dir", file.path(meta$dir, "engine"),
                                         "--targets", path), timeout = cfg$engine_timeout_seconds)
  promises::then(promise, onFulfilled = function(res) {
    unlink(path)
    check_engine_result(res$status, res$stderr, python, "predict", res$timed_out, cfg$engine_timeout_seconds)
    out <- tryCatch(jsonlite::fromJSON(res$stdout, simplifyVector = TRUE),
                    error = function(e) {
                      http_error(500L, "the collapsed engine's predict printed invalid JSON: ", conditionMessage(e))
                    })
    # an engine that does not know `predictive` answers expected-score probabilities: never pass those off
    # as predictive ones
    if (request$predictive && !isTRUE(out$predictive)) {
      http_error(400L, "predictive probabilities are not available for this collapsed-engine fit: the installed ",
                 "growth_engine answers expected-score probabilities only")
    }
    probs <- out$probabilities
    p <- if (is.data.frame(probs)) probs$p else if (is.numeric(probs)) probs else NULL
    if (is.null(p) || length(p) != nrow(t)) {
      http_error(500L, sprintf("the collapsed engine's predict answered %d probabilities for %d targets",
                               length(p), nrow(t)))
    }
    seen <- if (is.data.frame(probs) && is.logical(probs$seen)) probs$seen else t$student %in% known
    list(run_id = request$run_id, method = out$method %||% "rao_blackwell", predictive = request$predictive,
         probabilities = data.frame(student = t$student, target_week = t$target_week, goal = t$goal,
                                    p = as.numeric(p), seen = seen, stringsAsFactors = FALSE))
  }, onRejected = function(e) {
    unlink(path)
    stop(e)
  })
}

# Whether the engine can be run: -> list(available, detail). Asynchronous (a promise), for /health.
check_engine_async <- function(python) {
  code <- paste("import importlib.util, sys",
                paste("ok = importlib.util.find_spec('growth_engine') is not None and",
                      "importlib.util.find_spec('growth_engine.__main__') is not None"),
                "sys.exit(0 if ok else 3)", sep = "; ")
  promises::then(
    run_process_async(python, c("-c", code), timeout = 30),
    onFulfilled = function(res) {
      if (identical(res$status, 0L)) list(available = TRUE, detail = "installed")
      else list(available = FALSE, detail = sprintf("growth_engine (with __main__) is not importable by %s", python))
    },
    onRejected = function(e) list(available = FALSE, detail = conditionMessage(e))
  )
}

# A command run in the background, polled from the event loop. -> promise of list(status, stdout, stderr,
# timed_out); rejected with a 503 when the command cannot be started.
run_process_async <- function(command, args, timeout = 0, poll = 0.05) {
  promises::promise(function(resolve, reject) {
    out <- tempfile("engine-out-")
    err <- tempfile("engine-err-")
    proc <- tryCatch(processx::process$new(command, args, stdout = out, stderr = err, cleanup = TRUE,
                                           cleanup_tree = TRUE),
                     error = function(e) e)
    if (inherits(proc, "error")) {
      reject(tryCatch(engine_unavailable(command, proc), error = function(e) e))
      return(invisible())
    }
    started <- Sys.time()
    check <- function() {
      timed_out <- timeout > 0 && as.numeric(difftime(Sys.time(), started, units = "secs")) > timeout
      if (proc$is_alive() && !timed_out) return(later::later(check, poll))
      if (timed_out) proc$kill_tree()
      read <- function(f) {
        if (file.exists(f)) paste(readLines(f, warn = FALSE, encoding = "UTF-8"), collapse = "\n") else ""
      }
      res <- list(status = if (timed_out) NA_integer_ else proc$get_exit_status(), stdout = read(out),
                  stderr = read(err),
                  timed_out = timed_out)
      unlink(c(out, err))
      resolve(res)
    }
    later::later(check, poll)
  })
}
