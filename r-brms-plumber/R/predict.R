# predict_prob from the stored posterior draws of a brms fit (docs/growth-api.md). Pure functions of
# (draws, targets); `draws` is what fit_brms_job stored in draws.rds.
#
# Expected score (predictive = FALSE): P(eta >= g) with g = goal (gaussian) or logit(goal) (binomial).
#   seen student:   share of draws with a_i + b_i * T >= g
#   unseen student: mean over draws of P(N(mu_d, v_d) >= g), (mu_d, v_d) the population moments of eta
# Observed score (predictive = TRUE), one week's noise added per draw:
#   gaussian:  P(eta + e >= goal), e ~ N(0, sigma_d^2 s_i): s_i = 1 under the plain observation model; under
#              the attempts model a seen student's mean g / gbar over their weeks (draws$noise_scale, as the
#              collapsed engine's predictive P uses its mean 1 / w), an unseen student's 1 (an average row)
#   binomial:  P(correct / n >= goal), correct ~ Binomial(n, inv_logit(eta)); for unseen students eta is
#              integrated over N(mu_d, v_d) by Gauss-Hermite quadrature.

PREDICT_CHUNK <- 2000L   # targets per block: keeps draws x targets matrices to ~ 8M doubles

gauss_hermite <- function(n = 40L) {
  j <- matrix(0, n, n)
  off <- sqrt(seq_len(n - 1L) / 2)
  j[cbind(seq_len(n - 1L), 2:n)] <- off
  j[cbind(2:n, seq_len(n - 1L))] <- off
  e <- eigen(j, symmetric = TRUE)
  list(nodes = e$values, weights = sqrt(pi) * e$vectors[1, ]^2)
}

# smallest count of correct answers out of n that reaches `goal` (tolerant of 0.7 * 10 = 7.000000000000001)
binomial_threshold <- function(goal, n) ceiling(goal * n - 1e-9)

# P(correct >= k) for correct ~ Binomial(n, p); p a draws x targets matrix, k and n per target (column)
binomial_upper <- function(p, k, n) {
  kk <- rep(k, each = nrow(p))
  nn <- rep(n, each = nrow(p))
  matrix(stats::pbinom(kk - 1, nn, p, lower.tail = FALSE), nrow(p))
}

# -> numeric vector of p, one per target
predict_from_draws <- function(draws, targets, predictive = FALSE) {
  family <- draws$family
  pop <- draws$pop
  c <- draws$week_center
  if (predictive && family == "binomial" && anyNA(targets$n)) {
    bad_request("targets.n (attempts in the target week) is required for a predictive probability of a binomial fit; ",
                "missing at position ", positions(which(is.na(targets$n))))
  }
  idx <- match(targets$student, draws$students)
  p <- numeric(nrow(targets))
  threshold <- if (family == "binomial") stats::qlogis(targets$goal) else targets$goal
  gh <- if (predictive && family == "binomial") gauss_hermite() else NULL
  d <- nrow(pop)
  noise_scale <- draws$noise_scale %||% rep(1, length(draws$students))

  blocks <- split(seq_len(nrow(targets)), ceiling(seq_len(nrow(targets)) / PREDICT_CHUNK))
  for (rows in blocks) {
    seen <- rows[!is.na(idx[rows])]
    if (length(seen)) {
      s <- idx[seen]
      eta <- draws$intercepts[, s, drop = FALSE] +
        draws$slopes[, s, drop = FALSE] * rep(targets$target_week[seen], each = d)
      p[seen] <- if (!predictive) {
        colMeans(eta >= rep(threshold[seen], each = d))
      } else if (family == "gaussian") {
        sd_week <- outer(pop[, "sigma"], sqrt(noise_scale[s]))
        colMeans(matrix(stats::pnorm(rep(targets$goal[seen], each = d), eta, sd_week, lower.tail = FALSE), d))
      } else {
        colMeans(binomial_upper(stats::plogis(eta), binomial_threshold(targets$goal[seen], targets$n[seen]),
                                targets$n[seen]))
      }
    }
    unseen <- rows[is.na(idx[rows])]
    for (i in unseen) {
      m <- population_eta_moments(pop, c, targets$target_week[i])
      sd_eta <- sqrt(pmax(m$var, 0))
      p[i] <- if (!predictive) {
        mean(stats::pnorm(threshold[i], m$mean, sd_eta, lower.tail = FALSE))
      } else if (family == "gaussian") {
        mean(stats::pnorm(targets$goal[i], m$mean, sqrt(sd_eta^2 + pop[, "sigma"]^2), lower.tail = FALSE))
      } else {
        eta <- outer(m$mean, rep(1, length(gh$nodes))) + outer(sqrt(2) * sd_eta, gh$nodes)
        k <- binomial_threshold(targets$goal[i], targets$n[i])
        pk <- matrix(stats::pbinom(k - 1, targets$n[i], stats::plogis(eta), lower.tail = FALSE), d)
        mean(pk %*% gh$weights) / sqrt(pi)
      }
    }
  }
  pmin(pmax(p, 0), 1)
}

# Predict for a stored brms fit. -> response list
predict_brms <- function(meta, request) {
  draws <- tryCatch(readRDS(file.path(meta$dir, "draws.rds")),
                    error = function(e) http_error(404L, "run_id ", request$run_id, " is unknown or expired"))
  t <- request$targets
  p <- predict_from_draws(draws, t, request$predictive)
  list(run_id = request$run_id, method = "posterior_draws", predictive = request$predictive,
       probabilities = data.frame(student = t$student, target_week = t$target_week, goal = t$goal, p = p,
                                  seen = t$student %in% draws$students, stringsAsFactors = FALSE))
}
