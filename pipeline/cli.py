"""`curate`: run a job, inspect a dataset, re-validate it."""
from __future__ import annotations

import logging
import os
import sys
from collections import Counter
from pathlib import Path
from typing import List, Optional

import typer

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Curate long-video instruction-tuning data (see README.md).")


def _fail(message: str, code: int = 2) -> None:
    typer.secho(message, fg=typer.colors.RED, err=True)
    raise typer.Exit(code)


@app.command()
def run(
    config: Path = typer.Argument(..., help="job YAML, e.g. jobs/demo.yaml"),
    out: str = typer.Option(..., "--out", "-o", help="dataset directory (local path or fsspec URL)"),
    set_: List[str] = typer.Option([], "--set", help="override a config key: --set fetch.max_height=480"),
    address: Optional[str] = typer.Option(None, "--address", help="Ray cluster address (default: RAY_ADDRESS or a local Ray)"),
    force: bool = typer.Option(False, "--force", help="reprocess videos that are already committed"),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Ray Data progress bars"),
) -> None:
    """Run a job: new inputs are processed and appended; committed ones are skipped."""
    from pipeline.config import ConfigError, load_config
    from pipeline.job import PlanFailed, run_job
    from pipeline.plan import build_stages, ingest
    from pipeline.store import StoreLockedError

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    overrides = list(set_) + ([f"ray.address={address}"] if address else [])
    try:
        cfg = load_config(config, overrides)
    except ConfigError as exc:
        _fail(str(exc))
    typer.echo(f"job '{cfg.name}' config {cfg.content_hash()} -> {out}", err=True)
    try:
        summary = run_job(cfg, out, ingest=ingest, stage_factory=build_stages, force=force, progress=progress)
    except (StoreLockedError, ValueError, FileNotFoundError) as exc:
        _fail(f"error: {exc}")
    except PlanFailed as exc:
        _fail(f"error: {exc}\nre-run the same command to complete the dataset", code=1)
    typer.echo(summary.render())


@app.command()
def config(
    path: Optional[Path] = typer.Argument(None, help="job YAML (omit for the defaults)"),
    set_: List[str] = typer.Option([], "--set", help="override a config key"),
) -> None:
    """Print the fully resolved config (every default filled in) and its content hash."""
    import yaml

    from pipeline.config import ConfigError, load_config

    try:
        cfg = load_config(path, set_)
    except ConfigError as exc:
        _fail(str(exc))
    typer.echo(f"# content hash {cfg.content_hash()}")
    typer.echo(yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False))


@app.command()
def doctor(
    path: Optional[Path] = typer.Argument(None, help="job YAML (omit for the defaults)"),
    set_: List[str] = typer.Option([], "--set", help="override a config key"),
    server: List[str] = typer.Option([], "--server", help="also check an OpenAI-compatible server at this URL "
                                     "(e.g. http://host:8000/v1) for the README's vLLM flags"),
    model: Optional[str] = typer.Option(None, "--model", help="the model name to check with --server "
                                        "(default: the first the server lists)"),
) -> None:
    """What this node has for YouTube (yt-dlp, JS runtime, EJS, ffmpeg, PO tokens, cookies, proxies), and
    which vLLM flags the job's model servers (openai-kind teacher / verifier, and each --server) lack;
    exit 0 when fetching is full and no server check failed, 1 otherwise (the reasons are printed)."""
    from pipeline.acquire.doctor import diagnose
    from pipeline.config import ConfigError, load_config
    from synth.backends.server_check import config_for, probe, served_roles

    try:
        cfg = load_config(path, set_)
    except ConfigError as exc:
        _fail(str(exc))
    cache = Path(cfg.fetch.cache_dir).expanduser()
    if not cache.is_absolute():
        cache = Path(cfg.work_dir) / cache
    diagnosis = diagnose(cfg.fetch, cache)
    typer.echo(diagnosis.render())
    roles = [*served_roles({"teacher": cfg.synth.teacher, "verifier": cfg.verify.verifier}).items(),
             *(("--server", config_for(url, model)) for url in server)]
    reports = [probe(b, role) for role, b in roles]
    for report in reports:
        typer.echo(report.render())
    failed = [r for r in reports if r.failures]
    if failed:
        typer.echo("model servers: MISSING FLAGS, because\n" + "\n".join(f"  - {r.error()}" for r in failed))
    elif reports:
        typer.echo("model servers: OK")
    if not diagnosis.full or failed:
        raise typer.Exit(1)


