# A brms fit (runs in a worker process): update the family's compiled template with the request's data,
# summarise on the caller's week scale, store the draws predict_prob needs, answer the fit response.

BRMS_POP_VARIABLES <- c(
  b_Intercept = "b_Intercept", b_week = "b_week_c", sd_student__Intercept = "sd_student__Intercept",
  sd_student__week = "sd_student__week_c", cor_student__Intercept__week = "cor_student__Intercept__week_c",
  sigma = "sigma"
)
# contract name of each population parameter -> column of the centred `pop` matrix (summaries.R)
POP_FROM_BRMS <- c(b_Intercept = "Intercept", b_week = "week", sd_student__Intercept = "sd_Intercept",
                   sd_student__week = "sd_week", cor_student__Intercept__week = "cor_Intercept_week",
                   sigma = "sigma")

# Internal student codes: brms names group levels in its parameter names (r_student[<level>,...]); codes
# keep arbitrary caller ids (commas, brackets, unicode) out of them.
student_codes <- function(n) sprintf("s%07d", seq_len(n))

# -> list(newdata, students, codes, noise_scale). `row_scale`: under the attempts model, each row's g_j / gbar
# from the engine (growth_engine/observation.py: g_j = v_i / n_j + kappa, v_i the student's binomial variance
# factor), else NULL. Row j's sigma is then exp(Intercept_sigma) * sqrt(g_j / gbar), through the offset
# log_sigma_scale; noise_scale is each student's mean g / gbar (the collapsed engine's
# StudentStats.noise_scale: a typical week of theirs has the residual variance sigma^2 * noise_scale), for
# predictive probabilities.
brms_newdata <- function(data, family, week_center, row_scale = NULL) {
  students <- unique(data$student)
  codes <- student_codes(length(students))
  nd <- data.frame(student = codes[match(data$student, students)], week_c = data$week - week_center,
                   stringsAsFactors = FALSE)
  noise_scale <- NULL
  if (family == "binomial") {
    nd$n <- as.integer(data$n)
    nd$correct <- as.integer(round(data$score * data$n))
  } else {
    nd$score <- data$score
  }
  if (!is.null(row_scale)) {
    if (length(row_scale) != nrow(nd) || anyNA(row_scale) || any(row_scale <= 0)) {
      stop("the engine's row scales do not match the rows (", length(row_scale), " for ", nrow(nd), ")")
    }
    nd$log_sigma_scale <- 0.5 * log(row_scale)
    noise_scale <- unname(as.numeric(tapply(row_scale, factor(data$student, levels = students), mean)))
  }
  list(newdata = nd, students = students, codes = codes, noise_scale = noise_scale)
}

sampler_settings <- function(sampler, n_students, warmup) {
  list(adapt_delta = sampler$adapt_delta, max_treedepth = sampler$max_treedepth,
       metric = if (dense_metric_fits(n_students, warmup, sampler$dense_metric_max_students)) "dense_e" else "diag_e")
}

# The per-student effects are strongly correlated with the population intercept when each student has
# several weeks of data; a dense metric removes that (10x the effective sample size of b_Intercept on 40 x 8
# data), but only if the warm-up can estimate it: Stan estimates the metric from the draws of its last
# adaptation window, and a covariance of more parameters than draws is mostly its regularisation. Measured
# (BENCHMARKS.md, "brms's sampler settings"): 300 students at iter 1000 (606 parameters, a window of 200
# draws) did not converge with it (R-hat 1.36), 200 students at iter 2000 (406, 500) did, where the
# diagonal metric did not.
dense_metric_fits <- function(n_students, warmup, max_students) {
  n_students <= max_students && last_adaptation_window(warmup) >= 2L * n_students + 6L
}

# The draws of Stan's last slow adaptation window for `warmup` warm-up iterations at its defaults (init
# buffer 75, term buffer 50, base window 25, each window twice the last, the last one stretched to the term
# buffer); when the buffers do not fit, Stan adapts in one window of 75% of the warm-up.
last_adaptation_window <- function(warmup, init_buffer = 75L, term_buffer = 50L, base_window = 25L) {
  if (init_buffer + term_buffer + base_window > warmup) return(as.integer(floor(0.75 * warmup)))
  slow <- warmup - init_buffer - term_buffer
  start <- 0L
  size <- base_window
  while (start + 3L * size <= slow) {
    start <- start + size
    size <- 2L * size
  }
  as.integer(slow - start)
}

