#!/bin/sh
# Install what r-brms-plumber needs on Debian 12 (bookworm), as root. Idempotent: installs only missing
# packages and applies the Boost include fix once. Usage: sudo sh install.sh
set -eu

if [ "$(id -u)" -ne 0 ]; then
    echo "install.sh: run as root (apt-get install)" >&2
    exit 1
fi

# R, a C++ toolchain for compiling Stan models (r-base-dev), brms/rstan, the HTTP layer and helpers,
# pkgload (run.R loads the package from a checkout with it), testthat for the unit tests, lintr and roxygen2
# for lint.sh and NAMESPACE/man, python3 for the collapsed engine's command line.
PACKAGES="r-base-core r-base-dev r-cran-brms r-cran-rstan r-cran-stanheaders r-cran-bh libboost-dev \
r-cran-rcppeigen r-cran-rcppparallel r-cran-plumber r-cran-swagger r-cran-posterior r-cran-promises \
r-cran-later r-cran-callr r-cran-processx r-cran-jsonlite r-cran-digest r-cran-r6 r-cran-testthat \
r-cran-pkgload r-cran-lintr r-cran-roxygen2 python3"

missing=""
for p in $PACKAGES; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
        missing="$missing $p"
    fi
done
if [ -n "$missing" ]; then
    echo "install.sh: installing$missing"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update
    # shellcheck disable=SC2086
    apt-get install -y --no-install-recommends $missing
else
    echo "install.sh: all packages present"
fi

# Debian's r-cran-bh ships no include/ folder (the headers come from libboost-dev under /usr/include), but
# rstan compiles models with -I<BH>/include. Point it at the system headers.
BH_DIR=$(Rscript -e 'cat(system.file(package = "BH"))')
if [ -z "$BH_DIR" ]; then
    echo "install.sh: the BH R package is not installed" >&2
    exit 1
fi
if [ ! -e "$BH_DIR/include" ]; then
    ln -s /usr/include "$BH_DIR/include"
    echo "install.sh: linked $BH_DIR/include -> /usr/include"
fi
test -f "$BH_DIR/include/boost/version.hpp" || { echo "install.sh: Boost headers not found under $BH_DIR/include" >&2; exit 1; }

Rscript -e 'suppressPackageStartupMessages({library(brms); library(rstan); library(plumber); library(posterior); library(callr)}); cat("install.sh: R", paste(R.version$major, R.version$minor, sep = "."), "brms", as.character(packageVersion("brms")), "rstan", as.character(packageVersion("rstan")), "plumber", as.character(packageVersion("plumber")), "\n")'
