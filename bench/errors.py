"""User-facing errors: the CLI prints their message on one line and exits non-zero, no traceback."""


class BenchError(Exception):
    """A mistake the user can fix (bad name, missing file, incompatible pairing, missing weights)."""


class UnknownNameError(BenchError):
    """A name that is not registered; the message carries the closest registered names."""


class IncompatibleError(BenchError):
    """A pairing that cannot run: an attack that cannot consume what a defense releases, or an attribute attack on
    a dataset without the labels it infers (a grid lists such pairings as skipped)."""


class WeightsMissingError(BenchError):
    """Pretrained weights that a component needs are not in the cache."""
