"""``python -m toolkit.compare``: :mod:`toolkit.commands.compare`."""

from toolkit.commands.compare import main

if __name__ == "__main__":
    main()
