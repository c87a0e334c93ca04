# The service's state (configuration, worker pool, engine status) and the handlers behind the routes in
# plumber.R. Handlers either return a value (serialized by serializer_growth_json) or a promise of one.

.service <- new.env(parent = emptyenv())

package_version_string <- function(p) {
  tryCatch(as.character(utils::packageVersion(p)), error = function(e) NA_character_)
}

#' Start the service's state
#'
#' Prepares the model and fit folders (pruning expired fits), creates the worker pool (its processes start
#' with the first job that needs one; each loads this package and brms once), starts the collapsed engine
#' and queues the warm-up compiles of `BRMS_WARMUP_FAMILIES` (which start a worker at once).
#'
#' @param cfg The configuration, from [read_config()].
#' @return `TRUE`, invisibly.
#' @export
service_start <- function(cfg) {
  # every process this service starts (workers, their samplers, the engine) carries this variable: it
  # names the owner of their staging folders (store.R), and the watchdog finds them by it
  do.call(Sys.setenv, stats::setNames(list(as.character(Sys.getpid())), SERVICE_PID_VARIABLE))
  .service$watchdog <- start_watchdog(Sys.getpid())
  dir.create(cfg$model_dir, recursive = TRUE, showWarnings = FALSE)
  dir.create(cfg$fits_dir, recursive = TRUE, showWarnings = FALSE)
  removed <- store_prune(cfg$fits_dir, cfg$fits_max, cfg$fits_max_age_days, stale_staging = TRUE)
  if (length(removed)) log_line("fit store: removed ", length(removed), " expired fit(s)")
  .service$cfg <- cfg
  .service$versions <- list(
    R = paste(R.version$major, R.version$minor, sep = "."),
    brms = package_version_string("brms"), rstan = package_version_string("rstan"),
    plumber = package_version_string("plumber"), posterior = package_version_string("posterior"),
    StanHeaders = package_version_string("StanHeaders"))
  .service$engine <- list(available = FALSE, detail = "not checked yet", checked_at = NULL, checking = FALSE)
  .service$started_at <- utc_now()
  model_dir <- cfg$model_dir
  .service$pool <- WorkerPool$new(
    size = cfg$workers, init_fun = growth_worker_bootstrap,
    init_args = list(package = package_name(), path = package_source_dir()),
    # a job that may have to compile its model waits while another job of the model runs
    can_run = function(job, running) {
      is.null(job$key) || template_compiled(model_dir, job$key) ||
        !any(vapply(running, function(r) identical(r$key, job$key), logical(1)))
    },
    max_jobs = cfg$worker_max_jobs, job_timeout = cfg$fit_timeout_seconds)
  # large request bodies are parsed and validated here, never in the service's own process. Its process
  # starts with the first large body and ends after each (max_jobs = 1), giving its memory back; the next
  # one starts with the next large body
  .service$parser <- WorkerPool$new(
    size = 1L, init_fun = growth_worker_bootstrap,
    init_args = list(package = package_name(), path = package_source_dir(), init = "growth_parser_init"),
    # --no-echo, R's newer name for --slave: on `ps` the parser is not taken for a fit worker
    max_jobs = 1L, cmdargs = c("--no-readline", "--no-echo", "--no-save", "--no-restore"))
  .service$collapsed <- collapsed_queue()
  engine_server_start(cfg$engine_python)
  later::later(engine_server_supervise, ENGINE_RESTART_SECONDS)
  later::later(refresh_engine_status, 5)
  # a family's warm-up compiles each of its models (gaussian: plain and attempts observation models)
  for (model in unlist(lapply(cfg$warmup_families, family_models))) {
    if (template_compiled(model_dir, model)) next
    promises::then(
      .service$pool$submit("ensure_template_job", list(model = model, model_dir = model_dir), key = model,
                           label = paste("warm-up compile of", model)),
      onFulfilled = function(out) log_line("warm-up: the ", out$model, " model is compiled"),
      onRejected = function(e) log_line("warm-up compile failed: ", conditionMessage(e)))
  }
  log_line("r-brms-plumber: model dir ", model_dir, ", fits ", cfg$fits_dir, ", ", cfg$workers, " worker(s)",
           if (nzchar(cfg$token)) ", bearer token required on /growth/*" else "")
  invisible(TRUE)
}

