"""``python -m toolkit.predict``: :mod:`toolkit.commands.predict`."""

from toolkit.commands.predict import main

if __name__ == "__main__":
    main()
