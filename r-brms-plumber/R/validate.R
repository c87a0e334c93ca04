# Validation of request bodies (already parsed by parse_json_body). Every problem is a 400 whose message
# names the field; positions are 0-based like the JSON arrays they point into.

ITER_RANGE <- c(200L, 20000L)
CHAINS_RANGE <- c(1L, 8L)
FIT_FIELDS <- c("data", "iter", "chains", "family", "engine", "seed")
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

# A table given as rows (array of objects, simplified by jsonlite to a data frame) or as columns (object of
# equal-length arrays) -> named list of columns.
as_columns <- function(x, what, required) {
  if (is.null(x)) bad_request(what, " is missing")
  if (is.data.frame(x)) {
    if (nrow(x) == 0L) bad_request(what, " is empty")
    cols <- as.list(x)
  } else if (is.list(x) && length(x) == 0L) {
    bad_request(what, " is empty")
  } else if (is.list(x) && !is.null(names(x)) && all(nzchar(names(x)))) {
    cols <- x
  } else if (is.list(x) && is.null(names(x))) {
    bad_request(what, " must be an array of objects, each with ", paste(required, collapse = ", "))
  } else {
    bad_request(what, " must be an array of row objects or an object of column arrays")
  }
  missing <- setdiff(required, names(cols)[!vapply(cols, is.null, logical(1))])
  if (length(missing)) bad_request(what, " is missing field", if (length(missing) > 1) "s", ": ",
                                   paste(missing, collapse = ", "))
  present <- cols[!vapply(cols, is.null, logical(1))]
  lens <- vapply(present, length, integer(1))
  if (all(lens == 0L)) bad_request(what, " is empty")
  if (length(unique(lens)) > 1L) {
    bad_request(what, " columns must have equal lengths (",
                paste(sprintf("%s: %d", names(lens), lens), collapse = ", "), ")")
  }
  present
}

# Column checks. `name` is e.g. "data.score".
col_numeric <- function(x, name, allow_na = FALSE) {
  if (is.logical(x) && all(is.na(x))) x <- as.numeric(x)  # an all-null column
  if (is.list(x) || !is.numeric(x)) bad_request(name, " must contain only numbers")
  x <- as.numeric(x)
  bad <- which(!is.finite(x) & !(allow_na & is.na(x)))
  if (length(bad)) bad_request(name, " has missing or non-finite values at position ", positions(bad))
  x
}

col_integer <- function(x, name, min = -Inf, allow_na = FALSE) {
  x <- col_numeric(x, name, allow_na = allow_na)
  bad <- which(!is.na(x) & x != round(x))
  if (length(bad)) bad_request(name, " must contain whole numbers; not at position ", positions(bad))
  bad <- which(!is.na(x) & x < min)
  if (length(bad)) bad_request(name, " must be >= ", min, "; not at position ", positions(bad))
  x
}

col_student <- function(x, name) {
  if (is.list(x) || !(is.character(x) || is.numeric(x) || (is.logical(x) && all(is.na(x))))) {
    bad_request(name, " must contain strings (or integers)")
  }
  if (is.numeric(x)) {
    bad <- which(is.finite(x) & x != round(x))
    if (length(bad)) bad_request(name, " must contain strings or integers; not at position ", positions(bad))
    x <- ifelse(is.finite(x), format(x, scientific = FALSE, trim = TRUE), NA_character_)
  }
  x <- as.character(x)
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
    bad_request(name, " must be an integer")
  }
  if (x < range[1] || x > range[2]) {
    bad_request(sprintf("%s must be between %s and %s (got %s)", name, format(range[1]), format(range[2]), format(x)))
  }
  as.integer(x)
}

scalar_choice <- function(x, name, choices, default) {
  if (is.null(x)) return(default)
  if (!is.character(x) || length(x) != 1L || is.na(x)) bad_request(name, " must be a string")
  if (!x %in% choices) {
    bad_request(sprintf("unknown %s '%s' (expected one of: %s)", name, x, paste(choices, collapse = ", ")))
  }
  x
}

