"""``python -m toolkit.data validate|verify ...``: :mod:`toolkit.commands.data`."""

from toolkit.commands.data import main

if __name__ == "__main__":
    raise SystemExit(main())
