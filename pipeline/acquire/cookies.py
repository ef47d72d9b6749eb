"""Each fetch worker (process, and thread within it) uses its own copy of an identity's cookies file.

yt-dlp writes its cookie jar back to `cookiefile` whenever a YoutubeDL closes (once per
video). Several workers sharing one file then read it while another rewrites it ("does not
look like a Netscape format cookies file") and can leave the account's file truncated. So
the configured file is only ever read, once per worker, into a private copy (mode 0600, in
a temporary folder removed at exit) that this worker's yt-dlp may rewrite: the cookies
YouTube rotates during a run stay with the worker that received them.
"""
from __future__ import annotations

import atexit
import os
import shutil
import tempfile
import threading
from pathlib import Path

_copies: dict[tuple[str, int], str] = {}
_lock = threading.Lock()
_folder: str | None = None


def private_copy(cookies_file: str) -> str:
    """The path of this worker's copy of `cookies_file` (made on first use)."""
    source = str(Path(cookies_file).expanduser().resolve())
    key = (source, threading.get_ident())
    with _lock:
        if key not in _copies:
            global _folder
            if _folder is None:
                _folder = tempfile.mkdtemp(prefix="curate-cookies-")
                atexit.register(shutil.rmtree, _folder, True)
            target = os.path.join(_folder, f"{len(_copies)}-{Path(source).name}")
            fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "wb") as out, open(source, "rb") as src:
                shutil.copyfileobj(src, out)
            _copies[key] = target
        return _copies[key]
