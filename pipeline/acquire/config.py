"""Typed configuration of ingest and fetch (sections `input` and `fetch` of a job YAML)."""
from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from pipeline.section import Section

_PROXY = r"^(https?|socks5h?|socks4a?)://\S+$"


class InputConfig(Section):
    """Where the video IDs come from."""

    path: str | None = Field(None, description="txt / csv / jsonl / parquet file of IDs, URLs or local paths")
    format: str = Field("auto", description="auto | txt | csv | jsonl | parquet | hf")
    column: str = Field("video_id", description="column holding the ID/URL for csv/jsonl/parquet/hf")
    hf_dataset: str | None = Field(None, description="Hugging Face dataset name or local dir (format=hf)")
    hf_split: str = Field("train", description="split of the Hugging Face dataset")
    items: list[str] = Field(default_factory=list, description="inline IDs/URLs/paths (tests, small jobs)")
    limit: int | None = Field(None, ge=1, description="process at most this many inputs")


_IDENTITY_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"


class IdentityConfig(Section):
    """One egress identity: what the origin sees as one client (an IP through a proxy, and/or an account)."""

    name: str = Field(..., pattern=_IDENTITY_NAME, description="unique name, used in logs, the limiter and the run summary")
    proxy: str | None = Field(None, pattern=_PROXY, description="proxy URL this identity's requests go through; None = this machine's own address")
    cookies_file: str | None = Field(None, description="Netscape cookies.txt of this identity's account; None = a guest session")
    requests_per_hour: float | None = Field(None, gt=0, description="extraction requests per hour for this identity; None = limits.requests_per_hour")
    downloads_per_hour: float | None = Field(None, gt=0, description="media downloads per hour for this identity; None = limits.downloads_per_hour")
    subtitle_requests_per_hour: float | None = Field(None, gt=0, description="subtitle requests per hour for this identity; None = limits.subtitle_requests_per_hour")


class LimitsConfig(Section):
    """Budgets shared by every fetch worker of the cluster, per identity, and the breaker.

    Defaults follow yt-dlp's published guest limits (~300 videos and ~1000 webpage/player
    requests per hour per IP); an account allows about 2000 videos / 4000 requests per hour.
    """

    requests_per_hour: float | None = Field(1000.0, gt=0, description="default extraction requests (web pages, player and API calls, header probes) per hour per identity; None = unlimited")
    downloads_per_hour: float | None = Field(300.0, gt=0, description="default media downloads per hour per identity; None = unlimited")
    subtitle_requests_per_hour: float | None = Field(300.0, gt=0, description="default subtitle requests per hour per identity (their own budget: subtitles are rate-limited first); None = unlimited")
    bench_s: float = Field(300.0, gt=0, description="how long an identity that got a bot check or a 429 is benched the first time; doubles with each failure in a row")
    bench_max_s: float = Field(3600.0, gt=0, description="upper bound of one bench")
    max_pause_s: float = Field(7200.0, gt=0, description="how long a worker waits while every identity is benched before it rejects its video with the transient reason (retried by the next run)")

    @model_validator(mode="after")
    def _bench_bounds(self) -> "LimitsConfig":
        if self.bench_max_s < self.bench_s:
            raise ValueError(f"bench_max_s ({self.bench_max_s}) must be >= bench_s ({self.bench_s})")
        return self


JsRuntimeName = Literal["deno", "node", "bun", "quickjs", "none"]
PotProvider = Literal["none", "bgutil_http", "bgutil_script"]


