test_that("run ids are 32 hex digits and unique", {
  ids <- replicate(50, new_run_id())
  expect_true(all(grepl(RUN_ID_PATTERN, ids)))
  expect_equal(length(unique(ids)), 50L)
  expect_false(valid_run_id("../etc"))
})

write_fit <- function(dir, id, fitted_at, engine = "brms") {
  store_begin(dir, id)
  write_json_file(list(run_id = id, engine = engine, fitted_at = fitted_at),
                  file.path(staging_dir(dir, id), "meta.json"))
  store_commit(dir, id)
}

test_that("the store finds, expires and prunes fits", {
  dir <- tempfile("fits-")
  ids <- replicate(4, new_run_id())
  for (i in seq_along(ids)) {
    write_fit(dir, ids[i], utc_now())
    Sys.setFileTime(file.path(dir, ids[i], "meta.json"), Sys.time() - (10 - i))
  }
  expect_equal(store_lookup(dir, ids[1], 90)$engine, "brms")
  expect_null(store_lookup(dir, new_run_id(), 90))
  expect_null(store_lookup(dir, "not-an-id", 90))
  removed <- store_prune(dir, max_n = 2, max_age_days = 90)
  expect_setequal(removed, ids[1:2])
  expect_null(store_lookup(dir, ids[1], 90))
  expect_false(is.null(store_lookup(dir, ids[4], 90)))
  old <- new_run_id()
  write_fit(dir, old, format(Sys.time() - 100 * 86400, "%Y-%m-%dT%H:%M:%SZ", tz = "UTC"))
  expect_null(store_lookup(dir, old, 90))
  expect_false(dir.exists(file.path(dir, old)))
  leftover <- new_run_id()   # staged by an earlier process of this pid: nobody owns it any more
  store_begin(dir, leftover)
  store_prune(dir, 100, 90, stale_staging = TRUE)
  expect_false(dir.exists(staging_dir(dir, leftover)))
})

test_that("staging folders belong to their service: only those of dead services are removed", {
  dir <- tempfile("fits-")
  dir.create(dir)
  staging <- function(host, pid) {
    path <- file.path(dir, sprintf(".staging-%s-%s-%s", host, pid, new_run_id()))
    dir.create(path)
    path
  }
  gone <- processx::process$new("true")
  gone$wait()
  dead_pid <- gone$get_pid()
  running <- processx::process$new("sleep", "60")
  on.exit(running$kill(), add = TRUE)
  alive <- staging(host_label(), running$get_pid())      # a running service of this host
  dead <- staging(host_label(), dead_pid)                 # its service is gone
  foreign <- staging("other-host.example", dead_pid)      # another host's (container's): not judged by pid
  legacy_new <- file.path(dir, paste0(".staging-", new_run_id()))
  legacy_old <- file.path(dir, paste0(".staging-", new_run_id()))
  dir.create(legacy_new)
  dir.create(legacy_old)
  Sys.setFileTime(legacy_old, Sys.time() - 2 * 86400)
  expect_match(basename(staging_dir(dir, "0123")), sprintf("^[.]staging-%s-%d-0123$", host_label(), Sys.getpid()))
  store_prune(dir, 100, 90, stale_staging = TRUE)
  expect_true(dir.exists(alive))
  expect_false(dir.exists(dead))
  expect_true(dir.exists(foreign))
  expect_true(dir.exists(legacy_new))
  expect_false(dir.exists(legacy_old))
  Sys.setenv(R_BRMS_PLUMBER_SERVICE_PID = "4242")
  on.exit(Sys.unsetenv("R_BRMS_PLUMBER_SERVICE_PID"), add = TRUE)
  expect_match(basename(staging_dir(dir, "0123")), "-4242-0123$")
})

test_that("JSON keeps full precision and writes null for missing numbers", {
  txt <- as.character(to_json(list(a = 1 / 3, b = NA_real_, c = Inf, d = list(), e = 123456789.123456)))
  expect_equal(txt, '{"a":0.333333333333333,"b":null,"c":null,"d":[],"e":123456789.123456}')
})

test_that("the engine's answers map to 400, 404 and 500 with its message", {
  status_of <- function(expr) {
    tryCatch({
      force(expr)
      0L
    }, growth_http_error = function(e) c(e$status, conditionMessage(e)))
  }
  expect_equal(engine_answer(200L, '{"n_rows": 3}', "/fit"), list(n_rows = 3L))
  expect_equal(status_of(engine_answer(400L, '{"error": "data.score is missing"}', "/fit")),
               c("400", "data.score is missing"))
  expect_equal(status_of(engine_answer(404L, '{"error": "no fit state"}', "/predict"))[1], "404")
  expect_match(status_of(engine_answer(500L, "not json", "/fit"))[2], "the collapsed engine's fit failed: not json")
})

