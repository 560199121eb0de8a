"""`execute` (the function behind `bench run`) opens the results store once and starts the run once; a failing run
is marked failed through that same store."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.run import runner
from bench.run.plan import RunRequest
from bench.store import Store


class _Counted(Store):
    opened = 0
    starts: list[str] = []

    def __init__(self, *args, **kwargs) -> None:
        type(self).opened += 1
        super().__init__(*args, **kwargs)

    def start_run(self, run_id, spec, config_id=None) -> None:
        type(self).starts.append(run_id)
        super().start_run(run_id, spec, config_id)


def _request(results: Path) -> RunRequest:
    return RunRequest(attack="mean-image", profile="smoke", n_train=6, n_test=4, metrics=("psnr",), results=results,
                      progress=False)


@pytest.fixture()
def counted(monkeypatch: pytest.MonkeyPatch) -> type[_Counted]:
    monkeypatch.setattr(_Counted, "opened", 0)
    monkeypatch.setattr(_Counted, "starts", [])
    monkeypatch.setattr(runner, "Store", _Counted)
    return _Counted


def test_execute_opens_the_store_once_and_starts_the_run_once(tmp_path: Path, counted: type[_Counted]) -> None:
    result = runner.execute(_request(tmp_path))
    assert counted.opened == 1
    assert counted.starts == [result.run_id]
    with Store(tmp_path / "bench.sqlite") as store:
        assert store.run(result.run_id)["status"] == "done"
        assert store.set_metrics(result.run_id)["psnr"]["status"] == "ok"


def test_a_failing_run_is_marked_failed_through_the_same_store(tmp_path: Path, counted: type[_Counted],
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(req: RunRequest, p: object) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(runner, "compute", boom)
    with pytest.raises(RuntimeError, match="boom"):
        runner.execute(_request(tmp_path))
    assert counted.opened == 1 and len(counted.starts) == 1
    with Store(tmp_path / "bench.sqlite") as store:
        run = store.run(counted.starts[0])
    assert run["status"] == "failed" and "RuntimeError: boom" in run["error"]
