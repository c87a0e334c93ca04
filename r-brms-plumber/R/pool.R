# A pool of long-lived R worker processes (callr::r_session) that run fits, so the plumber process keeps
# answering (/health, predict_prob) while Stan samples. Jobs wait in a FIFO queue when all workers are
# busy; each submit() returns a promise that the event loop (later) settles when the worker is done.
#
# Worker life: stopped (no process) -> starting -> init (loads this package and brms) -> idle <-> busy; a
# worker that crashed, timed out, or ran `max_jobs` jobs is replaced by a stopped one. Processes start on
# demand: a stopped worker is started when a queued job has no idle or starting worker to go to, so a pool
# that is never used (or whose last process was recycled) holds no memory. At most one job at a time may
# compile a given family's model: a job for a family whose template is not on disk waits while another job
# of that family runs.

# (An R6 class: CamelCase like its kind, and its methods count as one function for cyclocomp.)
WorkerPool <- R6::R6Class("WorkerPool", # nolint: object_name_linter, cyclocomp_linter.
  public = list(
    # `cmdargs`: the R command line of the worker processes (callr's default when NULL)
    initialize = function(size, init_fun, init_args, can_run = function(job, running) TRUE,
                          max_jobs = 50L, job_timeout = 0, tick = 0.1, cmdargs = NULL) {
      private$size <- size
      private$cmdargs <- cmdargs
      private$init_fun <- init_fun
      private$init_args <- init_args
      private$can_run <- can_run
      private$max_jobs <- max_jobs
      private$job_timeout <- job_timeout
      private$tick_seconds <- tick
      # no process yet: the first submit() starts one
      private$workers <- lapply(seq_len(size), function(i) private$new_worker(i))
    },

    # Run `fn(args)` (a function name defined in the workers, see worker.R) -> promise of its value.
    # `key` (e.g. the model family) is what can_run() looks at; `label` names the job in logs.
    submit = function(fn, args, key = NULL, label = fn) {
      job <- new.env(parent = emptyenv())
      job$fn <- fn
      job$args <- args
      job$key <- key
      job$label <- label
      job$submitted <- Sys.time()
      p <- promises::promise(function(resolve, reject) {
        job$resolve <- resolve
        job$reject <- reject
      })
      private$queue <- c(private$queue, list(job))
      private$schedule()
      p
    },

    status = function() {
      states <- vapply(private$workers, function(w) w$state, character(1))
      list(workers = private$size, ready = sum(states %in% c("idle", "busy")), busy = sum(states == "busy"),
           starting = sum(states %in% c("starting", "init")), not_started = sum(states == "stopped"),
           queued = length(private$queue),
           running = lapply(Filter(function(w) w$state == "busy", private$workers), function(w) {
             list(job = w$job$label, seconds = as.numeric(difftime(Sys.time(), w$job_started, units = "secs")))
           }))
    },

    shutdown = function() {
      private$stopping <- TRUE
      for (w in private$workers) if (!is.null(w$session)) try(w$session$kill_tree(), silent = TRUE)
      for (job in private$queue) job$reject(http_error_condition(503L, "the service is shutting down"))
      private$queue <- list()
    }
  ),

  private = list(
    size = NULL, init_fun = NULL, init_args = NULL, can_run = NULL, max_jobs = NULL, job_timeout = NULL,
    tick_seconds = NULL, workers = list(), queue = list(), ticking = FALSE, stopping = FALSE, cmdargs = NULL,

    new_worker = function(i, failures = 0L) {
      w <- new.env(parent = emptyenv())
      w$id <- i
      w$state <- "stopped"
      w$jobs <- 0L
      w$failures <- failures
      w$job <- NULL
      w$not_before <- Sys.time() + if (failures > 0) min(60, 2^failures) else 0
      w$session <- NULL
      w
    },

    start_session = function(w) {
      # stdout/stderr of each call are captured by callr and forwarded to the service's log when it ends
      # (the session's own pipes are never read: nothing may be printed outside a call)
      opts <- callr::r_session_options(supervise = TRUE,
                                       env = c(callr::rcmd_safe_env(), R_BRMS_PLUMBER_WORKER = as.character(w$id)))
      if (!is.null(private$cmdargs)) opts$cmdargs <- private$cmdargs
      w$session <- tryCatch(callr::r_session$new(options = opts, wait = FALSE), error = function(e) {
        w$failures <- w$failures + 1L
        w$not_before <- Sys.time() + min(60, 2^w$failures)
        log_line("worker ", w$id, " could not start (attempt ", w$failures, "): ", conditionMessage(e))
        NULL
      })
    },

    replace_worker = function(w, why) {
      if (!is.null(why)) log_line("worker ", w$id, ": ", why, "; replaced (a new process starts for the next job)")
      # the whole tree: rstan's chain processes outlive a killed worker otherwise (processx finds them by the
      # environment marker it gave the worker, even once they are re-parented)
      if (!is.null(w$session)) try(w$session$kill_tree(), silent = TRUE)
      failures <- if (w$jobs == 0L && w$state %in% c("starting", "init")) w$failures + 1L else 0L
      private$workers[[w$id]] <- private$new_worker(w$id, failures)
    },

    schedule = function() {
      if (private$ticking || private$stopping) return(invisible())
      private$ticking <- TRUE
      later::later(function() private$tick(), private$tick_seconds)
    },

    tick = function() {
      private$ticking <- FALSE
      if (private$stopping) return(invisible())
      tryCatch({
        private$wake()
        for (i in seq_along(private$workers)) private$step(private$workers[[i]])
        private$dispatch()
      }, error = function(e) log_line("worker pool: ", conditionMessage(e)))
      # keep polling while anything is in flight; a pool of idle or stopped workers and no queue sleeps
      states <- vapply(private$workers, function(w) w$state, character(1))
      if (any(!states %in% c("idle", "stopped")) || length(private$queue)) private$schedule()
    },

    # Start as many stopped workers as there are queued jobs that no idle or starting worker will take.
    wake = function() {
      states <- vapply(private$workers, function(w) w$state, character(1))
      wanted <- length(private$queue) - sum(states %in% c("idle", "starting", "init"))
      stopped <- private$workers[states == "stopped"]
      for (w in utils::head(stopped, max(0L, wanted))) w$state <- "starting"
    },

    # Advance one worker's state machine without blocking.
    step = function(w) {
      if (w$state == "starting") {
        if (is.null(w$session)) {
          if (Sys.time() >= w$not_before) private$start_session(w)
          return(invisible())
        }
        if (w$session$poll_process(0) != "ready") return(invisible())
        msg <- w$session$read()
        if (is.null(msg)) return(invisible())
        if (msg$code != 201L) {
          return(private$replace_worker(w, sprintf("R session failed to start (code %s)", msg$code)))
        }
        w$session$call(private$init_fun, private$init_args)
        w$state <- "init"
      } else if (w$state %in% c("init", "busy")) {
        if (w$state == "busy" && private$job_timeout > 0 &&
            as.numeric(difftime(Sys.time(), w$job_started, units = "secs")) > private$job_timeout) {
          job <- w$job
          job$reject(http_error_condition(500L, sprintf("%s did not finish within BRMS_FIT_TIMEOUT_SECONDS = %s s",
                                                        job$label, format(private$job_timeout))))
          return(private$replace_worker(w, "job timed out"))
        }
        if (w$session$poll_process(0) != "ready") {
          # a worker killed from outside (e.g. out of memory) may leave children holding its pipes open, so
          # its end is not always seen on the connection
          if (w$session$is_alive()) return(invisible())
          msg <- list(code = 501L, error = simpleError(sprintf("exit status %s", format(w$session$get_exit_status()))))
        } else {
          msg <- w$session$read()
        }
        if (is.null(msg) || msg$code == 301L) return(invisible())   # no event / a progress message
        private$forward_output(w, msg)
        if (msg$code != 200L) {
          why <- sprintf("the worker process died (%s)",
                         if (!is.null(msg$error)) conditionMessage(msg$error) else paste("callr code", msg$code))
          if (w$state == "busy") w$job$reject(http_error_condition(500L, sprintf("%s failed: %s", w$job$label, why)))
          return(private$replace_worker(w, why))
        }
        if (w$state == "init") {
          if (!is.null(msg$error)) {
            return(private$replace_worker(w, paste("initialisation failed:", conditionMessage(msg$error))))
          }
          w$state <- "idle"
          w$failures <- 0L
          return(invisible())
        }
        job <- w$job
        w$job <- NULL
        w$state <- "idle"
        w$jobs <- w$jobs + 1L
        private$settle(job, msg)
        if (w$jobs >= private$max_jobs) private$replace_worker(w, NULL)
      }
    },

    forward_output = function(w, msg) {
      text <- paste0(msg$stdout %||% "", msg$stderr %||% "")
      if (nzchar(trimws(text))) {
        lines <- strsplit(sub("\n$", "", text), "\n", fixed = FALSE)[[1]]
        cat(paste0("[worker ", w$id, "] ", lines, "\n"), sep = "", file = stderr())
      }
    },

    settle = function(job, msg) {
      if (!is.null(msg$error)) {
        job$reject(http_error_condition(500L, sprintf("%s failed in the worker: %s", job$label,
                                                      conditionMessage(msg$error))))
        return(invisible())
      }
      out <- msg$result
      if (isTRUE(out$ok)) job$resolve(out$value) else job$reject(http_error_condition(out$status, out$message))
    },

    dispatch = function() {
      if (!length(private$queue)) return(invisible())
      running <- lapply(Filter(function(w) w$state == "busy", private$workers), function(w) w$job)
      for (w in private$workers) {
        if (w$state != "idle" || !length(private$queue)) next
        pick <- Position(function(job) isTRUE(private$can_run(job, running)), private$queue)
        if (is.na(pick)) return(invisible())
        job <- private$queue[[pick]]
        private$queue <- private$queue[-pick]
        job$args$received_at <- job$submitted
        w$job <- job
        w$job_started <- Sys.time()
        w$state <- "busy"
        w$session$call(growth_worker_call, list(package_name(), job$fn, job$args))
        running <- c(running, list(job))
      }
    }
  )
)