test_that("an engine that does not answer is a 503 once `wait` is over; one past its timeout a 500", {
  status_of <- function(expr) tryCatch(force(expr), growth_http_error = function(e) e$status)
  socket <- tempfile("no-engine-", fileext = ".sock")
  started <- Sys.time()
  failed <- settle(engine_request_async(socket, "/fit", list(run_id = "x"), wait = 1))
  expect_s3_class(failed, "growth_http_error")
  expect_equal(failed$status, 503L)
  expect_gte(as.numeric(difftime(Sys.time(), started, units = "secs")), 1)
  expect_equal(status_of(engine_failed(socket, "/fit", 4, "Operation timed out after 4000 ms", "")), 500L)
})

# A stand-in for plumber's response object: what the serializer sets on it.
fake_response <- function() {
  res <- new.env()
  res$headers <- list()
  res$setHeader <- function(name, value) res$headers[[name]] <- value
  res$toResponse <- function() list(headers = res$headers, body = res$body)
  res
}

test_that("an engine answer is served as the file it wrote, streamed by httpuv (never read into R)", {
  serialize <- serializer_growth_json()
  arrow <- serialize(engine_file_answer("/x/answer.arrow", "arrow"), list(), fake_response(), stop)
  expect_equal(arrow$body, list(file = "/x/answer.arrow", owned = FALSE))
  expect_equal(arrow$headers$`Content-Type`, ARROW_MEDIA_TYPE)
  json <- serialize(engine_file_answer("/x/answer.json", "json", owned = TRUE), list(), fake_response(), stop)
  expect_equal(json$body, list(file = "/x/answer.json", owned = TRUE))
  expect_equal(json$headers$`Content-Type`, "application/json")
  expect_equal(serialize(list(a = 1), list(), fake_response(), stop)$body, '{"a":1}')
})

test_that("a body written to a file is dropped from the request (plumber keeps it four times)", {
  body <- charToRaw("arrow bytes")
  req <- new.env()
  req$bodyRaw <- body
  req$body <- body
  req$argsBody <- list(body)
  req$args <- c(list(a = 1), list(body))
  input <- body_file(req, "arrow")
  on.exit(unlink(input$path))
  expect_equal(readBin(input$path, "raw", 100), body)
  expect_true(endsWith(input$path, ".arrow"))
  expect_null(req$bodyRaw)
  expect_null(req$body)
  expect_null(req$argsBody)
  expect_equal(req$args, list(a = 1))
})

test_that("bodies are JSON or Arrow by Content-Type, each with its own size limit", {
  expect_equal(body_format(list(CONTENT_TYPE = NULL)), "json")
  expect_equal(body_format(list(CONTENT_TYPE = "application/json; charset=utf-8")), "json")
  expect_equal(body_format(list(CONTENT_TYPE = "Application/Vnd.Apache.Arrow.Stream")), "arrow")
  expect_error(body_format(list(CONTENT_TYPE = "text/csv")), "unsupported Content-Type 'text/csv'")
  expect_equal(answer_format(list(HTTP_ACCEPT = "application/vnd.apache.arrow.stream, */*")), "arrow")
  expect_equal(answer_format(list(HTTP_ACCEPT = NULL)), "json")
  cfg <- list(max_body_bytes = 10, max_arrow_body_bytes = 99)
  expect_equal(body_limit(cfg, "application/vnd.apache.arrow.stream")$variable, "BRMS_MAX_ARROW_BODY_MB")
  expect_equal(body_limit(cfg, "application/json")$bytes, 10)
  meminfo <- tempfile()
  writeLines(c("MemTotal:       24576000 kB", "MemFree: 1 kB"), meminfo)
  expect_equal(default_arrow_body_mb(meminfo), floor(24576000 / 1024 / 2 / ENGINE_BYTES_PER_ARROW_BYTE))
  expect_equal(default_arrow_body_mb(tempfile()), 1024)
})

test_that("priors are explicit for every class", {
  expect_equal(nrow(priors_report("gaussian")), 6L)
  expect_equal(nrow(priors_report("binomial")), 5L)
  expect_false("sigma" %in% priors_report("binomial")$class)
  expect_equal(template_key("gaussian"), template_key("gaussian"))
  expect_false(template_key("gaussian") == template_key("binomial"))
})

test_that("rstan's printed failure reasons are extracted", {
  printed <- c('[1] "Error in sampler$call_sampler(args_list[[i]]) : "',
               '[2] "  Invalid adaptation parameter (found delta=1.5; require 0<delta<1)."')
  expect_equal(stan_reason(printed),
               paste(" (Error in sampler$call_sampler(args_list[[i]]) :",
                     "Invalid adaptation parameter (found delta=1.5; require 0<delta<1).)"))
  expect_equal(stan_reason(character(0)), "")
})
