body_of <- function(json) parse_json_text(json)

expect_400 <- function(expr, pattern) {
  err <- tryCatch({
    force(expr)
    NULL
  }, growth_http_error = function(e) e)
  testthat::expect_false(is.null(err), info = "expected a growth_http_error")
  testthat::expect_equal(err$status, 400L)
  testthat::expect_match(conditionMessage(err), pattern)
}

cols <- '{"student": ["a", "a", "b", "b"], "week": [0, 1, 0, 1], "score": [0.1, 0.2, 0.3, 0.4], "n": [10, 10, 5, 5]}'

test_that("columnar and row data give the same table, with defaults", {
  a <- validate_fit_request(body_of(sprintf('{"data": %s}', cols)))
  rows <- '[{"student": "a", "week": 0, "score": 0.1, "n": 10}, {"student": "a", "week": 1, "score": 0.2, "n": 10},
            {"student": "b", "week": 0, "score": 0.3, "n": 5}, {"student": "b", "week": 1, "score": 0.4, "n": 5}]'
  b <- validate_fit_request(body_of(sprintf('{"data": %s}', rows)))
  expect_equal(a$data, b$data)
  expect_equal(a[c("family", "engine", "iter", "chains")],
               list(family = "gaussian", engine = "brms", iter = 2000L, chains = 4L))
  expect_true(is.na(a$seed))
})

test_that("integer student ids become strings", {
  r <- validate_fit_request(body_of('{"data": {"student": [100000, 2], "week": [0, 1], "score": [0.5, 0.5]}}'))
  expect_equal(r$data$student, c("100000", "2"))
})

test_that("bad inputs are 400s naming the problem", {
  with_data <- function(data, extra = "") body_of(sprintf('{"data": %s%s}', data, extra))
  expect_400(validate_fit_request(with_data("[]")), "data is empty")
  expect_400(validate_fit_request(with_data('{"student": [], "week": [], "score": []}')), "data is empty")
  expect_400(validate_fit_request(body_of('{"iter": 1000}')), "data is missing")
  expect_400(validate_fit_request(with_data('{"student": ["a", "b"], "week": [0, 1]}')), "missing field: score")
  expect_400(validate_fit_request(with_data('{"student": ["a", "b"], "week": [0, 1], "score": [0.5, 1.5]}')),
             "data.score must lie in \\[0, 1\\]; not at position 1")
  expect_400(validate_fit_request(with_data('{"student": ["a", "b"], "week": [0, 1], "score": [-0.1, 0.5]}')),
             "not at position 0")
  expect_400(validate_fit_request(with_data('{"student": ["a", "b"], "week": [0, 1], "score": ["x", 0.5]}')),
             "data.score must contain only numbers")
  expect_400(validate_fit_request(with_data('{"student": ["a", "b"], "week": [0, 1], "score": [null, 0.5]}')),
             "data.score has missing")
  expect_400(validate_fit_request(with_data('{"student": ["a", "b"], "week": [0, 0.5], "score": [0.5, 0.5]}')),
             "data.week must contain whole numbers")
  expect_400(validate_fit_request(with_data('{"student": ["a", "b"], "week": ["0", "1"], "score": [0.5, 0.5]}')),
             "data.week must contain only numbers")
  expect_400(validate_fit_request(with_data('{"student": ["a", "a"], "week": [0, 1], "score": [0.5, 0.5]}')),
             "at least 2 students")
  expect_400(validate_fit_request(with_data('{"student": ["a", "b"], "week": [1, 1], "score": [0.5, 0.5]}')),
             "at least 2 distinct weeks")
  expect_400(validate_fit_request(with_data('{"student": ["a", ""], "week": [0, 1], "score": [0.5, 0.5]}')),
             "data.student has missing or empty")
  expect_400(validate_fit_request(with_data('{"student": ["a", "b"], "week": [0, 1, 2], "score": [0.5, 0.5]}')),
             "equal lengths")
  expect_400(validate_fit_request(with_data(cols, ', "iter": 100')), "iter must be between 200 and 20000")
  expect_400(validate_fit_request(with_data(cols, ', "iter": 20001')), "iter must be between")
  expect_400(validate_fit_request(with_data(cols, ', "iter": "1000"')), "iter must be an integer")
  expect_400(validate_fit_request(with_data(cols, ', "chains": 0')), "chains must be between 1 and 8")
  expect_400(validate_fit_request(with_data(cols, ', "chains": 2.5')), "chains must be an integer")
  expect_400(validate_fit_request(with_data(cols, ', "family": "poisson"')), "unknown family 'poisson'")
  expect_400(validate_fit_request(with_data(cols, ', "engine": "stan"')), "unknown engine 'stan'")
  expect_400(validate_fit_request(with_data(cols, ', "family": "binomial", "engine": "collapsed"')),
             "only family 'gaussian'")
  expect_400(validate_fit_request(with_data('{"student": ["a", "b"], "week": [0, 1], "score": [0.5, 0.5]}',
                                            ', "family": "binomial"')),
             "data.n \\(attempts\\) is required")
  expect_400(validate_fit_request(with_data('{"student": ["a", "b"], "week": [0, 1], "score": [0.5, 0.5], "n": [0, 3]}',
                                            ', "family": "binomial"')),
             "data.n must be between 1 and 1e\\+05")
  expect_400(validate_fit_request(with_data(cols, ', "seed": -1')), "seed must be between")
  expect_400(validate_fit_request(with_data(cols, ', "chain": 2')), "unknown field in request: chain")
})

