"""The built-in demo dataset: face-like images drawn on the fly from their index, identical on every machine.

Every image is a pure function of its index (numpy PCG64 seeded with [index, SEED]); the face is described in
relative units, drawn with anti-aliased OpenCV primitives on a max(size, 128) canvas and, for smaller sizes,
downsampled with an exact fixed-point triangle (antialiased bilinear) filter, so a given (index, size) always
gives the same bytes. Only integer OpenCV paths (anti-aliased drawing, 8-bit blur and resize) and exactly rounded
numpy arithmetic touch pixels, and the result is quantised to 8 bits, which keeps it identical across CPUs.
"""

from __future__ import annotations

import math
import re
from functools import lru_cache
from pathlib import Path
from typing import Any, Sequence

import cv2
import numpy as np
import torch

from bench.errors import BenchError
from bench.plugins import Dataset, ImageSet, register_dataset

SEED = 0x5EED_FACE  # second half of every image's seed; changing it changes the whole set
GENERATOR_VERSION = 1  # bump whenever a drawing change alters pixels, so that caches are invalidated
BASE = 128  # canvas size below which images are drawn at BASE and downsampled
MIN_SIZE = 16
LABELS = ("identity", "glasses", "smiling", "hair", "facial_hair")

_SHIFT = 4  # fractional bits of OpenCV drawing coordinates (sub-pixel precision)
_ONE = 1 << _SHIFT
_AA = cv2.LINE_AA

Colour = tuple[int, int, int]

_SKIN = np.array(
    [(255, 226, 200), (243, 198, 168), (226, 174, 138), (200, 140, 102), (166, 108, 74), (124, 80, 54), (88, 56, 40)],
    dtype=np.float64,
)
_HAIR = [
    (24, 20, 20), (52, 36, 28), (92, 62, 40), (138, 64, 36), (206, 170, 104), (232, 206, 150), (150, 150, 150),
    (220, 220, 214), (166, 70, 44), (60, 60, 120), (140, 40, 110),
]
_IRIS = [(92, 56, 30), (58, 34, 20), (66, 116, 176), (74, 128, 82), (138, 108, 58), (112, 126, 138)]
_FRAME = [(20, 20, 20), (90, 50, 30), (190, 160, 80), (150, 150, 160), (150, 30, 40), (30, 50, 130)]


class _Face:
    """Where the face is (relative units): centre, half-axes and tilt; maps face-frame offsets to the canvas."""

    __slots__ = ("cx", "cy", "ax", "ay", "tilt", "_cos", "_sin")

    def __init__(self, cx: float, cy: float, ax: float, ay: float, tilt: float) -> None:
        self.cx, self.cy, self.ax, self.ay, self.tilt = cx, cy, ax, ay, tilt  # tilt in degrees
        self._cos, self._sin = math.cos(math.radians(tilt)), math.sin(math.radians(tilt))

    def at(self, u: float, v: float) -> tuple[float, float]:
        return self.cx + u * self._cos - v * self._sin, self.cy + u * self._sin + v * self._cos


class _Canvas:
    """Anti-aliased drawing in relative coordinates (0..1) on an S×S×3 uint8 RGB image."""

    def __init__(self, img: np.ndarray) -> None:
        self.img = img
        self.s = img.shape[0]
        self._k = float(self.s * _ONE)

    def _p(self, xy: tuple[float, float]) -> tuple[int, int]:
        return round(xy[0] * self._k), round(xy[1] * self._k)

    def _len(self, r: float) -> int:
        return max(0, round(r * self._k))

    def _th(self, r: float) -> int:
        return -1 if r < 0 else max(1, int(round(r * self.s)))

    def ellipse(self, c: tuple[float, float], a: float, b: float, angle: float, col: Colour,
                width: float = -1.0, start: float = 0.0, end: float = 360.0) -> None:
        cv2.ellipse(self.img, self._p(c), (self._len(a), self._len(b)), angle, start, end, col, self._th(width),
                    _AA, _SHIFT)

    def poly(self, pts: Sequence[tuple[float, float]], col: Colour, width: float = -1.0, closed: bool = True) -> None:
        arr = np.array([self._p(p) for p in pts], dtype=np.int32)
        if width < 0:
            cv2.fillPoly(self.img, [arr], col, _AA, _SHIFT)
        else:
            cv2.polylines(self.img, [arr], closed, col, self._th(width), _AA, _SHIFT)

    def line(self, p: tuple[float, float], q: tuple[float, float], col: Colour, width: float) -> None:
        cv2.line(self.img, self._p(p), self._p(q), col, self._th(width), _AA, _SHIFT)