class YouTubeConfig(Section):
    """yt-dlp's YouTube settings: mapped onto `js_runtimes`, `extractor_args` and `impersonate`."""

    js_runtime: JsRuntimeName = Field("deno", description="JavaScript runtime that solves YouTube's challenges (with the EJS scripts of yt-dlp-ejs); 'none' = degraded formats")
    js_runtime_path: str | None = Field(None, description="path of the runtime's executable; None = the deno binary of the `deno` package (js_runtime=deno), else yt-dlp's own search (venv bin, PATH)")
    player_clients: list[str] = Field(default_factory=list, description="YouTube player clients in fallback order (yt-dlp's player_client), e.g. [mweb, tv_samsung, visionos]; '-NAME' excludes one; empty = yt-dlp's defaults")
    po_tokens: list[str] = Field(default_factory=list, description="static PO tokens as CLIENT.CONTEXT+TOKEN (context gvs, player or subs), e.g. mweb.gvs+TOKEN; they are bound to visitor_data or the cookies' account")
    visitor_data: str | None = Field(None, pattern=r"^[A-Za-z0-9_%=-]{8,512}$", description="visitor data the static PO tokens were minted for (yt-dlp then skips the webpage and configs requests)")
    pot_provider: PotProvider = Field("none", description="PO-token provider plugin (pip install '.[pot]'): bgutil_http (its server at pot_base_url) or bgutil_script (its script under pot_server_home)")
    pot_base_url: str = Field("http://127.0.0.1:4416", pattern=r"^https?://[^\s/]+(/\S*)?$", description="bgutil_http: where the provider's server listens")
    pot_server_home: str | None = Field(None, description="bgutil_script: the provider's `server` folder (holding build/generate_once.js)")
    skip_translated_subs: bool = Field(True, description="ask YouTube for no machine-translated captions (their requests are 429'd first)")
    impersonate: str | None = Field(None, pattern=r"^(any|[a-z]+(-[0-9.]+)?(:[a-z0-9_]+(-[0-9.]+)?)?)$", description="impersonate a browser (curl_cffi) on every request, e.g. chrome or chrome-136:macos; None = only where yt-dlp asks for it (YouTube subtitles)")

    @model_validator(mode="after")
    def _check_values(self) -> "YouTubeConfig":
        import re

        for client in self.player_clients:
            if not re.fullmatch(r"-?[a-z][a-z0-9_]{0,31}", client):
                raise ValueError(f"player_clients: {client!r} is not a client name (e.g. mweb, tv_samsung, -web)")
        for token in self.po_tokens:
            if not re.fullmatch(r"[a-z][a-z0-9_]{0,31}(\.(gvs|player|subs))?\+[A-Za-z0-9_=%-]{16,4096}", token):
                raise ValueError("po_tokens: expected CLIENT.CONTEXT+TOKEN (context gvs, player or subs; the token "
                                 f"base64url), got {token[:24]!r}...")
        if self.pot_provider == "bgutil_script" and not self.pot_server_home:
            raise ValueError("pot_provider=bgutil_script needs pot_server_home (the provider's server folder)")
        return self