#' Stop the service's worker pool
#'
#' Kills the worker processes (and their samplers) and refuses queued fits with 503. Registered as the
#' router's exit hook by [build_router()].
#'
#' @return `TRUE`, invisibly.
#' @export
service_stop <- function() {
  .service$stopping <- TRUE
  engine_server_stop()
  if (!is.null(.service$pool)) .service$pool$shutdown()
  if (!is.null(.service$parser)) .service$parser$shutdown()
  invisible(TRUE)
}

# A process that outlives this one: once the service has died (even by kill -9, when no exit hook runs) it
# kills every process still carrying SERVICE_PID_VARIABLE = pid (workers, rstan chains, the engine), so
# none of them goes on to write into the fit store. -> the processx process, or NULL where it cannot run.
start_watchdog <- function(pid) {
  script <- system.file("bin", "watchdog.sh", package = package_name())
  if (!nzchar(script) || !file.exists("/proc/self/environ")) return(NULL)
  tryCatch(
    processx::process$new("sh", c(script, as.character(pid), SERVICE_PID_VARIABLE),
                          env = c(PATH = Sys.getenv("PATH")), cleanup = FALSE, stdout = NULL, stderr = NULL),
    error = function(e) {
      log_line("watchdog could not start: ", conditionMessage(e))
      NULL
    })
}

# Re-check (asynchronously) whether the engine process answers, at most every few seconds.
refresh_engine_status <- function(max_age_seconds = 5) {
  e <- .service$engine
  fresh <- !is.null(e$checked_at) && as.numeric(difftime(Sys.time(), e$checked_at, units = "secs")) < max_age_seconds
  if (isTRUE(e$checking) || fresh) return(invisible())
  .service$engine$checking <- TRUE
  promises::then(check_engine_async(), function(res) {
    if (!identical(res$available, .service$engine$available)) log_line("collapsed engine: ", res$detail)
    .service$engine <- list(available = res$available, detail = res$detail, checked_at = Sys.time(), checking = FALSE)
  })
  invisible()
}

# `ready`: a fit can be taken now. A worker not started yet counts (it starts with the first job that needs
# it); one that failed to start and waits to try again does not.
handle_health <- function() {
  refresh_engine_status()
  st <- .service$pool$status()
  collapsed <- collapsed_status(.service$collapsed)
  list(
    status = "ok",
    ready = st$ready + st$not_started > 0L,
    versions = .service$versions,
    compiled = compiled_models(.service$cfg$model_dir),
    engines = as.list(c("brms", if (isTRUE(.service$engine$available)) "collapsed")),
    busy = st$busy > 0L || st$queued > 0L || length(collapsed$running) > 0L || collapsed$queued > 0L,
    workers = list(total = st$workers, ready = st$ready, busy = st$busy, starting = st$starting,
                   not_started = st$not_started),
    queued = st$queued + collapsed$queued,
    running = c(st$running, collapsed$running),
    engine_status = list(collapsed = .service$engine$detail),
    started_at = .service$started_at
  )
}

# Bodies up to this size are parsed in the service's process (a few tens of ms); larger ones in the parser
# process, so that a big body never holds up /health or other requests.
INLINE_PARSE_MAX_BYTES <- 2 * 1024^2
QUEUE_RETRY_AFTER_SECONDS <- 30L