def _c(rgb: Any) -> Colour:
    r, g, b = rgb
    return min(255, max(0, round(float(r)))), min(255, max(0, round(float(g)))), min(255, max(0, round(float(b))))


def _scale(rgb: Colour, k: float) -> Colour:
    return _c([v * k for v in rgb])


def _mix(a: Colour, b: Colour, t: float) -> Colour:
    return _c([x * (1 - t) + y * t for x, y in zip(a, b)])


def _rand_colour(rng: np.random.Generator, lo: int = 20, hi: int = 235) -> Colour:
    return _c(rng.integers(lo, hi + 1, size=3))


def _upsample(grid: np.ndarray, s: int) -> np.ndarray:
    """A small uint8 random field stretched to s×s with OpenCV's bit-exact bilinear resize."""
    return cv2.resize(grid, (s, s), interpolation=cv2.INTER_LINEAR_EXACT)


@lru_cache(maxsize=8)
def _coords(s: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre coordinates in relative units: a 1×s row and an s×1 column (read-only, cached)."""
    t = (np.arange(s, dtype=np.float32) + np.float32(0.5)) / np.float32(s)
    t.flags.writeable = False
    return t[None, :], t[:, None]


def _to_u8(arr: np.ndarray) -> np.ndarray:
    """Round half up to uint8 after clipping (float32/float64 in, exactly rounded arithmetic only)."""
    arr = np.clip(arr, 0, 255)
    arr += 0.5
    return arr.astype(np.uint8)


def _background(rng: np.random.Generator, s: int) -> np.ndarray:
    """A textured backdrop: gradient, stripes, mottled noise, blobs or boxes (a 'room'), all in relative units."""
    x, y = _coords(s)
    kind = int(rng.integers(0, 5))
    c1, c2 = _rand_colour(rng), _rand_colour(rng)
    ang = rng.random() * 2 * math.pi
    t = np.clip(0.5 + (x - 0.5) * np.float32(math.cos(ang)) + (y - 0.5) * np.float32(math.sin(ang)), 0, 1)
    planes = [np.float32(a) + t * np.float32(b - a) for a, b in zip(c1, c2)]  # one plane per channel: fast
    if kind == 1:  # stripes (triangle wave), sometimes crossed (plaid)
        for _ in range(1 + int(rng.random() < 0.35)):
            freq, ph, amp = 3 + rng.random() * 9, rng.random(), 30 + rng.random() * 60
            a2 = rng.random() * math.pi
            w = (x * np.float32(math.cos(a2)) + y * np.float32(math.sin(a2))) * np.float32(freq) + np.float32(ph)
            tri = np.abs(w - np.floor(w) - np.float32(0.5)) * np.float32(4) - np.float32(1)  # in [-1, 1]
            planes = [p + tri * np.float32(c * amp / 255.0) for p, c in zip(planes, _rand_colour(rng))]
    img = cv2.merge([_to_u8(p) for p in planes])
    if kind in (0, 2):  # mottled colour noise
        g = int(rng.integers(4, 9)) if kind == 0 else int(rng.integers(8, 25))
        field = _upsample(rng.integers(0, 256, size=(g, g, 3), dtype=np.uint8), s).astype(np.int16)
        amp = 40 + int(rng.integers(0, 60))
        img = np.clip(img.astype(np.int16) + ((field - 128) * amp) // 128, 0, 255).astype(np.uint8)
    canvas = _Canvas(img)
    if kind == 3:  # blobs
        for _ in range(int(rng.integers(8, 26))):
            c = (rng.random(), rng.random())
            a, b = 0.02 + rng.random() * 0.12, 0.02 + rng.random() * 0.12
            canvas.ellipse(c, a, b, rng.random() * 180, _rand_colour(rng))
    elif kind == 4:  # boxes: windows, shelves, frames
        for _ in range(int(rng.integers(4, 11))):
            x0, y0 = rng.random() * 0.9, rng.random() * 0.9
            w, h = 0.05 + rng.random() * 0.3, 0.05 + rng.random() * 0.3
            col = _rand_colour(rng)
            pts = [(x0, y0), (x0 + w, y0), (x0 + w, y0 + h), (x0, y0 + h)]
            canvas.poly(pts, col, -1.0 if rng.random() < 0.6 else 0.01 + rng.random() * 0.02)
    return canvas.img


def _hair_back(cv: _Canvas, f: _Face, style: int, col: Colour, rng: np.random.Generator) -> None:
    if style == 2:  # medium: down to the jaw
        cv.ellipse(f.at(0, f.ay * 0.05), f.ax * 1.22, f.ay * 1.12, f.tilt, col)
    elif style == 3:  # long: down past the shoulders
        cv.ellipse(f.at(0, -f.ay * 0.05), f.ax * 1.25, f.ay * 1.1, f.tilt, col)
        w = f.ax * (1.2 + rng.random() * 0.25)
        cv.poly([f.at(-w, 0), f.at(w, 0), f.at(w * 1.1, f.ay * 2.0), f.at(-w * 1.1, f.ay * 2.0)], col)
    elif style == 4:  # curly: a ring of curls around the head
        cv.ellipse(f.at(0, -f.ay * 0.12), f.ax * 1.32, f.ay * 1.15, f.tilt, col)
        n = int(rng.integers(14, 22))
        for i in range(n):
            th = math.pi + math.pi * 1.3 * (i / (n - 1)) - 0.15 * math.pi
            r = 0.028 + rng.random() * 0.022
            u, v = math.cos(th) * f.ax * 1.3, math.sin(th) * f.ay * 1.12 - f.ay * 0.12
            shade = _scale(col, 0.75 + rng.random() * 0.5)
            cv.ellipse(f.at(u, v), r, r, 0, shade)
    elif style == 1:  # short: a cap just above the skull
        cv.ellipse(f.at(0, -f.ay * 0.06), f.ax * 1.07, f.ay * 1.02, f.tilt, col)


def _fringe(cv: _Canvas, f: _Face, style: int, col: Colour, rng: np.random.Generator) -> None:
    """Hair over the forehead: the top of the head down to a wavy hairline, with sideburns and strands."""
    hairline = -f.ay * (0.38 + rng.random() * 0.22)
    side = -f.ay * (0.05 + rng.random() * 0.12)
    part = (rng.random() - 0.5) * 1.2
    wave_amp, wave_f = f.ay * (0.02 + rng.random() * (0.1 if style == 4 else 0.05)), 2 + rng.random() * 4
    top = [(math.cos(a) * f.ax * 1.04, math.sin(a) * f.ay * 1.04) for a in np.linspace(math.pi, 2 * math.pi, 13)]
    low = []
    for k in np.linspace(1.0, -1.0, 15):
        u = k * f.ax * 1.02
        w = (k * wave_f) % 1.0
        v = hairline + (abs(k) ** 2.2) * (side - hairline) + wave_amp * (abs(w - 0.5) * 4 - 1)
        v += f.ay * 0.12 * max(0.0, 1 - abs(k - part) * 3)  # the part: a dip where the fringe swoops
        low.append((u, v))
    cv.poly([f.at(u, v) for u, v in top + low], col)
    strand = _scale(col, 1.35 if sum(col) < 300 else 0.75)
    for _ in range(int(rng.integers(4, 10))):  # strands
        k = rng.random() * 1.6 - 0.8
        u0, v0 = k * f.ax, hairline + (abs(k) ** 2.2) * (side - hairline) - f.ay * 0.05
        u1, v1 = u0 * 0.6 + (rng.random() - 0.5) * f.ax * 0.3, -f.ay * (0.85 + rng.random() * 0.1)
        cv.line(f.at(u0, v0), f.at(u1, v1), strand, 0.006)


def _eye(cv: _Canvas, f: _Face, u: float, v: float, ew: float, eh: float, iris: Colour, gaze: tuple[float, float],
         skin: Colour) -> None:
    cv.ellipse(f.at(u, v), ew, eh, f.tilt, (244, 242, 236))
    ir = eh * 0.9
    iu, iv = u + gaze[0] * ew * 0.35, v + gaze[1] * eh * 0.2
    cv.ellipse(f.at(iu, iv), ir, ir, 0, iris)
    cv.ellipse(f.at(iu, iv), ir * 0.45, ir * 0.45, 0, (16, 12, 12))
    cv.ellipse(f.at(iu - ir * 0.3, iv - ir * 0.35), ir * 0.22, ir * 0.22, 0, (255, 255, 255))
    cv.ellipse(f.at(u, v), ew, eh, f.tilt, _scale(skin, 0.45), 0.006)
    cv.ellipse(f.at(u, v - eh * 0.1), ew * 1.04, eh * 1.1, f.tilt, (30, 22, 20), 0.012, 190, 350)  # lashes


def _mouth(cv: _Canvas, f: _Face, mv: float, mw: float, smile: float, open_mouth: bool, lip: Colour) -> None:
    if open_mouth:
        mh = mw * 0.55
        cv.ellipse(f.at(0, mv), mw, mh, f.tilt, (70, 20, 24), -1.0, 0, 180)
        cv.ellipse(f.at(0, mv), mw * 0.92, mh * 0.42, f.tilt, (246, 244, 236), -1.0, 0, 180)
        cv.ellipse(f.at(0, mv), mw, mh, f.tilt, lip, 0.012, 0, 180)
        cv.line(f.at(-mw, mv), f.at(mw, mv), lip, 0.012)
        return
    mh = mw * (0.22 + 0.1 * (1 - smile))
    cv.ellipse(f.at(0, mv + mh * 0.15), mw, mh, f.tilt, lip)
    pts = [f.at(k * mw * 1.02, mv - smile * mw * 0.28 * k * k) for k in np.linspace(-1, 1, 9)]
    cv.poly(pts, _scale(lip, 0.45), 0.008, closed=False)


def _glasses(cv: _Canvas, f: _Face, eu: float, ev: float, ew: float, rng: np.random.Generator) -> None:
    col = _FRAME[int(rng.integers(0, len(_FRAME)))]
    width = 0.008 + rng.random() * 0.01
    round_frames = rng.random() < 0.5
    r = ew * (1.35 + rng.random() * 0.3)
    lens_h = r * (0.75 + rng.random() * 0.2)
    tinted = rng.random() < 0.2
    if tinted:
        tint = _rand_colour(rng, 10, 90)
        over = cv.img.copy()
        lens = _Canvas(over)
        for sgn in (-1, 1):
            lens.ellipse(f.at(sgn * eu, ev), r, lens_h, f.tilt, tint)
        cv.img[...] = ((cv.img.astype(np.uint16) * 96 + over.astype(np.uint16) * 160 + 128) >> 8).astype(np.uint8)
    for sgn in (-1, 1):
        if round_frames:
            cv.ellipse(f.at(sgn * eu, ev), r, lens_h, f.tilt, col, width)
        else:
            u0, u1 = sgn * eu - r, sgn * eu + r
            cv.poly([f.at(u0, ev - lens_h), f.at(u1, ev - lens_h), f.at(u1, ev + lens_h * 0.9),
                     f.at(u0, ev + lens_h * 0.9)], col, width)
        cv.line(f.at(sgn * (eu + r), ev - lens_h * 0.3), f.at(sgn * f.ax * 1.0, ev - lens_h * 0.1), col, width)
    cv.ellipse(f.at(0, ev - lens_h * 0.1), eu - r, lens_h * 0.35, f.tilt, col, width, 180, 360)


_W_BITS = 12  # fixed-point precision of the downsampling weights


@lru_cache(maxsize=16)
def _downsample_matrix(n_in: int, n_out: int) -> np.ndarray:
    """Integer triangle-filter (antialiased bilinear) weights shrinking n_in samples to n_out; rows sum to 2**12."""
    scale = n_in / n_out
    centres = (np.arange(n_out, dtype=np.float64) + 0.5) * scale
    pos = np.arange(n_in, dtype=np.float64) + 0.5
    w = np.clip(1.0 - np.abs(pos[None, :] - centres[:, None]) / scale, 0.0, None)
    w = np.round(w / w.sum(axis=1, keepdims=True) * (1 << _W_BITS))
    rows = np.arange(n_out)
    w[rows, w.argmax(axis=1)] += (1 << _W_BITS) - w.sum(axis=1)
    return w


def _downsample(img: np.ndarray, size: int) -> np.ndarray:
    """An S×S×3 uint8 image shrunk to size×size×3 with fixed-point weights, rounding half up.

    Weights and pixels are integers held in float64 and every sum stays below 2**53, so each product and sum
    is exact: BLAS summation order cannot change a single byte on any machine.
    """
    s = img.shape[0]
    m = _downsample_matrix(s, size)
    rows = (m @ img.reshape(s, s * 3).astype(np.float64)).reshape(size, s, 3)
    cols = m @ np.ascontiguousarray(rows.transpose(1, 0, 2)).reshape(s, size * 3)  # (size x, size y * 3)
    out = np.floor((cols + float(1 << (2 * _W_BITS - 1))) * (1.0 / (1 << (2 * _W_BITS))))
    return np.ascontiguousarray(out.reshape(size, size, 3).transpose(1, 0, 2)).astype(np.uint8)


def render_face(index: int, size: int) -> tuple[np.ndarray, dict[str, int]]:
    """The synthetic face number `index` as an size×size×3 uint8 RGB array, with its labels."""
    if size < MIN_SIZE:
        raise BenchError(f"synthetic faces need an image size of at least {MIN_SIZE}; got {size}")
    rng = np.random.default_rng([int(index), SEED])
    s = max(int(size), BASE)
    img = _background(rng, s)
    cv = _Canvas(img)

    # --- who: every random draw below happens in a fixed order, whatever the size
    skin_t = rng.random() * (len(_SKIN) - 1)
    lo = int(skin_t)
    skin = _c(_SKIN[lo] * (1 - (skin_t - lo)) + _SKIN[min(lo + 1, len(_SKIN) - 1)] * (skin_t - lo)
              + (rng.random(3) - 0.5) * 16)
    f = _Face(0.5 + (rng.random() - 0.5) * 0.1, 0.47 + (rng.random() - 0.5) * 0.08,
              0.2 + rng.random() * 0.07, 0.27 + rng.random() * 0.07, (rng.random() - 0.5) * 16)
    style = int(rng.choice(5, p=[0.08, 0.32, 0.25, 0.2, 0.15]))
    hair = _HAIR[int(rng.integers(0, len(_HAIR)))] if rng.random() < 0.9 else _HAIR[int(rng.integers(0, 4))]
    shirt = _rand_colour(rng)
    has_glasses = bool(rng.random() < 0.3)
    facial = int(rng.choice(3, p=[0.75, 0.15, 0.1]))  # 0 none, 1 moustache, 2 beard
    smile = float(rng.random())
    open_mouth = bool(smile > 0.65 and rng.random() < 0.5)

    # --- body, hair behind the head, neck, ears, face
    cv.ellipse((f.cx, f.cy + f.ay + 0.3), 0.36 + rng.random() * 0.14, 0.24, 0, shirt)
    cv.line((f.cx - 0.1, f.cy + f.ay + 0.1), (f.cx, f.cy + f.ay + 0.2), _scale(shirt, 0.6), 0.01)
    cv.line((f.cx + 0.1, f.cy + f.ay + 0.1), (f.cx, f.cy + f.ay + 0.2), _scale(shirt, 0.6), 0.01)
    if style:
        _hair_back(cv, f, style, hair, rng)
    neck = _scale(skin, 0.82)
    cv.poly([f.at(-f.ax * 0.5, f.ay * 0.5), f.at(f.ax * 0.5, f.ay * 0.5), (f.cx + f.ax * 0.55, f.cy + f.ay + 0.12),
             (f.cx, f.cy + f.ay + 0.19), (f.cx - f.ax * 0.55, f.cy + f.ay + 0.12)], neck)
    if style != 3:
        for sgn in (-1, 1):
            cv.ellipse(f.at(sgn * f.ax * 0.97, f.ay * 0.02), f.ax * 0.16, f.ay * 0.2, f.tilt, _scale(skin, 0.93))
            cv.ellipse(f.at(sgn * f.ax * 1.0, f.ay * 0.02), f.ax * 0.08, f.ay * 0.12, f.tilt, _scale(skin, 0.7), 0.006,
                       90 - sgn * 90, 270 - sgn * 90)
    cv.ellipse((f.cx, f.cy), f.ax, f.ay, f.tilt, skin)
    cv.ellipse(f.at(0, f.ay * 0.55), f.ax * 0.7, f.ay * 0.35, f.tilt, _scale(skin, 0.96), 0.004, 20, 160)  # jaw

    # --- features
    eu = f.ax * (0.36 + rng.random() * 0.1)
    ev = -f.ay * (0.02 + rng.random() * 0.12)
    ew = f.ax * (0.18 + rng.random() * 0.07)
    eh = ew * (0.42 + rng.random() * 0.14)
    iris = _IRIS[int(rng.integers(0, len(_IRIS)))]
    gaze = (rng.random() - 0.5, rng.random() - 0.5)
    brow = _scale(hair, 0.7) if style else _scale(skin, 0.35)
    arch, gap, bw = 0.01 + rng.random() * 0.03, eh * (1.6 + rng.random() * 1.2), ew * (1.1 + rng.random() * 0.3)
    tilt_b = (rng.random() - 0.5) * 0.03
    brow_w = 0.009 + rng.random() * 0.012
    for sgn in (-1, 1):
        _eye(cv, f, sgn * eu, ev, ew, eh, iris, gaze, skin)
        pts = [f.at(sgn * (eu + k * bw), ev - gap - arch * (1 - k * k) + tilt_b * k) for k in np.linspace(-1, 1, 7)]
        cv.poly(pts, brow, brow_w, closed=False)
    nv = f.ay * (0.22 + rng.random() * 0.12)
    nw = f.ax * (0.14 + rng.random() * 0.08)
    shade = _scale(skin, 0.68)
    cv.ellipse(f.at(0, nv), nw, nw * 0.5, f.tilt, shade, 0.007, 20, 160)
    for sgn in (-1, 1):
        cv.ellipse(f.at(sgn * nw * 0.55, nv + nw * 0.12), nw * 0.26, nw * 0.16, f.tilt, _scale(skin, 0.4))
        cv.line(f.at(sgn * nw * 0.45, ev + eh), f.at(sgn * nw * 0.75, nv - nw * 0.3), _scale(skin, 0.85), 0.006)
    mv = nv + f.ay * (0.22 + rng.random() * 0.1)
    mw = f.ax * (0.3 + rng.random() * 0.22)
    lip = _mix(skin, (176, 52, 62), 0.35 + rng.random() * 0.3)
    if facial == 2:
        beard = _scale(hair, 0.9)
        cv.ellipse(f.at(0, f.ay * 0.22), f.ax * 0.99, f.ay * 0.77, f.tilt, beard, -1.0, 5, 175)
        cv.ellipse(f.at(0, mv + mw * 0.05), mw * 1.15, mw * 0.5, f.tilt, skin)
    _mouth(cv, f, mv, mw, smile, open_mouth, lip)
    if facial:
        pts = [f.at(k * mw * 1.05, mv - mw * (0.28 + 0.06 * (1 - k * k))) for k in np.linspace(-1, 1, 7)]
        cv.poly(pts, _scale(hair, 0.85), 0.018, closed=False)
    if style:
        _fringe(cv, f, style, hair, rng)
    if has_glasses:
        _glasses(cv, f, eu, ev, ew, rng)

    # --- lighting, blur, sensor noise (the noise field lives on the BASE grid, so it does not depend on size)
    light_a, light_dir = rng.random() * 0.3, rng.random() * 2 * math.pi
    gain, offset = 0.85 + rng.random() * 0.25, (rng.random() - 0.5) * 30
    sigma = (0.35 + rng.random() * 0.5) * s / BASE
    noise_amp = 2 + int(rng.integers(0, 7))
    noise = rng.integers(0, 256, size=(BASE, BASE, 3), dtype=np.uint8)
    x, y = _coords(s)
    lx, ly = np.float32(light_a * 2 * math.cos(light_dir)), np.float32(light_a * 2 * math.sin(light_dir))
    light = (np.float32(1) + (x - np.float32(0.5)) * lx + (y - np.float32(0.5)) * ly) * np.float32(gain)
    out = cv.img * cv2.merge([light, light, light])
    out += np.float32(offset)
    out = cv2.GaussianBlur(_to_u8(out), (0, 0), sigma).astype(np.int16)
    field = noise if s == BASE else _upsample(noise, s)
    out += ((field.astype(np.int16) - 128) * noise_amp) >> 7
    out = np.clip(out, 0, 255, out=out).astype(np.uint8)
    if s != size:
        out = _downsample(out, int(size))
    labels = {"identity": int(index), "glasses": int(has_glasses), "smiling": int(smile > 0.5 or open_mouth),
              "hair": style, "facial_hair": facial}
    return np.ascontiguousarray(out, dtype=np.uint8), labels


_ID = re.compile(r"synthetic-(\d{6,})")


@register_dataset
class SyntheticFaces(Dataset):
    """Synthetic face-like images generated from their index: the built-in demo set (no download, no real faces).

    Labels: identity (= index), glasses (0/1), smiling (0/1), hair (0 bald, 1 short, 2 medium, 3 long,
    4 curly), facial_hair (0 none, 1 moustache, 2 beard).
    """

    name = "synthetic-faces"
    needs_root = False
    note = "demo set: synthetic face-like images, not real faces"
    # Not faces of people: a face recogniser's match on a drawing says nothing about identity leakage, so identity
    # metrics are a default only for attacks that declare face reconstruction (`reconstructs_faces`).
    faces = False
    label_names = LABELS

    def __init__(self, root: Path | None = None, count: int = 5000) -> None:
        super().__init__(root)
        if int(count) < 1:
            raise BenchError(f"dataset 'synthetic-faces' needs a positive count; got {count}")
        self.count = int(count)

    def item_ids(self) -> list[str]:
        """synthetic-000000 ... synthetic-{count-1}, sorted."""
        return [f"synthetic-{i:06d}" for i in range(self.count)]

    def index_of(self, item_id: str) -> int:
        """The generator index behind an item id; a BenchError for ids that are not in this set."""
        m = _ID.fullmatch(item_id)
        if not m or int(m.group(1)) >= self.count:
            raise BenchError(f"{item_id!r} is not an item of dataset 'synthetic-faces' "
                             f"(synthetic-000000 .. synthetic-{self.count - 1:06d})")
        return int(m.group(1))

    def load(self, ids: Sequence[str], size: int) -> ImageSet:
        """Render `ids` at size×size; never skips anything."""
        indices = [self.index_of(i) for i in ids]
        arrays, labels = [], {k: [] for k in LABELS}
        for idx in indices:
            arr, lab = render_face(idx, int(size))
            arrays.append(arr)
            for k in LABELS:
                labels[k].append(lab[k])
        if arrays:
            images = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).float().div_(255.0).contiguous()
        else:
            images = torch.zeros((0, 3, int(size), int(size)), dtype=torch.float32)
        return ImageSet(ids=list(ids), images=images,
                        labels={k: np.asarray(v, dtype=np.int64) for k, v in labels.items()})

    def fingerprint(self) -> dict[str, Any]:
        """Name, count and generator version: everything that decides the pixels."""
        return {"name": self.name, "version": self.version, "root": None, "count": self.count,
                "generator": GENERATOR_VERSION, "seed": SEED}
