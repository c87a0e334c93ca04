# The collapsed engine as one long-lived process (`python -m growth_engine serve`, growth_engine/server.py),
# spoken to over HTTP on a Unix socket. The service starts it at start-up and restarts it when it
# dies; a fit or a prediction only sends it a small JSON command naming files (the request body as it came,
# the fit folder), so no data pass through R as values, and no request pays for starting Python and JAX.

ENGINE_READY_SECONDS <- 120   # a first start imports JAX (seconds) and may wait for a busy disk
ENGINE_RESTART_SECONDS <- 15  # the supervisor looks this often, and restarts a dead engine at most this often

engine_socket_path <- function() file.path(tempdir(), "growth-engine.sock")

# Start the engine process (or note why it cannot start). -> list(process, socket, log, started_at)
engine_server_start <- function(python) {
  socket <- engine_socket_path()
  log <- file.path(tempdir(), "growth-engine.log")
  unlink(socket)
  proc <- tryCatch(
    processx::process$new(python, c("-m", "growth_engine", "serve", "--socket", socket),
                          stdout = log, stderr = log, cleanup = TRUE, cleanup_tree = TRUE),
    error = function(e) e)
  if (!inherits(proc, "error")) writeLines(as.character(proc$get_pid()), engine_pid_file(socket))
  server <- list(process = if (inherits(proc, "error")) NULL else proc, socket = socket, log = log,
                 python = python, started_at = Sys.time(),
                 error = if (inherits(proc, "error")) conditionMessage(proc) else NULL)
  .service$engine_server <- server
  invisible(server)
}

# Where the engine's pid is kept: a fit past GROWTH_ENGINE_TIMEOUT_SECONDS is stopped by ending the engine
# (the supervisor starts a new one), since a running fit cannot be cancelled from outside.
engine_pid_file <- function(socket) paste0(socket, ".pid")

engine_kill <- function(socket) {
  file <- engine_pid_file(socket)
  if (!file.exists(file)) return(invisible())
  pid <- suppressWarnings(as.integer(readLines(file, n = 1L, warn = FALSE)))
  if (length(pid) == 1L && !is.na(pid)) tools::pskill(pid)
  invisible()
}

engine_timed_out <- function(endpoint, timeout) {
  http_error(500L, sprintf("the collapsed engine's %s did not finish within %s s (GROWTH_ENGINE_TIMEOUT_SECONDS)",
                           sub("^/", "", endpoint), format(timeout)))
}

engine_server_alive <- function(server = .service$engine_server) {
  !is.null(server) && !is.null(server$process) && server$process$is_alive()
}

# Why the engine is not there, for a 503: the end of its log (e.g. "No module named growth_engine").
engine_server_problem <- function(server = .service$engine_server) {
  if (is.null(server)) return("the engine was not started")
  if (!is.null(server$error)) return(server$error)
  tail <- if (file.exists(server$log)) stderr_tail(paste(readLines(server$log, warn = FALSE), collapse = "\n"), 3L)
  if (engine_server_alive(server)) "the engine is still starting" else paste("the engine exited:", tail %||% "")
}

# Restart a dead engine (at most every ENGINE_RESTART_SECONDS), and look again later.
engine_server_supervise <- function() {
  server <- .service$engine_server
  if (is.null(server) || isTRUE(.service$stopping)) return(invisible())
  age <- as.numeric(difftime(Sys.time(), server$started_at, units = "secs"))
  if (!engine_server_alive(server) && age >= ENGINE_RESTART_SECONDS) {
    log_line("collapsed engine: ", engine_server_problem(server), "; restarting it")
    engine_server_start(server$python)
  }
  later::later(engine_server_supervise, ENGINE_RESTART_SECONDS)
  invisible()
}

engine_server_stop <- function() {
  server <- .service$engine_server
  if (engine_server_alive(server)) server$process$kill_tree()
  if (!is.null(server)) unlink(server$socket)
  invisible()
}

engine_handle <- function(socket, command = NULL, timeout = 0) {
  h <- curl::new_handle(unix_socket_path = socket, timeout = if (timeout > 0) timeout else 0)
  if (!is.null(command)) {
    curl::handle_setopt(h, post = TRUE, postfields = as.character(to_json(command)))
    curl::handle_setheaders(h, `Content-Type` = "application/json")
  }
  h
}

engine_url <- function(endpoint) paste0("http://growth-engine", endpoint)

engine_answer <- function(status, text, endpoint) {
  answer <- tryCatch(jsonlite::parse_json(text), error = function(e) list(error = text))
  if (status == 200L) return(answer)
  message <- answer$error %||% text
  what <- sub("^/", "", endpoint)
  if (status == 400L) http_error(400L, message)
  if (status == 404L) http_error(404L, sprintf("the collapsed engine found no usable fit state: %s", message))
  http_error(500L, sprintf("the collapsed engine's %s failed: %s", what, message))
}

# The engine's answer to one command, from the service's own process without blocking it: -> promise of
# the parsed JSON answer, or of an http_error: the engine's own 400/404/500 message, a 500 on timeout, a
# 503 when it cannot be reached. A request that cannot reach it is tried again every half second for
# `wait` seconds (a fit waits for an engine that is starting or being restarted).
engine_request_async <- function(socket, endpoint, command, timeout = 0, wait = 0, poll = 0.02) {
  deadline <- Sys.time() + wait
  promises::promise(function(resolve, reject) {
    settle <- function(fn) tryCatch(resolve(fn()), error = function(e) reject(e))
    attempt <- function() {
      engine_fetch_async(
        socket, endpoint, command, timeout, poll,
        done = function(res) settle(function() engine_answer(res$status_code, rawToChar(res$content), endpoint)),
        fail = function(message) {
          if (!timed_out(message) && Sys.time() < deadline) return(later::later(attempt, 0.5))
          settle(function() engine_failed(socket, endpoint, timeout, message, engine_server_problem()))
        })
    }
    attempt()
  })
}

# One HTTP request to the engine on curl's multi interface, polled from the event loop (later).
engine_fetch_async <- function(socket, endpoint, command, timeout, poll, done, fail) {
  pool <- curl::new_pool()
  curl::curl_fetch_multi(engine_url(endpoint), handle = engine_handle(socket, command, timeout), pool = pool,
                         done = done, fail = fail)
  step <- function() {
    pending <- curl::multi_run(timeout = 0, poll = TRUE, pool = pool)$pending
    if (pending > 0L) later::later(step, poll)
  }
  later::later(step, 0)
  invisible()
}

# The error for a request the engine did not answer: its timeout (the engine is ended) or it is not there.
engine_failed <- function(socket, endpoint, timeout, message, problem) {
  if (timed_out(message)) {
    engine_kill(socket)
    engine_timed_out(endpoint, timeout)
  }
  http_error(503L, "the collapsed engine is not available: ", problem, " (", message, ")")
}

timed_out <- function(curl_message) grepl("timed out|Timeout", curl_message)

# Whether the engine answers: -> promise of list(available, detail), for /health.
check_engine_async <- function() {
  server <- .service$engine_server
  if (!engine_server_alive(server)) {
    return(promises::promise_resolve(list(available = FALSE, detail = engine_server_problem(server))))
  }
  promises::then(
    engine_request_async(server$socket, "/health", NULL, timeout = 10),
    onFulfilled = function(answer) list(available = TRUE, detail = sprintf("running (pid %s)", answer$pid)),
    onRejected = function(e) list(available = FALSE, detail = engine_server_problem(server))
  )
}
