# Routes of r-brms-plumber. The contract is docs/growth-api.md; the handlers are in R/service.R, the
# router set-up (serializer, error handler, 404, 413) in R/app.R. Started by run.R.

#* Require the bearer token on /growth/* (when BRMS_PLUMBER_TOKEN is set); refuse bodies over BRMS_MAX_BODY_MB
#* @filter guard
function(req) {
  check_auth(req)
  check_body_size(req)
  plumber::forward()
}

#* Service status: ready, versions, compiled model families, engines, busy. Answers while fits run.
#* @get /health
function() {
  handle_health()
}

#* Fit score ~ week + (week | student) (brms or the collapsed engine); stores the fit under a run_id
#* @post /growth/fit
function(req) {
  handle_fit(req)
}

#* Probability that a student's expected (or, with predictive, observed) score at target_week reaches goal
#* @post /growth/predict_prob
function(req) {
  handle_predict(req)
}
