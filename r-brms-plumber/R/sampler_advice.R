# Before a brms fit samples: are the request's iter and chains enough for this cohort? (issue 12; measured in
# BENCHMARKS.md, "brms's sampler settings"). With the diagonal metric at iter 1000 x 2 chains on simulated
# cohorts x 8 weeks, the slowest population parameter (b_Intercept, which trades off against the mean of the
# students' own intercepts, or sd_student__Intercept) had a bulk ESS per post-warm-up draw of
#   gaussian 0.42, 0.19, 0.24 and binomial 0.34, 0.19, 0.11 at 100, 300 and 1,000 students,
# about BRMS_ESS_PER_DRAW_AT_100 * sqrt(100 / N). The service asks for 100 per chain (seed_growth's
# convergence criterion).

BRMS_ESS_PER_DRAW_AT_100 <- 0.34
BRMS_ESS_DECAY <- 0.5
BRMS_ESS_PER_CHAIN_NEEDED <- 100
# The iter advised aims higher: with a bulk ESS of 230-350 in all, R-hat of 2 chains still fell on either side
# of 1.01 (1.005 to 1.016 measured); binomial, 1,000 students: 4 chains x 1000 draws, ESS 515, R-hat 1.0095.
BRMS_ESS_PER_CHAIN_ADVISED <- 200

# Expected bulk ESS per post-warm-up draw of the slowest population parameter.
expected_ess_per_draw <- function(n_students) {
  min(1, BRMS_ESS_PER_DRAW_AT_100 * (100 / max(n_students, 1))^BRMS_ESS_DECAY)
}

# Expected bulk ESS per chain of the slowest population parameter (half of iter is warm-up).
expected_ess_per_chain <- function(n_students, iter) (iter - iter %/% 2L) * expected_ess_per_draw(n_students)

# The smallest iter (a multiple of 500) whose chains are each expected to reach the advised bulk ESS.
iter_needed <- function(n_students) {
  draws <- BRMS_ESS_PER_CHAIN_ADVISED / expected_ess_per_draw(n_students)
  as.integer(500 * ceiling(2 * draws / 500))
}

# NULL when iter x chains is expected to converge on n_students; else what to expect and what would do.
sampler_advice <- function(n_students, iter, chains, family) {
  per_chain <- expected_ess_per_chain(n_students, iter)
  if (per_chain >= BRMS_ESS_PER_CHAIN_NEEDED) return(NULL)
  sprintf(paste0(
    "iter %d x %d chains is likely too few for %d students: expect a bulk ESS of about %.0f per chain for ",
    "the slowest population parameter, and %d are needed to call the fit converged; use iter >= %d%s"),
    iter, chains, n_students, per_chain, BRMS_ESS_PER_CHAIN_NEEDED, iter_needed(n_students),
    if (family == "gaussian") " or engine 'collapsed' (the same model, exact, in seconds)" else "")
}
