"""What every backend's runs share, whichever service runs them.

- `definition`: RunDefinition, a run as every backend receives it (typed, no secret values).
- `identity`: run id, source digest and spec hash, which decide whether a run is new.
- `arguments`: a run's argument list as the entry script receives it.
- `snapshot`: which files of source_directory a run takes (.amlignore) and their copy.
- `errors`: RunError, the runs' one domain error.

The local backend's run machinery (supervisor, processes, placement) lives in
amlctl.providers.local.runs; nothing here imports a backend.
"""