# The request body parsed and checked by `validator` (a function name): -> the request, or a promise of it.
parsed_request <- function(req, validator) {
  raw <- req$bodyRaw
  if (length(raw) <= INLINE_PARSE_MAX_BYTES || is.null(.service$parser)) {
    return(match.fun(validator)(parse_json_raw(raw)))
  }
  # handed over as a file (no serialization of the body in this process). One writeBin, not
  # write_raw_file's slices: their collections hold up /health (0.9 s instead of 0.6 s for 50 MB)
  path <- tempfile("body-", fileext = ".json")
  writeBin(raw, path)
  promises::finally(
    .service$parser$submit("parse_request_job", list(path = path, validator = validator),
                           label = sprintf("parsing a %.1f MB body", length(raw) / 1024^2)),
    function() {
      unlink(path)
      later::later(function() invisible(gc()), 0.5)
    })
}

then_or_now <- function(x, fn) if (promises::is.promising(x)) promises::then(x, fn) else fn(x)

# A JSON body carries its settings itself; an Arrow body's are in the query string.
handle_fit <- function(req) {
  if (body_format(req) == "arrow") return(submit_fit(validate_fit_query(req$argsQuery), req))
  no_query(req)
  then_or_now(parsed_request(req, "validate_fit_request"), function(request) submit_fit(request, req))
}

handle_predict <- function(req) {
  if (body_format(req) == "arrow") return(answer_predict(validate_predict_query(req$argsQuery), req))
  no_query(req)
  then_or_now(parsed_request(req, "validate_predict_request"), function(request) answer_predict(request, req))
}

no_query <- function(req) {
  if (length(req$argsQuery)) {
    bad_request("a JSON request carries its settings in the body; the query string (",
                paste(names(req$argsQuery), collapse = ", "), ") is for Arrow bodies (", ARROW_MEDIA_TYPE, ")")
  }
}

# "json" or "arrow" by the request's Content-Type (none: JSON); anything else is a 415.
body_format <- function(req) {
  type <- tolower(trimws(sub(";.*$", "", req$CONTENT_TYPE %||% "")))
  if (type %in% c("", "application/json")) return("json")
  if (type == ARROW_MEDIA_TYPE) return("arrow")
  http_error(415L, sprintf("unsupported Content-Type '%s': send application/json or %s", type, ARROW_MEDIA_TYPE))
}

# The answer's format by the request's Accept: Arrow only when asked for.
answer_format <- function(req) {
  if (grepl(ARROW_MEDIA_TYPE, tolower(req$HTTP_ACCEPT %||% ""), fixed = TRUE)) "arrow" else "json"
}

# The body as a file for the engine (written once, as it came); the caller removes it when answered. The
# request's copies of the body are dropped then (see release_body).
body_file <- function(req, format) {
  path <- tempfile("body-", fileext = if (format == "arrow") ".arrow" else ".json")
  write_raw_file(req$bodyRaw, path)
  release_body(req)
  list(path = path, format = format)
}

# writeBin() copies what it writes into a buffer of its own: a large body goes in slices, each collected
# once written (a minor collection, cheap), so that this process does not hold the body twice.
WRITE_SLICE_BYTES <- 4 * 1024^2

write_raw_file <- function(raw, path) {
  con <- file(path, "wb")
  on.exit(close(con))
  for (i in seq_len(ceiling(length(raw) / WRITE_SLICE_BYTES))) {
    from <- (i - 1) * WRITE_SLICE_BYTES + 1
    writeBin(raw[from:min(length(raw), from + WRITE_SLICE_BYTES - 1)], con)
    gc(full = FALSE)
  }
  invisible(path)
}

# plumber keeps the body in the request as bodyRaw, body, argsBody and args (one vector, four references):
# once it is on disk the engine reads it there, and a million students' body (~230 MB) need not stay in
# this process while the engine fits. plumber's own frames still refer to it until the handler returns,
# hence the collection just after.
release_body <- function(req) {
  rm(list = intersect(c("bodyRaw", "body", "argsBody"), ls(req, all.names = TRUE)), envir = req)
  req$args <- Filter(Negate(is.raw), req$args)
  later::later(function() invisible(gc()), 0)
  invisible()
}

# Fits waiting: for a worker (brms) or for the engine (collapsed).
queued_fits <- function() .service$pool$status()$queued + collapsed_status(.service$collapsed)$queued

