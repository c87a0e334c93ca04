# Compiled model templates: one brmsfit per family, compiled once on small synthetic data
# (chains = 0: compile, no sampling) and cached on disk under BRMS_MODEL_DIR/templates. Every fit is
# update(template, newdata = ..., recompile = FALSE). The file name carries a key over everything that
# changes the Stan program or its binary (formula, priors, package and R versions), so an upgrade compiles
# afresh instead of loading a stale model.

TEMPLATE_SCHEMA <- 1L

template_key <- function(family) {
  versions <- vapply(c("brms", "rstan", "StanHeaders", "Rcpp", "RcppEigen"),
                     function(p) as.character(utils::packageVersion(p)), character(1))
  spec <- list(schema = TEMPLATE_SCHEMA, family = family, formula = brms_formula_text(family),
               priors = growth_priors(family), versions = versions, R = R.version.string,
               platform = R.version$platform)
  substr(digest::digest(spec, algo = "sha256"), 1, 16)
}

template_path <- function(model_dir, family) {
  file.path(model_dir, "templates", sprintf("%s-%s.rds", family, template_key(family)))
}

template_compiled <- function(model_dir, family) file.exists(template_path(model_dir, family))

compiled_families <- function(model_dir) {
  stats::setNames(as.list(vapply(GROWTH_FAMILIES, function(f) template_compiled(model_dir, f), logical(1))),
                  GROWTH_FAMILIES)
}

# Synthetic data with the shape of real data; only its structure matters for compilation.
template_data <- function(family) {
  d <- expand.grid(week_c = c(-1.5, -0.5, 0.5, 1.5), student = c("t1", "t2", "t3"), stringsAsFactors = FALSE)
  d$score <- 0.5 + 0.05 * d$week_c
  d$n <- 10L
  d$correct <- as.integer(round(d$score * d$n))
  d
}

brms_family <- function(family) {
  switch(family, gaussian = stats::gaussian(), binomial = stats::binomial(), stop("unknown family ", family))
}

# Compile the template of a family and write it atomically. Runs in a worker; returns seconds spent.
compile_template <- function(family, model_dir) {
  path <- template_path(model_dir, family)
  dir.create(dirname(path), recursive = TRUE, showWarnings = FALSE)
  log_line("compiling the ", family, " model (", basename(path), ")")
  started <- Sys.time()
  fit <- brms::brm(
    formula = stats::as.formula(brms_formula_text(family)),
    data = template_data(family), family = brms_family(family), prior = brms_priors(family),
    backend = "rstan", chains = 0, silent = 2, refresh = 0, save_model = NULL
  )
  seconds <- as.numeric(difftime(Sys.time(), started, units = "secs"))
  tmp <- tempfile(paste0(basename(path), "."), tmpdir = dirname(path))
  saveRDS(fit, tmp)
  if (!file.rename(tmp, path)) {
    unlink(tmp)
    stop("could not write the compiled model to ", path)
  }
  # templates of this family under other keys (older package versions or priors) are of no further use
  stale <- setdiff(list.files(dirname(path), pattern = sprintf("^%s-[0-9a-f]{16}[.]rds$", family)), basename(path))
  unlink(file.path(dirname(path), stale))
  log_line("compiled the ", family, " model in ", round(seconds, 1), " s")
  seconds
}

# In-memory cache of loaded templates (per worker process).
.template_cache <- new.env(parent = emptyenv())

# The template of a family: from memory, from disk, or compiled now.
# -> list(fit, compile_seconds, source = "memory" | "disk" | "compiled")
load_template <- function(family, model_dir) {
  path <- template_path(model_dir, family)
  cached <- .template_cache[[family]]
  if (!is.null(cached) && identical(cached$path, path)) {
    return(list(fit = cached$fit, compile_seconds = 0, source = "memory"))
  }
  compile_seconds <- 0
  source <- "disk"
  if (!file.exists(path)) {
    compile_seconds <- compile_template(family, model_dir)
    source <- "compiled"
  }
  fit <- tryCatch(readRDS(path), error = function(e) {
    # a damaged file (e.g. disk full while an older version wrote it): compile again
    log_line("cannot read ", path, " (", conditionMessage(e), "); compiling again")
    unlink(path)
    compile_seconds <<- compile_template(family, model_dir)
    source <<- "compiled"
    readRDS(path)
  })
  assign(family, list(fit = fit, path = path), envir = .template_cache)
  list(fit = fit, compile_seconds = compile_seconds, source = source)
}

# Worker job: make sure a family is compiled (start-up warm-up).
ensure_template_job <- function(args) {
  seconds <- if (template_compiled(args$model_dir, args$family)) 0 else compile_template(args$family, args$model_dir)
  list(family = args$family, compile_seconds = seconds)
}
