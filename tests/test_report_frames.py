"""The report's frames are the frames at the asked times: checked against ffmpeg's own seek
(the imageio-ffmpeg binary, no code shared with the pipeline), plus the columnar MC-letter count."""
from __future__ import annotations

import subprocess
from collections import Counter
from io import BytesIO

import imageio_ffmpeg
import numpy as np
import pyarrow as pa
from PIL import Image

from pipeline.samples import SampleSpec, make_video
from pipeline.viewer.frames import THUMB_WIDTH, extract
from pipeline.viewer.scan import _answer_letters

FFMPEG = imageio_ffmpeg.get_ffmpeg_exe()


def ffmpeg_frame(path, t: float, size: tuple[int, int]) -> np.ndarray:
    png = subprocess.run([FFMPEG, "-v", "error", "-ss", f"{t:.3f}", "-i", str(path), "-frames:v", "1",
                          "-f", "image2pipe", "-vcodec", "png", "-"], capture_output=True, check=True).stdout
    return np.asarray(Image.open(BytesIO(png)).convert("RGB").resize(size), dtype=np.float64)


def test_frames_match_ffmpeg_at_the_asked_times(tmp_path):
    video = make_video(tmp_path / "v.mp4", SampleSpec([4.0, 6.0, 5.0, 7.0], fps=10, width=320, height=180, seed=3))
    times = [0.0, 0.6, 3.1, 4.5, 9.9, 12.0, 21.5]  # close together (decoded forward) and far apart (seek)
    got = extract(str(video), None, list(reversed(times)), tmp_path / "f", "f")
    assert got.note is None and sorted(got.files) == times
    for t in times:
        image = Image.open(tmp_path / got.files[t])
        assert image.width == THUMB_WIDTH
        mine = np.asarray(image.convert("RGB"), dtype=np.float64)
        same = np.abs(mine - ffmpeg_frame(video, t, image.size)).mean()
        other = np.abs(mine - ffmpeg_frame(video, (t + 2.0) % 22, image.size)).mean()
        assert same < 6 and other > 2 * same, (t, same, other)


def test_the_shared_copy_is_read_when_the_local_path_is_gone(tmp_path):
    video = make_video(tmp_path / "store" / "v.mp4", SampleSpec([3.0, 3.0], fps=10, width=160, height=90, seed=4))
    got = extract("/node-cache/elsewhere/v.mp4", video.as_uri(), [1.0, 4.0], tmp_path / "f", "f")
    assert got.note is None and sorted(got.files) == [1.0, 4.0]


def test_unreachable_media_is_a_note_not_a_failure(tmp_path):
    got = extract(str(tmp_path / "gone.mp4"), None, [1.0], tmp_path / "f", "f")
    assert not got.files and "not reachable" in got.note
    (tmp_path / "bad.mp4").write_bytes(b"\0" * 1000)
    got = extract(str(tmp_path / "bad.mp4"), None, [1.0], tmp_path / "f", "f")
    assert not got.files and "could not read media" in got.note


def test_answer_letters_columnar_on_a_sliced_batch():
    rows = [(["a", "b", "c", "d"], "c"), (["x", "y"], "x"), (["p", "q", "r", "s"], "s"), (["m", "n"], "zz"),
            (["a", "a", "b", "c"], "a")]
    options = pa.array([o for o, _ in rows], pa.list_(pa.string()))
    answers = pa.array([a for _, a in rows])
    assert _answer_letters(options, answers) == Counter({"A": 2, "C": 1, "D": 1})
    # a filtered batch's list array does not start at offset 0
    assert _answer_letters(options.slice(2), answers.slice(2)) == Counter({"D": 1, "A": 1})
