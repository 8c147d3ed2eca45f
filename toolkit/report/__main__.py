"""``python -m toolkit.report runs=RUNS [out=report]``: :mod:`toolkit.commands.report`."""

from toolkit.commands.report import main

if __name__ == "__main__":
    main()