test_that("attempts are passed on when given, on every row, within bounds", {
  r <- validate_fit_request(body_of(sprintf('{"data": %s, "family": "binomial"}', cols)))
  expect_equal(r$data$n, c(10, 10, 5, 5))
  g <- validate_fit_request(body_of(sprintf('{"data": %s}', cols)))
  expect_equal(g$data$n, c(10, 10, 5, 5))
  without <- validate_fit_request(body_of('{"data": {"student": ["a", "b"], "week": [0, 1], "score": [0.5, 0.5]}}'))
  expect_true(all(is.na(without$data$n)))
  with_n <- function(n) {
    body_of(sprintf('{"data": {"student": ["a", "b"], "week": [0, 1], "score": [0.5, 0.5], "n": %s}}', n))
  }
  expect_400(validate_fit_request(with_n("[null, 3]")), "data.n has missing values at position 0")
  expect_400(validate_fit_request(with_n("[0, 3]")), "data.n must be between 1 and")
  expect_400(validate_fit_request(with_n("[100001, 3]")), "data.n must be between 1 and")
  expect_400(validate_fit_request(with_n("[2.5, 3]")), "data.n must contain whole numbers")
  expect_400(validate_fit_request(with_n("[true, 3]")), "data.n must contain only numbers; position 0 is a boolean")
  rows <- '[{"student": "a", "week": 0, "score": 0.5, "n": 3}, {"student": "b", "week": 1, "score": 0.5}]'
  expect_400(validate_fit_request(body_of(sprintf('{"data": %s}', rows))), "data.n has missing values at position 1")
  expect_equal(validate_fit_request(with_n("[100000, 1]"))$data$n, c(100000, 1))
})

test_that("values of the wrong JSON type are refused, never converted", {
  fit <- function(data, extra = "") validate_fit_request(body_of(sprintf('{"data": %s%s}', data, extra)))
  expect_400(fit('{"student": ["a", "b"], "week": [0, 1], "score": [true, 0.5]}'),
             "data.score must contain only numbers; position 0 is a boolean")
  expect_400(fit('[{"student": "a", "week": 0, "score": true}, {"student": "b", "week": 1, "score": 0.5}]'),
             "data.score must contain only numbers; position 0 is a boolean")
  expect_400(fit('{"student": ["a", "b"], "week": {}, "score": [0.5, 0.5]}'),
             "data.week must be an array \\(got an object\\)")
  expect_400(fit('[{"student": "a", "week": {}, "score": 0.5}, {"student": "b", "week": 1, "score": 0.5}]'),
             "data.week must contain only numbers; position 0 is an object")
  expect_400(fit('{"student": [["a"], "b"], "week": [0, 1], "score": [0.5, 0.5]}'),
             "data.student must contain only strings \\(or integers\\); position 0 is an array")
  expect_400(fit(cols, ', "chains": [2]'), "chains must be an integer \\(got an array\\)")
  expect_400(fit(cols, ', "iter": true'), "iter must be an integer \\(got a boolean\\)")
  expect_400(fit(cols, ', "family": ["gaussian"]'), "family must be a string")
  expect_400(fit("[1, 2]"), "data must be an array of objects")
  expect_400(fit("5"), "data must be an array of row objects or an object of column arrays \\(got a number\\)")
})

