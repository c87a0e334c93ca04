# Pure functions on posterior draws: the centred -> caller-scale transformation and the summaries
# reported in a fit response (docs/growth-api.md). `pop` is a draws x parameters matrix of the centred
# model with columns Intercept (beta0 at week c), week (beta1), sd_Intercept (sd0 at c), sd_week (sd1),
# cor_Intercept_week (rho at c) and, for gaussian, sigma.

POP_COLUMNS <- c("Intercept", "week", "sd_Intercept", "sd_week", "cor_Intercept_week")

# Per draw: Intercept at week 0 and, from A Sigma A' with A = [[1, -c], [0, 1]], sd_Intercept and
# cor_Intercept_week at week 0.
caller_scale_population <- function(pop, c) {
  b0 <- pop[, "Intercept"]
  b1 <- pop[, "week"]
  sd0 <- pop[, "sd_Intercept"]
  sd1 <- pop[, "sd_week"]
  rho <- pop[, "cor_Intercept_week"]
  var0 <- sd0^2 - 2 * c * rho * sd0 * sd1 + c^2 * sd1^2
  cov01 <- rho * sd0 * sd1 - c * sd1^2
  sd0_caller <- sqrt(pmax(var0, 0))
  out <- cbind(Intercept = b0 - b1 * c, week = b1, sd_Intercept = sd0_caller, sd_week = sd1,
               cor_Intercept_week = ifelse(sd0_caller > 0 & sd1 > 0, cov01 / (sd0_caller * sd1), 0))
  if ("sigma" %in% colnames(pop)) out <- cbind(out, sigma = pop[, "sigma"])
  out
}

summarise_draws_vector <- function(x) {
  q <- stats::quantile(x, c(0.025, 0.975), names = FALSE, type = 7)
  list(estimate = mean(x), error = stats::sd(x), `q2.5` = q[1], `q97.5` = q[2])
}

# posterior_summary of the fit response.
population_summary <- function(pop, c) {
  caller <- caller_scale_population(pop, c)
  out <- lapply(colnames(caller), function(v) summarise_draws_vector(caller[, v]))
  names(out) <- colnames(caller)
  out$centered <- lapply(c(Intercept = "Intercept", sd_Intercept = "sd_Intercept",
                           cor_Intercept_week = "cor_Intercept_week"),
                         function(v) summarise_draws_vector(pop[, v]))
  out
}

# Per-student summaries from draws x students matrices of the caller-scale intercepts (level at week 0)
# and slopes. Column-wise moments, no per-student loop.
student_summaries <- function(students, intercepts, slopes, n_weeks) {
  d <- nrow(intercepts)
  m0 <- colMeans(intercepts)
  m1 <- colMeans(slopes)
  c0 <- sweep(intercepts, 2, m0)
  c1 <- sweep(slopes, 2, m1)
  s0 <- sqrt(colSums(c0^2) / (d - 1))
  s1 <- sqrt(colSums(c1^2) / (d - 1))
  cov01 <- colSums(c0 * c1) / (d - 1)
  cor01 <- ifelse(s0 > 0 & s1 > 0, cov01 / (s0 * s1), 0)
  data.frame(student = students, intercept_mean = m0, intercept_sd = s0, slope_mean = m1, slope_sd = s1,
             cor = pmin(pmax(cor01, -1), 1), n_weeks = as.integer(n_weeks), stringsAsFactors = FALSE)
}

# Mean and variance of a new student's linear predictor at caller week `t`, per draw (population
# distribution of (a, b), centred parameters).
population_eta_moments <- function(pop, c, t) {
  u <- t - c
  sd0 <- pop[, "sd_Intercept"]
  sd1 <- pop[, "sd_week"]
  list(mean = pop[, "Intercept"] + pop[, "week"] * u,
       var = sd0^2 + u^2 * sd1^2 + 2 * u * pop[, "cor_Intercept_week"] * sd0 * sd1)
}
