# The attempts observation model in the brms engine: its model and template, the rows' sigma offsets, the
# record in the fit response and what predict_prob keeps of it. (The engine's kappa itself is checked
# against a collapsed fit of the same data in seed_growth_tests/test_engine_agreement.py.)

attempts_data <- function() {
  data.frame(student = c("a", "a", "a", "b", "b"), week = c(0, 1, 2, 0, 2), score = c(0.5, 0.6, 0.7, 0.4, 0.5),
             n = c(1, 10, 40, 5, 5), stringsAsFactors = FALSE)
}

test_that("each observation model has a brms model, and a family's warm-up compiles all of its models", {
  expect_equal(brms_model("gaussian", "attempts"), "gaussian_attempts")
  expect_equal(brms_model("gaussian", "plain"), "gaussian")
  expect_equal(brms_model("binomial", NA_character_), "binomial")
  expect_equal(family_models("gaussian"), c("gaussian", "gaussian_attempts"))
  expect_equal(family_models("binomial"), "binomial")
  expect_equal(model_family("gaussian_attempts"), "gaussian")
  expect_equal(brms_formula_text("gaussian_attempts"),
               c("score ~ week_c + (week_c | student)", "sigma ~ 1 + offset(log_sigma_scale)"))
})

test_that("the attempts model has a template of its own", {
  keys <- vapply(BRMS_MODELS, template_key, character(1))
  expect_equal(anyDuplicated(keys), 0L)
  expect_match(template_path(tempdir(), "gaussian_attempts"), "gaussian_attempts-[0-9a-f]{16}[.]rds$")
  expect_true("log_sigma_scale" %in% names(template_data("gaussian_attempts")))
})

test_that("sigma's prior is the contract's half-normal on exp(Intercept_sigma), with the Jacobian", {
  expect_null(sigma_prior_code("gaussian"))
  expect_null(sigma_prior_code("binomial"))
  expect_equal(sigma_prior_code("gaussian_attempts"),
               "target += normal_lpdf(exp(Intercept_sigma) | 0, 0.3) + Intercept_sigma;")
  # the priors reported are the same rows for both observation models (and the collapsed engine's)
  sigma <- growth_priors("gaussian")
  expect_equal(sigma$prior[sigma$class == "sigma"], "normal(0, 0.3)")
  skip_if_not_installed("brms")
  p <- brms_priors("gaussian_attempts")
  expect_equal(p$prior[p$dpar == "sigma"], "")  # flat: the stanvar is its prior
  expect_false(any(p$class == "sigma"))
  expect_equal(nrow(p), nrow(brms_priors("gaussian")))
})

test_that("the rows' sigma offsets are 0.5 log of the engine's row scales, and each student's noise scale their mean", {
  data <- attempts_data()
  g <- c(0.2, 0.2, 0.2, 0.24, 0.24) / data$n + 0.02  # the engine's v_i / n_j + kappa, v_i per student
  scale <- g / mean(g)
  nd <- brms_newdata(data, "gaussian", mean(data$week), scale)
  expect_equal(nd$newdata$log_sigma_scale, 0.5 * log(scale))
  expect_equal(nd$noise_scale, c(mean(scale[1:3]), mean(scale[4:5])))
  # sigma_j = exp(Intercept_sigma) * sqrt(g_j / gbar): the average row's variance is sigma^2
  expect_equal(mean(exp(2 * nd$newdata$log_sigma_scale)), 1)
  # scales that are not one per row (or not positive) are refused, never recycled
  expect_error(brms_newdata(data, "gaussian", 1, scale[-1]), "do not match the rows")
  expect_error(brms_newdata(data, "gaussian", 1, replace(scale, 2, NA)), "do not match the rows")
  # the plain model: no offset, no noise scale
  plain <- brms_newdata(data, "gaussian", 1)
  expect_false("log_sigma_scale" %in% names(plain$newdata))
  expect_null(plain$noise_scale)
})

test_that("model.observation is the engine's record, verbatim; plain otherwise", {
  json <- paste0('{"name":"attempts","formula":"sigma * sqrt((1 / n + kappa) / gbar)",',
                 '"kappa":0.017234567890123456,"gbar":0.2301}')
  response <- list(model = list(family = "gaussian",
                                observation = observation_record(list(record = list(), json = json))))
  text <- as.character(to_json(response))
  expect_equal(text, paste0('{"model":{"family":"gaussian","observation":', json, "}}"))
  expect_equal(parse_json_text(text)$model$observation$kappa, 0.017234567890123456)
  expect_equal(observation_record(NULL), list(name = "plain", formula = "sigma"))
})

test_that("predictive P of an attempts fit adds sigma^2 times the student's noise scale; unseen: sigma^2", {
  set.seed(5)
  d <- 2000
  pop <- cbind(Intercept = rnorm(d, 0.55, 0.01), week = rnorm(d, 0.03, 0.002),
               sd_Intercept = abs(rnorm(d, 0.1, 0.005)), sd_week = abs(rnorm(d, 0.01, 0.001)),
               cor_Intercept_week = runif(d, -0.3, 0.3), sigma = abs(rnorm(d, 0.05, 0.002)))
  draws <- list(family = "gaussian", week_center = 3.5, students = c("s1", "s2"), pop = pop,
                intercepts = cbind(rnorm(d, 0.4, 0.03), rnorm(d, 0.6, 0.03)),
                slopes = cbind(rnorm(d, 0.03, 0.005), rnorm(d, 0.01, 0.005)), noise_scale = c(4, 0.25))
  targets <- data.frame(student = c("s1", "s2", "new"), target_week = 11, goal = 0.75, n = NA_real_,
                        stringsAsFactors = FALSE)
  p <- predict_from_draws(draws, targets, predictive = TRUE)
  for (i in 1:2) {
    eta <- draws$intercepts[, i] + 11 * draws$slopes[, i]
    expect_equal(p[i], mean(pnorm(0.75, eta, pop[, "sigma"] * sqrt(draws$noise_scale[i]), lower.tail = FALSE)))
  }
  plain <- draws
  plain$noise_scale <- NULL
  p_plain <- predict_from_draws(plain, targets, predictive = TRUE)
  expect_equal(p[3], p_plain[3])  # an unseen student: an average row
  expect_gt(p[1], p_plain[1])     # far below the goal: more noise, more chance (0.4 + 0.33 < 0.75)
  # the expected score's P does not depend on the observation model
  expect_equal(predict_from_draws(draws, targets), predict_from_draws(plain, targets))
})
