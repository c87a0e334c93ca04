# Validation of request bodies (already parsed by parse_json_body). Every problem is a 400 whose message
# names the field; positions are 0-based like the JSON arrays they point into.

ITER_RANGE <- c(200L, 20000L)
CHAINS_RANGE <- c(1L, 8L)
FIT_FIELDS <- c("data", "iter", "chains", "family", "engine", "seed", "observation_model")
# The gaussian model's observation models (growth_engine/observation.py), fitted by both engines;
# 'attempts' needs data.n. Not given: 'attempts' when data.n is given, else 'plain' (growth_engine's
# validate_observation_model, the same rule).
OBSERVATION_MODELS <- c("attempts", "plain")
PREDICT_FIELDS <- c("run_id", "targets", "predictive")
FIT_DEFAULTS <- list(iter = 2000L, chains = 4L, family = "gaussian", engine = "brms")

check_fields <- function(body, allowed, what = "request") {
  unknown <- setdiff(names(body), allowed)
  if (length(unknown)) {
    bad_request(sprintf("unknown field%s in %s: %s (allowed: %s)", if (length(unknown) > 1) "s" else "",
                        what, paste(unknown, collapse = ", "), paste(allowed, collapse = ", ")))
  }
}

positions <- function(idx, max_shown = 5L) {
  shown <- paste(idx[seq_len(min(length(idx), max_shown))] - 1L, collapse = ", ")
  if (length(idx) > max_shown) paste0(shown, ", ... (", length(idx), " in all)") else shown
}

WEEK_RANGE <- c(0, 520)          # weeks (and target weeks): 0 .. 520, i.e. up to ten years
ATTEMPTS_RANGE <- c(1, 100000)   # n, the attempts behind one row's score (or one target week)

# The JSON type of a parsed value (parse_json_text keeps them apart), for messages.
json_type <- function(v) {
  if (is.null(v)) return("null")
  if (is.list(v)) return(if (is.null(names(v))) "an array" else "an object")
  if (is.logical(v)) return("a boolean")
  if (is.character(v)) return("a string")
  "a number"
}

# A table given as rows (an array of objects) or as columns (an object of equal-length arrays) -> named
# list of columns, each a list of JSON scalars (NULL for null or a field missing from a row).
as_columns <- function(x, what, required) {
  if (is.null(x)) bad_request(what, " is missing")
  if (!is.list(x)) {
    bad_request(what, " must be an array of row objects or an object of column arrays (got ", json_type(x), ")")
  }
  if (length(x) == 0L) bad_request(what, " is empty")
  cols <- if (is.null(names(x))) rows_to_columns(x, what, required) else x
  missing <- setdiff(required, names(cols)[!vapply(cols, is.null, logical(1))])
  if (length(missing)) bad_request(what, " is missing field", if (length(missing) > 1) "s", ": ",
                                   paste(missing, collapse = ", "))
  present <- cols[!vapply(cols, is.null, logical(1))]
  for (name in names(present)) {
    col <- present[[name]]
    if (!is.list(col) || !is.null(names(col))) {
      bad_request(what, ".", name, " must be an array (got ", json_type(col), ")")
    }
  }
  lens <- lengths(present)
  if (all(lens == 0L)) bad_request(what, " is empty")
  if (length(unique(lens)) > 1L) {
    bad_request(what, " columns must have equal lengths (",
                paste(sprintf("%s: %d", names(lens), lens), collapse = ", "), ")")
  }
  present
}

rows_to_columns <- function(rows, what, required) {
  not_object <- which(!vapply(rows, function(r) is.list(r) && !is.null(names(r)), logical(1)))
  if (length(not_object)) {
    bad_request(what, " must be an array of objects, each with ", paste(required, collapse = ", "), "; position ",
                not_object[1] - 1L, " is ", json_type(rows[[not_object[1]]]))
  }
  fields <- unique(unlist(lapply(rows, names), use.names = FALSE))
  stats::setNames(lapply(fields, function(f) lapply(rows, `[[`, f)), fields)
}

# A column of JSON scalars whose elements must satisfy `ok` (e.g. is.numeric); null is NA when allow_na.
# -> atomic vector (unlisted)
col_typed <- function(x, name, ok, kind, na_value, allow_na = FALSE) {
  is_null <- vapply(x, is.null, logical(1))
  bad <- which(!is_null & !vapply(x, ok, logical(1)))
  if (length(bad)) {
    bad_request(name, " must contain only ", kind, "; position ", bad[1] - 1L, " is ", json_type(x[[bad[1]]]),
                if (length(bad) > 1L) paste0(" (", length(bad), " such values)"))
  }
  if (any(is_null) && !allow_na) bad_request(name, " has missing values at position ", positions(which(is_null)))
  out <- rep(na_value, length(x))
  out[!is_null] <- unlist(x[!is_null], use.names = FALSE)
  out
}

