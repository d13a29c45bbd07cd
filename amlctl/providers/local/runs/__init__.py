"""Runs on the local backend: real processes, supervised, with Azure ML's statuses.

- `spec`: RunSpec, what a submitted run is (`build_spec` from a run definition).
- `submit`: submit, ensure_supervised, cancel, wait_for.
- `supervisor`: the detached process that queues, prepares, runs and stops a run.
- `topology`: task placement over nodes, ports, TF_CONFIG and the other variables.
- `envs`: the pip environment of a run.
- `logs`: one log stream per task, read or followed.
- `roles`: each task's state and last log line, for live views.
- `status`, `procs`: statuses with compare-and-set changes; process groups and liveness.

The backend-neutral parts (run identity, argument rendering, snapshot rules) stay in
amlctl.runs. Nothing is imported here: the supervisor starts with `python -m` and must stay
quick to load.
"""
