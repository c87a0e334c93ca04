#!/usr/bin/env Rscript
# Start r-brms-plumber from the environment (see README.md):
#   BRMS_PLUMBER_HOST (127.0.0.1), BRMS_PLUMBER_PORT (8000), BRMS_MODEL_DIR, BRMS_WARMUP_FAMILIES, ...

script_dir <- function() {
  file_arg <- grep("^--file=", commandArgs(trailingOnly = FALSE), value = TRUE)
  if (length(file_arg)) dirname(normalizePath(sub("^--file=", "", file_arg[1]))) else getwd()
}

root <- Sys.getenv("R_BRMS_PLUMBER_ROOT", script_dir())
for (f in sort(list.files(file.path(root, "R"), pattern = "[.]R$", full.names = TRUE))) {
  sys.source(f, envir = globalenv())
}
options(warn = 1L)

cfg <- tryCatch(read_config(root), error = function(e) {
  message("r-brms-plumber: ", conditionMessage(e))
  quit(status = 2L, save = "no")
})
service_start(cfg)
router <- build_router(cfg)
router$run(host = cfg$host, port = cfg$port, docs = TRUE, quiet = FALSE)
