"""Scaffolding for outside plugins: `bench plugin new NAME --kind attack|defense|metric` writes a standalone,
installable package (entry point, a skeleton that passes the contract kit, a README and a test)."""

from bench.plugin_kit.scaffold import KINDS, names_for, scaffold  # noqa: F401
