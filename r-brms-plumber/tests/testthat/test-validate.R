body_of <- function(json) {
  jsonlite::fromJSON(json, simplifyVector = TRUE, simplifyDataFrame = TRUE, simplifyMatrix = FALSE)
}

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
             "data.n must be >= 1")
  expect_400(validate_fit_request(with_data(cols, ', "seed": -1')), "seed must be between")
  expect_400(validate_fit_request(with_data(cols, ', "chain": 2')), "unknown field in request: chain")
})

test_that("binomial keeps attempts; gaussian tolerates null attempts", {
  r <- validate_fit_request(body_of(sprintf('{"data": %s, "family": "binomial"}', cols)))
  expect_equal(r$data$n, c(10, 10, 5, 5))
  g <- validate_fit_request(body_of(paste0('{"data": {"student": ["a", "b"], "week": [0, 1], ',
                                           '"score": [0.5, 0.5], "n": [null, 3]}}')))
  expect_equal(g$data$n, c(NA, 3))
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
