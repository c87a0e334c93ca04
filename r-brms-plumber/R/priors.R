# The model and its explicit, data-independent priors (docs/growth-api.md, "Model"). Because nothing here
# depends on the data, the Stan program of a family never changes and one compiled model serves all fits.

GROWTH_FAMILIES <- c("gaussian", "binomial")
GROWTH_ENGINES <- c("brms", "collapsed")
GROWTH_FORMULA <- "score ~ week + (week | student)"   # as reported to callers
GROWTH_LINKS <- c(gaussian = "identity", binomial = "logit")

# What brms fits: time centred inside the service (week_c = week - week_center).
brms_formula_text <- function(family) {
  switch(family,
         gaussian = "score ~ week_c + (week_c | student)",
         binomial = "correct | trials(n) ~ week_c + (week_c | student)",
         stop("unknown family ", family))
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
# `student`; sd priors are half-normal through brms' lower bound of 0.
brms_priors <- function(family) {
  p <- growth_priors(family)
  rows <- lapply(seq_len(nrow(p)), function(i) {
    brms::set_prior(p$prior[i], class = p$class[i], coef = sub("^week$", "week_c", p$coef[i]), group = p$group[i])
  })
  do.call(rbind, rows)
}
