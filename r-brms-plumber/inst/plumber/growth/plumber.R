# The API of r-brms-plumber (contract: docs/growth-api.md), plumber's plumb_api() layout:
#   plumber.R  (this file)  the public routes: /health here; plumber adds /openapi.json and /__docs__/
#   growth.R                the /growth routes, a router of their own mounted at /growth below, whose
#                           `auth` filter (bearer token) therefore runs for /growth/* and nothing else
# Handlers and the router set-up (serializer, error handler, 404, 413) are in the package (R/service.R,
# R/app.R); build_router() plumbs these files in an environment that sees the package's functions.

#* Refuse bodies over BRMS_MAX_BODY_MB sent without a Content-Length (a Content-Length over the limit is
#* refused from the headers, before the body is read)
#* @filter body_size
function(req) {
  check_body_size(req)
  plumber::forward()
}

#* Service status: ready, versions, compiled brms models, engines, busy. Answers while fits run.
#* @get /health
function() {
  handle_health()
}

#* The /growth routes (growth.R), behind the bearer token
#* @plumber
function(pr) {
  mount_growth_routes(pr)
}
