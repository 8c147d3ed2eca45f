"""``python -m toolkit.report RUNS --out DIR``: see :mod:`toolkit.report.render`."""

from toolkit.report.render import main

if __name__ == "__main__":
    main()
