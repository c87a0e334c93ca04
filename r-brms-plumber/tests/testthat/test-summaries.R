draws_of <- function(d = 4000, seed = 1) {
  set.seed(seed)
  cbind(Intercept = rnorm(d, 0.55, 0.02), week = rnorm(d, 0.03, 0.002), sd_Intercept = abs(rnorm(d, 0.1, 0.01)),
        sd_week = abs(rnorm(d, 0.01, 0.002)), cor_Intercept_week = runif(d, -0.5, 0.5),
        sigma = abs(rnorm(d, 0.05, 0.003)))
}

test_that("the caller-scale population equals A Sigma A' per draw", {
  pop <- draws_of(50)
  c <- 3.5
  out <- caller_scale_population(pop, c)
  A <- matrix(c(1, 0, -c, 1), 2)
  for (i in 1:50) {
    S <- with(as.list(pop[i, ]), matrix(c(sd_Intercept^2, cor_Intercept_week * sd_Intercept * sd_week,
                                          cor_Intercept_week * sd_Intercept * sd_week, sd_week^2), 2))
    S2 <- A %*% S %*% t(A)
    expect_equal(unname(out[i, "sd_Intercept"]), sqrt(S2[1, 1]))
    expect_equal(unname(out[i, "cor_Intercept_week"]), S2[1, 2] / sqrt(S2[1, 1] * S2[2, 2]))
    expect_equal(unname(out[i, "Intercept"]), unname(pop[i, "Intercept"] - pop[i, "week"] * c))
  }
  expect_equal(out[, "sigma"], pop[, "sigma"])
  # at c = 0 nothing changes
  expect_equal(caller_scale_population(pop, 0)[, POP_COLUMNS], pop[, POP_COLUMNS])
})

test_that("population_summary reports caller scale and the centred block", {
  pop <- draws_of()
  s <- population_summary(pop, 3.5)
  expect_setequal(names(s), c(POP_COLUMNS, "sigma", "centered"))
  expect_equal(s$centered$Intercept$estimate, mean(pop[, "Intercept"]))
  expect_equal(s$Intercept$estimate, mean(pop[, "Intercept"] - 3.5 * pop[, "week"]))
  expect_equal(s$week$`q2.5`, unname(quantile(pop[, "week"], 0.025)))
  expect_named(s$week, c("estimate", "error", "q2.5", "q97.5"))
})

test_that("student summaries are column moments", {
  set.seed(2)
  a <- matrix(rnorm(3000), 1000)
  b <- 0.5 * a + matrix(rnorm(3000), 1000)
  s <- student_summaries(c("x", "y", "z"), a, b, c(8, 7, 1))
  expect_equal(s$intercept_mean, colMeans(a))
  expect_equal(s$slope_sd, apply(b, 2, sd))
  expect_equal(s$cor, diag(cor(a, b)))
  expect_equal(s$n_weeks, c(8L, 7L, 1L))
})
