"""The model pool: one build per key across threads, load counts, LRU bound, clear; the pooled
sites (anonymizers, gate checker, detectability's models, score's metrics); stateful metrics never
shared between runs."""

from __future__ import annotations

import threading
import time

import cv2
import numpy as np
import pytest

from anonlens.pool import MODELS, ModelPool


def test_builds_once_per_key_across_threads():
    pool = ModelPool()
    pool.define("slow")
    builds = []
    start = threading.Barrier(8)

    def build():
        builds.append(threading.get_ident())
        time.sleep(0.2)  # every other thread arrives while this one builds
        return object()

    got = []

    def ask():
        start.wait()
        got.append(pool.get("slow", ("net", 1), build))

    threads = [threading.Thread(target=ask) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(builds) == 1
    assert len(got) == 8 and all(g is got[0] for g in got)
    assert pool.loads("slow") == 1


def test_different_keys_build_separately_and_in_parallel():
    pool = ModelPool()
    pool.define("net")
    inside = threading.Barrier(2, timeout=5)  # both builds must be running at once to pass

    def build(name):
        inside.wait()
        return name

    out = {}
    threads = [threading.Thread(target=lambda k=k: out.setdefault(k, pool.get("net", k, lambda: build(k)))) for k in ("a", "b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert out == {"a": "a", "b": "b"}
    assert pool.loads("net") == 2 and pool.size("net") == 2
    assert pool.get("net", "a", lambda: "again") == "a"  # kept: no third build
    assert pool.loads() == {"net": 2}


def test_load_counts_are_per_kind():
    pool = ModelPool()
    pool.define("x")
    pool.define("y", size=3)
    for k in (1, 2, 1, 1):
        pool.get("x", k, lambda k=k: k * 10)
    pool.get("y", 1, lambda: "y")
    assert pool.loads("x") == 2 and pool.loads("y") == 1
    assert pool.loads() == {"x": 2, "y": 1}


def test_clear_drops_instances_and_counts():
    pool = ModelPool()
    pool.define("x")
    pool.define("y")
    first = pool.get("x", 1, object)
    pool.get("y", 1, object)
    pool.clear("x")
    assert pool.loads() == {"x": 0, "y": 1}
    second = pool.get("x", 1, object)
    assert second is not first and pool.loads("x") == 1
    pool.clear()
    assert pool.loads() == {"x": 0, "y": 0} and pool.size("y") == 0


def test_lru_bound_drops_the_least_recently_used():
    pool = ModelPool()
    pool.define("x", size=2)
    a = pool.get("x", "a", object)
    pool.get("x", "b", object)
    assert pool.get("x", "a", object) is a  # a is now the most recently used
    pool.get("x", "c", object)  # drops b
    assert pool.size("x") == 2
    assert pool.get("x", "a", object) is a
    pool.get("x", "b", object)  # built again
    assert pool.loads("x") == 4


def test_a_failed_build_is_not_kept():
    pool = ModelPool()
    pool.define("x")

    def broken():
        raise OSError("weights missing")

    with pytest.raises(OSError):
        pool.get("x", 1, broken)
    assert pool.loads("x") == 0 and pool.size("x") == 0
    assert pool.get("x", 1, lambda: "ok") == "ok"


def test_kinds_are_declared_once():
    pool = ModelPool()
    pool.define("x", size=2)
    pool.define("x", size=2)  # a module imported again
    with pytest.raises(ValueError, match="already defined"):
        pool.define("x", size=3)
    with pytest.raises(KeyError, match="not defined"):
        pool.get("nope", 1, object)


def test_the_pool_imports_nothing_of_anonlens():
    import ast
    from pathlib import Path

    import anonlens.pool as mod

    tree = ast.parse(Path(mod.__file__).read_text(encoding="utf-8"))
    imported = [n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
    imported += [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
    assert not [m for m in imported if m.startswith("anonlens") or m.startswith(".") or m == ""], imported


# --- the pooled sites -------------------------------------------------------------------------


def test_cached_anonymizer_is_the_pools_and_counts_loads():
    from anonlens.pipeline import AnonymizeConfig, anonymizer_loads, cached_anonymizer

    config = AnonymizeConfig(scope="image", operator="pixelate")  # no model file: cheap
    before = anonymizer_loads()
    first = cached_anonymizer(config)
    assert cached_anonymizer(config) is first
    assert anonymizer_loads() - before in (0, 1)  # 0 when an earlier test built this config
    assert anonymizer_loads() == MODELS.loads("anonymizer")
    MODELS.clear("anonymizer")
    assert anonymizer_loads() == 0
    assert cached_anonymizer(config) is not first and anonymizer_loads() == 1


def test_detectability_models_are_pooled():
    from anonlens.metrics import PairBatch, create_metric

    img = np.full((32, 32, 3), 100, np.uint8)
    MODELS.clear("face-detector")
    for _ in range(2):  # two metrics, two batches: one CenterFace
        create_metric("residual-face")(PairBatch([img], [img]))
    assert MODELS.loads("face-detector") == 1


# --- stateful metrics are never pooled -----------------------------------------------------------

torch = pytest.importorskip("torch")


class _FailsOnBlack(torch.nn.Module):
    """Tiny features; raises on an all-black batch (a chunk that fails halfway)."""

    def forward(self, x):
        if bool((x.amax(dim=(1, 2, 3)) == 0).any()):
            raise RuntimeError("feature network failed")
        return torch.cat([x.mean(dim=(2, 3)), x.std(dim=(2, 3))], dim=1)


def _pair(tmp_path, key: str, value: int):
    from anonlens.assess.pairs import Pair

    img = np.full((16, 16, 3), value, np.uint8)
    orig, anon = tmp_path / f"{key}_o.png", tmp_path / f"{key}_a.png"
    cv2.imwrite(str(orig), img)
    cv2.imwrite(str(anon), img)
    return Pair(key, anon, orig)


def test_a_failed_chunk_leaves_no_state_for_the_next(tmp_path):
    """A chunk that failed halfway (a worker then runs its halves again, in the same process) must
    not hand its collected group features to the next chunk: each chunk's KID starts empty."""
    from anonlens.assess.score import ScoreOptions, score_chunk

    options = ScoreOptions(metrics=("mse", "kid"), metric_options=(("kid", (("feature", _FailsOnBlack()),)),),
                           batch_size=1, decode_threads=1)
    good, black = _pair(tmp_path, "good", 128), _pair(tmp_path, "black", 0)
    with pytest.raises(RuntimeError, match="feature network failed"):
        score_chunk([good, black], options)  # "good" is collected, then "black" fails
    rows, states = score_chunk([good], options)
    real, fake = states["kid"]["all"]
    assert len(rows) == 1 and len(real) == 1 and len(fake) == 1  # was 2: the failed chunk's batch leaked in


def test_stateless_metrics_are_shared_between_chunks_stateful_are_new():
    from anonlens.assess.score import ScoreOptions, chunk_metrics

    feature = _FailsOnBlack()
    options = ScoreOptions(metrics=("mse", "kid"), metric_options=(("kid", (("feature", feature),)),))
    first, second = chunk_metrics(options), chunk_metrics(options)
    assert [m.name for m in first] == ["mse", "kid"]
    assert [m.stateful for m in first] == [False, True]
    assert first[0] is second[0]  # mse: stateless, pooled
    assert first[1] is not second[1]  # kid collects features: one per chunk ...
    assert first[1]._feature is second[1]._feature is feature  # ... with the same network


def test_face_descriptors_never_leave_the_scoring_chunk(tmp_path, astronaut):
    """Rows cross processes and Ray's object store: they hold the columns, never a face descriptor
    (biometric data) of the identity metric."""
    from PIL import Image

    from anonlens.assess.pairs import Pair
    from anonlens.assess.score import ScoreOptions, score_chunk

    Image.fromarray(astronaut).save(tmp_path / "o.png")
    Image.fromarray(astronaut[:, ::-1].copy()).save(tmp_path / "a.png")
    rows, _ = score_chunk([Pair("x", tmp_path / "a.png", tmp_path / "o.png")], ScoreOptions(metrics=("identity",), decode_threads=1))
    ((pair, values, error),) = rows
    assert error is None and values["orig_face_found"]

    def arrays(v):
        return isinstance(v, np.ndarray) or (isinstance(v, (list, tuple, dict)) and any(arrays(x) for x in (v.values() if isinstance(v, dict) else v)))

    assert not arrays(values)
