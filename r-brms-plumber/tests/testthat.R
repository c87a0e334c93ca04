# R CMD check's entry point; during development: testthat::test_local("r-brms-plumber")
library(testthat)
library(rbrmsplumber)

test_check("rbrmsplumber")
