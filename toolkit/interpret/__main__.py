"""``python -m toolkit.interpret ckpt=PATH [examples=200] [ks=[1,2,4]] [seed=0]``."""

from toolkit.interpret.command import main

if __name__ == "__main__":
    raise SystemExit(main())
