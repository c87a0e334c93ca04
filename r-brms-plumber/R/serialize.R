# JSON in and out, at full precision (jsonlite digits = NA: 15 significant digits, no rounding to 4),
# NA/NaN/Inf as null.

to_json <- function(x) {
  jsonlite::toJSON(x, auto_unbox = TRUE, digits = NA, na = "null", null = "null",
                   dataframe = "rows", rownames = FALSE)
}

# Already-serialized JSON (e.g. a large fit response built in a worker) passes through the serializer.
json_text <- function(text) structure(as.character(text), class = "growth_json_text")

serializer_growth_json <- function(type = "application/json") {
  plumber::serializer_content_type(type, function(val) {
    if (inherits(val, "growth_json_text")) unclass(val) else as.character(to_json(val))
  })
}

write_json_file <- function(x, path) {
  writeLines(if (inherits(x, "growth_json_text")) unclass(x) else to_json(x), path, useBytes = TRUE)
}

# The request body as parsed JSON (arrays of scalars simplified to vectors, arrays of objects to data
# frames). Errors are 400s naming the problem.
parse_json_body <- function(req) {
  raw <- req$bodyRaw
  if (is.null(raw) || length(raw) == 0L) bad_request("request body is empty: expected a JSON object")
  text <- tryCatch(rawToChar(raw), error = function(e) bad_request("request body is not text: ", conditionMessage(e)))
  Encoding(text) <- "UTF-8"
  body <- tryCatch(
    jsonlite::fromJSON(text, simplifyVector = TRUE, simplifyDataFrame = TRUE, simplifyMatrix = FALSE),
    error = function(e) bad_request("request body is not valid JSON: ", trimws(conditionMessage(e)))
  )
  if (!is.list(body) || is.data.frame(body) || (length(body) > 0L && is.null(names(body)))) {
    bad_request("request body must be a JSON object")
  }
  body
}
