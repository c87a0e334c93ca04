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
    cfg = NULL,
    onHeaders = function(req) { # nolint: object_name_linter. httpuv's name for the hook.
      size <- suppressWarnings(as.numeric(req$CONTENT_LENGTH %||% NA))
      limit <- body_limit(self$cfg, req$CONTENT_TYPE)
      if (length(size) == 1L && !is.na(size) && size > limit$bytes) {
        message <- tryCatch(body_too_large(limit), error = conditionMessage)
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
    if (status >= 500L) {
      log_line(req$REQUEST_METHOD, " ", prefix, req$PATH_INFO, " -> ", status, ": ", message)
      message <- redact_paths(message)   # the log has them; a client needs no file names of the server
    }
    res$status <- status
    res$serializer <- serializer_growth_json()
    if (status == 401L) res$setHeader("WWW-Authenticate", "Bearer")
    for (name in names(err$headers)) res$setHeader(name, err$headers[[name]])
    error_body(status, message)
  }
}

redact_paths <- function(text) gsub("(/[A-Za-z0-9._~+-]+){2,}/?", "<path>", text)

# A known path asked with another method is a 405 with the contract's error body and an Allow header (the
# option plumber.methodNotAllowed is off, see build_router(): plumber's own 405 answers another body and
# looks at the top-level router's routes only). Methods httpuv's HTTP parser does not know at all (e.g.
# QUERY) never reach R: httpuv closes those connections itself.
growth_404_handler <- function(prefix = "", router = NULL) {
  function(req, res) {
    allowed <- if (is.null(router)) character(0) else route_methods(router, req$PATH_INFO)
    res$serializer <- serializer_growth_json()
    if (length(allowed)) {
      res$status <- 405L
      res$setHeader("Allow", paste(allowed, collapse = ", "))
      return(error_body(405L, sprintf("method %s is not allowed for %s%s (allowed: %s)", req$REQUEST_METHOD,
                                      prefix, req$PATH_INFO, paste(allowed, collapse = ", "))))
    }
    res$status <- 404L
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

# plumber's default filters, but a query string it cannot decode (e.g. a NUL, %00) is the client's 400,
# not the 500 that plumber's own queryString filter would end in.
growth_filters <- function() {
  filters <- plumber:::defaultPlumberFilters  # not exported by plumber
  parse <- filters$queryString
  filters$queryString <- function(req) {
    tryCatch(parse(req), error = function(e) {
      if (inherits(e, "growth_http_error")) stop(e)
      bad_request("the query string cannot be decoded: ", conditionMessage(e))
    })
  }
  filters
}

# Serializer, parsers, error and 404 handlers shared by the top-level router and the /growth router.
configure_router <- function(pr, prefix = "") {
  pr$setSerializer(serializer_growth_json())
  pr$setParsers(raw_body_parsers())
  pr$setErrorHandler(growth_error_handler(prefix))
  pr$set404Handler(growth_404_handler(prefix, pr))
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

#' The service's OpenAPI document
#'
#' Written by hand (`inst/plumber/growth/openapi.json`): request bodies, responses and the error object of
#' every route, which plumber cannot derive from the handlers (they parse their bodies themselves).
#' Served at `/openapi.json`.
#'
#' @return The OpenAPI 3 document as a list.
#' @export
openapi_spec <- function() {
  jsonlite::read_json(api_file("openapi.json"), simplifyVector = FALSE)
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
  pr <- configure_router(GrowthPlumber$new(api_file("plumber.R"), filters = growth_filters(), envir = api_env()))
  pr$cfg <- cfg
  options(plumber.methodNotAllowed = FALSE)   # 405s come from growth_404_handler()
  spec <- openapi_spec()
  pr$setApiSpec(function(generated) spec)
  pr$registerHook("exit", function() service_stop())
  pr
}
