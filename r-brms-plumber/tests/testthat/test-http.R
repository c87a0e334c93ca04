status_of <- function(expr) {
  tryCatch({
    force(expr)
    200L
  }, growth_http_error = function(e) e$status)
}

test_that("the bearer scheme is case-insensitive and the token must match exactly", {
  old <- .service$cfg
  on.exit(.service$cfg <- old)
  .service$cfg <- list(token = "t0k")
  auth <- function(header) status_of(check_auth(list(HTTP_AUTHORIZATION = header)))
  expect_equal(auth("Bearer t0k"), 200L)
  expect_equal(auth("bearer t0k"), 200L)
  expect_equal(auth("BEARER   t0k "), 200L)
  expect_equal(auth("Bearer t0kx"), 401L)
  expect_equal(auth("Basic t0k"), 401L)
  expect_equal(auth("t0k"), 401L)
  expect_equal(status_of(check_auth(list())), 401L)
})

test_that("a 503 can carry headers and 5xx messages lose the server's paths", {
  e <- http_error_condition(503L, "full", headers = list(`Retry-After` = "30"))
  expect_equal(e$headers$`Retry-After`, "30")
  expect_equal(redact_paths("failed: /home/svc/fits/abc/engine/state.npz missing; see a/b"),
               "failed: <path> missing; see a/b")
})

test_that("the OpenAPI document describes every route with bodies and error objects", {
  spec <- openapi_spec()
  expect_setequal(names(spec$paths), c("/health", "/growth/fit", "/growth/predict_prob"))
  for (path in c("/growth/fit", "/growth/predict_prob")) {
    op <- spec$paths[[path]]$post
    expect_false(is.null(op$requestBody$content$`application/json`$schema))
    expect_equal(op$responses$`400`$content$`application/json`$schema$`$ref`, "#/components/schemas/Error")
  }
  expect_setequal(unlist(spec$components$schemas$Error$required), c("error", "status"))
})
