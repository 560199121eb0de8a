"""Named run profiles (smoke, cpu, paper): resolutions and split sizes, the one place they are set.

Each attack keeps its own per-profile hyper-parameters beside its code (one file per attack), under the same
three names; this module holds what is shared by every run: the victim's resolution, the resolution that
reconstructions are produced and scored at, the default split sizes, and the caveat that every output of a profile
carries (run.json notes, the `bench run` and `bench grid` summaries, the leaderboard's `profile_note` column). The
caveat is not part of the run spec: rewording it never changes a run id.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from bench.errors import BenchError


@dataclass(frozen=True)
class RunProfile:
    """Run-wide settings of one profile."""

    name: str
    extract_size: int  # the victim extracts features from images at this square size
    image_size: int  # attacks reconstruct, and metrics score, at this square size
    n_train: int  # default size of the attacker's auxiliary split
    n_test: int  # default size of the private split that is reconstructed and scored
    eval_batch: int  # batch size for reconstruction and metrics
    purpose: str
    caveat: str = ""  # what every output of this profile must say about its numbers (empty: nothing to say)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def caveat_at(self, image_size: int | None) -> str:
        """The caveat as true of a run scored at `image_size` px (a CIFAR run keeps its native 32 px: the profile's
        own size is then not what the run used); the profile's caveat as is when the size is unknown or its own."""
        own = f"{self.image_size}x{self.image_size} images"
        if not self.caveat or image_size is None or int(image_size) == self.image_size or own not in self.caveat:
            return self.caveat
        n = int(image_size)
        return self.caveat.replace(own, f"{n}x{n} images (the dataset's native size; the profile's own is "
                                        f"{self.image_size}x{self.image_size})", 1)


PROFILES: dict[str, RunProfile] = {
    "smoke": RunProfile("smoke", extract_size=64, image_size=32, n_train=24, n_test=8, eval_batch=8,
                        purpose="seconds, for tests: tiny images and networks, a few steps"),
    "cpu": RunProfile("cpu", extract_size=128, image_size=64, n_train=1500, n_test=200, eval_batch=50,
                      purpose="the default: minutes on a 2-core laptop at 64x64, reduced widths",
                      caveat="cpu profile: 64x64 images, reduced network widths and minutes of training; its numbers "
                             "under-state what the attacks reach at the paper profile (256x256, the published "
                             "networks, losses and training schedules)"),
    "paper": RunProfile("paper", extract_size=256, image_size=256, n_train=24000, n_test=3000, eval_batch=16,
                        purpose="the published configuration (256x256, full widths, all losses), for a GPU"),
}

DEFAULT_PROFILE = "cpu"

# Datasets whose native images are at most this many pixels wide (CIFAR's 32 px) are used at their native size (or
# smaller, when a profile asks for less): scaling them up to a profile's face-sized target would only interpolate.
# Larger datasets (faces of 200-256 px) and generated sets (no native size) take the profile's sizes as they are.
KEEP_NATIVE_AT_MOST = 64


@dataclass(frozen=True)
class Resolution:
    """The sizes one run uses, and how they were reached from the profile and the dataset's native size."""

    extract_size: int  # the victim sees images at this square size
    image_size: int  # attacks reconstruct, and metrics score, at this square size
    native_size: int | None  # the dataset's declared native size (None: generated at any size, or mixed sizes)
    rule: str  # "profile", "native" or "requested": where the sizes come from

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def resolve_resolution(profile: RunProfile, native_size: int | None, image_size: int | None = None,
                       extract_size: int | None = None) -> Resolution:
    """The run's sizes: the profile's, clamped to a small dataset's native size, unless the user asked for sizes.

    A dataset with native size <= KEEP_NATIVE_AT_MOST keeps it (CIFAR stays 32 px at every profile; smaller profile
    sizes still apply); every other dataset gets exactly the profile's sizes, so face runs keep their sizes and run
    ids. `image_size` / `extract_size` (--image-size / --extract-size) override either size, e.g. to upscale CIFAR.
    """
    extract, image, rule = profile.extract_size, profile.image_size, "profile"
    if native_size is not None and int(native_size) <= KEEP_NATIVE_AT_MOST:
        extract, image = min(extract, int(native_size)), min(image, int(native_size))
        rule = "native"
    for name, value in (("--image-size", image_size), ("--extract-size", extract_size)):
        if value is not None and not 8 <= int(value) <= 4096:
            raise BenchError(f"{name} must be between 8 and 4096 pixels (got {value})")
    if image_size is not None or extract_size is not None:
        rule = "requested"
        image = int(image_size) if image_size is not None else image
        extract = int(extract_size) if extract_size is not None else extract
    return Resolution(extract_size=extract, image_size=image,
                      native_size=None if native_size is None else int(native_size), rule=rule)


def get_profile(name: str) -> RunProfile:
    """The profile called `name`, or a BenchError listing the profiles."""
    try:
        return PROFILES[name]
    except KeyError:
        raise BenchError(f"unknown profile {name!r}; profiles: {', '.join(PROFILES)}") from None