# Column checks. `name` is e.g. "data.score".
col_numeric <- function(x, name, allow_na = FALSE, range = c(-Inf, Inf)) {
  x <- col_typed(x, name, is.numeric, "numbers", NA_real_, allow_na)
  bad <- which(!is.finite(x) & !(allow_na & is.na(x)))
  if (length(bad)) bad_request(name, " has missing or non-finite values at position ", positions(bad))
  bad <- which(!is.na(x) & (x < range[1] | x > range[2]))
  if (length(bad)) {
    bad_request(sprintf("%s must lie in [%s, %s]; not at position %s", name, format(range[1]), format(range[2]),
                        positions(bad)))
  }
  x
}

col_integer <- function(x, name, range = c(-Inf, Inf), allow_na = FALSE) {
  x <- col_numeric(x, name, allow_na = allow_na)
  bad <- which(!is.na(x) & x != round(x))
  if (length(bad)) bad_request(name, " must contain whole numbers; not at position ", positions(bad))
  bad <- which(!is.na(x) & (x < range[1] | x > range[2]))
  if (length(bad)) {
    bad_request(sprintf("%s must be between %s and %s; not at position %s", name, format(range[1]),
                        format(range[2]), positions(bad)))
  }
  x
}

col_student <- function(x, name) {
  col_typed(x, name, function(v) is.character(v) || is.numeric(v), "strings (or integers)", NA, TRUE)
  num <- which(vapply(x, is.numeric, logical(1)))
  bad <- num[!vapply(x[num], function(v) is.finite(v) && v == round(v), logical(1))]
  if (length(bad)) bad_request(name, " must contain strings or integers; not at position ", positions(bad))
  x[num] <- lapply(x[num], format, scientific = FALSE, trim = TRUE)
  x <- col_typed(x, name, is.character, "strings (or integers)", NA_character_, TRUE)
  bad <- which(is.na(x) | !nzchar(x))
  if (length(bad)) bad_request(name, " has missing or empty values at position ", positions(bad))
  x
}

scalar_integer <- function(x, name, range, default = NULL) {
  if (is.null(x)) {
    if (is.null(default)) bad_request(name, " is missing")
    return(default)
  }
  if (!is.numeric(x) || length(x) != 1L || !is.finite(x) || x != round(x)) {
    bad_request(name, " must be an integer (got ", json_type(x), if (is.numeric(x)) paste0(" ", format(x)), ")")
  }
  if (x < range[1] || x > range[2]) {
    bad_request(sprintf("%s must be between %s and %s (got %s)", name, format(range[1]), format(range[2]), format(x)))
  }
  as.integer(x)
}

scalar_choice <- function(x, name, choices, default) {
  if (is.null(x)) return(default)
  if (!is.character(x) || length(x) != 1L || is.na(x)) bad_request(name, " must be a string (got ", json_type(x), ")")
  if (!x %in% choices) {
    bad_request(sprintf("unknown %s '%s' (expected one of: %s)", name, x, paste(choices, collapse = ", ")))
  }
  x
}

scalar_flag <- function(x, name, default) {
  if (is.null(x)) return(default)
  if (!is.logical(x) || length(x) != 1L || is.na(x)) {
    bad_request(name, " must be true or false (got ", json_type(x), ")")
  }
  x
}

# n (attempts), optional: when given, on every row, an integer in ATTEMPTS_RANGE.
col_attempts <- function(x, name, required_for = NULL) {
  if (is.null(x)) {
    if (!is.null(required_for)) bad_request(name, " (attempts) is required for ", required_for)
    return(NA_real_)
  }
  col_integer(x, name, range = ATTEMPTS_RANGE)
}

# -> list(data = data.frame(student, week, score, n), family, engine, iter, chains, seed)
validate_fit_request <- function(body) {
  check_fields(body, FIT_FIELDS)
  settings <- validate_fit_settings(body, FIT_DEFAULTS$engine)
  family <- settings$family

  cols <- as_columns(body$data, "data", c("student", "week", "score"))
  data <- data.frame(
    student = col_student(cols$student, "data.student"),
    week = col_integer(cols$week, "data.week", range = WEEK_RANGE),
    score = col_numeric(cols$score, "data.score", range = c(0, 1)),
    stringsAsFactors = FALSE
  )
  # attempts: required by the binomial likelihood; optional otherwise (passed on, column n)
  data$n <- col_attempts(cols$n, "data.n", if (family == "binomial") "family 'binomial'")
  dup <- which(duplicated(paste(data$student, data$week, sep = "\r")))
  if (length(dup)) {
    bad_request("data has more than one row for the same (student, week) at position ", positions(dup),
                " (one row per student and week)")
  }
  n_students <- length(unique(data$student))
  if (n_students < 2L) bad_request("data must contain at least 2 students (got ", n_students, ")")
  if (length(unique(data$week)) < 2L) bad_request("data must contain at least 2 distinct weeks")
  observation_model <- fit_observation_model(body$observation_model, family, data)
  c(list(data = data), settings, list(observation_model = observation_model))
}