# Sampler diagnostics from rstan: divergent transitions and tree-depth hits after warm-up.
sampler_diagnostics <- function(stanfit, max_treedepth) {
  sp <- rstan::get_sampler_params(stanfit, inc_warmup = FALSE)
  list(divergent = as.integer(sum(vapply(sp, function(x) sum(x[, "divergent__"]), numeric(1)))),
       treedepth = as.integer(sum(vapply(sp, function(x) sum(x[, "treedepth__"] >= max_treedepth), numeric(1)))))
}

convergence_table <- function(draws_array) {
  s <- posterior::summarise_draws(draws_array, rhat = posterior::rhat, ess_bulk = posterior::ess_bulk,
                                  ess_tail = posterior::ess_tail)
  rows <- lapply(seq_len(nrow(s)), function(i) {
    list(rhat = s$rhat[i], ess_bulk = s$ess_bulk[i], ess_tail = s$ess_tail[i])
  })
  names(rows) <- s$variable
  list(parameters = rows,
       max_rhat = suppressWarnings(max(s$rhat, na.rm = TRUE)),
       min_ess_bulk = suppressWarnings(min(s$ess_bulk, na.rm = TRUE)),
       min_ess_tail = suppressWarnings(min(s$ess_tail, na.rm = TRUE)))
}

# The lines of rstan's printed output that say why sampling failed, as " (...)" for an error message.
stan_reason <- function(lines) {
  lines <- sub('^\\[[0-9]+\\]\\s*"?', "", trimws(lines))   # print()ed character vectors: [1] "..."
  lines <- trimws(sub('"$', "", trimws(lines)))
  lines <- lines[nzchar(lines)]
  why <- grep("error|exception|rejecting|invalid|failed", lines, ignore.case = TRUE, value = TRUE)
  why <- unique(utils::tail(if (length(why)) why else lines, 5L))
  if (length(why)) paste0(" (", paste(why, collapse = " "), ")") else ""
}

finite_or_na <- function(x) if (is.finite(x)) x else NA_real_

# model.observation of a gaussian fit: the attempts model's record as the engine wrote it (the JSON text of
# growth_engine's Observation.describe(), kept verbatim so kappa and gbar are the collapsed engine's to the
# last digit), or the plain model's.
observation_record <- function(observation) {
  if (is.null(observation)) return(list(name = "plain", formula = "sigma"))
  structure(observation$json, class = "json")
}

