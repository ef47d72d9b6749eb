"""Synthetic footage that is hard for cut detectors, encoded like YouTube uploads.

`pipeline/samples.py` makes flat-colour scenes that any detector gets right. Real uploads
are harder: textured, grainy pictures; fast camera pans and shakes; camera flashes; fades
and dissolves; and a low, VBV-capped bitrate whose quality pulses (a sharp I-frame after
blurred P-frames) look like cuts to a frame-difference detector. This generator makes all of
that from a seed, with the truth written beside the file (`<name>.truth.json`: hard cuts and
the centre frame of each gradual transition), so detectors can be scored on it. It is used by
the accuracy tests (short clips), `bench/segment.py` (long ones) and the near-duplicate and
signal fixtures (slides, static, black screens).
"""
from __future__ import annotations

import colorsys
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

import cv2
import numpy as np


@dataclass(frozen=True)
class Encode:
    """How the frames are compressed (libx264 through PyAV)."""

    preset: str = "medium"
    bitrate_k: int | None = 800      # average bitrate; None = constant quality (crf)
    maxrate_k: int | None = 1200     # VBV cap, as streaming encodes have
    bufsize_k: int | None = 1600
    crf: int = 23
    gop: int = 150
    bframes: int = 3

    def options(self) -> dict[str, str]:
        """libx264 options; one thread so the same spec gives the same bytes on any machine."""
        opts = {"preset": self.preset, "g": str(self.gop), "bf": str(self.bframes), "threads": "1"}
        if self.bitrate_k is None:
            opts["crf"] = str(self.crf)
        else:
            if self.maxrate_k:
                opts["maxrate"] = f"{self.maxrate_k}k"
                opts["bufsize"] = f"{self.bufsize_k or 2 * self.maxrate_k}k"
        return opts


@dataclass(frozen=True)
class FootageSpec:
    """A video to generate. Scenes and their contents are drawn from `seed`."""

    seconds: float = 30.0
    seed: int = 0
    fps: int = 30
    width: int = 640
    height: int = 360
    mean_scene_s: float = 3.0        # shot lengths ~ 0.6x..2.2x this
    fast_share: float = 0.35         # scenes with fast pans / shake / fast objects
    flash_share: float = 0.15        # scenes with a camera flash (2-3 overexposed frames)
    fade_share: float = 0.10         # transitions that are a fade through black (1 s)
    dissolve_share: float = 0.05     # transitions that are a cross-dissolve (1 s)
    same_look_share: float = 0.15    # hard cuts to another shot of the same place (same palette)
    grain: float = 5.0               # sigma of the per-frame film grain
    encode: Encode = field(default_factory=Encode)


@dataclass
class _Scene:
    frames: int
    palette: int
    fast: bool
    flash_at: int | None
    transition: str  # into the NEXT scene: cut | fade | dissolve | end


def _palette(rng: np.random.Generator) -> np.ndarray:
    """Three colours a texture is mapped through (dark, mid, light), as a (3, 3) array."""
    hue = rng.random()
    sat = 0.25 + 0.6 * rng.random()
    cols = [colorsys.hsv_to_rgb((hue + dh) % 1.0, sat * s, v)
            for dh, s, v in ((0.0, 1.0, 0.12 + 0.2 * rng.random()),
                             (rng.uniform(-0.15, 0.15), 0.8, 0.4 + 0.25 * rng.random()),
                             (rng.uniform(-0.3, 0.3), 0.5, 0.75 + 0.25 * rng.random()))]
    return np.array(cols, np.float32) * 255


