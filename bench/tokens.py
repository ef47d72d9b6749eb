"""GPU tokens per kept item: frames as one video vs as images, one video prefix vs one per question.

Runs synthesis and verification on generated videos, each setting twice in one process:
- teacher (a scripted OpenAI-compatible endpoint on 127.0.0.1 named as a Qwen2.5-VL; its
  visual tokens counted by the model family's own formula): frames as separate images,
  then as one video, at equal frames;
- verifier (a tiny LLaVA-style model built offline, on the CPU, greedy): every question
  prefilling the video's frames, then one prefill per video shared by all its questions
  (the answers are checked equal), at equal k and frames.
Prints visual tokens per kept item (and per video-hour) and the ratios.

    python bench/tokens.py [--videos 3]
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from pipeline import runner  # noqa: E402
from pipeline.config import load_config  # noqa: E402
from pipeline.job import run_job  # noqa: E402
from pipeline.plan import build_stages, ingest  # noqa: E402
from pipeline.samples import SampleSpec, make_video  # noqa: E402


def run(tmp: Path, name: str, paths: list[str], teacher_url: str, extra: list[str]) -> dict:
    cfg = load_config(None, [f"work_dir={tmp / 'work'}", "fetch.min_duration_s=5", "select.min_duration_s=5",
                             "synth.teacher.kind=openai", "synth.teacher.model=Qwen/Qwen2.5-VL-72B-Instruct",
                             f"synth.teacher.openai.base_url={teacher_url}", "synth.teacher.openai.api_key_env=null",
                             "synth.qa.items_per_video=10", *extra])
    cfg.input.items = paths
    summary = run_job(cfg, str(tmp / name), ingest=ingest, stage_factory=build_stages, progress=False,
                      echo=lambda s: None)
    if summary.status.get("rejected"):
        import datasets

        messages = {r["reject_message"][:300] for r in datasets.load_dataset(str(tmp / name), "videos", split="train")
                    if r["status"] == "rejected"}
        print(f"{name}: rejected {dict(summary.reasons)}: {messages}", file=sys.stderr)
    return summary.cost_report() | {"kept": summary.qa_kept, "hours": summary.accepted_video_s / 3600,
                                    "status": dict(summary.status)}


def per_item(report: dict, who: str, key: str) -> float:
    return report[who]["per_kept_item"].get(key, 0.0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--videos", type=int, default=3)
    args = ap.parse_args()
    from tests.teacher import TeacherServer
    from tests.tiny_models import build_tiny_llava

    runner.init_ray(None, num_cpus=2)
    with tempfile.TemporaryDirectory() as t, TeacherServer() as teacher:
        tmp = Path(t)
        paths = [str(make_video(tmp / f"v{i}.mp4", SampleSpec([10.0, 10.0, 12.0, 10.0, 11.0, 10.0], fps=12,
                                                               width=640, height=360, seed=i)))
                 for i in range(args.videos)]
        model = build_tiny_llava(tmp / "verifier")
        verifier = ["verify.verifier.kind=transformers", "verify.verifier.model=tiny-llava",
                    f"verify.verifier.transformers.model_path={model}", "verify.verifier.transformers.device=cpu",
                    "verify.verifier.transformers.max_frames=8", "verify.verifier.transformers.batch_size=1", "verify.max_frames=8", "verify.max_tokens=8",
                    "verify.samples=2", "verify.temperature=0", "verify.judge=token_f1",
                    "verify.reconfirm_with_teacher=false", "verify.blind_pass=false"]
        images = run(tmp, "images", paths, teacher.base_url, ["synth.teacher.video_input=images"])
        video = run(tmp, "video", paths, teacher.base_url, ["synth.teacher.video_input=video"])
        unshared = run(tmp, "unshared", paths, teacher.base_url,
                       [*verifier, "verify.verifier.transformers.share_prefix=false"])
        shared = run(tmp, "shared", paths, teacher.base_url, [*verifier, "verify.verifier.transformers.share_prefix=true"])
    t_img, t_vid = per_item(images, "teacher", "visual_tokens"), per_item(video, "teacher", "visual_tokens")
    print(f"{args.videos} videos of {images['hours'] * 3600 / args.videos:.0f} s, 1 frame/s, "
          f"kept items {images['kept']} (teacher runs), {shared['kept']} (verifier runs)")
    print(f"teacher visual tokens per kept item: images {t_img:.1f}, video {t_vid:.1f}: "
          f"{t_img / max(t_vid, 1e-9):.2f}x lower with video input (per video-hour: "
          f"{images['teacher']['per_video_hour'].get('visual_tokens', 0):.0f} vs "
          f"{video['teacher']['per_video_hour'].get('visual_tokens', 0):.0f})")
    v_un = per_item(unshared, "verifier", "visual_prefill_tokens")
    v_sh = per_item(shared, "verifier", "visual_prefill_tokens")
    print(f"verifier visual prefill per kept item: per question {v_un:.1f}, one prefix per video {v_sh:.1f}: "
          f"{v_un / max(v_sh, 1e-9):.2f}x lower (visual tokens in the prompts, unchanged: "
          f"{per_item(unshared, 'verifier', 'visual_tokens'):.1f} vs {per_item(shared, 'verifier', 'visual_tokens'):.1f};"
          f" kept items {unshared['kept']} vs {shared['kept']})")
    os._exit(0)


if __name__ == "__main__":
    main()