# -> list(data = data.frame(student, week, score, n), family, engine, iter, chains, seed)
validate_fit_request <- function(body) {
  check_fields(body, FIT_FIELDS)
  family <- scalar_choice(body$family, "family", GROWTH_FAMILIES, FIT_DEFAULTS$family)
  engine <- scalar_choice(body$engine, "engine", GROWTH_ENGINES, FIT_DEFAULTS$engine)
  if (engine == "collapsed" && family != "gaussian") {
    bad_request(sprintf("engine 'collapsed' fits only family 'gaussian' (got family '%s'); use engine 'brms'", family))
  }
  iter <- scalar_integer(body$iter, "iter", ITER_RANGE, FIT_DEFAULTS$iter)
  chains <- scalar_integer(body$chains, "chains", CHAINS_RANGE, FIT_DEFAULTS$chains)
  seed <- if (is.null(body$seed)) NA_integer_ else scalar_integer(body$seed, "seed", c(0, .Machine$integer.max))

  cols <- as_columns(body$data, "data", c("student", "week", "score"))
  data <- data.frame(
    student = col_student(cols$student, "data.student"),
    week = col_integer(cols$week, "data.week"),
    score = col_numeric(cols$score, "data.score"),
    stringsAsFactors = FALSE
  )
  out <- which(data$score < 0 | data$score > 1)
  if (length(out)) bad_request("data.score must lie in [0, 1]; not at position ", positions(out))
  if (family == "binomial") {
    if (is.null(cols$n)) bad_request("data.n (attempts) is required for family 'binomial'")
    data$n <- col_integer(cols$n, "data.n", min = 1)
  } else {
    # attempts are optional for gaussian and not used by its likelihood
    data$n <- if (is.null(cols$n)) NA_real_ else col_integer(cols$n, "data.n", min = 0, allow_na = TRUE)
  }
  n_students <- length(unique(data$student))
  if (n_students < 2L) bad_request("data must contain at least 2 students (got ", n_students, ")")
  if (length(unique(data$week)) < 2L) bad_request("data must contain at least 2 distinct weeks")
  list(data = data, family = family, engine = engine, iter = iter, chains = chains, seed = seed)
}

# -> list(run_id, targets = data.frame(student, target_week, goal, n), predictive)
validate_predict_request <- function(body) {
  check_fields(body, PREDICT_FIELDS)
  run_id <- body$run_id
  if (is.null(run_id)) bad_request("run_id is missing")
  if (!is.character(run_id) || length(run_id) != 1L || is.na(run_id) || !nzchar(run_id)) {
    bad_request("run_id must be a non-empty string")
  }
  predictive <- body$predictive %||% FALSE
  if (!is.logical(predictive) || length(predictive) != 1L || is.na(predictive)) {
    bad_request("predictive must be true or false")
  }
  cols <- as_columns(body$targets, "targets", c("student", "target_week", "goal"))
  extra <- setdiff(names(cols), c("student", "target_week", "goal", "n"))
  if (length(extra)) bad_request("unknown field(s) in targets: ", paste(extra, collapse = ", "))
  targets <- data.frame(
    student = col_student(cols$student, "targets.student"),
    target_week = col_numeric(cols$target_week, "targets.target_week"),
    goal = col_numeric(cols$goal, "targets.goal"),
    n = if (is.null(cols$n)) NA_real_ else col_integer(cols$n, "targets.n", min = 1, allow_na = TRUE),
    stringsAsFactors = FALSE
  )
  out <- which(targets$goal < 0 | targets$goal > 1)
  if (length(out)) bad_request("targets.goal must lie in [0, 1]; not at position ", positions(out))
  list(run_id = run_id, targets = targets, predictive = predictive)
}
