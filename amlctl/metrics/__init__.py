"""Run metrics: where runs log them and how amlctl shows them.

- `filestore`: MLflow's file tracking store, laid out and read with the standard library
  (the local backend gives every run one of its own, as Azure ML gives every job a run in its
  run history).
- `charts`: sparklines, the metrics table and `--plot` (matplotlib, the `plot` extra).
- `watch`: the live view of a run (roles, elapsed time, metrics), in place or as plain lines.

Only the standard library is imported here and in `filestore`; `charts` imports matplotlib
lazily, for `--plot` only.
"""
