"""``python -m toolkit.export``: :mod:`toolkit.commands.export`."""

from toolkit.commands.export import main

if __name__ == "__main__":
    main()
