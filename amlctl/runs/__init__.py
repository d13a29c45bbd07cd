"""Runs on the local backend: real processes, supervised, with Azure ML's statuses.

- `spec`: RunSpec, what a submitted run is (`build_spec` from a manifest run).
- `identity`: source digest and spec hash, which decide whether a run is new.
- `arguments`: a run's argument list (backend-neutral; the azure backend uses it too).
- `snapshot`: which files of source_directory a run takes (.amlignore) and their copy.
- `submit`: submit, ensure_supervised, cancel, wait_for.
- `supervisor`: the detached process that queues, prepares, runs and stops a run.
- `topology`: task placement over nodes, ports, TF_CONFIG and the other variables.
- `envs`: the pip environment of a run.
- `logs`: one log stream per task, read or followed.
- `status`, `procs`: statuses with compare-and-set changes; process groups and liveness.

Nothing is imported here: the supervisor starts with `python -m` and must stay quick to load.
"""
