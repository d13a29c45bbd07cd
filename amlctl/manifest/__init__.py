"""The manifest: models, loading with positions, templating and validation."""

from amlctl.manifest.loader import DEFAULT_FILE, LoadedManifest, load_manifest

__all__ = ["DEFAULT_FILE", "LoadedManifest", "load_manifest"]