def _texture(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """Multi-octave value noise plus a few hard-edged blocks, in [0, 1]: a 'world' to film."""
    acc = np.zeros((h, w), np.float32)
    amp, total = 1.0, 0.0
    cells = int(rng.integers(2, 5))
    for _ in range(6):
        small = rng.random((cells, max(2, cells * w // h))).astype(np.float32)
        acc += amp * cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)
        total += amp
        amp *= 0.7
        cells *= 2
    acc /= total
    for _ in range(int(rng.integers(3, 12))):  # buildings, windows, furniture: edges
        y, x = int(rng.integers(0, h)), int(rng.integers(0, w))
        bh, bw = int(rng.integers(h // 20, h // 4)), int(rng.integers(w // 30, w // 6))
        acc[y:y + bh, x:x + bw] = rng.random()
    lo, hi = np.percentile(acc, [2, 98])
    return np.clip((acc - lo) / max(1e-6, hi - lo), 0, 1)


def _colourise(tex: np.ndarray, pal: np.ndarray) -> np.ndarray:
    xs = np.array([0.0, 0.5, 1.0], np.float32)
    return np.stack([np.interp(tex, xs, pal[:, c]) for c in range(3)], axis=-1).astype(np.float32)


class _Shot:
    """One shot: a camera moving over a textured world, with a few moving objects."""

    def __init__(self, rng: np.random.Generator, world: np.ndarray, spec: FootageSpec, fast: bool):
        self.rng, self.world, self.spec, self.fast = rng, world, spec, fast
        H, W = world.shape[:2]
        h, w = spec.height, spec.width
        self.pos = np.array([rng.uniform(0, H - h), rng.uniform(0, W - w)])
        speed = rng.uniform(25, 60) if fast else rng.uniform(0.0, 2.5)
        ang = rng.uniform(0, 2 * np.pi)
        self.vel = speed * np.array([np.sin(ang) * 0.4, np.cos(ang)])
        self.shake = rng.uniform(8, 20) if fast and rng.random() < 0.5 else 0.0
        self.zoom_rate = rng.uniform(-0.004, 0.004) if not fast else rng.uniform(-0.015, 0.015)
        self.zoom = 1.0
        n_obj = int(rng.integers(1, 4))
        self.objects = []
        for _ in range(n_obj):
            r = rng.uniform(0.06, 0.3 if fast else 0.18) * h
            vmax = 40 if fast else 3
            self.objects.append({
                "c": np.array([rng.uniform(r, h - r), rng.uniform(r, w - r)]),
                "v": rng.uniform(-vmax, vmax, 2),
                "r": (r, r * rng.uniform(0.6, 1.6)),
                "colour": tuple(float(v) for v in rng.uniform(20, 235, 3)),
            })

    def frame(self) -> np.ndarray:
        spec, H, W = self.spec, *self.world.shape[:2]
        h, w = spec.height, spec.width
        self.zoom = float(np.clip(self.zoom * (1 + self.zoom_rate), 0.7, 1.0))
        ch, cw = int(h / self.zoom * 0.999), int(w / self.zoom * 0.999)
        jitter = self.rng.normal(0, self.shake, 2) if self.shake else 0.0
        self.pos += self.vel
        for ax, lim in ((0, H - ch), (1, W - cw)):  # bounce off the world's edges
            if self.pos[ax] < 0 or self.pos[ax] > lim:
                self.vel[ax] = -self.vel[ax]
                self.pos[ax] = np.clip(self.pos[ax], 0, lim)
        y, x = (np.clip(self.pos + jitter, 0, [H - ch, W - cw])).astype(int)
        crop = self.world[y:y + ch, x:x + cw]
        img = crop if (ch, cw) == (h, w) else cv2.resize(crop, (w, h), interpolation=cv2.INTER_LINEAR)
        img = np.ascontiguousarray(img)
        for ob in self.objects:
            ob["c"] += ob["v"]
            for ax, lim in ((0, h), (1, w)):
                if not 0 < ob["c"][ax] < lim:
                    ob["v"][ax] = -ob["v"][ax]
            cy, cx = ob["c"]
            cv2.ellipse(img, (int(cx), int(cy)), (int(ob["r"][1]), int(ob["r"][0])), 0, 0, 360,
                        ob["colour"], -1, lineType=cv2.LINE_AA)
        return img


def _plan(spec: FootageSpec, rng: np.random.Generator) -> list[_Scene]:
    total = int(round(spec.seconds * spec.fps))
    scenes, used, last_palette = [], 0, -1
    while used < total:
        n = int(spec.fps * spec.mean_scene_s * rng.uniform(0.6, 2.2))
        n = max(n, spec.fps)  # at least one second per shot
        if total - used - n < spec.fps * 1.5:  # no stub at the end
            n = total - used
        # another angle of the same place comes after a hard cut only: a dissolve between two
        # near-identical pictures is invisible, to people and detectors alike
        same = bool(scenes) and scenes[-1].transition == "cut" and rng.random() < spec.same_look_share
        palette = last_palette if same else last_palette + 1
        fast = rng.random() < spec.fast_share
        flash = int(rng.integers(spec.fps // 3, max(spec.fps // 3 + 1, n - spec.fps // 3))) \
            if rng.random() < spec.flash_share and n > spec.fps else None
        u = rng.random()
        transition = ("fade" if u < spec.fade_share else
                      "dissolve" if u < spec.fade_share + spec.dissolve_share else "cut")
        scenes.append(_Scene(n, palette, fast, flash, transition))
        last_palette = palette
        used += n
    scenes[-1].transition = "end"
    return scenes


def footage_frames(spec: FootageSpec, truth: dict | None = None) -> Iterator[np.ndarray]:
    """RGB uint8 frames of `spec`; fills `truth` (cuts, gradual centres, flashes) on the way."""
    rng = np.random.default_rng(spec.seed)
    plan = _plan(spec, rng)
    h, w = spec.height, spec.width
    grain = rng.normal(0, spec.grain, (12, h + 16, w + 16, 1)).astype(np.float32) if spec.grain else None
    palettes: dict[int, np.ndarray] = {}
    half = spec.fps // 2  # gradual transitions last one second: half on each side
    cuts, gradual, flashes = [], [], []
    k = 0
    shots = []
    for i, sc in enumerate(plan):
        if sc.palette not in palettes:
            palettes[sc.palette] = _palette(rng)
        # another shot of the same place: same palette, new texture and framing
        tex = _texture(rng, int(h * 2.2), int(w * 2.2))
        shots.append(_Shot(rng, _colourise(tex, palettes[sc.palette]), spec, sc.fast))
    start = 0
    for i, sc in enumerate(plan):
        shot = shots[i]
        nxt = shots[i + 1] if i + 1 < len(plan) else None
        prev_tr = plan[i - 1].transition if i else "start"
        for j in range(sc.frames):
            img = shot.frame()
            # gradual transitions: the last `half` frames of a scene and the first `half` of the next
            if prev_tr == "fade" and j < half:
                img = img * ((j + 1) / (half + 1))
            if sc.transition == "fade" and j >= sc.frames - half:
                img = img * ((sc.frames - j) / (half + 1))
            if sc.transition == "dissolve" and j >= sc.frames - half and nxt is not None:
                a = (j - (sc.frames - half) + 1) / (2 * half + 1)
                img = img * (1 - a) + nxt.frame() * a
            if prev_tr == "dissolve" and j < half:
                prev = shots[i - 1]
                a = (half + j + 1) / (2 * half + 1)
                img = prev.frame() * (1 - a) + img * a
            if sc.flash_at is not None and sc.flash_at <= j < sc.flash_at + 2:
                img = img * 0.25 + 240.0
                if j == sc.flash_at:
                    flashes.append(k)
            if grain is not None:
                dy, dx = (k * 7) % 16, (k * 11) % 16
                img = img + grain[k % len(grain), dy:dy + h, dx:dx + w]
            yield np.clip(img, 0, 255).astype(np.uint8)
            k += 1
        start += sc.frames
        if sc.transition == "cut":
            cuts.append(start)
        elif sc.transition in ("fade", "dissolve"):
            gradual.append(start)
    if truth is not None:
        truth.update({"cut_frames": sorted(cuts + gradual), "hard_cut_frames": cuts,
                      "gradual_frames": gradual, "flash_frames": flashes, "fps": spec.fps,
                      "frame_count": k, "cut_seconds": [c / spec.fps for c in sorted(cuts + gradual)],
                      "fast_scenes": sum(s.fast for s in plan), "scenes": len(plan)})


def encode_frames(path: str | Path, frames: Iterator[np.ndarray], fps: int, width: int, height: int,
                  encode: Encode) -> None:
    """Encode RGB frames with libx264 (PyAV) into `path`."""
    import av

    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        if encode.bitrate_k:
            stream.bit_rate = encode.bitrate_k * 1000
        stream.options = encode.options()
        for arr in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(arr, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def make_footage(path: str | Path, spec: FootageSpec) -> Path:
    """Write `spec` as an H.264 mp4 and its truth as `<name>.truth.json`; reuse a cached pair."""
    path = Path(path)
    side = path.with_suffix(".truth.json")
    if path.exists() and side.exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    truth: dict = {}
    tmp = path.with_name(path.stem + ".part" + path.suffix)
    encode_frames(tmp, footage_frames(spec, truth), spec.fps, spec.width, spec.height, spec.encode)
    tmp.replace(path)
    side.write_text(json.dumps(truth))
    return path


def match_cuts(found: Sequence[float], truth: Sequence[float], tol: float = 0.5) -> tuple[int, int, int]:
    """(true positives, found, truth): each true cut matched at most once within `tol` seconds,
    greedily by distance, the way the scene-detection benchmarks count."""
    pairs = sorted((abs(f - t), i, j) for i, f in enumerate(found) for j, t in enumerate(truth)
                   if abs(f - t) <= tol)
    used_f, used_t, tp = set(), set(), 0
    for _, i, j in pairs:
        if i not in used_f and j not in used_t:
            used_f.add(i)
            used_t.add(j)
            tp += 1
    return tp, len(found), len(truth)


@dataclass(frozen=True)
class Copy:
    """How a re-upload differs from its source: trimmed, rescaled, re-encoded, re-timed."""

    name: str
    start_s: float = 0.0
    keep: float | None = None  # share of the source's duration kept (from start_s)
    scale: float | None = None  # height relative to the source's
    bitrate_k: int = 500
    fps: float | None = None
    preset: str = "veryfast"


# the kinds of copies the near-duplicate fixtures and bench/dedupe.py make of every source
COPIES = (
    Copy("reencode-low", bitrate_k=250),
    Copy("reencode-high-medium", bitrate_k=1500, preset="medium"),
    Copy("upscale-2x", scale=2.0, bitrate_k=1500),
    Copy("downscale-0.67x", scale=0.67, bitrate_k=250),
    Copy("trim-head", start_s=2.0),
    Copy("trim-both-70pct", start_s=1.5, keep=0.7),
    Copy("trim-rescale-25fps", start_s=1.0, keep=0.8, scale=0.75, fps=25, bitrate_k=400),
)


def derive_copy(src: str | Path, dst: str | Path, copy: Copy, source_duration_s: float, source_height: int) -> Path:
    """Make `copy` of `src` with imageio-ffmpeg's ffmpeg binary (as a re-uploader would)."""
    import subprocess

    import imageio_ffmpeg

    dst = Path(dst)
    if dst.exists():
        return dst
    dst.parent.mkdir(parents=True, exist_ok=True)
    cmd = [imageio_ffmpeg.get_ffmpeg_exe(), "-loglevel", "error", "-y"]
    if copy.start_s:
        cmd += ["-ss", f"{copy.start_s:.3f}"]
    cmd += ["-i", str(src)]
    if copy.keep:
        cmd += ["-t", f"{copy.keep * source_duration_s:.3f}"]
    filters = []
    if copy.scale:
        filters.append(f"scale=-2:{2 * round(source_height * copy.scale / 2)}")
    if copy.fps:
        filters.append(f"fps={copy.fps:g}")
    if filters:
        cmd += ["-vf", ",".join(filters)]
    tmp = dst.with_name(dst.stem + ".part" + dst.suffix)
    cmd += ["-an", "-c:v", "libx264", "-preset", copy.preset, "-b:v", f"{copy.bitrate_k}k",
            "-maxrate", f"{int(copy.bitrate_k * 1.5)}k", "-bufsize", f"{copy.bitrate_k * 2}k",
            "-threads", "1", "-pix_fmt", "yuv420p", "-f", "mp4", str(tmp)]
    subprocess.run(cmd, check=True, capture_output=True)
    tmp.replace(dst)
    return dst
