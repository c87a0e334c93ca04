# Before sampling: are iter and chains enough for the cohort (R/sampler_advice.R)?

test_that("the platform's settings are enough for 100 students and too few for 300 or more", {
  expect_null(sampler_advice(100, 1000L, 2L, "gaussian"))
  for (n in c(300, 1000, 5000)) {
    advice <- sampler_advice(n, 1000L, 2L, "binomial")
    expect_match(advice, sprintf("iter 1000 x 2 chains is likely too few for %d students", n))
    expect_match(advice, sprintf("use iter >= %d$", iter_needed(n)))
  }
})

test_that("the iter it asks for is the least with the advised margin, and grows with the cohort", {
  for (n in c(150, 300, 1000, 20000)) {
    expect_null(sampler_advice(n, iter_needed(n), 2L, "gaussian"))
    expect_gte(expected_ess_per_chain(n, iter_needed(n)), BRMS_ESS_PER_CHAIN_ADVISED)
    expect_lt(expected_ess_per_chain(n, iter_needed(n) - 500L), BRMS_ESS_PER_CHAIN_ADVISED)
  }
  # measured (BENCHMARKS.md): 2000 was enough at 300 students; 3000 at 1,000 not for the binomial family
  expect_equal(c(iter_needed(300), iter_needed(1000)), c(2500L, 4000L))
  expect_lte(iter_needed(100), iter_needed(300))
  expect_lte(iter_needed(300), iter_needed(1000))
  expect_equal(iter_needed(1) %% 500L, 0L)
})

test_that("only the gaussian family is told of the collapsed engine", {
  expect_match(sampler_advice(1000, 1000L, 2L, "gaussian"), "engine 'collapsed'")
  expect_no_match(sampler_advice(1000, 1000L, 2L, "binomial"), "collapsed")
})

test_that("the last adaptation window follows Stan's windowed adaptation", {
  # 75 + (25, 50, 100, 200) + 50 at 500 warm-up draws; 75 + (25, 50, 100, 200, 500) + 50 at 1000
  expect_equal(last_adaptation_window(500L), 200L)
  expect_equal(last_adaptation_window(1000L), 500L)
  expect_equal(last_adaptation_window(750L), 450L)  # 25, 50, 100, then the rest: 200 would leave < 400
  expect_equal(last_adaptation_window(100L), 75L)  # the buffers do not fit: one window of 75%
})

test_that("a dense metric only where the warm-up can estimate it, and never above the cap", {
  expect_true(dense_metric_fits(200L, 1000L, 500L))   # 406 parameters, a window of 500: converged
  expect_false(dense_metric_fits(300L, 500L, 500L))   # 606 parameters, a window of 200: R-hat 1.36
  expect_false(dense_metric_fits(100L, 500L, 500L))   # 206 > 200: the diagonal metric's 3.6x ESS/s
  expect_true(dense_metric_fits(40L, 500L, 500L))
  expect_false(dense_metric_fits(40L, 1000L, 30L))    # BRMS_DENSE_METRIC_MAX_STUDENTS
  sampler <- list(adapt_delta = 0.95, max_treedepth = 10L, dense_metric_max_students = 500L)
  expect_equal(sampler_settings(sampler, 300L, 500L)$metric, "diag_e")
  expect_equal(sampler_settings(sampler, 200L, 1000L)$metric, "dense_e")
})