check_queue <- function() {
  cfg <- .service$cfg
  queued <- queued_fits()
  if (queued >= cfg$max_queue) {
    stop(http_error_condition(503L, sprintf(
      "%d fits are already waiting (BRMS_MAX_QUEUE = %d); try again later", queued, cfg$max_queue),
      headers = list(`Retry-After` = as.character(QUEUE_RETRY_AFTER_SECONDS))))
  }
}

submit_fit <- function(request, req) {
  cfg <- .service$cfg
  check_queue()
  run_id <- new_run_id()
  seed <- if (is.na(request$seed)) sample.int(.Machine$integer.max, 1L) else request$seed
  label <- sprintf("%s %s fit %s", request$engine, request$family, run_id)
  fitted <- if (request$engine == "brms") {
    submit_brms_fit(request, req, run_id, seed, label)
  } else {
    submit_collapsed_fit(request, req, run_id, seed, label)
  }
  promises::then(fitted, function(out) {
    log_line(out$log)
    tryCatch(store_prune(cfg$fits_dir, cfg$fits_max, cfg$fits_max_age_days),
             error = function(e) log_line("fit store: pruning failed: ", conditionMessage(e)))
    if (is.null(out$path)) json_text(out$json) else engine_file_answer(out$path, out$format)
  })
}

# A brms fit runs in a worker process (the pool starts one if none is running). The attempts observation
# model first asks the engine process for its kappa and gbar (brms_observation_async).
submit_brms_fit <- function(request, req, run_id, seed, label) {
  cfg <- .service$cfg
  model <- brms_model(request$family, request$observation_model)
  # too few draws for this cohort is said now, before sampling, and again in the answer
  advice <- sampler_advice(length(unique(request$data$student)), request$iter, request$chains, request$family)
  args <- list(run_id = run_id, fits_dir = cfg$fits_dir, data = request$data, family = request$family,
               model = model, iter = request$iter, chains = request$chains, seed = seed, model_dir = cfg$model_dir,
               sampler = cfg$sampler, advice = advice)
  submit <- function(observation) {
    log_line("queued ", label, " (", nrow(request$data), " rows, model ", model, ", iter ", request$iter, " x ",
             request$chains, " chains)")
    if (!is.null(advice)) log_line("warning: ", label, ": ", advice)
    .service$pool$submit("fit_brms_job", c(args, list(observation = observation)), key = model, label = label)
  }
  if (model == request$family) return(submit(NULL))
  promises::then(brms_observation_async(req, cfg), submit)
}

# The attempts observation model of a brms fit: the engine's own estimate of kappa (and gbar) from the
# request's body as it came, by the same code on the same rows as a collapsed fit of that body (so both
# engines fit one model), sent from this process without blocking it. -> promise of list(record, json,
# seconds, row_scale): the record (name, formula, kappa, gbar, ...) parsed, and as the engine's JSON text,
# reported verbatim; the engine's time for it; each row's residual variance over sigma^2 (g_j / gbar).
brms_observation_async <- function(req, cfg) {
  input <- body_file(req, "json")
  command <- list(input = input, observation_model = "attempts")
  answered <- promises::then(
    engine_request_async(.service$engine_server$socket, "/observation", command, cfg$engine_timeout_seconds,
                         wait = ENGINE_READY_SECONDS),
    function(answer) {
      list(record = answer$observation, json = answer$observation_json, seconds = answer$engine_seconds,
           row_scale = as.numeric(unlist(answer$row_scale)))
    })
  answered <- promises::catch(answered, function(e) {
    if (inherits(e, "growth_http_error") && e$status == 503L) {
      e$message <- paste0("observation_model 'attempts' with engine 'brms' needs the collapsed engine's process ",
                          "(it estimates kappa): ", conditionMessage(e))
    }
    stop(e)
  })
  promises::finally(answered, function() unlink(input$path))
}

