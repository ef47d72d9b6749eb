"""Real yt-dlp error text -> reason. Sources are cited per row (yt-dlp 2026.10.26 unless noted)."""
from __future__ import annotations

import pytest

from pipeline.acquire.classify import classify_error
from pipeline.records import Reason as R

LOGIN_HINT = ("Use --cookies-from-browser or --cookies for the authentication. See  "
              "https://github.com/yt-dlp/yt-dlp/wiki/FAQ#how-do-i-pass-cookies-to-yt-dlp  for how to "
              "manually pass cookies")  # yt_dlp/extractor/common.py _login_hint('cookies')

TABLE = [
    # yt_dlp/extractor/youtube/_video.py _real_extract: reason + '. ' + _youtube_login_hint when 'sign in'
    (f"ERROR: [youtube] rVXeIRY6H9c: Sign in to confirm you\u2019re not a bot. {LOGIN_HINT}", R.bot_check, False),
    ("ERROR: [youtube] tJ51nR4-tLs: Sign in to confirm you\u2019re not a bot. This helps protect our community. Learn more",
     R.bot_check, False),  # yt-dlp/yt-dlp issue #10707 (older releases, before remove_end of the tail)
    # _video.py: playerCaptchaViewModel branch
    ("ERROR: [youtube] abcdefghijk: Video unavailable. YouTube is requiring a captcha challenge before playback",
     R.bot_check, False),
    # _video.py: "This content isn't available, try again later" branch
    ("ERROR: [youtube] abcdefghijk: This content isn't available, try again later. The current session has been "
     "rate-limited by YouTube for up to an hour. It is recommended to use `-t sleep` to add a delay between video "
     "requests to avoid exceeding the rate limit.", R.rate_limited, True),
    # _video.py _TESTS 'skip' strings (YouTube's own playability reasons)
    ("ERROR: [youtube] abcdefghijk: Private video. Sign in if you've been granted access to this video. "
     + LOGIN_HINT, R.private, False),
    ("ERROR: [youtube] abcdefghijk: This video has been removed for violating YouTube's policy on hate speech.",
     R.removed, False),
    ("ERROR: [youtube] abcdefghijk: Video unavailable", R.unavailable, False),
    ("ERROR: [youtube] abcdefghijk: This video is not available.", R.unavailable, False),
    ("ERROR: [youtube] abcdefghijk: This video does not exist.", R.unavailable, False),
    ("ERROR: [youtube] abcdefghijk: Video unavailable. This video is no longer available because the YouTube "
     "account associated with this video has been terminated.", R.removed, False),
    # _video.py _is_agegated AGE_GATE_REASONS ('confirm your age', 'inappropriate') + login hint
    ("ERROR: [youtube] abcdefghijk: Sign in to confirm your age. This video may be inappropriate for some users. "
     + LOGIN_HINT, R.age_restricted, False),
    # _video.py subreason -> raise_geo_restricted; extractor/common.py default message
    ("ERROR: [youtube] abcdefghijk: The uploader has not made this video available in your country",
     R.geo_blocked, False),
    ("ERROR: [generic] x: This video is not available from your location due to geo restriction",
     R.geo_blocked, False),
    # members-only: yt-dlp/yt-dlp issues #8694 and #14949 (raise_no_formats in _video.py)
    ("ERROR: [youtube] zNZLEXsixWs: Join this channel to get access to members-only content like this video, "
     "and other exclusive perks.", R.members_only, False),
    ("ERROR: [youtube] 9iVcXphPVaM: This video is available to this channel's members on level: Assistant "
     "(or any higher level). Join this channel to get access to members-only content and other exclusive perks.",
     R.members_only, False),
    # upcoming premiere / live (YouTube playability reason; utils/_utils.py UserNotLive default)
    ("ERROR: [youtube] abcdefghijk: This live event will begin in a few moments.", R.live_stream, False),
    ("ERROR: [youtube:tab] x: The channel is not currently live", R.live_stream, False),
    # yt_dlp/networking/exceptions.py HTTPError: f'HTTP Error {status}: {reason}', via extractor/common.py
    ("ERROR: [generic] x: Unable to download webpage: HTTP Error 429: Too Many Requests "
     "(caused by <HTTPError 429: Too Many Requests>)", R.rate_limited, True),
    ("ERROR: unable to download video data: HTTP Error 403: Forbidden", R.forbidden, False),
    ("ERROR: [generic] x: Unable to download webpage: HTTP Error 404: Not Found "
     "(caused by <HTTPError 404: Not Found>)", R.unavailable, False),
    ("ERROR: [generic] x: Unable to download webpage: HTTP Error 503: Service Unavailable", R.network, True),
    ("ERROR: [generic] x: Unable to download webpage: HTTP Error 410: Gone", R.removed, False),
    # networking/exceptions.py IncompleteRead / TransportError; downloader/http.py
    ("ERROR: 1000 bytes read, 2000 more expected", R.network, True),
    ("ERROR: Did not get any data blocks", R.network, True),
    ("ERROR: [generic] x: Unable to download webpage: The read operation timed out "
     "(caused by TransportError('The read operation timed out'))", R.network, True),
    ("ERROR: [generic] x: Unable to download webpage: [Errno 111] Connection refused", R.network, True),
    # extractor/generic.py and YoutubeDL.py
    ("ERROR: Unsupported URL: http://example.com/page", R.unavailable, False),
    ("ERROR: [youtube] abcdefghijk: Requested format is not available. Use --list-formats for a list of "
     "available formats", R.unavailable, False),
    # FFmpeg via PyAV (header probes)
    ("[Errno 1094995529] Invalid data found when processing input: 'x.mp4'", R.corrupt_media, False),
    ("[Errno 875574520] Server returned 404 Not Found: 'http://h/v.mp4'", R.unavailable, False),
    ("Server returned 403 Forbidden (access denied)", R.forbidden, False),
]


@pytest.mark.parametrize("message,reason,transient", TABLE, ids=[f"{i}-{r.value}" for i, (_, r, _) in enumerate(TABLE)])
def test_real_messages_map_to_reasons(message, reason, transient):
    assert classify_error(message) == (reason, transient)


def test_unknown_text_is_permanent_unavailable():
    assert classify_error("something new happened") == (R.unavailable, False)
    assert classify_error("") == (R.unavailable, False)
