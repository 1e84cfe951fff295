"""The parsed-dataset cache (dq.data.cache): a warm load equals the parse exactly and skips
the parser; damaged, stale or unwritable caches never fail a load; cached splits are bitwise
those of the uncached path."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

from dq import data
from dq.data import cache, images, text
from dq.data.registry import dataset_config


@pytest.fixture
def cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "cache"
    monkeypatch.setenv(cache.CACHE_ENV, str(folder))
    return folder


class CountingIdx:
    """Parses a real idx file with dq's reader and counts the calls."""

    def __init__(self, path: Path) -> None:
        self.path, self.calls = path, 0

    def __call__(self) -> dict[str, np.ndarray]:
        self.calls += 1
        return {"x": images.read_idx(self.path), "scale": np.array([1.5, -2.0], dtype=">f8")}


def idx_source(folder: Path, seed: int = 0) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "images-idx3-ubyte"
    images.write_idx(path, np.random.default_rng(seed).integers(0, 256, (50, 28, 28), dtype=np.uint8))
    return path


def entries(folder: Path, name: str | None = None) -> list[Path]:
    """The cache's entries of parsed sources, or with ``name`` those of that name (``split``)."""
    found = sorted(folder.glob("*.npz"))
    if name is None:
        return [path for path in found if not path.name.startswith("split-")]
    return [path for path in found if path.name.startswith(f"{name}-")]


def assert_same(got: dict[str, np.ndarray], want: dict[str, np.ndarray]) -> None:
    assert got.keys() == want.keys()
    for key in want:
        assert got[key].dtype == want[key].dtype and got[key].shape == want[key].shape, key
        assert np.array_equal(got[key], want[key]), key