@app.command()
def status(out: str = typer.Argument(..., help="dataset directory")) -> None:
    """Counts per config, video status, rejects by reason, and the runs so far."""
    from pipeline.store import DatasetStore

    store = DatasetStore(out)
    if not store.fs.exists(store.path("data")):
        _fail(f"{out} is not a dataset written by curate (no data/ folder)")
    counts = store.counts()
    typer.echo(f"dataset {out}")
    typer.echo("rows: " + ", ".join(f"{k} {v}" for k, v in counts.rows.items()))
    typer.echo("videos: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.status.items())))
    if counts.reasons:
        typer.echo("rejects by reason: " + ", ".join(f"{k} {v}" for k, v in Counter(counts.reasons).most_common()))
    from pipeline.report import quality_report, render_signal_text, render_text, signal_distributions

    typer.echo(render_text(quality_report(store)))
    typer.echo(render_signal_text(signal_distributions(store)))
    for r in store.runs():
        typer.echo(f"run {r['run_id']}: processed {r['processed']} (skipped {r['skipped_committed']}) "
                   f"in {r['wall_s']} s, status {r['status']}")


@app.command()
def compact(out: str = typer.Argument(..., help="dataset directory (a local path or an fsspec URL)"),
            shard_mb: int = typer.Option(256, help="target size of a compacted shard file, MB")) -> None:
    """Merge small shards into few large ones (new unique names); transient rejects go to small retry files."""
    from pipeline.card import CardState, read_card, write_card
    from pipeline.job import compact_store
    from pipeline.store import DatasetStore, new_run_id

    store = DatasetStore(out)
    if not store.fs.exists(store.path("data")):
        _fail(f"{out} is not a dataset written by curate (no data/ folder)")
    store.acquire_lock(new_run_id())
    try:
        before = store.file_count()
        compact_store(store, out=out, note=typer.echo, shard_bytes=shard_mb << 20)
        name, sections = read_card(store)
        write_card(store, name, CardState.from_store(store), sections)
        typer.echo(f"{out}: {before} live files -> {store.file_count()}")
    finally:
        store.release_lock()


@app.command()
def validate(out: str = typer.Argument(..., help="dataset directory")) -> None:
    """Re-validate every row of every shard against its JSON Schema; exit 1 on any problem."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from pipeline.schema import CONFIGS, arrow_schema, validate_row
    from pipeline.store import DatasetStore

    store = DatasetStore(out)
    problems = 0
    for config in CONFIGS:
        rows = 0
        for entry in store.state.of(config):  # batch by batch: a compacted shard is hundreds of MB
            path = store.path(entry.path)
            with store.fs.open(path, "rb") as fh:
                shard = pq.ParquetFile(fh)
                if not shard.schema_arrow.equals(arrow_schema(config), check_metadata=False):
                    problems += 1
                    typer.echo(f"{path}: Arrow schema differs from schemas/{config}.json")
                first = 0
                for batch in shard.iter_batches(batch_size=1024):
                    for i, row in enumerate(batch.to_pylist(), start=first):
                        error = validate_row(config, row)
                        if error:
                            problems += 1
                            typer.echo(f"{path} row {i}: {error.path}: {error.message}")
                    first += batch.num_rows
                rows += first
        typer.echo(f"{config}: {rows} rows in {len(store.shard_paths(config))} shard(s)")
    counts = pc.value_counts(store.read_table("videos", ["video_id"]).column("video_id").combine_chunks())
    dupes = counts.filter(pc.greater(counts.field("counts"), 1)).field("values").to_pylist()  # Arrow, not a list
    if dupes:
        problems += len(dupes)
        typer.echo(f"videos: {len(dupes)} duplicated video_id(s), e.g. {dupes[:3]} (a run will reconcile them)")
    if problems:
        _fail(f"{problems} problem(s)", code=1)
    typer.echo("ok: every row valid")


@app.command()
def plan(
    config: Path = typer.Argument(..., help="job YAML"),
    out: str = typer.Option(..., "--out", "-o", help="dataset directory the run would write"),
    set_: List[str] = typer.Option([], "--set", help="override a config key"),
    force: bool = typer.Option(False, "--force", help="as `curate run --force`"),
) -> None:
    """A dry run: per stage, how many videos would be redone and why; the model requests to send."""
    from pipeline.config import ConfigError, load_config
    from pipeline.dryrun import plan_run

    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    try:
        cfg = load_config(config, set_)
        report = plan_run(cfg, out, force=force)
    except (ConfigError, ValueError, FileNotFoundError) as exc:
        _fail(f"error: {exc}")
    typer.echo(report.render())


@app.command()
def check(
    out: str = typer.Argument(..., help="dataset directory"),
    media_root: Optional[str] = typer.Option(None, help="where the videos are (default: the shared store, or the "
                                             "common parent of the local files)"),
    decode: bool = typer.Option(True, "--decode/--no-decode", help="decode every video in full with decord"),
    max_videos: Optional[int] = typer.Option(None, help="decode at most this many videos (big datasets)"),
    xtuner: Optional[str] = typer.Option(None, help="an xtuner export (DEST of `curate export xtuner`): count its "
                                         "lines under its meta.json settings"),
    verl: Optional[str] = typer.Option(None, help="a verl export (DEST of `curate export verl`): count its prompts"),
    max_tokens: int = typer.Option(262144, help="the SFT trainer's per-sample cap"),
    max_prompt_length: int = typer.Option(16384, help="verl's data.max_prompt_length"),
    patch_size: int = typer.Option(14, help="the verl policy's vision patch (14 Qwen2.5-VL, 16 Qwen3-VL)"),
) -> None:
    """The trainers' and evaluators' rules over a dataset; counts per rule, exit 1 on any violation."""
    from pipeline.check import check_dataset

    try:
        report = check_dataset(out, media_root=media_root, decode=decode, max_videos=max_videos, xtuner=xtuner,
                               verl=verl, max_tokens=max_tokens, max_prompt_length=max_prompt_length,
                               patch_size=patch_size)
    except ValueError as exc:
        _fail(f"error: {exc}")
    typer.echo(report.render())
    if sum(report.violations.values()):
        raise typer.Exit(1)


@app.command()
def fingerprint(
    folder: Path = typer.Argument(..., help="folder of benchmark videos (searched recursively)"),
    out: Path = typer.Option(..., "--out", "-o", help="fingerprint file to write (JSON lines)"),
) -> None:
    """Fingerprint a folder of (benchmark) videos for `decontaminate.fingerprint_files`."""
    from pipeline.filter.benchmark import fingerprint_dir

    try:
        report = fingerprint_dir(folder, out, echo=lambda s: typer.echo(s, err=True))
    except ValueError as exc:
        _fail(f"error: {exc}")
    typer.echo(f"{report.written} fingerprints -> {out}")
    if report.failed:
        typer.echo(f"{len(report.failed)} file(s) could not be fingerprinted: "
                   + "; ".join(f"{k}: {v}" for k, v in list(report.failed.items())[:5]), err=True)
        raise typer.Exit(1)


@app.command()
def report(
    out: str = typer.Argument(..., help="dataset directory"),
    to: Optional[Path] = typer.Option(None, "--to", help="report folder (default: OUT/_report for a local OUT)"),
    videos: int = typer.Option(40, help="videos drawn at random for the sample browser"),
    seed: int = typer.Option(0, help="seed of that draw"),
    token_cap: Optional[int] = typer.Option(None, help="the trainer's tokens-per-sample cap, drawn on that plot"),
) -> None:
    """A static HTML report (plots, rejects, runs, a sample browser with frames) that opens from disk."""
    try:
        from pipeline.viewer.build import build_report
    except ImportError as exc:
        _fail(f"error: {exc}; the report needs plotly: pip install '.[report]'")
    if to is None:
        if "://" in out and not out.startswith("file://"):
            _fail("error: OUT is remote; say where to write the report with --to DIR")
        to = Path(out.removeprefix("file://")) / "_report"
    try:
        result = build_report(out, to, videos=videos, seed=seed, token_cap=token_cap)
    except FileNotFoundError as exc:
        _fail(f"error: {exc}")
    typer.echo(result.render())


export_app = typer.Typer(no_args_is_help=True, help="Export a dataset into a trainer's own format.")
app.add_typer(export_app, name="export")


_TOKENIZER_HELP = ("the model's tokenizer (a local path) for exact text counts; default: an upper bound "
                   "(UTF-8 bytes), so no sample can pass the cap")


def _echo_tokens(tokens: "TokenTally", cap: int) -> None:
    d = tokens.distribution()
    if d:
        typer.echo(f"tokens per sample (cap {cap}): min {d['min']}, median {d['median']}, p95 {d['p95']}, "
                   f"max {d['max']}; frames {tokens.frames[0]}-{tokens.frames[1]}, smallest frame "
                   f"{[tokens.smallest.width, tokens.smallest.height]}")


@export_app.command("xtuner")
def export_xtuner_cmd(
    out: str = typer.Argument(..., help="dataset directory"),
    dest: Path = typer.Argument(..., help="where to write annotations/*.jsonl and meta.json"),
    media_root: Optional[str] = typer.Option(None, help="root the video URLs are relative to (default: common parent)"),
    name: str = typer.Option("longvideo", help="dataset name prefix in meta.json"),
    fps: float = typer.Option(4, help="fps the trainer samples at (meta.json)"),
    max_frames: int = typer.Option(2048, help="video_max_frames (meta.json; the long config's 2048)"),
    max_tokens: int = typer.Option(262144, help="the trainer's per-sample cap (the long config's max_length)"),
    tokenizer: Optional[str] = typer.Option(None, help=_TOKENIZER_HELP),
    check_media: bool = typer.Option(True, "--check-media/--no-check-media",
                                     help="open each video to check frame size and count"),
) -> None:
    """JSONL + meta JSON for InternVideo3's SFT trainer; every line checked and within the token cap."""
    from pipeline.export import export_xtuner

    report = export_xtuner(out, dest, media_root=media_root, name=name, fps=fps, check_media=check_media,
                           max_tokens=max_tokens, max_frames=max_frames, tokenizer=tokenizer)
    for group, n in sorted(report.written.items()):
        typer.echo(f"{group}: {n} lines")
    _echo_tokens(report.tokens, max_tokens)
    typer.echo(f"meta: {dest / 'meta.json'} (per-dataset fps, frame and pixel limits); per sample: "
               f"{dest / 'tokens.jsonl'}")
    if report.rejected:
        typer.echo(f"{report.rejected} line(s) broke the trainer's rules and were not written "
                   f"(see {dest / 'rejected.jsonl'}): {dict(report.problems)}", err=True)
        raise typer.Exit(1)


@export_app.command("verl")
def export_verl_cmd(out: str = typer.Argument(..., help="dataset directory"),
                    dest: Path = typer.Argument(..., help="output folder for train.parquet"),
                    max_prompt_length: int = typer.Option(16384, help="verl's data.max_prompt_length to fit"),
                    fps: float = typer.Option(2.0, help="frames per second each video entry asks for"),
                    max_frames: int = typer.Option(128, help="at most this many frames per video"),
                    patch_size: int = typer.Option(14, help="the policy's vision patch (14 Qwen2.5-VL, 16 Qwen3-VL)"),
                    tokenizer: Optional[str] = typer.Option(None, help=_TOKENIZER_HELP)) -> None:
    """The `rl` rows as a verl Parquet file; video entries carry limits that fit max_prompt_length."""
    from pipeline.export import export_verl

    n = export_verl(out, dest, max_prompt_length=max_prompt_length, fps=fps, max_frames=max_frames,
                    patch_size=patch_size, tokenizer=tokenizer)
    typer.echo(f"{n} rows -> {dest / 'train.parquet'}")
    typer.echo("verl settings:\n"
               f"  data.train_files={(dest / 'train.parquet').resolve()}\n"
               f"  data.max_prompt_length={max_prompt_length}\n  data.video_key=videos\n"
               f"  data.image_patch_size={patch_size}\n"
               "  reward.custom_reward_function.path=pkg://synth.reward\n"
               "  reward.custom_reward_function.name=compute_score")


@export_app.command("qwen")
def export_qwen_cmd(out: str = typer.Argument(..., help="dataset directory"),
                    dest: Path = typer.Argument(..., help="output folder for qwen.jsonl"),
                    max_tokens: int = typer.Option(262144, help="tokens per sample to fit"),
                    fps: float = typer.Option(2.0, help="frames per second each video item asks for"),
                    max_frames: int = typer.Option(768, help="at most this many frames per video"),
                    patch_size: int = typer.Option(14, help="vision patch (14 Qwen2.5-VL, 16 Qwen3-VL)"),
                    tokenizer: Optional[str] = typer.Option(None, help=_TOKENIZER_HELP)) -> None:
    """Qwen-VL-style messages ({"type": "video", "video", "fps", pixel limits}: qwen-vl-utils, ms-swift)."""
    from pipeline.export_qwen import export_qwen

    report = export_qwen(out, dest, max_tokens=max_tokens, fps=fps, max_frames=max_frames, patch_size=patch_size,
                         tokenizer=tokenizer)
    _finish_qwen_like(report, dest, max_tokens)


@export_app.command("llamafactory")
def export_llamafactory_cmd(out: str = typer.Argument(..., help="dataset directory"),
                            dest: Path = typer.Argument(..., help="output folder (jsonl, dataset_info.json, args)"),
                            name: str = typer.Option("longvideo", help="dataset name in dataset_info.json"),
                            max_tokens: int = typer.Option(262144, help="cutoff_len to fit"),
                            fps: float = typer.Option(2.0, help="video_fps"),
                            max_frames: int = typer.Option(768, help="video_maxlen"),
                            patch_size: int = typer.Option(14, help="vision patch (14 Qwen2.5-VL, 16 Qwen3-VL)"),
                            tokenizer: Optional[str] = typer.Option(None, help=_TOKENIZER_HELP)) -> None:
    """LLaMA-Factory's sharegpt format + dataset_info.json + the video_* args that fit cutoff_len."""
    from pipeline.export_qwen import export_llamafactory

    report = export_llamafactory(out, dest, max_tokens=max_tokens, fps=fps, max_frames=max_frames,
                                 patch_size=patch_size, name=name, tokenizer=tokenizer)
    _finish_qwen_like(report, dest, max_tokens)
    typer.echo(f"LLaMA-Factory args: {dest / 'llamafactory_args.yaml'}")


def _finish_qwen_like(report, dest: Path, cap: int) -> None:
    typer.echo(f"{report.written} samples -> {', '.join(report.files)}")
    _echo_tokens(report.tally, cap)
    if report.rejected:
        typer.echo(f"{len(report.rejected)} sample(s) fit the cap at no size (see {dest / 'rejected.jsonl'})", err=True)
        raise typer.Exit(1)


def main() -> None:
    """Console entry: run the command, then leave without the interpreter's native teardown.

    Arrow's native thread pools can abort the process at interpreter exit after all work
    is done ("terminate called without an active exception", apache/arrow#34314,
    huggingface/datasets#7566), turning a finished command into exit code 134. So the
    result is decided here: Ray is shut down explicitly, output flushed, and the process
    ends with `os._exit(code)`.
    """
    import gc

    code = 0
    try:
        app()  # standalone mode: always ends in SystemExit(code), usage errors included
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except BaseException:  # noqa: BLE001 - an unexpected error still gets its traceback and code 1
        import traceback

        traceback.print_exc()
        code = 1
    finally:
        if "ray" in sys.modules:
            import ray

            if ray.is_initialized():
                ray.shutdown()
        gc.collect()
        sys.stdout.flush()
        sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":  # pragma: no cover
    main()
