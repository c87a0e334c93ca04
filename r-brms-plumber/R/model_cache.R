# Compiled model templates: one brmsfit per brms model (a family's, and the gaussian family's attempts
# observation model: BRMS_MODELS in priors.R), compiled once on small synthetic data (chains = 0: compile,
# no sampling) and cached on disk under BRMS_MODEL_DIR/templates. Every fit is
# update(template, newdata = ..., recompile = FALSE). The file name carries a key over everything that
# changes the Stan program or its binary (formula, priors, package and R versions), so an upgrade compiles
# afresh instead of loading a stale model.

TEMPLATE_SCHEMA <- 1L

template_key <- function(model) {
  versions <- vapply(c("brms", "rstan", "StanHeaders", "Rcpp", "RcppEigen"),
                     function(p) as.character(utils::packageVersion(p)), character(1))
  # a family's own model keeps the spec (and so the key, and the cached template) it had before there were
  # other models
  spec <- list(schema = TEMPLATE_SCHEMA, family = model, formula = brms_formula_text(model),
               priors = growth_priors(model_family(model)), versions = versions, R = R.version.string,
               platform = R.version$platform)
  spec$stanvars <- sigma_prior_code(model)
  substr(digest::digest(spec, algo = "sha256"), 1, 16)
}

template_path <- function(model_dir, model) {
  file.path(model_dir, "templates", sprintf("%s-%s.rds", model, template_key(model)))
}

template_compiled <- function(model_dir, model) file.exists(template_path(model_dir, model))

# For /health: whether each brms model is compiled.
compiled_models <- function(model_dir) {
  stats::setNames(as.list(vapply(BRMS_MODELS, function(m) template_compiled(model_dir, m), logical(1))),
                  BRMS_MODELS)
}

# Synthetic data with the shape of real data; only its structure matters for compilation.
template_data <- function(model) {
  d <- expand.grid(week_c = c(-1.5, -0.5, 0.5, 1.5), student = c("t1", "t2", "t3"), stringsAsFactors = FALSE)
  d$score <- 0.5 + 0.05 * d$week_c
  d$n <- rep(c(2L, 10L, 30L), length.out = nrow(d))
  d$correct <- as.integer(round(d$score * d$n))
  g <- 1 / d$n + 0.02
  d$log_sigma_scale <- 0.5 * log(g / mean(g))
  d
}

brms_family <- function(family) {
  switch(family, gaussian = stats::gaussian(), binomial = stats::binomial(), stop("unknown family ", family))
}

# Compile the template of a model and write it atomically. Runs in a worker; returns seconds spent.
compile_template <- function(model, model_dir) {
  path <- template_path(model_dir, model)
  dir.create(dirname(path), recursive = TRUE, showWarnings = FALSE)
  log_line("compiling the ", model, " model (", basename(path), ")")
  started <- Sys.time()
  fit <- brms::brm(
    formula = brms_formula(model), data = template_data(model), family = brms_family(model_family(model)),
    prior = brms_priors(model), stanvars = brms_stanvars(model),
    backend = "rstan", chains = 0, silent = 2, refresh = 0, save_model = NULL
  )
  seconds <- as.numeric(difftime(Sys.time(), started, units = "secs"))
  tmp <- tempfile(paste0(basename(path), "."), tmpdir = dirname(path))
  saveRDS(fit, tmp)
  if (!file.rename(tmp, path)) {
    unlink(tmp)
    stop("could not write the compiled model to ", path)
  }
  # templates of this model under other keys (older package versions or priors) are of no further use
  stale <- setdiff(list.files(dirname(path), pattern = sprintf("^%s-[0-9a-f]{16}[.]rds$", model)), basename(path))
  unlink(file.path(dirname(path), stale))
  log_line("compiled the ", model, " model in ", round(seconds, 1), " s")
  seconds
}

# In-memory cache of loaded templates (per worker process).
.template_cache <- new.env(parent = emptyenv())

# The template of a model: from memory, from disk, or compiled now.
# -> list(fit, compile_seconds, source = "memory" | "disk" | "compiled")
load_template <- function(model, model_dir) {
  path <- template_path(model_dir, model)
  cached <- .template_cache[[model]]
  if (!is.null(cached) && identical(cached$path, path)) {
    return(list(fit = cached$fit, compile_seconds = 0, source = "memory"))
  }
  compile_seconds <- 0
  source <- "disk"
  if (!file.exists(path)) {
    compile_seconds <- compile_template(model, model_dir)
    source <- "compiled"
  }
  fit <- tryCatch(readRDS(path), error = function(e) {
    # a damaged file (e.g. disk full while an older version wrote it): compile again
    log_line("cannot read ", path, " (", conditionMessage(e), "); compiling again")
    unlink(path)
    compile_seconds <<- compile_template(model, model_dir)
    source <<- "compiled"
    readRDS(path)
  })
  assign(model, list(fit = fit, path = path), envir = .template_cache)
  list(fit = fit, compile_seconds = compile_seconds, source = source)
}

# Worker job: make sure a model is compiled (start-up warm-up).
ensure_template_job <- function(args) {
  seconds <- if (template_compiled(args$model_dir, args$model)) 0 else compile_template(args$model, args$model_dir)
  list(model = args$model, compile_seconds = seconds)
}
