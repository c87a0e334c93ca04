fake_draws <- function(family = "gaussian", d = 4000, seed = 3) {
  set.seed(seed)
  pop <- cbind(Intercept = rnorm(d, 0.55, 0.01), week = rnorm(d, 0.03, 0.002), sd_Intercept = abs(rnorm(d, 0.1, 0.005)),
               sd_week = abs(rnorm(d, 0.01, 0.001)), cor_Intercept_week = runif(d, -0.3, 0.3))
  if (family == "gaussian") pop <- cbind(pop, sigma = abs(rnorm(d, 0.05, 0.002)))
  list(family = family, week_center = 3.5, students = c("s1", "s2"), pop = pop,
       intercepts = cbind(rnorm(d, 0.4, 0.03), rnorm(d, 0.6, 0.03)),
       slopes = cbind(rnorm(d, 0.03, 0.005), rnorm(d, 0.01, 0.005)))
}
targets_of <- function(student, week, goal, n = NA_real_) {
  data.frame(student = student, target_week = week, goal = goal, n = n, stringsAsFactors = FALSE)
}

test_that("seen students: share of draws over the goal", {
  dr <- fake_draws()
  p <- predict_from_draws(dr, targets_of(c("s1", "s2"), c(11, 0), c(0.7, 0.55)))
  expect_equal(p[1], mean(dr$intercepts[, 1] + 11 * dr$slopes[, 1] >= 0.7))
  expect_equal(p[2], mean(dr$intercepts[, 2] >= 0.55))
})

test_that("unseen students: population distribution, agrees with simulation", {
  dr <- fake_draws()
  p <- predict_from_draws(dr, targets_of("new", 11, 0.75))
  set.seed(9)
  pop <- dr$pop
  u <- 11 - 3.5
  z1 <- rnorm(nrow(pop))
  z2 <- rnorm(nrow(pop))
  a <- pop[, "Intercept"] + pop[, "sd_Intercept"] * z1
  rho <- pop[, "cor_Intercept_week"]
  b <- pop[, "week"] + pop[, "sd_week"] * (rho * z1 + sqrt(1 - rho^2) * z2)
  expect_equal(p, mean(a + b * u >= 0.75), tolerance = 0.03)
})

test_that("binomial compares on the logit scale; goals 0 and 1 are certain", {
  dr <- fake_draws("binomial")
  dr$intercepts <- dr$intercepts * 4 - 2
  p <- predict_from_draws(dr, targets_of(c("s1", "s1", "s1", "new"), c(4, 4, 4, 4), c(0.3, 0, 1, 0.5)))
  expect_equal(p[1], mean(plogis(dr$intercepts[, 1] + 4 * dr$slopes[, 1]) >= 0.3))
  expect_equal(p[2:3], c(1, 0))
  expect_true(p[4] > 0 && p[4] < 1)
})

test_that("predictive probabilities add one week's noise", {
  dr <- fake_draws()
  t <- targets_of(c("s1", "new"), c(11, 11), c(0.7, 0.7))
  p <- predict_from_draws(dr, t, predictive = TRUE)
  eta <- dr$intercepts[, 1] + 11 * dr$slopes[, 1]
  expect_equal(p[1], mean(pnorm(0.7, eta, dr$pop[, "sigma"], lower.tail = FALSE)))
  b <- fake_draws("binomial")
  pb <- predict_from_draws(b, targets_of(c("s1", "new"), c(2, 2), c(0.7, 0.7), n = c(10, 10)), predictive = TRUE)
  etab <- b$intercepts[, 1] + 2 * b$slopes[, 1]
  expect_equal(pb[1], mean(pbinom(6, 10, plogis(etab), lower.tail = FALSE)))
  # unseen, by simulation
  set.seed(4)
  m <- population_eta_moments(b$pop, 3.5, 2)
  sim <- rbinom(nrow(b$pop), 10, plogis(rnorm(nrow(b$pop), m$mean, sqrt(m$var))))
  expect_equal(pb[2], mean(sim >= 7), tolerance = 0.03)
  expect_error(predict_from_draws(b, targets_of("s1", 2, 0.7), predictive = TRUE), "targets.n")
})

test_that("Gauss-Hermite nodes integrate a normal exactly for polynomials", {
  gh <- gauss_hermite(20)
  expect_equal(sum(gh$weights), sqrt(pi))
  expect_equal(sum(gh$weights * (sqrt(2) * gh$nodes)^2) / sqrt(pi), 1)
  expect_equal(binomial_threshold(0.7, 10), 7)
})