# A collapsed fit is the engine's work, sent from this process (fit_collapsed.R): no worker process.
submit_collapsed_fit <- function(request, req, run_id, seed, label) {
  cfg <- .service$cfg
  input <- body_file(req, body_format(req))
  settings <- list(iter = request$iter, chains = request$chains, seed = seed, family = request$family,
                   observation_model = if (is.na(request$observation_model)) NULL else request$observation_model)
  args <- list(run_id = run_id, fits_dir = cfg$fits_dir, input = input, settings = settings,
               response_format = answer_format(req), socket = .service$engine_server$socket,
               timeout = cfg$engine_timeout_seconds)
  log_line("queued ", label, sprintf(" (%s body %.1f MB", input$format, file.size(input$path) / 1024^2),
           ", iter ", request$iter, " x ", request$chains, " chains)")
  promises::finally(collapsed_submit(.service$collapsed, args, label), function() unlink(input$path))
}

answer_predict <- function(request, req) {
  cfg <- .service$cfg
  meta <- store_lookup(cfg$fits_dir, request$run_id, cfg$fits_max_age_days)
  if (is.null(meta)) {
    http_error(404L, sprintf(paste("run_id '%s' is unknown or expired",
                                   "(the service keeps the last %d fits, for at most %s days)"),
                             request$run_id, cfg$fits_max, format(cfg$fits_max_age_days)))
  }
  format <- body_format(req)
  if (!identical(meta$engine, "collapsed")) {
    if (format == "arrow") {
      http_error(415L, sprintf("run_id '%s' is a brms fit, whose predict_prob reads JSON only: send application/json",
                               request$run_id))
    }
    return(predict_brms(meta, request))
  }
  input <- body_file(req, format)
  request$input <- input
  request$response_format <- answer_format(req)
  promises::finally(predict_collapsed(meta, request, cfg), function() unlink(input$path))
}

# The bearer token, when BRMS_PLUMBER_TOKEN is set; used by the `auth` filter of the /growth router
# (inst/plumber/growth/growth.R), so it checks every request it sees. Compares digests, so the time taken
# does not depend on how much of the token matched.
check_auth <- function(req) {
  token <- .service$cfg$token
  if (!nzchar(token)) return(invisible(TRUE))
  supplied <- trimws(req$HTTP_AUTHORIZATION %||% "")
  # RFC 7235: the scheme is case-insensitive ("Bearer", "bearer", ...)
  scheme <- sub("[[:space:]].*$", "", supplied)
  if (!nzchar(supplied) || tolower(scheme) != "bearer") {
    http_error(401L, "missing bearer token: send 'Authorization: Bearer <BRMS_PLUMBER_TOKEN>'")
  }
  credentials <- trimws(substring(supplied, nchar(scheme) + 1L))
  if (!identical(digest::digest(credentials, algo = "sha256", serialize = FALSE),
                 digest::digest(token, algo = "sha256", serialize = FALSE))) {
    http_error(401L, "wrong bearer token")
  }
  invisible(TRUE)
}

# Bodies sent without a Content-Length (chunked) are only measured once read.
check_body_size <- function(req) {
  limit <- body_limit(.service$cfg, req$CONTENT_TYPE)
  if (length(req$bodyRaw) > limit$bytes) body_too_large(limit)
  invisible(TRUE)
}

# The size limit for a body of this Content-Type: list(bytes, variable). JSON is parsed by R, value by value;
# an Arrow body is read in place by the engine, whose memory is what bounds it (config.R).
body_limit <- function(cfg, content_type) {
  arrow <- grepl(ARROW_MEDIA_TYPE, tolower(content_type %||% ""), fixed = TRUE)
  if (arrow) list(bytes = cfg$max_arrow_body_bytes, variable = "BRMS_MAX_ARROW_BODY_MB")
  else list(bytes = cfg$max_body_bytes, variable = "BRMS_MAX_BODY_MB")
}

body_too_large <- function(limit) {
  http_error(413L, sprintf("request body too large: the limit is %s MB (%s)", format(round(limit$bytes / 1024^2, 1)),
                           limit$variable))
}
