"""The attention benchmark (``benchmarks/attention.py``) in parts:

* ``cases``: the shapes, the passes and what each named case builds and runs;
* ``isolation``: the fork server, one fresh process per case, peak-RSS measurement;
* ``measure``: what runs inside a case's process (memory and timing, timed pairs, the SDPA
  backend probe);
* ``sweep``: the run order, the skip rules and the sweep over lengths, passes and types;
* ``targets`` (with ``targets.yaml``): the targets as data and the one function that
  evaluates them;
* ``report``: ``attention.csv``, the Markdown and ``attention.png``.
"""
