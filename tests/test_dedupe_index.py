"""The near-duplicate index decides exactly as the one it replaced (issue #27): the same
matches, the same video named, on random signatures with planted near-copies, trims, copies
committed twice (ties) and claims made and released along the way, with runs small enough
that lookups cross several sorted runs and the unsorted tail."""
from __future__ import annotations

import numpy as np
import pytest

from pipeline.filter import fingerprint
from bench._legacy_index import LegacySignatureIndex
from bench._signatures import committed_columns, dense_track, near_copy, signature_of
from pipeline.filter.config import MatchConfig
from pipeline.filter.fingerprint import Query, Signature, SignatureIndex, _near_pairs, hamming_matrix


def _stored(rng: np.random.Generator) -> tuple[list[Signature], dict[str, Query]]:
    ids, durations, offsets, t, h = committed_columns(rng, 400)
    sigs = [Signature(v, float(d), t[a:b], h[a:b]) for v, d, a, b in zip(ids, durations, offsets[:-1], offsets[1:])]
    tracks = {}
    for k in range(12):
        track = dense_track(rng, float(rng.uniform(60, 240)))
        tracks[f"s{k}"] = track
        sigs.append(signature_of(f"s{k}", track))
        if k % 4 == 0:  # the same video committed again under another ID: ties to break alike
            sigs.append(signature_of(f"s{k}-again", track))
    rng.shuffle(sigs)
    return sigs, tracks


def _queries(rng: np.random.Generator, tracks: dict[str, Query]) -> list[tuple[str, Query]]:
    out = []
    for name, track in tracks.items():
        for bits in (0.5, 2.0, 4.0, 6.0, 9.0):  # from clean re-encodes to past the threshold
            out.append((f"{name}-b{bits}", near_copy(rng, track, bits)))
        out.append((f"{name}-trim", near_copy(rng, track, 2.0, trim_s=float(rng.uniform(5, 40)))))
    for k in range(15):
        out.append((f"new{k}", dense_track(rng, float(rng.uniform(60, 240)))))
    rng.shuffle(out)
    return out


@pytest.mark.parametrize("directory", [False, True], ids=["plain-runs", "directory-runs"])
def test_new_index_decides_exactly_as_the_old_one(directory, monkeypatch):
    """With `directory`, runs of 2,000 points and more are the big runs' kind (`_DirectoryRun`), as
    the committed index's are at scale: merges between both kinds are crossed too."""
    if directory:
        monkeypatch.setattr(fingerprint, "_DIR_MIN", 2000)
    rng = np.random.default_rng(27)
    cfg = MatchConfig()
    sigs, tracks = _stored(rng)
    old, new = LegacySignatureIndex(cfg), SignatureIndex(cfg)
    new.RUN_POINTS = 512
    old.extend(sigs[:300])
    new.extend(sigs[:300])
    for sig in sigs[300:]:  # the rest added one by one: several runs and a tail
        old.add(sig)
        new.add(sig)
    assert len(new._runs) > 1 and new._t.n > new._indexed
    assert any(isinstance(r, fingerprint._DirectoryRun) for r in new._runs) == directory
    found = 0
    for name, query in _queries(rng, tracks):
        a, b = old.best_match(query), new.best_match(query)
        assert a == b, name
        found += a is not None
        # claim like the registry: a copy later in the sequence finds this one
        if a is None:
            claimed = signature_of(name, query)
            old.add(claimed)
            new.add(claimed)
        if name.startswith("new") and name.endswith("3"):
            old.remove(name)
            new.remove(name)
    assert found >= 30  # the comparison covered many matches, not only misses


