# JSON in and out, at full precision (jsonlite digits = NA: 15 significant digits, no rounding to 4),
# NA/NaN/Inf as null. A value of class "json" (JSON text another process wrote, e.g. the engine's record of
# an observation model) is copied in verbatim.

to_json <- function(x) {
  jsonlite::toJSON(x, auto_unbox = TRUE, digits = NA, na = "null", null = "null",
                   dataframe = "rows", rownames = FALSE, json_verbatim = TRUE)
}

# Already-serialized JSON (e.g. a large fit response built in a worker) passes through the serializer.
json_text <- function(text) structure(as.character(text), class = "growth_json_text")

# JSON, or a file the engine wrote (class growth_file, see engine_file_answer: Arrow or JSON as it is),
# which httpuv streams from disk (a body list(file, owned) is its bodyFile).
serializer_growth_json <- function(type = "application/json") {
  function(val, req, res, errorHandler) { # nolint: object_name_linter. plumber's argument name.
    tryCatch({
      file <- inherits(val, "growth_file")
      arrow <- file && identical(attr(val, "format"), "arrow")
      res$setHeader("Content-Type", if (arrow) ARROW_MEDIA_TYPE else type)
      res$body <- if (file) list(file = val$file, owned = val$owned) else
        if (inherits(val, "growth_json_text")) unclass(val) else as.character(to_json(val))
      res$toResponse()
    }, error = function(err) errorHandler(req, res, err))
  }
}

write_json_file <- function(x, path) {
  writeLines(if (inherits(x, "growth_json_text")) unclass(x) else to_json(x), path, useBytes = TRUE)
}

# JSON text -> R, without simplification, so every JSON type is still known to the validation (a boolean
# is not a number, `[2]` is not `2`, `{}` is not `[]`): objects are named lists, arrays unnamed lists,
# scalars length-1 vectors, null NULL. Errors are 400s naming the problem.
#
# R strings cannot hold NUL: the escape \u0000 is parsed as U+FFFF (a noncharacter, NUL_STANDIN) and any
# string or key holding one is refused naming its place, instead of being cut short at the NUL. Objects
# with a key given twice are refused too (jsonlite would keep the first value silently).
NUL_STANDIN <- "\uffff"

parse_json_text <- function(text) {
  Encoding(text) <- "UTF-8"
  has_nul <- grepl("\\u0000", text, fixed = TRUE)
  if (has_nul) text <- gsub("(?<!\\\\)((?:\\\\\\\\)*)\\\\u0000", "\\1\\\\uffff", text, perl = TRUE)
  body <- tryCatch(
    jsonlite::parse_json(text, simplifyVector = FALSE),
    error = function(e) bad_request("request body is not valid JSON: ", trimws(conditionMessage(e)))
  )
  if (!is.list(body) || is.null(names(body))) bad_request("request body must be a JSON object")
  check_json_tree(body, nul = has_nul)
  body
}

# The first place (e.g. "data.student", "run_id") of a duplicated key or (nul = TRUE) of a NUL (see
# parse_json_text), as a 400. Array positions are left out of the name; the message gives the 0-based one.
check_json_tree <- function(x, nul = FALSE, path = "", position = NA_integer_) {
  if (is.character(x)) {
    if (nul && grepl(NUL_STANDIN, x, fixed = TRUE)) nul_found(path, position)
  } else if (!is.null(names(x))) {
    check_json_object(x, nul, path, position)
  } else {
    check_json_array(x, nul, path)
  }
  invisible()
}

nul_found <- function(path, position) {
  bad_request(path, " contains a NUL character (\\u0000)", if (!is.na(position)) paste0(" at position ", position))
}

json_place <- function(path) if (nzchar(path)) path else "the request body"

check_json_object <- function(x, nul, path, position) {
  keys <- names(x)
  if (nul && any(grepl(NUL_STANDIN, keys, fixed = TRUE))) {
    bad_request("a key in ", json_place(path), " contains a NUL character")
  }
  dup <- anyDuplicated(keys)
  if (dup) {
    bad_request("duplicated key '", keys[dup], "' in ", json_place(path),
                if (!is.na(position)) paste0(" at position ", position))
  }
  for (i in which(vapply(x, function(v) is.list(v) || (nul && is.character(v)), NA))) {
    check_json_tree(x[[i]], nul, if (nzchar(path)) paste0(path, ".", keys[i]) else keys[i], position)
  }
}

check_json_array <- function(x, nul, path) {
  if (nul) {
    strings <- which(vapply(x, is.character, NA))
    hit <- strings[grepl(NUL_STANDIN, unlist(x[strings]), fixed = TRUE)]
    if (length(hit)) nul_found(path, hit[1] - 1L)
  }
  items <- which(vapply(x, is.list, NA))
  # fast path for an array of flat objects (rows): their keys at once, and no descent unless needed
  dup <- items[vapply(lapply(x[items], names), anyDuplicated, 0L) > 0L]
  if (length(dup)) check_json_tree(x[[dup[1]]], nul, path, dup[1] - 1L)
  if (nul || any(vapply(unlist(x[items], recursive = FALSE, use.names = FALSE), is.list, NA))) {
    for (i in items) check_json_tree(x[[i]], nul, path, i - 1L)
  }
}

# The request body (req$bodyRaw) parsed by parse_json_text.
parse_json_body <- function(req) parse_json_raw(req$bodyRaw)

parse_json_raw <- function(raw) {
  if (is.null(raw) || length(raw) == 0L) bad_request("request body is empty: expected a JSON object")
  text <- tryCatch(rawToChar(raw), error = function(e) bad_request("request body is not text: ", conditionMessage(e)))
  parse_json_text(text)
}
