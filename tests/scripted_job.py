"""The job config of an end-to-end run against the scripted teacher and verifier (tests/teacher.py,
tests/verifier.py): local files in, teacher QA with a k-sample verifier judged by the teacher."""
from __future__ import annotations

from typing import Any

BACKEND = {"api_key_env": None, "timeout_s": 5, "max_retries": 2, "backoff_base_s": 0.01, "backoff_max_s": 0.05}


def scripted_job(name: str, work_dir: str, items: list[str], teacher_url: str, verifier_url: str,
                 k: int) -> dict[str, Any]:
    return {"name": name, "work_dir": work_dir, "input": {"items": items},
            "fetch": {"min_duration_s": 5}, "select": {"min_duration_s": 5},
            "synth": {"teacher": {"kind": "openai", "model": "scripted-teacher",
                                  "openai": {"base_url": teacher_url, **BACKEND}},
                      "caption": {"window_s": 30}, "qa": {"items_per_video": 10}},
            "verify": {"verifier": {"kind": "openai", "model": "scripted-verifier",
                                    "openai": {"base_url": verifier_url, **BACKEND}},
                       "samples": k, "judge": "teacher"},
            "output": {"commit_every": 2}}