class FetchConfig(Section):
    """yt-dlp probing, downloading and media verification."""

    # how a video is fetched, not which video or what is kept of it
    execution_only = frozenset({"cache_dir", "sleep_interval_s", "sleep_requests_s", "retries", "backoff_s",
                                "backoff_max_s", "ytdlp_retries", "socket_timeout_s", "cookies_file", "proxy",
                                "identities", "limits", "reuse_cache", "storage_options", "rate_limit"})

    cache_dir: str = Field("cache/videos", description="where downloads live (relative to work_dir unless absolute)")
    url_template: str = Field("https://www.youtube.com/watch?v={id}", description="how an ID becomes a URL; tests point it at 127.0.0.1")
    min_duration_s: float = Field(60.0, ge=0, description="reject videos shorter than this before download")
    max_duration_s: float = Field(3600.0, gt=0, description="reject videos longer than this before download")
    max_height: int = Field(720, ge=144, description="format selection: best stream up to this height")
    prefer_vcodec: str = Field("avc1", pattern=r"^[a-z0-9.]{1,16}$", description="preferred video codec prefix (avc1 = H.264); other codecs are a fallback")
    prefer_ext: str = Field("mp4", pattern=r"^[a-z0-9]{1,8}$", description="preferred container; also the merge output format")
    subtitle_langs: list[str] = Field(default_factory=lambda: ["en"], description="subtitle / automatic caption languages to save for the teacher (yt-dlp patterns, e.g. 'en.*'); empty = none")
    auto_captions: bool = Field(True, description="also save YouTube's automatic captions when no uploaded subtitles exist")
    write_info_json: bool = Field(True, description="save yt-dlp's info JSON next to the video")
    rate_limit: str | None = Field(None, pattern=r"^\d+(\.\d+)?[KMG]?$", description="max download rate per worker in bytes/s, e.g. '2M'; None = unlimited")
    sleep_interval_s: float = Field(0.0, ge=0, description="yt-dlp sleep before each download, per worker (the cluster-wide budget is `limits`)")
    sleep_requests_s: float = Field(0.0, ge=0, description="yt-dlp sleep between extraction requests, per worker: N workers hit N times as hard (the cluster-wide budget is `limits`)")
    retries: int = Field(3, ge=0, description="our retries of a transient failure per video: network/5xx (with backoff_s), and rate_limited / bot_check (on another identity, or after the breaker's bench)")
    backoff_s: float = Field(5.0, ge=0, description="first retry delay; doubles each attempt")
    backoff_max_s: float = Field(120.0, ge=0, description="upper bound of one retry delay")
    ytdlp_retries: int = Field(2, ge=0, description="yt-dlp's own HTTP/fragment retries inside one attempt")
    socket_timeout_s: float = Field(30.0, gt=0, description="network timeout for yt-dlp and header probes")
    cookies_file: str | None = Field(None, description="Netscape cookies.txt for yt-dlp (members/age-gated videos); the one identity when `identities` is empty")
    proxy: str | None = Field(None, pattern=_PROXY, description="proxy URL for yt-dlp, e.g. socks5://host:1080; the one identity when `identities` is empty")
    identities: list[IdentityConfig] = Field(default_factory=list, description="egress identities (proxies and/or cookie accounts) the fetch workers share; each has its own budget and is benched on its own. Empty = one identity named 'default' from `proxy` and `cookies_file`")
    limits: LimitsConfig = Field(default_factory=LimitsConfig, description="cluster-wide request budgets per identity and the breaker for bot-check / 429 storms")
    youtube: YouTubeConfig = Field(default_factory=YouTubeConfig, description="what YouTube needs in 2026: JS challenge runtime, player clients, PO tokens, impersonation")
    verify_decode: bool = Field(True, description="after download, decode a frame at the start and near the end")
    duration_tolerance_s: float = Field(2.0, ge=0, description="allowed gap between the announced and the file's duration")
    reuse_cache: bool = Field(True, description="reuse a file already downloaded and verified (same size and mtime)")
    storage_url: str | None = Field(None, description="fsspec URL (s3://bucket/videos, gs://..., file:///mnt/shared/videos) or a shared mount path where verified videos and their sidecars are published as <url>/<id[:2]>/<id>.<ext>; a re-run on another node copies them from there instead of downloading again. A relative path is relative to work_dir. None = the local cache is the only store")
    storage_options: dict[str, Any] = Field(default_factory=dict, description="extra fsspec filesystem options (e.g. endpoint_url, region); never put secrets here: credentials come from the environment / fsspec's usual config (AWS_* variables, ~/.aws, gcloud)")

    @model_validator(mode="after")
    def _one_way_to_name_identities(self) -> "FetchConfig":
        if self.identities and (self.proxy or self.cookies_file):
            raise ValueError("set either fetch.proxy / fetch.cookies_file (one identity) or fetch.identities, not both")
        names = [i.name for i in self.identities]
        if len(set(names)) != len(names):
            raise ValueError(f"fetch.identities: names must be unique, got {names}")
        return self

    def identity_list(self) -> list[IdentityConfig]:
        """The identities the workers share: the configured ones, or 'default' from proxy / cookies_file."""
        if self.identities:
            return list(self.identities)
        return [IdentityConfig(name="default", proxy=self.proxy, cookies_file=self.cookies_file)]