# Worker job. args: run_id, data, family, model (BRMS_MODELS), observation (the attempts model's: list(record,
# json) from the engine, else NULL), iter, chains, seed, sampler, model_dir, fits_dir, received_at, advice
# (sampler_advice's text, or NULL)
fit_brms_job <- function(args) {
  started <- Sys.time()
  family <- args$family
  model <- args$model
  attempts <- model != family
  data <- args$data
  week_center <- mean(data$week)
  template <- load_template(model, args$model_dir)

  prepared <- brms_newdata(data, family, week_center, if (attempts) args$observation$row_scale)
  warmup <- args$iter %/% 2L
  settings <- sampler_settings(args$sampler, length(prepared$students), warmup)
  warnings <- character(0)
  printed <- character(0)   # rstan prints (rather than raises) why a chain failed
  sampling_started <- Sys.time()
  fit <- tryCatch(
    withCallingHandlers({
      printed <- utils::capture.output(
        result <- stats::update(template$fit, newdata = prepared$newdata, recompile = FALSE,
                                iter = args$iter, warmup = warmup, chains = args$chains, cores = args$chains,
                                seed = args$seed, control = settings, refresh = 0, silent = 2, open_progress = FALSE))
      result
    },
      warning = function(w) {
        warnings <<- c(warnings, conditionMessage(w))
        invokeRestart("muffleWarning")
      },
      message = function(m) invokeRestart("muffleMessage")
    ),
    error = function(e) http_error(500L, "the Stan fit failed: ", conditionMessage(e), stan_reason(printed))
  )
  sampling_seconds <- as.numeric(difftime(Sys.time(), sampling_started, units = "secs"))
  stanfit <- fit$fit
  if (!inherits(stanfit, "stanfit") || stanfit@mode != 0L || length(stanfit@sim$samples) == 0L) {
    http_error(500L, "the Stan fit failed: no chain produced draws", stan_reason(c(printed, warnings)))
  }

  pop_names <- names(BRMS_POP_VARIABLES)
  pop_vars <- BRMS_POP_VARIABLES[if (family == "gaussian") pop_names else setdiff(pop_names, "sigma")]
  # the attempts model's sigma: exp of its log-link intercept, the residual sd of an average row
  if (attempts) pop_vars["sigma"] <- "b_sigma_Intercept"
  pop_array <- posterior::as_draws_array(fit, variable = unname(pop_vars))
  posterior::variables(pop_array) <- names(pop_vars)
  if (attempts) pop_array[, , "sigma"] <- exp(pop_array[, , "sigma"])
  conv <- convergence_table(pop_array)
  sampler <- sampler_diagnostics(stanfit, args$sampler$max_treedepth)

  pop <- posterior::as_draws_matrix(pop_array)
  pop <- unclass(pop)[, names(pop_vars), drop = FALSE]
  colnames(pop) <- POP_FROM_BRMS[names(pop_vars)]

  # per-student caller-scale intercepts (level at week 0) and slopes, draws x students
  r <- posterior::as_draws_matrix(fit, variable = "^r_student\\[", regex = TRUE)
  r_int <- unclass(r)[, sprintf("r_student[%s,Intercept]", prepared$codes), drop = FALSE]
  r_slope <- unclass(r)[, sprintf("r_student[%s,week_c]", prepared$codes), drop = FALSE]
  slopes <- r_slope + pop[, "week"]
  intercepts <- (r_int + pop[, "Intercept"]) - slopes * week_center
  colnames(intercepts) <- colnames(slopes) <- NULL
  rm(fit, r, r_int, r_slope)

  n_weeks <- tapply(data$week, factor(data$student, levels = prepared$students), function(w) length(unique(w)))
  students <- student_summaries(prepared$students, intercepts, slopes, n_weeks)

  draws <- nrow(pop)
  fitted_at <- utc_now()
  response <- list(
    run_id = args$run_id,
    engine = "brms",
    fitted_at = fitted_at,
    model = list(
      formula = GROWTH_FORMULA, family = family, link = unname(GROWTH_LINKS[family]),
      iter = args$iter, chains = args$chains, warmup = warmup, draws = draws, seed = args$seed,
      week_center = week_center, n_rows = nrow(data), n_students = length(prepared$students),
      n_weeks = length(unique(data$week)), priors = priors_report(family),
      sampler = c(settings, list(init = "random"))
    ),
    posterior_summary = population_summary(pop, week_center),
    students = students,
    diagnostics = list(
      max_rhat = finite_or_na(conv$max_rhat), min_ess_bulk = finite_or_na(conv$min_ess_bulk),
      min_ess_tail = finite_or_na(conv$min_ess_tail),
      divergent_transitions = sampler$divergent, max_treedepth_hits = sampler$treedepth,
      sampling_seconds = sampling_seconds, compile_seconds = template$compile_seconds,
      total_seconds = as.numeric(difftime(Sys.time(), started, units = "secs")),
      queue_seconds = as.numeric(difftime(started, args$received_at, units = "secs")),
      model_source = template$source,
      warnings = as.list(unique(c(args$advice, warnings))),
      parameters = conv$parameters
    )
  )

  if (family == "gaussian") response$model$observation <- observation_record(args$observation)
  # the engine's estimate of kappa, before the fit was queued (as the collapsed engine reports it)
  if (attempts) response$diagnostics$observation_seconds <- args$observation$seconds
  dir <- store_begin(args$fits_dir, args$run_id)
  ok <- FALSE
  on.exit(if (!ok) store_abort(args$fits_dir, args$run_id), add = TRUE)
  # noise_scale: per student, NULL (every week sigma^2) under the plain model
  saveRDS(list(schema = 1L, engine = "brms", family = family, week_center = week_center,
               students = prepared$students, pop = pop, intercepts = intercepts, slopes = slopes,
               noise_scale = prepared$noise_scale),
          file.path(dir, "draws.rds"))
  text <- to_json(response)
  write_json_file(json_text(text), file.path(dir, "response.json"))
  write_json_file(list(run_id = args$run_id, engine = "brms", family = family, fitted_at = fitted_at,
                       week_center = week_center, n_students = length(prepared$students)),
                  file.path(dir, "meta.json"))
  store_commit(args$fits_dir, args$run_id)
  ok <- TRUE
  list(json = as.character(text),
       log = sprintf("brms %s fit %s: %d rows, %d students, %.1f s sampling, max R-hat %.4f, %d divergent",
                     family, args$run_id, nrow(data), length(prepared$students), sampling_seconds,
                     conv$max_rhat, sampler$divergent))
}
