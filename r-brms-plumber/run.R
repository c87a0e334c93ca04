#!/usr/bin/env Rscript
# Start r-brms-plumber from the environment (see README.md):
#   BRMS_PLUMBER_HOST (127.0.0.1), BRMS_PLUMBER_PORT (8000), BRMS_MODEL_DIR, BRMS_WARMUP_FAMILIES, ...
# Loads the package `rbrmsplumber` from this folder with pkgload::load_all() when run from a checkout
# (DESCRIPTION next to this file), else the installed package with library() (the Docker image).

script_dir <- function() {
  file_arg <- grep("^--file=", commandArgs(trailingOnly = FALSE), value = TRUE)
  if (length(file_arg)) dirname(normalizePath(sub("^--file=", "", file_arg[1]))) else getwd()
}

root <- script_dir()
if (file.exists(file.path(root, "DESCRIPTION"))) {
  pkgload::load_all(root, export_all = FALSE, helpers = FALSE, attach_testthat = FALSE, quiet = TRUE)
} else {
  library(rbrmsplumber)
}
options(warn = 1L)

cfg <- tryCatch(rbrmsplumber::read_config(), error = function(e) {
  message("r-brms-plumber: ", conditionMessage(e))
  quit(status = 2L, save = "no")
})
rbrmsplumber::service_start(cfg)
router <- rbrmsplumber::build_router(cfg)
router$run(host = cfg$host, port = cfg$port, docs = TRUE, quiet = FALSE)