test_that("weeks are bounded and each (student, week) is one row", {
  fit <- function(week) {
    validate_fit_request(body_of(sprintf('{"data": {"student": ["a", "b"], "week": [0, %s], "score": [0.5, 0.5]}}',
                                         week)))
  }
  expect_equal(fit("520")$data$week, c(0, 520))
  expect_400(fit("521"), "data.week must be between 0 and 520; not at position 1")
  expect_400(fit("-1"), "data.week must be between 0 and 520")
  expect_400(fit("1e308"), "data.week must be between 0 and 520")
  expect_400(fit("1e999"), "data.week has missing or non-finite values")
  dup <- '{"student": ["a", "a", "b"], "week": [0, 0, 1], "score": [0.5, 0.5, 0.5]}'
  expect_400(validate_fit_request(body_of(sprintf('{"data": %s}', dup))),
             "data has more than one row for the same \\(student, week\\) at position 1")
  target <- function(week) {
    targets <- sprintf('[{"student": "a", "target_week": %s, "goal": 0.8}]', week)
    validate_predict_request(body_of(sprintf('{"run_id": "abc", "targets": %s}', targets)))
  }
  expect_equal(target("11.5")$targets$target_week, 11.5)
  expect_400(target("1e308"), "targets.target_week must lie in \\[0, 520\\]")
  expect_400(target("-3"), "targets.target_week must lie in")
})

test_that("duplicated keys and NUL characters are refused naming the place", {
  expect_400(body_of('{"data": [], "data": []}'), "duplicated key 'data' in the request body")
  expect_400(body_of('{"data": [{"student": "a", "week": 0, "week": 1, "score": 0.5}]}'),
             "duplicated key 'week' in data at position 0")
  expect_400(body_of('{"data": {"student": ["a\\u0000b", "c"], "week": [0, 1], "score": [0.5, 0.5]}}'),
             "data.student contains a NUL character")
  expect_400(body_of('{"data": [{"student": "a", "week": 0, "score": 0.5}, {"student": "a\\u0000", "week": 1}]}'),
             "data.student contains a NUL character .* at position 1")
  expect_400(body_of('{"run_id": "0123\\u0000", "targets": []}'), "run_id contains a NUL character")
  # an escaped backslash before u0000 is text, not a NUL
  expect_equal(body_of('{"run_id": "a\\\\u0000"}')$run_id, "a\\u0000")
})

test_that("predict requests are validated", {
  ok <- validate_predict_request(body_of(paste0('{"run_id": "abc", ',
                                                '"targets": [{"student": "a", "target_week": 11, "goal": 0.8}]}')))
  expect_equal(ok$targets$student, "a")
  expect_false(ok$predictive)
  p <- validate_predict_request(body_of(paste0('{"run_id": "abc", "predictive": true, "targets": ',
                                               '[{"student": "a", "target_week": 11, "goal": 0.8, "n": 12}]}')))
  expect_true(p$predictive)
  expect_equal(p$targets$n, 12)
  expect_400(validate_predict_request(body_of('{"targets": [{"student": "a", "target_week": 1, "goal": 0.8}]}')),
             "run_id is missing")
  expect_400(validate_predict_request(body_of(paste0('{"run_id": 5, ',
                                                     '"targets": [{"student": "a", "target_week": 1, "goal": 0.8}]}'))),
             "run_id must be")
  expect_400(validate_predict_request(body_of('{"run_id": "abc", "targets": []}')), "targets is empty")
  expect_400(validate_predict_request(body_of('{"run_id": "abc", "targets": [{"student": "a", "goal": 0.8}]}')),
             "missing field: target_week")
  expect_400(validate_predict_request(body_of(paste0('{"run_id": "abc", ',
                                                     '"targets": [{"student": "a", "target_week": 1, "goal": 1.2}]}'))),
             "targets.goal must lie in")
  expect_400(validate_predict_request(body_of(paste0('{"run_id": "abc", "targets": ',
                                                     '[{"student": "a", "target_week": "x", "goal": 0.5}]}'))),
             "targets.target_week must contain only numbers")
  expect_400(validate_predict_request(body_of(paste0('{"run_id": "abc", "predictive": "yes", ',
                                                     '"targets": [{"student": "a", "target_week": 1, "goal": 0.5}]}'))),
             "predictive must be")
})

