"""The older path of `python -m seed_growth.cli.fit_bayesian_growth`, kept for callers that use it."""

import sys

from seed_growth.cli.fit_bayesian_growth import main

if __name__ == "__main__":
    sys.exit(main())
