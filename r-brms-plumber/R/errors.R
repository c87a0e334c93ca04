# HTTP errors as R conditions: raised anywhere (validation, workers, the store), turned into
# {"error": ..., "status": ...} by the router's single error handler (see app.R).

# `headers`: extra response headers (e.g. Retry-After of a 503), a named list.
http_error_condition <- function(status, message, headers = NULL) {
  structure(class = c("growth_http_error", "error", "condition"),
            list(message = message, call = NULL, status = as.integer(status), headers = headers))
}

http_error <- function(status, ...) stop(http_error_condition(status, paste0(...)))

bad_request <- function(...) http_error(400L, ...)

error_body <- function(status, message) list(error = message, status = as.integer(status))

# The status an error handler should answer for a condition: its own for growth_http_error,
# 500 for anything else (an unexpected failure inside the service).
error_status <- function(err) {
  if (inherits(err, "growth_http_error")) err$status else 500L
}

log_line <- function(...) {
  cat(format(Sys.time(), "%Y-%m-%dT%H:%M:%OS3Z", tz = "UTC"), " ", paste0(...), "\n", sep = "", file = stderr())
}
