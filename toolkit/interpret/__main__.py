"""``python -m toolkit.interpret ckpt=PATH [examples=200] [ks=[1,2,4]] [seed=0]``."""

from toolkit.interpret.command import main

raise SystemExit(main())
