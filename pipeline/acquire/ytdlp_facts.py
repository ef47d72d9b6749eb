"""What the installed yt-dlp says about the things this project relies on, as one JSON document.

`.ci/ytdlp-newest` prints this for the installed release and for the newest on the package index,
then diffs them: a YouTube client that now needs a PO token, a changed default client list, an
extractor argument the project sets that the extractor no longer reads, a new EJS release. The
doctor and the tests read the same tables from whatever release is installed, so a change
shows up as a diff here, not as a hard-coded string going stale in a test.

Run: `python -m pipeline.acquire.ytdlp_facts`.
"""
from __future__ import annotations

import inspect
import json
from typing import Any

from pipeline.acquire.youtube import EXTRACTOR_ARG_KEYS


def facts() -> dict[str, Any]:
    """yt-dlp's version, default clients, PO-token policies and the extractor args it still reads."""
    import yt_dlp
    from yt_dlp.extractor.youtube import YoutubeIE
    from yt_dlp.extractor.youtube._base import INNERTUBE_CLIENTS

    try:
        import yt_dlp_ejs

        ejs = yt_dlp_ejs.version
    except ImportError:
        ejs = None
    source = "\n".join(inspect.getsource(m) for m in _youtube_modules())
    read = {key: f"'{key}'" in source or f'"{key}"' in source for key in sorted(EXTRACTOR_ARG_KEYS["youtube"])}
    return {
        "yt_dlp": yt_dlp.version.__version__,
        "yt_dlp_ejs": ejs,
        "default_clients": list(YoutubeIE._DEFAULT_CLIENTS),
        "default_authed_clients": list(YoutubeIE._DEFAULT_AUTHED_CLIENTS),
        "clients": sorted(INNERTUBE_CLIENTS),
        "clients_needing_gvs_po_token": sorted(clients_needing_token()),
        "youtube_extractor_args_read": read,
    }


def clients_needing_token() -> set[str]:
    """Clients whose https formats need a GVS PO token, from yt-dlp's own client table."""
    from yt_dlp.extractor.youtube._base import INNERTUBE_CLIENTS

    return {name for name, client in INNERTUBE_CLIENTS.items()
            if any(getattr(p, "required", False) for p in (client.get("GVS_PO_TOKEN_POLICY") or {}).values())}


def _youtube_modules() -> list[Any]:
    import importlib
    import pkgutil

    import yt_dlp.extractor.youtube as pkg

    return [importlib.import_module(f"{pkg.__name__}.{m.name}") for m in pkgutil.iter_modules(pkg.__path__)
            if not m.name.startswith("_") or m.name in ("_base", "_video", "_tab")]


def main() -> None:
    print(json.dumps(facts(), indent=2, sort_keys=True))


if __name__ == "__main__":
    main()
