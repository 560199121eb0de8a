"""bench.nn.distributed: 2 processes (gloo, CPU) each on half of a global batch follow the loss trajectory of one
process on the whole batch; only rank 0 writes. Tolerance: 1e-6 absolute on every logged loss and final weight
(float32 sums in a different order)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from bench.nn import distributed

WORKER = r'''
import json, sys
import numpy as np
import torch
from bench.nn import distributed as d

out, store = sys.argv[1], sys.argv[2]
d.init("gloo", f"file://{store}")
torch.manual_seed(0)
net = torch.nn.Sequential(torch.nn.Linear(6, 16), torch.nn.Tanh(), torch.nn.Linear(16, 1))
opt = torch.optim.Adam(net.parameters(), lr=1e-2)
g = torch.Generator().manual_seed(1)
x = torch.randn(32, 6, generator=g)
y = torch.randn(32, 1, generator=g)
order = np.random.default_rng(2)
losses = []
for step in range(12):
    batch = order.permutation(32)[:8]          # the same global batch on every rank
    mine = torch.from_numpy(d.shard(batch))    # this rank's half
    loss = torch.nn.functional.mse_loss(net(x[mine]), y[mine])
    opt.zero_grad()
    loss.backward()
    d.average_gradients(net.parameters())
    opt.step()
    losses.append(d.mean_over_ranks(loss.item()))
if d.is_main():
    weights = torch.cat([p.detach().reshape(-1) for p in net.parameters()]).tolist()
    json.dump({"losses": losses, "weights": weights, "world": d.world()}, open(out, "w"))
d.barrier()
'''


def _run(tmp_path: Path, nproc: int) -> dict:
    script = tmp_path / "worker.py"
    script.write_text(WORKER, encoding="utf-8")
    out = tmp_path / f"out{nproc}.json"
    store = tmp_path / f"store{nproc}"
    env = {**os.environ, "WORLD_SIZE": str(nproc), "OMP_NUM_THREADS": "1"}
    procs = [subprocess.Popen([sys.executable, str(script), str(out), str(store)],
                              env={**env, "RANK": str(r), "LOCAL_RANK": str(r)}) for r in range(nproc)]
    codes = [p.wait(timeout=240) for p in procs]
    assert codes == [0] * nproc
    return json.loads(out.read_text(encoding="utf-8"))


def test_two_gloo_processes_follow_the_single_process_trajectory(tmp_path: Path) -> None:
    one = _run(tmp_path, 1)
    two = _run(tmp_path, 2)
    assert one["world"] == [0, 1] and two["world"] == [0, 2]
    assert len(two["losses"]) == 12
    np.testing.assert_allclose(two["losses"], one["losses"], rtol=0, atol=1e-6)
    np.testing.assert_allclose(two["weights"], one["weights"], rtol=0, atol=1e-6)
    assert len(set(one["losses"])) == 12  # every step a different batch and different weights


def test_alone_everything_is_a_no_op(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    monkeypatch.delenv("RANK", raising=False)
    assert distributed.world() == (0, 1) and distributed.is_main() and not distributed.init()
    idx = np.arange(8)
    assert distributed.shard(idx) is idx and distributed.mean_over_ranks(2.5) == 2.5
    distributed.barrier()


def test_shard_splits_a_global_batch_by_rank(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("RANK", "2")
    assert distributed.shard(np.arange(8)).tolist() == [4, 5] and not distributed.is_main()
    with pytest.raises(ValueError, match="divide"):
        distributed.shard(np.arange(6))