def test_cache_dir_follows_env_then_xdg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(cache.CACHE_ENV, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache.cache_dir() == tmp_path / "xdg" / "dq" / "arrays"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert cache.cache_dir() == Path("~/.cache/dq/arrays").expanduser()
    monkeypatch.setenv(cache.CACHE_ENV, str(tmp_path / "mine"))
    assert cache.cache_dir() == tmp_path / "mine"


def test_second_load_equals_the_first_without_parsing(tmp_path: Path, cache_dir: Path) -> None:
    parse = CountingIdx(idx_source(tmp_path / "src"))
    first = cache.cached_arrays(parse.path, "idx", parse)
    assert parse.calls == 1 and len(entries(cache_dir)) == 1
    second = cache.cached_arrays(parse.path, "idx", parse)
    assert parse.calls == 1
    assert_same(second, first)
    assert second["scale"].dtype == np.dtype(">f8")  # byte order kept, not normalised


@pytest.mark.parametrize("damage", ["truncated", "garbage", "empty"])
def test_a_damaged_entry_is_rebuilt(damage: str, tmp_path: Path, cache_dir: Path) -> None:
    parse = CountingIdx(idx_source(tmp_path / "src"))
    first = cache.cached_arrays(parse.path, "idx", parse)
    [entry] = entries(cache_dir)
    raw = entry.read_bytes()
    entry.write_bytes({"truncated": raw[: len(raw) // 2], "garbage": os.urandom(len(raw)), "empty": b""}[damage])
    assert_same(cache.cached_arrays(parse.path, "idx", parse), first)
    assert parse.calls == 2
    with np.load(entry, allow_pickle=False) as stored:  # rewritten whole
        assert_same({key: stored[key] for key in stored.files}, first)
    assert_same(cache.cached_arrays(parse.path, "idx", parse), first)
    assert parse.calls == 2


def test_a_flipped_byte_inside_an_array_is_caught(tmp_path: Path, cache_dir: Path) -> None:
    """zipfile's CRC check: same length, valid header, one pixel changed."""
    parse = CountingIdx(idx_source(tmp_path / "src"))
    first = cache.cached_arrays(parse.path, "idx", parse)
    [entry] = entries(cache_dir)
    raw = bytearray(entry.read_bytes())
    at = raw.index(first["x"][10].tobytes())  # the pixels are stored uncompressed
    raw[at] ^= 0xFF
    entry.write_bytes(bytes(raw))
    assert_same(cache.cached_arrays(parse.path, "idx", parse), first)
    assert parse.calls == 2


def test_a_changed_source_invalidates_and_replaces_the_entry(tmp_path: Path, cache_dir: Path) -> None:
    parse = CountingIdx(idx_source(tmp_path / "src", seed=0))
    first = cache.cached_arrays(parse.path, "idx", parse)
    [old] = entries(cache_dir)
    idx_source(tmp_path / "src", seed=1)  # same size, new content (and mtime)
    second = cache.cached_arrays(parse.path, "idx", parse)
    assert parse.calls == 2
    assert not np.array_equal(second["x"], first["x"])
    assert np.array_equal(second["x"], images.read_idx(parse.path))
    [new] = entries(cache_dir)
    assert new != old  # the stale entry is removed, the new one keyed by the new content


def test_a_garbage_digest_side_file_is_rehashed(tmp_path: Path, cache_dir: Path) -> None:
    parse = CountingIdx(idx_source(tmp_path / "src"))
    first = cache.cached_arrays(parse.path, "idx", parse)
    [side] = (cache_dir / cache.DIGESTS).glob("*.json")
    side.write_text("{not json")
    assert_same(cache.cached_arrays(parse.path, "idx", parse), first)
    assert parse.calls == 1  # same content, same key: the entry is still found


def test_an_unwritable_cache_dir_still_loads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    monkeypatch.setenv(cache.CACHE_ENV, str(blocker / "cache"))  # cannot be created, even as root
    parse = CountingIdx(idx_source(tmp_path / "src"))
    first = cache.cached_arrays(parse.path, "idx", parse)
    assert_same(cache.cached_arrays(parse.path, "idx", parse), first)
    assert parse.calls == 2


def test_the_parsers_own_error_is_not_hidden(tmp_path: Path, cache_dir: Path) -> None:
    def parse() -> dict[str, np.ndarray]:
        raise RuntimeError("the parser's error")

    with pytest.raises(RuntimeError, match="the parser's error"):
        cache.cached_arrays(tmp_path / "missing.csv", "missing", parse)


def splits_equal(a: data.Splits, b: data.Splits) -> None:
    assert a.meta == b.meta
    for name in ("train", "val", "test"):
        x, y = getattr(a, name), getattr(b, name)
        assert x.x.dtype == y.x.dtype and x.y.dtype == y.y.dtype
        assert torch.equal(x.x, y.x) and torch.equal(x.y, y.y), name


def test_mnist5k_splits_are_bitwise_those_of_the_uncached_path(
    tmp_path: Path, cache_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = dataset_config("mnist5k", limit=200)
    cold = data.build(cfg, seed=3)  # parsed, then stored
    [entry] = entries(cache_dir)
    with np.load(entry, allow_pickle=False) as stored:
        assert stored["x"].shape == (5000, 1, 28, 28) and stored["x"].dtype == np.uint8
    warm = data.build(cfg, seed=3)  # loaded
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.setenv(cache.CACHE_ENV, str(blocker / "cache"))
    uncached = data.build(cfg, seed=3)  # no cache at all
    splits_equal(warm, cold)
    splits_equal(uncached, cold)
    assert len(warm.train.y) == 200


@pytest.mark.skipif(not images.DEBIAN_FASHION_MNIST.is_dir(), reason="needs Debian's dataset-fashion-mnist")
def test_fashion_mnist_arrays_from_the_cache_equal_the_idx_files(cache_dir: Path) -> None:
    parsed = images._debian_fashion()
    loaded = images._debian_fashion()
    for (x1, y1), (x2, y2) in zip(parsed, loaded, strict=True):
        assert x1.dtype == x2.dtype == np.uint8 and y1.dtype == y2.dtype
        assert np.array_equal(x1, x2) and np.array_equal(y1, y2)
    assert parsed[0][0].shape == (60000, 1, 28, 28) and parsed[1][0].shape == (10000, 1, 28, 28)
    assert len(entries(cache_dir)) == 1


def test_texts_pack_into_arrays_and_back() -> None:
    texts = ["", "plain words", "naïve café — 東京 🎬", "", "line\nbreak\ttab", "x" * 1000]
    packed = text.pack_texts(texts)
    assert packed["text_bytes"].dtype == np.uint8 and packed["text_ends"].dtype == np.int64
    assert text.unpack_texts(packed) == texts
    assert text.unpack_texts(text.pack_texts([])) == []


def test_rotten_tomatoes_splits_are_bitwise_those_of_the_uncached_path(cache_dir: Path) -> None:
    cfg = dataset_config("rotten_tomatoes", limit=100)
    cold = data.build(cfg, seed=1)
    [entry] = entries(cache_dir)
    assert entry.name.startswith("rotten_tomatoes-")
    warm = data.build(cfg, seed=1)
    splits_equal(warm, cold)
    assert warm.meta.vocab == cold.meta.vocab and len(warm.meta.vocab) > 1000  # the whole train split's words


def test_split_indices_are_cached_per_labels_fractions_and_seed(
    cache_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from dq.data import splitting

    y = np.random.default_rng(0).integers(0, 10, 1000)
    drawn = splitting.train_val_test(y, 0.1, 0.1, seed=3)  # drawn with scikit-learn, then stored
    assert len(entries(cache_dir, "split")) == 1
    calls = []
    carve = splitting._carve
    monkeypatch.setattr(splitting, "_carve", lambda *a: calls.append(1) or carve(*a))
    again = splitting.train_val_test(y, 0.1, 0.1, seed=3)
    assert calls == [] and all(np.array_equal(a, b) and a.dtype == b.dtype for a, b in zip(drawn, again, strict=True))
    other = splitting.train_val_test(y, 0.1, 0.1, seed=4)  # another seed: drawn, and its own entry
    assert len(calls) == 2 and len(entries(cache_dir, "split")) == 2 and not np.array_equal(other[2], drawn[2])
    splitting.train_val(y, 0.2, seed=3)
    assert len(calls) == 3 and len(entries(cache_dir, "split")) == 3
    for entry in entries(cache_dir, "split"):  # damaged entries are drawn again, with the same result
        entry.write_bytes(entry.read_bytes()[:100])
    rebuilt = splitting.train_val_test(y, 0.1, 0.1, seed=3)
    assert len(calls) == 5 and all(np.array_equal(a, b) for a, b in zip(drawn, rebuilt, strict=True))


class CountingBuild:
    """Builds one small array per key and counts the calls."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, value: int) -> dict[str, np.ndarray]:
        self.calls += 1
        return {"x": np.full((4, 3), value, dtype=np.uint8)}


def stored_under(name: str, key: bytes, build: CountingBuild, keep: int | None) -> dict[str, np.ndarray]:
    return cache.cached_by_key(name, key, lambda: build(key[0]), keep=keep)


def age(folder: Path, name: str, seconds: dict[bytes, int]) -> None:
    """Set the mtimes of ``name``'s entries of the keys in ``seconds`` (older = smaller),
    so the test orders uses without sleeping."""
    for key, when in seconds.items():
        path, *_ = [p for p in entries(folder, name) if cache._name(p) == name and key_of(p, name) == key]
        os.utime(path, (when, when))


def key_of(path: Path, name: str) -> bytes:
    """The key whose digest names ``path`` (the tests' keys are one byte)."""
    for value in range(256):
        key = bytes([value])
        digest = cache.hashlib.sha256(f"dq-arrays-v{cache.FORMAT_VERSION}:{name}:".encode() + key).hexdigest()[:32]
        if path.name == f"{name}-{digest}.npz":
            return key
    raise AssertionError(path)


def keys_of(folder: Path, name: str) -> set[bytes]:
    return {key_of(p, name) for p in entries(folder, name) if cache._name(p) == name}


def test_keep_removes_the_least_recently_used_entry_of_that_name_only(cache_dir: Path) -> None:
    """With keep=2 a third key's store removes the entry used longest ago; entries of a
    name that merely starts the same (celeba-images-x) and unbounded names (split) stay."""
    build = CountingBuild()
    for key in (b"a", b"b"):
        stored_under("celeba-images", key, build, keep=2)
        stored_under("celeba-images-x", key, build, keep=None)
        stored_under("split", key, build, keep=None)
    age(cache_dir, "celeba-images", {b"a": 1_000_000, b"b": 2_000_000})
    age(cache_dir, "celeba-images-x", {b"a": 1, b"b": 2})  # older than anything of celeba-images
    stored_under("celeba-images", b"c", build, keep=2)
    assert keys_of(cache_dir, "celeba-images") == {b"b", b"c"}
    assert keys_of(cache_dir, "celeba-images-x") == {b"a", b"b"}
    assert keys_of(cache_dir, "split") == {b"a", b"b"}
    calls = build.calls
    stored_under("split", b"c", build, keep=None)  # today's behaviour: every seed's entry stays
    assert keys_of(cache_dir, "split") == {b"a", b"b", b"c"} and build.calls == calls + 1


def test_loading_an_old_entry_protects_it(cache_dir: Path) -> None:
    build = CountingBuild()
    for key in (b"a", b"b"):
        stored_under("celeba-images", key, build, keep=2)
    age(cache_dir, "celeba-images", {b"a": 1_000_000, b"b": 2_000_000})
    loaded = stored_under("celeba-images", b"a", build, keep=2)  # a hit: refreshes a's mtime
    assert build.calls == 2 and int(loaded["x"][0, 0]) == ord("a")
    stored_under("celeba-images", b"c", build, keep=2)
    assert keys_of(cache_dir, "celeba-images") == {b"a", b"c"}  # b was used longest ago


def test_an_entry_that_vanished_or_cannot_be_removed_does_not_fail_the_run(cache_dir: Path) -> None:
    """A dangling link named like an entry (a file another run removed meanwhile) and a
    folder named like one (unlink fails, even as root) are skipped; a removable old entry
    still goes, and the new arrays come back."""
    build = CountingBuild()
    stored_under("celeba-images", b"a", build, keep=1)
    [old] = entries(cache_dir, "celeba-images")
    vanished = cache_dir / f"celeba-images-{'0' * 32}.npz"
    vanished.symlink_to(cache_dir / "gone.npz")
    stuck = cache_dir / f"celeba-images-{'1' * 32}.npz"
    stuck.mkdir()
    os.utime(stuck, (1, 1))
    arrays = stored_under("celeba-images", b"b", build, keep=1)
    assert int(arrays["x"][0, 0]) == ord("b") and build.calls == 2
    assert not old.exists() and stuck.is_dir() and vanished.is_symlink()  # both skipped, left as they were
    [new] = [p for p in entries(cache_dir, "celeba-images") if p not in (vanished, stuck)]
    assert key_of(new, "celeba-images") == b"b"
    with pytest.raises(ValueError, match="keep must be >= 1 or None, got 0"):
        stored_under("celeba-images", b"c", build, keep=0)


def test_decoded_images_keep_the_most_recently_used_sizes(tmp_path: Path, cache_dir: Path) -> None:
    """read_image_files at one more image size than KEEP_DECODED keeps KEEP_DECODED
    entries, the first size's gone (decoded again, same pixels)."""
    from PIL import Image

    paths = []
    for i in range(2):
        path = tmp_path / f"{i}.png"
        Image.new("RGB", (10, 8), (40 * i, 100, 200)).save(path)
        paths.append(path)
    sizes = list(range(2, 3 + images.KEEP_DECODED))
    first = images.read_image_files(paths, sizes[0], "tiny")
    for when, size in enumerate(sizes[1:], start=2):
        [newest] = [p for p in entries(cache_dir, "tiny-images") if p.stat().st_mtime > 1_000_000_000]
        os.utime(newest, (when * 1_000_000, when * 1_000_000))  # uses in size order, without sleeping
        images.read_image_files(paths, size, "tiny")
    found = entries(cache_dir, "tiny-images")
    assert len(found) == images.KEEP_DECODED
    assert all(np.load(p)["x"].shape[-1] != sizes[0] for p in found)
    assert np.array_equal(images.read_image_files(paths, sizes[0], "tiny"), first)
