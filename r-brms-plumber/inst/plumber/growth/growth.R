# The /growth routes of r-brms-plumber (contract: docs/growth-api.md), mounted at /growth by plumber.R.
# Paths here are relative to the mount: /fit is POST /growth/fit.

#* Require `Authorization: Bearer <BRMS_PLUMBER_TOKEN>` (when the variable is set) on every /growth route:
#* this filter belongs to the /growth router, so the public routes never pass through it
#* @filter auth
function(req) {
  check_auth(req)
  plumber::forward()
}

#* Fit score ~ week + (week | student) (brms or the collapsed engine); stores the fit under a run_id
#* @post /fit
function(req) {
  handle_fit(req)
}

#* Probability that a student's expected (or, with predictive, observed) score at target_week reaches goal
#* @post /predict_prob
function(req) {
  handle_predict(req)
}
