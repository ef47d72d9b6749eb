"""Typed configuration of ingest and fetch (sections `input` and `fetch` of a job YAML)."""
from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class Section(BaseModel):
    """Base of every config section: unknown keys are errors, not silently ignored."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class InputConfig(Section):
    """Where the video IDs come from."""

    path: str | None = Field(None, description="txt / csv / jsonl / parquet file of IDs, URLs or local paths")
    format: str = Field("auto", description="auto | txt | csv | jsonl | parquet | hf")
    column: str = Field("video_id", description="column holding the ID/URL for csv/jsonl/parquet/hf")
    hf_dataset: str | None = Field(None, description="Hugging Face dataset name or local dir (format=hf)")
    hf_split: str = Field("train", description="split of the Hugging Face dataset")
    items: list[str] = Field(default_factory=list, description="inline IDs/URLs/paths (tests, small jobs)")
    limit: int | None = Field(None, ge=1, description="process at most this many inputs")


class FetchConfig(Section):
    """yt-dlp probing, downloading and media verification."""

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
    sleep_interval_s: float = Field(0.0, ge=0, description="yt-dlp sleep before each download (be polite to the origin)")
    sleep_requests_s: float = Field(0.0, ge=0, description="yt-dlp sleep between extraction requests")
    retries: int = Field(3, ge=0, description="our retries of a transient failure (rate_limited, network, 5xx) per video")
    backoff_s: float = Field(5.0, ge=0, description="first retry delay; doubles each attempt")
    backoff_max_s: float = Field(120.0, ge=0, description="upper bound of one retry delay")
    ytdlp_retries: int = Field(2, ge=0, description="yt-dlp's own HTTP/fragment retries inside one attempt")
    socket_timeout_s: float = Field(30.0, gt=0, description="network timeout for yt-dlp and header probes")
    cookies_file: str | None = Field(None, description="Netscape cookies.txt for yt-dlp (members/age-gated videos)")
    proxy: str | None = Field(None, pattern=r"^(https?|socks5h?|socks4a?)://\S+$", description="proxy URL for yt-dlp, e.g. socks5://host:1080")
    verify_decode: bool = Field(True, description="after download, decode a frame at the start and near the end")
    duration_tolerance_s: float = Field(2.0, ge=0, description="allowed gap between the announced and the file's duration")
    reuse_cache: bool = Field(True, description="reuse a file already downloaded and verified (same size and mtime)")
    storage_url: str | None = Field(None, description="fsspec URL (s3://bucket/videos, gs://..., file:///mnt/shared/videos) or a shared mount path where verified videos and their sidecars are published as <url>/<id[:2]>/<id>.<ext>; a re-run on another node copies them from there instead of downloading again. A relative path is relative to work_dir. None = the local cache is the only store")
    storage_options: dict[str, Any] = Field(default_factory=dict, description="extra fsspec filesystem options (e.g. endpoint_url, region); never put secrets here: credentials come from the environment / fsspec's usual config (AWS_* variables, ~/.aws, gcloud)")
