"""What yt-dlp gets for YouTube from the project's own params, read back through yt-dlp; `curate doctor`.

Offline: the JS runtime runs locally, the EJS scripts come from the installed package, and
the only servers are on 127.0.0.1.
"""
from __future__ import annotations

import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yt_dlp
from pydantic import ValidationError
from typer.testing import CliRunner

from pipeline.acquire import youtube
from pipeline.acquire.config import FetchConfig, YouTubeConfig
from pipeline.acquire.ytdlp_options import build_params, metered_ydl
from pipeline.cli import app
from tests.acquire_server import MediaServer, Route

TOKEN = "MnQx" * 12


def test_a_youtubedl_from_project_params_finds_a_js_runtime_and_the_ejs_scripts(tmp_path):
    import deno
    import yt_dlp_ejs

    params = build_params(FetchConfig(), tmp_path, "abcdefghijk")
    assert "remote_components" not in params  # nothing may be fetched from the web: the scripts are local
    with yt_dlp.YoutubeDL(params) as ydl:
        runtime = ydl._js_runtimes["deno"]
        assert runtime is not None and runtime.info is not None and runtime.info.supported
        assert Path(runtime.info.path).resolve() == Path(deno.find_deno_bin()).resolve()
        assert ydl.params["remote_components"] == set()
        ie = ydl.get_info_extractor("Youtube")
        ie.initialize()
        solver = ie._jsc_director.providers["Deno"]
        assert solver.is_available()
        lib, core = solver._lib_script, solver._core_script
        assert (lib.source.value, lib.version) == (core.source.value, core.version) == ("python package",
                                                                                       yt_dlp_ejs.version)
        # the runtime really loads the solver: lib + core evaluate and define the solver entry point
        out = solver._run_js_runtime(f"{lib.code}\nObject.assign(globalThis, lib);\n{core.code}\n"
                                     "console.log(JSON.stringify({jsc: typeof jsc}));\n")
        assert json.loads(out.strip().splitlines()[-1]) == {"jsc": "function"}


def test_no_runtime_configured_means_none_for_yt_dlp(tmp_path):
    params = build_params(FetchConfig(youtube={"js_runtime": "none"}), tmp_path, "abcdefghijk")
    with yt_dlp.YoutubeDL(params) as ydl:
        assert ydl._js_runtimes == {}
    missing = build_params(FetchConfig(youtube={"js_runtime_path": str(tmp_path / "no-deno")}), tmp_path, "abcdefghijk")
    with yt_dlp.YoutubeDL(missing) as ydl:
        assert ydl._js_runtimes["deno"].info is None


def test_clients_po_tokens_and_provider_reach_yt_dlp_through_the_allow_list(tmp_path):
    cfg = FetchConfig(youtube={"player_clients": ["mweb", "tv_samsung", "-web"],
                               "po_tokens": [f"mweb.gvs+{TOKEN}", f"mweb.player+{TOKEN}"],
                               "visitor_data": "CgtYWjZ1ZkRlc3Q", "pot_provider": "bgutil_http",
                               "pot_base_url": "http://127.0.0.1:4416/"})
    params = build_params(cfg, tmp_path, "abcdefghijk")
    assert params["extractor_args"] == {
        "youtube": {"player_client": ["mweb", "tv_samsung", "-web"], "po_token": [f"mweb.gvs+{TOKEN}",
                                                                                  f"mweb.player+{TOKEN}"],
                    "visitor_data": ["CgtYWjZ1ZkRlc3Q"], "player_skip": ["webpage", "configs"],
                    "skip": ["translated_subs"]},
        "youtubepot-bgutilhttp": {"base_url": ["http://127.0.0.1:4416"]}}
    with yt_dlp.YoutubeDL(params) as ydl:  # read back the way the extractor and the plugin read them
        ie = ydl.get_info_extractor("Youtube")
        ie.initialize()
        assert ie._configuration_arg("player_client") == ["mweb", "tv_samsung", "-web"]
        assert ie._configuration_arg("po_token", casesense=True) == [f"mweb.gvs+{TOKEN}", f"mweb.player+{TOKEN}"]
        assert ie._configuration_arg("visitor_data", casesense=True) == ["CgtYWjZ1ZkRlc3Q"]
        provider = ie._pot_director.providers["BgUtilHTTP"]  # the bgutil plugin (test extra) is loaded
        assert provider._base_url == "http://127.0.0.1:4416"
    script = build_params(FetchConfig(youtube={"pot_provider": "bgutil_script", "pot_server_home": "~/bgutil/server"}),
                          tmp_path, "abcdefghijk")
    assert script["extractor_args"]["youtubepot-bgutilscript"] == {"server_home": [str(Path.home() / "bgutil/server")]}


