# The router: plumber.R's routes plus the service-wide pieces (JSON serializer, one error handler, 404,
# early 413 on Content-Length, OpenAPI info).

# Plumber with an onHeaders() that refuses an oversized body from its Content-Length header, before the
# body is read (plumber's own check answers text/plain; ours answers the contract's JSON error).
GrowthPlumber <- R6::R6Class("GrowthPlumber",
  inherit = plumber::Plumber,
  public = list(
    max_body_bytes = Inf,
    onHeaders = function(req) {
      size <- suppressWarnings(as.numeric(req$CONTENT_LENGTH %||% NA))
      if (length(size) == 1L && !is.na(size) && size > self$max_body_bytes) {
        message <- tryCatch(body_too_large(self$max_body_bytes), error = conditionMessage)
        return(list(status = 413L, headers = list(`Content-Type` = "application/json"),
                    body = as.character(to_json(error_body(413L, message)))))
      }
      NULL
    }
  )
)

growth_error_handler <- function(req, res, err) {
  status <- error_status(err)
  message <- conditionMessage(err)
  if (status >= 500L) log_line(req$REQUEST_METHOD, " ", req$PATH_INFO, " -> ", status, ": ", message)
  res$status <- status
  res$serializer <- serializer_growth_json()
  if (status == 401L) res$setHeader("WWW-Authenticate", "Bearer")
  error_body(status, message)
}

growth_404_handler <- function(req, res) {
  res$status <- 404L
  res$serializer <- serializer_growth_json()
  error_body(404L, sprintf("no route for %s %s", req$REQUEST_METHOD, req$PATH_INFO))
}

# Request bodies are parsed by the handlers themselves (parse_json_body: full control over types and a 400
# naming the problem), so plumber's parsers only hand over the raw bytes, whatever the Content-Type.
raw_body_parsers <- function() {
  keep_raw <- function(value, ...) value
  structure(list(alias = list(json = keep_raw, form = keep_raw, octet = keep_raw), regex = list(`.*` = keep_raw)),
            class = c("plumber_parsed_parsers", "list"))
}

build_router <- function(cfg) {
  plumber::register_serializer("growth_json", serializer_growth_json)
  pr <- GrowthPlumber$new(file.path(cfg$root, "plumber.R"))
  pr$max_body_bytes <- cfg$max_body_bytes
  pr$setSerializer(serializer_growth_json())
  pr$setParsers(raw_body_parsers())
  pr$setErrorHandler(growth_error_handler)
  pr$set404Handler(growth_404_handler)
  pr$setApiSpec(function(spec) {
    spec$info <- list(
      title = "r-brms-plumber",
      description = paste("Bayesian growth model fits (brms / collapsed engine) and goal probabilities.",
                          "Contract: docs/growth-api.md."),
      version = "1.0.0")
    spec
  })
  pr$registerHook("exit", function() service_stop())
  pr
}
