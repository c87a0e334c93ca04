# Before sampling: are iter and chains enough for the cohort (R/sampler_advice.R)?

test_that("the platform's settings are enough for 100 students and too few for 300 or more", {
  expect_null(sampler_advice(100, 1000L, 2L, "gaussian"))
  for (n in c(300, 1000, 5000)) {
    advice <- sampler_advice(n, 1000L, 2L, "binomial")
    expect_match(advice, sprintf("iter 1000 x 2 chains is likely too few for %d students", n))
    expect_match(advice, sprintf("use iter >= %d$", iter_needed(n)))
  }
})

test_that("the iter it asks for is enough, and grows with the cohort", {
  for (n in c(150, 300, 1000, 20000)) {
    expect_null(sampler_advice(n, iter_needed(n), 2L, "gaussian"))
    expect_false(is.null(sampler_advice(n, iter_needed(n) - 500L, 2L, "gaussian")))
  }
  expect_lte(iter_needed(100), iter_needed(300))
  expect_lte(iter_needed(300), iter_needed(1000))
  expect_equal(iter_needed(1) %% 500L, 0L)
})

test_that("only the gaussian family is told of the collapsed engine", {
  expect_match(sampler_advice(1000, 1000L, 2L, "gaussian"), "engine 'collapsed'")
  expect_no_match(sampler_advice(1000, 1000L, 2L, "binomial"), "collapsed")
})
