# The fit store: one folder per run_id under BRMS_FITS_DIR, written by a worker into a staging folder
# (.staging-<host>-<pid>-<run_id>, owned by the service process <pid> on <host>) and renamed into place
# when complete, so a folder that exists is whole. Several services may share one store: each removes only
# staging folders whose owner is gone (see store_prune).
#   meta.json      run_id, engine, family, fitted_at, week_center, students (for predict)
#   response.json  the fit response as answered
#   draws.rds      (brms) the posterior draws predict_prob needs
#   engine/        (collapsed) the engine's own output folder (response.json, state.npz)
# Bounded by count (BRMS_FITS_MAX, oldest removed first) and age (BRMS_FITS_MAX_AGE_DAYS); survives restarts.

RUN_ID_PATTERN <- "^[0-9a-f]{32}$"

new_run_id <- function() {
  bytes <- tryCatch({
    con <- file("/dev/urandom", open = "rb", raw = TRUE)
    on.exit(close(con))
    readBin(con, "raw", 16L)
  }, error = function(e) as.raw(sample.int(256L, 16L, replace = TRUE) - 1L))
  paste(sprintf("%02x", as.integer(bytes)), collapse = "")
}

valid_run_id <- function(id) is.character(id) && length(id) == 1L && grepl(RUN_ID_PATTERN, id)

run_dir <- function(fits_dir, run_id) file.path(fits_dir, run_id)
# The service process that owns this process's staging folders: the service itself, or for a worker the
# service that started it (SERVICE_PID_VARIABLE, set by service_start() and inherited by every child).
SERVICE_PID_VARIABLE <- "R_BRMS_PLUMBER_SERVICE_PID"
STAGING_PATTERN <- "^[.]staging-(.+)-([0-9]+)-([0-9a-f]{32})$"
STAGING_FOREIGN_MAX_AGE_DAYS <- 7   # a folder of another host (container) is removed only when this old

owner_pid <- function() {
  pid <- suppressWarnings(as.integer(Sys.getenv(SERVICE_PID_VARIABLE, "")))
  if (is.na(pid)) Sys.getpid() else pid
}

host_label <- function() gsub("[^A-Za-z0-9.]", "_", Sys.info()[["nodename"]])

staging_dir <- function(fits_dir, run_id) {
  file.path(fits_dir, sprintf(".staging-%s-%d-%s", host_label(), owner_pid(), run_id))
}

process_alive <- function(pid) {
  if (!file.exists("/proc/self/stat")) return(isTRUE(tools::pskill(pid, 0L)))
  stat <- file.path("/proc", pid, "stat")
  line <- if (file.exists(stat)) tryCatch(readLines(stat, n = 1L, warn = FALSE), error = function(e) "") else ""
  # a zombie (dead, not yet reaped) counts as gone
  length(line) == 1L && nzchar(line) && !startsWith(sub("^.*[)] ", "", line), "Z")
}

# Staging folders left by services that are gone: the owner's pid is dead (same host), the folder predates
# the owner-tagged names, or it belongs to another host and is older than STAGING_FOREIGN_MAX_AGE_DAYS.
stale_staging_dirs <- function(fits_dir) {
  dirs <- list.files(fits_dir, pattern = "^[.]staging-", full.names = TRUE, all.files = TRUE)
  if (!length(dirs)) return(character(0))
  name <- basename(dirs)
  tagged <- grepl(STAGING_PATTERN, name)
  host <- sub(STAGING_PATTERN, "\\1", name)
  pid <- suppressWarnings(as.integer(sub(STAGING_PATTERN, "\\2", name)))
  age_days <- as.numeric(difftime(Sys.time(), file.mtime(dirs), units = "days"))
  ours <- tagged & host == host_label()
  dead <- ours & (pid == Sys.getpid() | !vapply(pid, function(p) !is.na(p) && process_alive(p), logical(1)))
  # untagged (older service versions): after a day; another host's: after STAGING_FOREIGN_MAX_AGE_DAYS
  old <- !ours & !is.na(age_days) & age_days > ifelse(tagged, STAGING_FOREIGN_MAX_AGE_DAYS, 1)
  dirs[dead | old]
}

store_begin <- function(fits_dir, run_id) {
  dir <- staging_dir(fits_dir, run_id)
  unlink(dir, recursive = TRUE)
  if (!dir.create(dir, recursive = TRUE, showWarnings = FALSE)) stop("cannot create ", dir)
  dir
}

store_commit <- function(fits_dir, run_id) {
  from <- staging_dir(fits_dir, run_id)
  to <- run_dir(fits_dir, run_id)
  if (!file.rename(from, to)) stop("cannot move ", from, " to ", to)
  to
}

store_abort <- function(fits_dir, run_id) unlink(staging_dir(fits_dir, run_id), recursive = TRUE)

utc_now <- function() format(Sys.time(), "%Y-%m-%dT%H:%M:%SZ", tz = "UTC")

parse_utc <- function(x) as.POSIXct(x, format = "%Y-%m-%dT%H:%M:%SZ", tz = "UTC")

# The meta of a stored fit, or NULL when unknown or expired (an expired fit is removed on the way).
store_lookup <- function(fits_dir, run_id, max_age_days) {
  if (!valid_run_id(run_id)) return(NULL)
  dir <- run_dir(fits_dir, run_id)
  path <- file.path(dir, "meta.json")
  if (!file.exists(path)) return(NULL)
  meta <- tryCatch(jsonlite::fromJSON(path, simplifyVector = TRUE), error = function(e) NULL)
  if (is.null(meta)) return(NULL)
  fitted <- parse_utc(meta$fitted_at)
  if (max_age_days > 0 && !is.na(fitted) &&
      difftime(Sys.time(), fitted, units = "days") > max_age_days) {
    unlink(dir, recursive = TRUE)
    return(NULL)
  }
  meta$dir <- dir
  meta
}

# Stored fits, oldest first: data.frame(run_id, dir, fitted_at).
store_list <- function(fits_dir) {
  ids <- list.files(fits_dir, pattern = RUN_ID_PATTERN)
  metas <- file.path(fits_dir, ids, "meta.json")
  ids <- ids[file.exists(metas)]
  metas <- metas[file.exists(metas)]
  when <- file.mtime(metas)
  out <- data.frame(run_id = ids, dir = file.path(fits_dir, ids), fitted_at = when, stringsAsFactors = FALSE)
  out[order(out$fitted_at), , drop = FALSE]
}

# Remove fits beyond the count and age limits, and (at start-up, stale_staging = TRUE) staging folders
# left by a service that died mid-fit (never those of a service still running, see stale_staging_dirs).
# Returns the removed run_ids.
store_prune <- function(fits_dir, max_n, max_age_days, stale_staging = FALSE) {
  if (!dir.exists(fits_dir)) return(character(0))
  fits <- store_list(fits_dir)
  too_old <- if (max_age_days > 0) {
    difftime(Sys.time(), fits$fitted_at, units = "days") > max_age_days
  } else {
    rep(FALSE, nrow(fits))
  }
  over <- seq_len(nrow(fits)) <= nrow(fits) - max_n
  drop <- fits[too_old | over, , drop = FALSE]
  unlink(drop$dir, recursive = TRUE)
  # folders without meta.json are incomplete leftovers too
  orphans <- setdiff(list.files(fits_dir, pattern = RUN_ID_PATTERN), fits$run_id)
  unlink(file.path(fits_dir, orphans), recursive = TRUE)
  if (stale_staging) unlink(stale_staging_dirs(fits_dir), recursive = TRUE)
  c(drop$run_id, orphans)
}
