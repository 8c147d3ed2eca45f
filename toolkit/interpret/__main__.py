"""``python -m toolkit.interpret``: :mod:`toolkit.commands.interpret`."""

from toolkit.commands.interpret import main

if __name__ == "__main__":
    raise SystemExit(main())
