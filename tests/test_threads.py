"""The thread policy (torch and OpenCV set and recorded) and parallel SIFT extraction (bitwise equal to sequential)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from bench import registry
from bench.extractors import sift as sift_mod
from bench.extractors.sift import SiftExtractor
from bench.plugins import ImageSet
from bench import threads as threads_mod
from bench.threads import apply_threads, available_cores, current_threads, thread_record


@pytest.fixture(autouse=True)
def restore_threads() -> None:
    torch_before, cv_before, policy_before = torch.get_num_threads(), cv2.getNumThreads(), threads_mod._policy
    yield
    torch.set_num_threads(torch_before)
    cv2.setNumThreads(cv_before)
    threads_mod._policy = policy_before


def test_apply_threads_sets_torch_and_opencv_and_records_them() -> None:
    assert apply_threads(1) == 1
    assert torch.get_num_threads() == 1 and cv2.getNumThreads() == 1 and current_threads() == 1
    record = thread_record()
    assert record["torch_threads"] == 1 and record["opencv_threads"] == 1 and record["policy"] == 1
    assert record["cores_available"] == available_cores() >= 1


def test_none_on_a_quiet_machine_means_the_cores_this_process_may_use(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(threads_mod, "other_load", lambda interval=None: (0.0, "proc-stat"))
    n = apply_threads(None)
    assert n == available_cores() == current_threads() == torch.get_num_threads()
    if hasattr(__import__("os"), "sched_getaffinity"):
        assert n == len(__import__("os").sched_getaffinity(0))
    assert thread_record()["default"]["chosen"] == n and thread_record()["default"]["other_load"] == 0.0


@pytest.mark.parametrize(("cores", "load", "expected"), [(2, 0.4, 2), (2, 0.6, 1), (2, 1.0, 1), (2, 3.0, 1),
                                                           (8, 2.6, 5), (8, 0.0, 8), (4, 9.0, 1)])
def test_none_leaves_the_cores_other_processes_keep_busy(monkeypatch: pytest.MonkeyPatch, cores: int, load: float,
                                                          expected: int) -> None:
    monkeypatch.setattr(threads_mod, "available_cores", lambda: cores)
    monkeypatch.setattr(threads_mod, "other_load", lambda interval=None: (load, "proc-stat"))
    assert apply_threads(None) == expected == torch.get_num_threads()
    record = thread_record()["default"]
    assert record == {**record, "cores_available": cores, "other_load": load, "load_source": "proc-stat",
                      "chosen": expected}
    apply_threads(1)  # an explicit count is not a default: nothing of the decision is kept
    assert thread_record()["default"] is None


def test_other_load_sees_a_busy_process() -> None:
    """A process spinning on one core shows as about one busy core (where /proc/stat exists)."""
    import subprocess
    import sys

    if not __import__("os").path.exists("/proc/stat"):
        pytest.skip("no /proc/stat")
    before, source = threads_mod.other_load(0.3)
    assert source == "proc-stat" and before >= 0.0
    spin = subprocess.Popen([sys.executable, "-c", "import time\nt = time.time() + 20\nwhile time.time() < t: pass"])
    try:
        __import__("time").sleep(0.5)
        during, _ = threads_mod.other_load(0.5)
    finally:
        spin.kill()
        spin.wait()
    # the spinner adds close to one core on top of whatever else runs (noisy on a shared machine)
    assert during >= 0.6 or before >= (__import__("os").cpu_count() or 1) - 0.5


def test_bad_thread_count_is_an_error() -> None:
    with pytest.raises(ValueError):
        apply_threads(0)


@pytest.fixture(scope="module")
def faces() -> ImageSet:
    """Synthetic faces at 64 px with a blank image (no keypoints) in the middle."""
    ds = registry.datasets.get("synthetic-faces").obj()
    images = ds.load(ds.item_ids()[:37], 64)
    stack = images.images.clone()
    stack[18] = 0.5
    return ImageSet(list(images.ids), stack)


def assert_same(a: object, b: object) -> None:
    for field in ("keypoints", "descriptors", "offsets"):
        x, y = getattr(a, field), getattr(b, field)
        assert x.dtype == y.dtype and x.shape == y.shape and x.tobytes() == y.tobytes(), field
    assert a.meta == b.meta and a.flags == b.flags


def test_extraction_equals_the_plain_per_image_opencv_loop(faces: ImageSet) -> None:
    """The reference: grey conversion and detectAndCompute image by image with one cv2.SIFT, as before."""
    from bench.extractors.sift import descriptor_rows, keypoint_rows
    from bench.images import to_grey_uint8

    sift = SiftExtractor().detector()
    kps, descs = [], []
    for image in faces.images:
        found, desc = sift.detectAndCompute(to_grey_uint8(image), None)
        kps.append(keypoint_rows(found))
        descs.append(descriptor_rows(desc, len(found)))
    for workers in (1, 2):
        feats = SiftExtractor().extract(faces, progress=False, workers=workers)
        assert np.concatenate(kps).tobytes() == feats.keypoints.tobytes()
        assert np.concatenate(descs).tobytes() == feats.descriptors.tobytes()
        assert [len(k) for k in kps] == list(np.diff(feats.offsets))


@pytest.mark.parametrize("workers", [2, 3, 8, 100])
def test_parallel_sift_is_bitwise_equal_to_sequential(faces: ImageSet, workers: int) -> None:
    sequential = SiftExtractor().extract(faces, progress=False, workers=1)
    assert len(sequential.keypoints_of(18)) == 0  # the blank image really has no keypoints
    parallel = SiftExtractor().extract(faces, progress=False, workers=workers)
    assert_same(sequential, parallel)


def test_extraction_follows_the_thread_policy_and_restores_library_threads(faces: ImageSet,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[int] = []
    inside: set[tuple[int, int]] = set()
    original = sift_mod.SiftExtractor._extract_parallel
    original_chunk = sift_mod.SiftExtractor._extract_chunk

    def spy(self, imgs, chunks, rows, workers, advance):  # type: ignore[no-untyped-def]
        seen.append(workers)
        return original(self, imgs, chunks, rows, workers, advance)

    def chunk_spy(imgs, indices, rows, sift, advance):  # type: ignore[no-untyped-def]
        inside.add((cv2.getNumThreads(), torch.get_num_threads()))
        return original_chunk(imgs, indices, rows, sift, advance)

    monkeypatch.setattr(sift_mod.SiftExtractor, "_extract_parallel", spy)
    monkeypatch.setattr(sift_mod.SiftExtractor, "_extract_chunk", staticmethod(chunk_spy))
    apply_threads(2)
    parallel = SiftExtractor().extract(faces, progress=False)
    assert seen == [2]
    assert inside == {(1, 1)}  # the pool's threads are the parallelism: OpenCV and torch held at one meanwhile
    assert torch.get_num_threads() == 2 and cv2.getNumThreads() == 2  # restored after the pool
    apply_threads(1)
    assert_same(SiftExtractor().extract(faces, progress=False), parallel)
    assert seen == [2]  # one thread: no pool


def test_progress_bar_counts_every_image(faces: ImageSet, capsys: pytest.CaptureFixture[str]) -> None:
    SiftExtractor().extract(faces, progress=True, workers=2)
    err = capsys.readouterr().err
    assert "SIFT" in err and f"{len(faces)}/{len(faces)}" in err


def test_empty_and_single_image_sets(faces: ImageSet) -> None:
    empty = SiftExtractor().extract(ImageSet([], faces.images[:0]), progress=False, workers=2)
    assert len(empty) == 0 and empty.keypoints.shape == (0, 6) and empty.descriptors.shape == (0, 128)
    one = ImageSet(faces.ids[:1], faces.images[:1])
    assert_same(SiftExtractor().extract(one, progress=False, workers=1),
                SiftExtractor().extract(one, progress=False, workers=4))


def test_chunks_are_contiguous_and_cover_every_index() -> None:
    for n in (1, 7, 64, 401):
        for workers in (1, 2, 3):
            chunks = sift_mod._chunks(n, workers)
            assert [i for c in chunks for i in c] == list(range(n))
    assert sift_mod._chunks(0, 2) == []
    assert np.all([len(c) <= 64 for c in sift_mod._chunks(10_000, 2)])


def test_importing_bench_makes_idle_openmp_threads_sleep_unless_the_user_chose() -> None:
    import os
    import subprocess
    import sys

    code = "import os, bench; print(os.environ['OMP_WAIT_POLICY'])"
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "PASSIVE"
    out = subprocess.run([sys.executable, "-c", code], env={**env, "OMP_WAIT_POLICY": "ACTIVE"},
                         capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "ACTIVE"


def test_contention_benchmark_worker_reports_the_default_policy() -> None:
    """benchmarks/thread_contention.py's worker (one setting, eval stage only) runs and records how it chose."""
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "benchmarks" / "thread_contention.py"
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    done = subprocess.run([sys.executable, str(script), "--worker", "default", "--stages", "eval", "--repeats", "1"],
                          env=env, capture_output=True, text=True, timeout=300, check=True)
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["eval_ms"] > 0 and out["omp_wait_policy_at_torch_load"] == "PASSIVE"
    assert out["threads"]["default"]["chosen"] == out["threads"]["torch_threads"] >= 1
    done = subprocess.run([sys.executable, str(script), "--worker", "1", "--stages", "eval", "--repeats", "1"],
                          env=env, capture_output=True, text=True, timeout=300, check=True)
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["threads"]["torch_threads"] == 1 and out["threads"]["default"] is None


def test_other_load_counts_only_the_cpus_this_process_may_use(monkeypatch: pytest.MonkeyPatch) -> None:
    """Busy fraction of the allowed CPUs times their number (a busy host outside the affinity set does not count)."""
    samples = iter([(100, 1000, 2), (1100, 2000, 2)])  # busy jiffies, total jiffies, CPUs: 1000 of 1000 busy
    seen: list = []

    def fake(cpus):
        seen.append(cpus)
        return next(samples)

    monkeypatch.setattr(threads_mod, "_allowed_cpus", lambda: {0, 3})
    monkeypatch.setattr(threads_mod, "_cpu_times", fake)
    assert threads_mod.other_load(0.0) == (2.0, "proc-stat") and seen == [{0, 3}, {0, 3}]
    if __import__("os").path.exists("/proc/stat"):
        monkeypatch.undo()
        one = threads_mod._cpu_times({0})
        every = threads_mod._cpu_times(None)
        assert one is not None and every is not None and one[2] == 1 and every[2] == (__import__("os").cpu_count())