def test_extractor_args_outside_the_allow_list_never_reach_yt_dlp(tmp_path, monkeypatch):
    monkeypatch.setattr(youtube, "extractor_args", lambda cfg: {"youtube": {"innertube_host": ["evil.example"]}})
    with pytest.raises(AssertionError, match="innertube_host"):
        build_params(FetchConfig(), tmp_path, "abcdefghijk")
    for bad in ({"player_clients": ["web;rm"]}, {"po_tokens": ["mweb.gvs+short"]}, {"po_tokens": [f"mweb.cold+{TOKEN}"]},
                {"pot_provider": "bgutil_script"}, {"impersonate": "chrome; rm"}, {"js_runtime": "v8"}):
        with pytest.raises(ValidationError):
            YouTubeConfig(**bad)


@pytest.mark.parametrize("target, expected", [(None, False), ("chrome", True), ("any", True)])
def test_impersonation_setting_decides_how_requests_go_out(tmp_path, target, expected):
    with MediaServer() as srv:
        srv.add("/page", Route(text="hello"))
        params = build_params(FetchConfig(youtube={"impersonate": target}), tmp_path, "abcdefghijk")
        with metered_ydl(params) as ydl:
            assert ydl.urlopen(srv.base + "/page").read() == b"hello"
        assert srv.log[-1].impersonated is expected


# -- curate doctor ---------------------------------------------------------------------------------------------

def doctor(*sets: str, cwd: Path):
    args = ["doctor", "--set", f"work_dir={cwd}"]
    for s in sets:
        args += ["--set", s]
    return CliRunner().invoke(app, args)


def _ping_server(version: str = "2.0.2"):
    class Ping(BaseHTTPRequestHandler):
        def log_message(self, *a) -> None:
            pass

        def do_GET(self) -> None:
            body = json.dumps({"version": version, "server_uptime": 1}).encode()
            self.send_response(200 if self.path == "/ping" else 404)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    srv = ThreadingHTTPServer(("127.0.0.1", 0), Ping)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv


def _token_clients() -> tuple[list[str], set[str]]:
    """yt-dlp's own view, read from the installed release: its default clients, and which clients'
    https formats need a GVS PO token. The doctor's expectations follow whatever release is installed."""
    from yt_dlp.extractor.youtube import YoutubeIE
    from yt_dlp.extractor.youtube._base import INNERTUBE_CLIENTS

    need = {name for name, client in INNERTUBE_CLIENTS.items()
            if any(getattr(p, "required", False) for p in (client.get("GVS_PO_TOKEN_POLICY") or {}).values())}
    return list(YoutubeIE._DEFAULT_CLIENTS), need


def test_doctor_says_full_with_the_installed_runtime(tmp_path):
    result = doctor(cwd=tmp_path)
    out = result.output
    assert "[  ok] JS runtime" in out and "deno" in out
    assert "[  ok] EJS scripts" in out and "[  ok] ffmpeg" in out
    defaults, need = _token_clients()
    line = next(x for x in out.splitlines() if "player clients" in x)
    assert f"{', '.join(defaults)} (yt-dlp defaults)" in line
    needing = [c for c in defaults if c in need]
    if not needing:  # yt-dlp 2026.11: tv_samsung, visionos: no token needed
        assert line.lstrip().startswith("[  ok]"), line
    elif len(needing) < len(defaults):  # 2026.10: web needed a token, the others were used
        assert line.lstrip().startswith("[warn]") and f"{', '.join(needing)} formats need a PO token" in line, line
    else:
        assert line.lstrip().startswith("[fail]") and result.exit_code == 1, line
        return
    assert result.exit_code == 0, out
    assert "YouTube fetching: FULL" in out


