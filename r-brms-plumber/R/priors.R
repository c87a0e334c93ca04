# The model and its explicit, data-independent priors (docs/growth-api.md, "Model"). Because nothing here
# depends on the data, the Stan program of a brms model never changes and one compiled model serves all fits.

GROWTH_FAMILIES <- c("gaussian", "binomial")
GROWTH_ENGINES <- c("brms", "collapsed")
GROWTH_FORMULA <- "score ~ week + (week | student)"   # as reported to callers
GROWTH_LINKS <- c(gaussian = "identity", binomial = "logit")

# The brms models, one compiled template each: every family's with one sigma for every row (gaussian's
# plain observation model), and the gaussian family's attempts observation model, whose row j has the
# residual sd sigma * sqrt(g_j / gbar), g_j = v_i / n_j + kappa (growth_engine/observation.py; kappa and gbar
# are the engine's estimate for the fit's data, README "Observation model").
BRMS_MODELS <- c("gaussian", "gaussian_attempts", "binomial")

model_family <- function(model) sub("_attempts$", "", model)

# The models of a family (a warm-up of the family compiles each: a fit of the family may need either).
family_models <- function(family) BRMS_MODELS[model_family(BRMS_MODELS) == family]

# The brms model that fits `family` under `observation_model` ("attempts", "plain" or NA).
brms_model <- function(family, observation_model) {
  if (identical(observation_model, "attempts")) paste0(family, "_attempts") else family
}

# What brms fits: time centred inside the service (week_c = week - week_center). The attempts model has a
# second formula, for sigma on brms' log link: log sigma_j = Intercept_sigma + log_sigma_scale_j, the data
# column log_sigma_scale = 0.5 * log(g_j / gbar) an offset, so exp(Intercept_sigma) is the sigma of an
# average row (the collapsed engine's sigma).
brms_formula_text <- function(model) {
  switch(model,
         gaussian = "score ~ week_c + (week_c | student)",
         gaussian_attempts = c("score ~ week_c + (week_c | student)", "sigma ~ 1 + offset(log_sigma_scale)"),
         binomial = "correct | trials(n) ~ week_c + (week_c | student)",
         stop("unknown model ", model))
}

# The formula object brms is given (needs brms for a second formula; used in workers only).
brms_formula <- function(model) {
  text <- brms_formula_text(model)
  if (length(text) == 1L) return(stats::as.formula(text))
  brms::bf(stats::as.formula(text[1]), stats::as.formula(text[2]))
}

# One row per prior, in the contract's terms (coef "week"; brms fits "week_c"). The same rows, with the same
# keys, as the collapsed engine reports.
growth_priors <- function(family) {
  priors <- switch(family,
    gaussian = c("normal(0.5, 0.5)", "normal(0, 0.1)", "normal(0, 0.3)", "normal(0, 0.05)", "lkj(2)", "normal(0, 0.3)"),
    binomial = c("normal(0, 1.5)", "normal(0, 0.5)", "normal(0, 1)", "normal(0, 0.25)", "lkj(2)"),
    stop("unknown family ", family))
  rows <- data.frame(
    class = c("Intercept", "b", "sd", "sd", "cor", "sigma"),
    coef = c("", "", "Intercept", "week", "", ""),
    group = c("", "", "student", "student", "student", ""),
    stringsAsFactors = FALSE)[seq_along(priors), ]
  rows$prior <- priors
  rownames(rows) <- NULL
  rows
}

# As reported in the fit response: [{"class", "coef", "group", "prior"}, ...]
priors_report <- function(family) growth_priors(family)

# The brmsprior object (needs brms; used in workers only). sd and cor priors belong to the group
# `student`; sd priors are half-normal through brms' lower bound of 0. The attempts model's sigma prior is
# not a brms prior (below): its sigma intercept gets a flat one.
brms_priors <- function(model) {
  p <- growth_priors(model_family(model))
  attempts <- model != model_family(model)
  if (attempts) p <- p[p$class != "sigma", ]
  rows <- lapply(seq_len(nrow(p)), function(i) {
    brms::set_prior(p$prior[i], class = p$class[i], coef = sub("^week$", "week_c", p$coef[i]), group = p$group[i])
  })
  if (attempts) rows <- c(rows, list(brms::set_prior("", class = "Intercept", dpar = "sigma")))
  do.call(rbind, rows)
}

# The Stan code that puts the contract's half-normal sigma prior on the attempts model's sigma of an average
# row, exp(Intercept_sigma), with the Jacobian of exp: the log density of Intercept_sigma is
# log p_sigma(exp(Intercept_sigma)) + Intercept_sigma. Both engines then fit the same posterior (the
# half-normal's constant log 2 is left out, as it changes nothing). NULL for the other models.
sigma_prior_code <- function(model) {
  if (model == model_family(model)) return(NULL)
  p <- growth_priors(model_family(model))
  prior <- p$prior[p$class == "sigma"]
  scale <- sub("^normal\\(0, ([0-9.]+)\\)$", "\\1", prior)
  if (identical(scale, prior)) stop("the sigma prior is not a half-normal: ", prior)
  sprintf("target += normal_lpdf(exp(Intercept_sigma) | 0, %s) + Intercept_sigma;", scale)
}

# The stanvars object of a model (needs brms; used in workers only), or NULL.
brms_stanvars <- function(model) {
  code <- sigma_prior_code(model)
  if (is.null(code)) NULL else brms::stanvar(scode = code, block = "model")
}