test_that("observation_model: both engines fit attempts (it needs n); omitted, attempts when n is given", {
  fit_with <- function(fields, data = cols) validate_fit_request(body_of(sprintf('{"data": %s%s}', data, fields)))
  no_n <- '{"student": ["a", "a", "b", "b"], "week": [0, 1, 0, 1], "score": [0.1, 0.2, 0.3, 0.4]}'
  for (engine in c("brms", "collapsed")) {
    with_engine <- function(fields, data = cols) fit_with(sprintf(', "engine": "%s"%s', engine, fields), data)
    # the same default for both engines
    expect_equal(with_engine("")$observation_model, "attempts")
    expect_equal(with_engine("", no_n)$observation_model, "plain")
    expect_equal(with_engine(', "observation_model": "plain"')$observation_model, "plain")
    expect_equal(with_engine(', "observation_model": "attempts"')$observation_model, "attempts")
    expect_400(with_engine(', "observation_model": "attempts"', no_n), "needs data.n")
    expect_400(with_engine(', "observation_model": "weighted"'), "unknown observation_model")
  }
  # the attempts behind a score: whole numbers 1..100000 on every row, for brms as for collapsed
  for (bad in c("[10, 0, 5, 5]", "[10, 2.5, 5, 5]", "[10, null, 5, 5]", "[10, -1, 5, 5]")) {
    data <- sprintf('{"student": ["a", "a", "b", "b"], "week": [0, 1, 0, 1], "score": [0.1, 0.2, 0.3, 0.4], "n": %s}',
                    bad)
    for (engine in c("brms", "collapsed")) {
      expect_400(fit_with(sprintf(', "engine": "%s", "observation_model": "attempts"', engine), data), "data.n")
      expect_400(fit_with(sprintf(', "engine": "%s"', engine), data), "data.n")
    }
  }
  expect_true(is.na(fit_with(', "family": "binomial"')$observation_model))
  expect_400(fit_with(', "family": "binomial", "observation_model": "attempts"'), "family 'gaussian' only")
})

test_that("an Arrow fit's settings come from the query string, read as their JSON fields", {
  q <- validate_fit_query(list(iter = "1000", chains = "2", seed = "7", observation_model = "plain"))
  expect_equal(q[c("engine", "family", "iter", "chains", "seed", "observation_model")],
               list(engine = "collapsed", family = "gaussian", iter = 1000L, chains = 2L, seed = 7L,
                    observation_model = "plain"))
  expect_true(is.na(validate_fit_query(list())$observation_model))
  expect_400(validate_fit_query(list(iter = "ten")), "iter must be an integer \\(got a string\\)")
  expect_400(validate_fit_query(list(iter = c("1000", "2000"))), "iter is given more than once")
  expect_400(validate_fit_query(list(colour = "red")), "unknown field in the query string: colour")
  expect_400(validate_fit_query(list(observation_model = "fancy")), "observation_model")
  err <- tryCatch(validate_fit_query(list(engine = "brms")), growth_http_error = function(e) e)
  expect_equal(err$status, 415L)
})

test_that("an Arrow predict_prob's run_id and predictive come from the query string", {
  expect_equal(validate_predict_query(list(run_id = "00ff", predictive = "true")),
               list(run_id = "00ff", predictive = TRUE))
  expect_equal(validate_predict_query(list(run_id = "0123"))$run_id, "0123")  # digits stay text
  expect_400(validate_predict_query(list()), "run_id is missing")
  expect_400(validate_predict_query(list(run_id = "x", predictive = "yes")), "predictive")
})