def test_a_directory_run_finds_what_a_search_of_every_key_finds(monkeypatch):
    """The directory's bucket search against numpy's searchsorted over the whole band, on biased
    hashes (crowded buckets), keys absent and present, keys at the ends of the 32-bit range."""
    rng = np.random.default_rng(3)
    h = committed_columns(rng, 300)[4]
    h = np.concatenate([h, np.array([0, 2**64 - 1, 2**64 - 1, 0x0000FFFF0000FFFF], np.uint64)])
    plain = fingerprint._Run.of(10, h)
    monkeypatch.setattr(fingerprint, "_DIR_MIN", 1)
    run = fingerprint._Run.of(10, h)
    assert isinstance(run, fingerprint._DirectoryRun) and type(plain) is fingerprint._Run
    assert run.nbytes < plain.nbytes + run.starts.nbytes
    probe = np.unique(np.concatenate([fingerprint._band_keys(h[::7]).ravel(), rng.integers(0, 2**32, 500, np.uint32),
                                      np.array([0, 1, 2**32 - 1], np.uint32)]).astype(np.uint32))
    for band in range(fingerprint._BANDS):
        assert (run.band_keys(band) == plain.band_keys(band)).all()
        got, want = run.lookup(band, probe), plain.lookup(band, probe)
        assert len(want) > len(probe) // 10 and (np.sort(got) == np.sort(want)).all()
    assert len(run.lookup(0, np.array([1], np.uint32))) == len(plain.lookup(0, np.array([1], np.uint32)))


def test_near_pairs_equal_the_hamming_matrix():
    rng = np.random.default_rng(5)
    query = dense_track(rng, 120.0)
    sigs = [signature_of("a", near_copy(rng, query, 5.0)), signature_of("b", dense_track(rng, 90.0)),
            signature_of("c", near_copy(rng, query, 9.0))]
    for max_hamming in (0, 3, 10, 16):
        pairs = _near_pairs(query.h, sigs, max_hamming, min_points=0)
        for sig, near in zip(sigs, pairs):
            assert near is not None and (near == (hamming_matrix(sig.h, query.h) <= max_hamming)).all()
    # a signature with fewer close points than asked for is left out before any alignment
    assert _near_pairs(query.h, sigs[1:2], 10, min_points=49) == [None]


def test_registry_actor_seeds_itself_and_reloads_after_its_death(ray_local, tmp_path):
    # the driver hands the actor the dataset's URL, not the signatures; a restarted actor reads
    # the committed shards again itself (this run's claims are lost with it, as documented)
    import time

    from bench.dedupe_scale import write_store
    from pipeline.filter.config import DedupeConfig
    from pipeline.filter.stages import DedupeStage
    from pipeline.services import close_services, start_service

    rng = np.random.default_rng(11)
    ids, durations, offsets, t, h = committed_columns(rng, 300)
    track = dense_track(rng, 200.0)
    sig = signature_of("p0", track)
    store = write_store(tmp_path / "ds", [*ids, "p0"], np.append(durations, sig.duration_s),
                        np.append(offsets, offsets[-1] + len(sig.h)), np.concatenate([t, sig.t]),
                        np.concatenate([h, sig.h]), shard_rows=100)
    stage = DedupeStage(DedupeConfig())
    [service] = stage.services(store)
    assert service.args == (stage.dedupe.match, store.url)
    proxy = start_service(service)
    try:
        copy = near_copy(rng, track, 2.0, trim_s=10.0)
        new = dense_track(rng, 150.0)
        hits = proxy.claim_many([("x1", copy, signature_of("x1", copy)), ("n1", new, signature_of("n1", new))])
        assert hits[0].video_id == "p0" and hits[1] is None and proxy.size() == 302
        ray_local.kill(proxy._handle, no_restart=False)  # as a crash or Ray's memory monitor would
        deadline = time.monotonic() + 120
        while proxy.size() == 302:  # the kill lands a moment later; calls in flight are retried
            assert time.monotonic() < deadline, "the registry never restarted"
            time.sleep(0.2)
        again = near_copy(rng, track, 3.0)
        assert proxy.claim("x2", again, signature_of("x2", again)).video_id == "p0"
        assert proxy.size() == 301  # the committed ones, read again from the shards
    finally:
        close_services([(stage, service, proxy)])
