"""``python -m toolkit.evaluate``: :mod:`toolkit.commands.evaluate`."""

from toolkit.commands.evaluate import main

if __name__ == "__main__":
    main()
