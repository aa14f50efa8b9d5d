"""``python -m autodeuq``: the ``autodeuq`` command (see :mod:`autodeuq.cli`).

The guard matters: the embedded Dask cluster's worker processes import the main module.
"""

from autodeuq.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