def test_doctor_says_which_configured_clients_need_tokens(tmp_path):
    # one client that needs a GVS PO token and one that does not, picked from the installed yt-dlp's table
    from yt_dlp.extractor.youtube._base import INNERTUBE_CLIENTS

    _, need = _token_clients()
    assert need, "yt-dlp's client table marks no client as needing a PO token: re-read what the doctor checks"
    token, free = sorted(need)[0], sorted(c for c in INNERTUBE_CLIENTS if c not in need)[0]
    mixed = doctor(f"fetch.youtube.player_clients=[{token}, {free}]", cwd=tmp_path)
    line = next(x for x in mixed.output.splitlines() if "player clients" in x)
    assert line.lstrip().startswith("[warn]") and f"{token}, {free}: {token} formats need a PO token" in line, line
    assert mixed.exit_code == 0, mixed.output
    only = doctor(f"fetch.youtube.player_clients=[{token}]", cwd=tmp_path)
    assert only.exit_code == 1 and f"- player clients: {token}: every one needs a PO token" in only.output


def test_doctor_says_degraded_and_why(tmp_path):
    result = doctor(f"fetch.youtube.js_runtime_path={tmp_path / 'no-deno'}", cwd=tmp_path)
    assert result.exit_code == 1
    out = result.output
    assert "YouTube fetching: DEGRADED, because" in out
    assert "- JS runtime: deno not found" in out and "- EJS scripts" in out


def test_doctor_checks_pot_server_cookies_and_proxies(tmp_path):
    srv = _ping_server()
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    dead_port = closed.getsockname()[1]
    closed.close()
    listening = socket.socket()
    listening.bind(("127.0.0.1", 0))
    listening.listen()
    cookies = tmp_path / "acct.txt"
    original = "# Netscape HTTP Cookie File\n.youtube.com\tTRUE\t/\tTRUE\t0\tSID\tsecretvalue42\n"
    cookies.write_text(original)
    try:
        base = f"http://127.0.0.1:{srv.server_address[1]}"
        ids = (f'fetch.identities=[{{name: acct, cookies_file: "{cookies}", proxy: "socks5://127.0.0.1:'
               f'{listening.getsockname()[1]}"}}, {{name: gone, cookies_file: "{tmp_path / "gone.txt"}"}}]')
        result = doctor("fetch.youtube.pot_provider=bgutil_http", f"fetch.youtube.pot_base_url={base}", ids,
                        cwd=tmp_path)
        out = result.output
        assert f"bgutil server 2.0.2 at {base}" in out
        assert "[  ok] cookies [acct]" in out and "1 YouTube/Google cookies" in out and "secretvalue42" not in out
        assert "[  ok] proxy [acct]" in out and "reachable" in out
        assert "[fail] cookies [gone]" in out and result.exit_code == 1
        assert cookies.read_text() == original  # only ever read: yt-dlp's write-back never reaches the account's file
        down = doctor("fetch.youtube.pot_provider=bgutil_http",
                      f"fetch.youtube.pot_base_url=http://127.0.0.1:{dead_port}", cwd=tmp_path)
        assert down.exit_code == 1 and "- PO tokens: bgutil server not reachable" in down.output
    finally:
        srv.shutdown()
        listening.close()


def test_each_worker_logs_yt_dlp_and_runtime_versions_once(tmp_path, monkeypatch, caplog):
    from pipeline.acquire import stages
    from pipeline.acquire.stages import FetchStage
    from pipeline.records import VideoTask
    from pipeline.samples import SampleSpec, make_video

    monkeypatch.setattr(stages, "_RUNTIME_LOGGED", set())
    media = make_video(tmp_path / "ok.mp4", SampleSpec([1.5, 1.5], fps=10, width=160, height=96))
    with MediaServer() as srv:
        for vid in ("logonce0001", "logonce0002"):
            srv.add_video(vid, media)
        stage = FetchStage(FetchConfig(cache_dir=str(tmp_path / "cache"), url_template=srv.watch_template(),
                                       min_duration_s=1, limits={"requests_per_hour": None, "downloads_per_hour": None}))
        with caplog.at_level("INFO", logger="pipeline.acquire.stages"):
            done = [stage.process(VideoTask(v, v, "youtube", 0)) for v in ("logonce0001", "logonce0002")]
    assert [t.status for t in done] == ["accepted", "accepted"]
    lines = [r.getMessage() for r in caplog.records if "fetch worker" in r.getMessage()]
    assert len(lines) == 1, lines
    assert f"yt-dlp {yt_dlp.version.__version__}; JS runtime deno " in lines[0] and "challenge solver: Deno" in lines[0]
