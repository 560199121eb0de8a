"""The run spec lives in bench/spec.py (below the store, which keys its rows by it); this name is kept for imports."""

from bench.spec import PATH_FIELDS, SPEC_VERSION, RunSpec, canonical_json, config_id, digest, run_id  # noqa: F401
