"""``python -m toolkit.train``: :mod:`toolkit.commands.train`."""

from toolkit.commands.train import main

if __name__ == "__main__":
    main()
