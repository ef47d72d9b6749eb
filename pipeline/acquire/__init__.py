"""Acquisition: ingest ID lists, probe and fetch videos with yt-dlp, verify media."""