# family, engine, iter, chains and seed of a fit request (`default_engine` when it names none)
validate_fit_settings <- function(body, default_engine) {
  family <- scalar_choice(body$family, "family", GROWTH_FAMILIES, FIT_DEFAULTS$family)
  engine <- scalar_choice(body$engine, "engine", GROWTH_ENGINES, default_engine)
  if (engine == "collapsed" && family != "gaussian") {
    bad_request(sprintf("engine 'collapsed' fits only family 'gaussian' (got family '%s'); use engine 'brms'", family))
  }
  list(family = family, engine = engine,
       iter = scalar_integer(body$iter, "iter", ITER_RANGE, FIT_DEFAULTS$iter),
       chains = scalar_integer(body$chains, "chains", CHAINS_RANGE, FIT_DEFAULTS$chains),
       seed = if (is.null(body$seed)) NA_integer_ else scalar_integer(body$seed, "seed", c(0, .Machine$integer.max)))
}

QUERY_INTEGERS <- c("iter", "chains", "seed")
QUERY_FLAGS <- "predictive"

# A query-string value read as its JSON field would be: the integer settings as numbers, the flags'
# true/false as booleans, everything else (engine, run_id, ...) as text.
query_value <- function(x, name) {
  if (length(x) != 1L) bad_request(name, " is given more than once in the query string")
  x <- as.character(x)
  if (name %in% QUERY_INTEGERS && grepl("^-?[0-9]+$", x)) return(as.numeric(x))
  if (name %in% QUERY_FLAGS && x %in% c("true", "false")) return(x == "true")
  x
}

query_fields <- function(query, allowed) {
  query <- as.list(query %||% list())
  check_fields(query, allowed, "the query string")
  stats::setNames(lapply(names(query), function(name) query_value(query[[name]], name)), names(query))
}

# A fit whose rows come as an Arrow body: the settings are in the query string; the data are validated
# by the engine that reads them (the collapsed one: an Arrow body names no other).
validate_fit_query <- function(query) {
  fields <- query_fields(query, setdiff(FIT_FIELDS, "data"))
  settings <- validate_fit_settings(fields, "collapsed")
  if (settings$engine != "collapsed") {
    http_error(415L, "Arrow bodies are fitted by engine 'collapsed'; send application/json for engine 'brms'")
  }
  name <- scalar_choice(fields$observation_model, "observation_model", OBSERVATION_MODELS, NA_character_)
  c(settings, list(observation_model = name))
}

# predict_prob with an Arrow body of targets: run_id and predictive in the query string.
validate_predict_query <- function(query) {
  fields <- query_fields(query, setdiff(PREDICT_FIELDS, "targets"))
  check_run_id(fields$run_id)
  list(run_id = fields$run_id, predictive = scalar_flag(fields$predictive, "predictive", FALSE))
}

check_run_id <- function(run_id) {
  if (is.null(run_id)) bad_request("run_id is missing")
  if (!is.character(run_id) || length(run_id) != 1L || is.na(run_id) || !nzchar(run_id)) {
    bad_request("run_id must be a non-empty string (got ", json_type(run_id), ")")
  }
}

# The observation model to fit, or a 400 when it cannot be fitted. Not given: for family gaussian 'attempts'
# when data.n is given, else 'plain' (the same for both engines); NA for binomial, whose likelihood counts
# the attempts itself. Both engines fit both models.
fit_observation_model <- function(x, family, data) {
  name <- scalar_choice(x, "observation_model", OBSERVATION_MODELS, NA_character_)
  has_n <- !all(is.na(data$n))
  if (is.na(name)) return(if (family != "gaussian") NA_character_ else if (has_n) "attempts" else "plain")
  if (name == "plain") return(name)
  if (family != "gaussian") bad_request("observation_model applies to family 'gaussian' only")
  if (!has_n) bad_request("observation_model 'attempts' needs data.n (the attempts behind each score)")
  name
}

# -> list(run_id, targets = data.frame(student, target_week, goal, n), predictive)
validate_predict_request <- function(body) {
  check_fields(body, PREDICT_FIELDS)
  run_id <- body$run_id
  check_run_id(run_id)
  predictive <- scalar_flag(body$predictive, "predictive", FALSE)
  cols <- as_columns(body$targets, "targets", c("student", "target_week", "goal"))
  extra <- setdiff(names(cols), c("student", "target_week", "goal", "n"))
  if (length(extra)) bad_request("unknown field(s) in targets: ", paste(extra, collapse = ", "))
  targets <- data.frame(
    student = col_student(cols$student, "targets.student"),
    target_week = col_numeric(cols$target_week, "targets.target_week", range = WEEK_RANGE),
    goal = col_numeric(cols$goal, "targets.goal", range = c(0, 1)),
    n = if (is.null(cols$n)) NA_real_ else col_integer(cols$n, "targets.n", range = ATTEMPTS_RANGE, allow_na = TRUE),
    stringsAsFactors = FALSE
  )
  list(run_id = run_id, targets = targets, predictive = predictive)
}
