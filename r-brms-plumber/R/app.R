# The router: the API files under inst/plumber/growth/ plus the service-wide pieces (JSON serializer, one
# error handler, 404, early 413 on Content-Length, OpenAPI info).

#' Path of a file of the growth API
#'
#' The API lives in the package at `inst/plumber/growth/` (plumber's [plumber::plumb_api()] layout):
#' `plumber.R` holds the public routes, `growth.R` the `/growth` routes.
#'
#' @param file File name inside the API folder.
#' @return The file's path (in the source tree when the package is loaded with `pkgload::load_all()`).
#' @export
api_file <- function(file = "plumber.R") {
  path <- system.file("plumber", "growth", file, package = package_name())
  if (!nzchar(path)) stop("the package has no plumber/growth/", file, call. = FALSE)
  path
}

package_name <- function() utils::packageName()

# The environment the API files are evaluated in: their handlers call the package's (internal) functions.
api_env <- function() new.env(parent = asNamespace(package_name()))

# Plumber with an onHeaders() that refuses an oversized body from its Content-Length header, before the
# body is read (plumber's own check answers text/plain; ours answers the contract's JSON error).
GrowthPlumber <- R6::R6Class("GrowthPlumber", # nolint: object_name_linter. R6 classes are CamelCase.
  inherit = plumber::Plumber,
  public = list(
    max_body_bytes = Inf,
    onHeaders = function(req) { # nolint: object_name_linter. httpuv's name for the hook.
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

# Error handler and 404 handler of a router mounted at `prefix` (plumber hands a mounted router the path
# without its mount point; messages and logs name the full path).
growth_error_handler <- function(prefix = "") {
  function(req, res, err) {
    status <- error_status(err)
    message <- conditionMessage(err)
    if (status >= 500L) log_line(req$REQUEST_METHOD, " ", prefix, req$PATH_INFO, " -> ", status, ": ", message)
    res$status <- status
    res$serializer <- serializer_growth_json()
    if (status == 401L) res$setHeader("WWW-Authenticate", "Bearer")
    error_body(status, message)
  }
}

# In a mounted router a known path asked with another method is answered 405 like plumber does at the top
# level (plumber checks only the top-level router's own routes for a 405).
growth_404_handler <- function(prefix = "", router = NULL) {
  function(req, res) {
    allowed <- if (is.null(router)) character(0) else route_methods(router, req$PATH_INFO)
    if (length(allowed) && isTRUE(getOption("plumber.methodNotAllowed", TRUE))) {
      res$status <- 405L
      res$setHeader("Allow", paste(allowed, collapse = ", "))
      res$serializer <- plumber::serializer_unboxed_json()
      return(list(error = "405 - Method Not Allowed"))
    }
    res$status <- 404L
    res$serializer <- serializer_growth_json()
    error_body(404L, sprintf("no route for %s %s%s", req$REQUEST_METHOD, prefix, req$PATH_INFO))
  }
}

# The methods a router's own endpoints answer for a path.
route_methods <- function(router, path) {
  endpoints <- unlist(router$endpoints, recursive = FALSE, use.names = FALSE)
  unique(unlist(lapply(endpoints, function(ep) if (isTRUE(ep$matchesPath(path))) ep$verbs)))
}

# Request bodies are parsed by the handlers themselves (parse_json_body: full control over types and a 400
# naming the problem), so plumber's parsers only hand over the raw bytes, whatever the Content-Type.
raw_body_parsers <- function() {
  keep_raw <- function(value, ...) value
  structure(list(alias = list(json = keep_raw, form = keep_raw, octet = keep_raw), regex = list(`.*` = keep_raw)),
            class = c("plumber_parsed_parsers", "list"))
}

# Serializer, parsers, error and 404 handlers shared by the top-level router and the /growth router.
configure_router <- function(pr, prefix = "") {
  pr$setSerializer(serializer_growth_json())
  pr$setParsers(raw_body_parsers())
  pr$setErrorHandler(growth_error_handler(prefix))
  pr$set404Handler(growth_404_handler(prefix, if (nzchar(prefix)) pr))
  pr
}

#' Mount the /growth routes
#'
#' Called by the `@plumber` block of `inst/plumber/growth/plumber.R`: plumbs `growth.R` as a router of its
#' own and mounts it at `/growth`, so its `auth` filter runs for `/growth/*` requests only.
#'
#' @param pr The top-level router.
#' @return `pr`, invisibly.
#' @keywords internal
mount_growth_routes <- function(pr) {
  growth <- configure_router(plumber::Plumber$new(api_file("growth.R"), envir = api_env()), prefix = "/growth")
  pr$mount("/growth", growth)
  invisible(pr)
}

#' Build the service's router
#'
#' Plumbs the API (`inst/plumber/growth/plumber.R`, which mounts `growth.R` at `/growth`) with the
#' contract's JSON serializer, error body, 404 and the early 413 on an announced body over the limit.
#'
#' @param cfg The configuration, from [read_config()].
#' @return A plumber router (a `plumber::Plumber`); start it with `$run(host, port)`.
#' @export
build_router <- function(cfg) {
  plumber::register_serializer("growth_json", serializer_growth_json)
  pr <- configure_router(GrowthPlumber$new(api_file("plumber.R"), envir = api_env()))
  pr$max_body_bytes <- cfg$max_body_bytes
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
