"""Chapter 8: sparse kernels compute what the masked dense model computes, and train the same way."""
import math

import pytest
import torch
from torch import nn

from rpbook import kernels as K
from rpbook.experiments import get_experiment, run_experiment
from rpbook.experiments.kernel_timings import crossovers, speedups
from rpbook.experiments.structure_accuracy import accuracy_table
from rpbook.init import initialize_
from rpbook.masks import mask_model
from rpbook.models import MLP, LeNet5
from rpbook.results import ResultStore


@pytest.fixture(autouse=True)
def one_thread():
    # tiny layers: a second thread only adds synchronisation (and waits for a core on a busy machine)
    with K.fixed_threads(1):
        yield


def masked_mlp(density=0.1, seed=0, hidden=(64, 48)):
    model = MLP(40, hidden, 10)
    masking = mask_model(model, density, "er", seed=seed)
    initialize_(model, "unit-scaled", seed=seed)
    return model, masking


def test_csr_mlp_forward_equals_masked_dense_and_leaves_the_original_alone():
    model, _ = masked_mlp()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    sparse = K.sparsify(model)
    assert all(isinstance(getattr(sparse, f"fc{i}"), K.CSRLinear) for i in (1, 2, 3))
    x = torch.randn(17, 40, generator=torch.Generator().manual_seed(1))
    assert torch.allclose(sparse(x), model(x), atol=1e-5, rtol=1e-5)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())
    # the sparse model stores exactly the kept weights
    for i in (1, 2, 3):
        dense_layer, csr = getattr(model, f"fc{i}"), getattr(sparse, f"fc{i}")
        assert csr.nnz == int(dense_layer.weight_mask.sum())
        assert torch.equal(csr.mask(), dense_layer.weight_mask.bool())
        assert torch.equal(csr.to_dense_weight(), dense_layer.weight.detach())


def test_csr_conv_net_forward_equals_masked_dense():
    torch.manual_seed(0)
    net = LeNet5((1, 28, 28))
    mask_model(net, 0.2, "er", seed=0, dense_first=False)
    sparse = K.sparsify(net)
    assert isinstance(sparse.features.conv2, K.CSRConv2d)
    assert sparse.features.conv2.linear.nnz == int(net.features.conv2.weight_mask.sum())
    x = torch.randn(3, 1, 28, 28, generator=torch.Generator().manual_seed(2))
    assert torch.allclose(sparse(x), net(x), atol=1e-5, rtol=1e-4)
    with pytest.raises(ValueError, match="groups=1"):
        K.CSRConv2d(nn.Conv2d(4, 4, 3, groups=2))


def test_bsr_layer_forward_equals_masked_dense():
    gen = torch.Generator().manual_seed(0)
    mask = K.block_mask((64, 32), 0.25, 8, generator=gen)
    layer = nn.Linear(32, 64)
    with torch.no_grad():
        layer.weight.mul_(mask)
    bsr = K.sparsify(layer, layout="bsr", blocksize=8)
    assert isinstance(bsr, K.BSRLinear)
    x = torch.randn(5, 32, generator=gen)
    assert torch.allclose(bsr(x), layer(x), atol=1e-5)
    # a block layout stores one index per block instead of one per weight
    assert K.weight_bytes(bsr)["indices"] < K.weight_bytes(K.sparsify(layer))["indices"]
    with pytest.raises(ValueError, match="blocksize"):
        K.sparsify(layer, layout="bsr", blocksize=5)
    with pytest.raises(ValueError, match="unknown layout 'coo'"):
        K.sparsify(layer, layout="coo")


def test_gradients_only_at_kept_positions_equal_the_masked_dense_ones():
    model, _ = masked_mlp(density=0.2)
    sparse = K.sparsify(model)
    x = torch.randn(9, 40, generator=torch.Generator().manual_seed(3), requires_grad=True)
    xs = x.detach().clone().requires_grad_(True)
    y = torch.randint(0, 10, (9,), generator=torch.Generator().manual_seed(4))
    nn.functional.cross_entropy(model(x), y).backward()
    nn.functional.cross_entropy(sparse(xs), y).backward()
    assert torch.allclose(xs.grad, x.grad, atol=1e-6)
    for i in (1, 2, 3):
        dense_layer, csr = getattr(model, f"fc{i}"), getattr(sparse, f"fc{i}")
        rows, cols = csr.rows_cols()
        assert csr.values.grad.shape == (csr.nnz,)          # no dense-sized gradient
        assert torch.allclose(csr.values.grad, dense_layer.weight.grad[rows, cols], atol=1e-6)
        assert torch.allclose(csr.bias.grad, dense_layer.bias.grad, atol=1e-6)


def test_sparse_training_follows_the_masked_dense_loss_trajectory():
    model, masking = masked_mlp(density=0.1, seed=5)
    sparse = K.sparsify(model)
    gen = torch.Generator().manual_seed(6)
    x, y = torch.randn(64, 40, generator=gen), torch.randint(0, 10, (64,), generator=gen)
    opt_d = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    opt_s = torch.optim.SGD(sparse.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    dense_losses, sparse_losses = [], []
    for step in range(25):  # full batch: the loss falls steadily
        dense_losses.append(K.training_step(model, opt_d, x, y, masking))
        sparse_losses.append(K.training_step(sparse, opt_s, x, y))
    assert dense_losses[-1] < 0.8 * dense_losses[0]  # it learned something, so the comparison means something
    assert max(abs(a - b) for a, b in zip(dense_losses, sparse_losses)) < 1e-4
    for i in (1, 2, 3):  # and the weights end up where the masked dense ones are
        assert torch.allclose(getattr(sparse, f"fc{i}").to_dense_weight(), getattr(model, f"fc{i}").weight.detach(),
                              atol=1e-4)


def test_rewire_keeps_the_count_survivors_and_their_momentum():
    model, _ = masked_mlp(density=0.1)
    sparse = K.sparsify(model)
    layer = sparse.fc2
    opt = torch.optim.SGD(sparse.parameters(), lr=0.1, momentum=0.9)
    x, y = torch.randn(8, 40), torch.randint(0, 10, (8,))
    K.training_step(sparse, opt, x, y)
    before = {(int(r), int(c)): (float(v), float(m)) for r, c, v, m in
              zip(*layer.rows_cols(), layer.values.detach(), opt.state[layer.values]["momentum_buffer"])}
    param = layer.values
    k = layer.rewire_(0.3, generator=torch.Generator().manual_seed(0), optimizer=opt)
    assert k == round(0.3 * len(before)) and layer.nnz == len(before) and layer.values is param
    after = {(int(r), int(c)): (float(v), float(m)) for r, c, v, m in
             zip(*layer.rows_cols(), layer.values.detach(), opt.state[layer.values]["momentum_buffer"])}
    by_size = sorted(before, key=lambda key: abs(before[key][0]))
    dropped, survivors = set(by_size[:k]), set(by_size[k:])  # the k smallest magnitudes go
    assert survivors <= set(after) and all(after[key] == before[key] for key in survivors)
    # grown positions (a just-dropped one may come back) start at zero, with zero momentum
    assert all(after[key] == (0.0, 0.0) for key in set(after) - survivors)
    assert torch.equal(layer.weight_t_csr().to_dense(), layer.to_dense_weight().t())
    K.training_step(sparse, opt, x, y)  # still trains
    # RigL: grow where the dense gradient is largest
    grad = torch.zeros(layer.out_features, layer.in_features)
    free = (~layer.mask()).nonzero()[:5]
    grad[free[:, 0], free[:, 1]] = 10.0
    layer.rewire_(5 / layer.nnz, grow="gradient", dense_grad=grad)
    assert layer.mask()[free[:, 0], free[:, 1]].all()
    with pytest.raises(ValueError, match="grow must be"):
        layer.rewire_(0.1, grow="magnitude")


def test_structured_masks_have_the_density_and_the_structure():
    gen = torch.Generator().manual_seed(0)
    m = K.nm_mask((32, 64), 2, 4, generator=gen)
    assert K.is_nm(m, 2, 4) and float(m.float().mean()) == 0.5
    assert K.nm_for_density(0.5) == (2, 4) and K.nm_for_density(0.125) == (1, 8)
    with pytest.raises(ValueError, match="no N:M pattern"):
        K.nm_for_density(0.3)
    b = K.block_mask((64, 64), 0.25, 8, generator=gen)
    assert float(b.float().mean()) == 0.25
    tiles = b.reshape(8, 8, 8, 8).permute(0, 2, 1, 3).reshape(64, 64)
    assert bool(((tiles.sum(1) == 0) | (tiles.sum(1) == 64)).all())  # whole tiles only
    for pattern in K.PATTERNS:  # same seed, same mask bit for bit
        a = K.structured_mask((48, 40), 0.25, pattern, generator=torch.Generator().manual_seed(3))
        c = K.structured_mask((48, 40), 0.25, pattern, generator=torch.Generator().manual_seed(3))
        assert torch.equal(a, c)
    with pytest.raises(ValueError, match="unknown mask pattern 'diagonal'"):
        K.structured_mask((4, 4), 0.5, "diagonal")


def test_memory_accounting_counts_values_and_indices():
    model, masking = masked_mlp(density=0.05)
    sparse = K.sparsify(model)
    nnz = sum(int(m.sum()) for m in masking.masks.values())
    expected = sum(K.csr_bytes(l.out_features, l.in_features, l.nnz) for l in (sparse.fc1, sparse.fc2, sparse.fc3))
    assert K.weight_bytes(sparse) == {"values": 4 * nnz, "indices": expected - 4 * nnz, "total": expected}
    assert K.weight_bytes(model)["total"] == 4 * sum(m.numel() for m in masking.masks.values())


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on machines without CUDA")
def test_semi_structured_path_refuses_without_cuda():
    with pytest.raises(ValueError, match="needs a CUDA GPU"):
        K.semi_structured_linear(nn.Linear(64, 64))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="2:4 sparse tensor cores need a CUDA GPU")
def test_semi_structured_matches_masked_dense_on_cuda():  # pragma: no cover - runs on GPU machines only
    layer = nn.Linear(128, 128)
    mask = K.nm_mask((128, 128), 2, 4, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        layer.weight.mul_(mask)
    fast = K.semi_structured_linear(layer, mask)
    x = torch.randn(64, 128).half().cuda()
    ref = layer.half().cuda()(x)
    assert torch.allclose(fast(x), ref, atol=1e-2, rtol=1e-2)


def test_timing_helpers_and_crossover():
    calls = []
    t = K.median_time(lambda: calls.append(1), repeats=3, warmup=2)
    assert t >= 0 and len(calls) == 5
    times = K.interleaved_median_times({"a": lambda: None, "b": lambda: sum(range(1000))}, repeats=3, warmup=0)
    assert set(times) == {"a", "b"} and times["b"] > times["a"]
    with K.fixed_threads(1):
        assert torch.get_num_threads() == 1
    with pytest.raises(ValueError, match="threads"):
        with K.fixed_threads(0):
            pass
    with pytest.raises(ValueError, match="repeats"):
        K.median_time(lambda: None, repeats=0)
    # speed-up 4 at p=0.01, 1 at p=0.1 exactly: the crossover is 0.1; between grid points it interpolates in log-log
    assert K.crossover_density([0.01, 0.1, 0.5], [4.0, 1.0, 0.5]) == pytest.approx(0.1)
    assert K.crossover_density([0.01, 0.1], [4.0, 0.25]) == pytest.approx(math.sqrt(0.01 * 0.1))
    assert K.crossover_density([0.01, 0.1], [0.9, 0.5]) is None
    assert K.crossover_density([0.01, 0.1], [9.0, 2.0]) == 0.1
    desc = K.machine_description()
    assert desc["cpu_capability"] and desc["logical_cpus"] >= 1


def test_experiments_run_at_quick_and_refuse_bad_configs(tmp_path):
    exp = get_experiment("kernel_timings")
    with pytest.raises(ValueError, match="no N:M pattern"):
        exp.config("quick", structure_densities=(0.3,))
    with pytest.raises(ValueError, match="widths"):
        exp.config("quick", widths=(0,))
    config = exp.config("quick", repeats=1, warmup=0, densities=(0.1,), batches=(2,))
    rec = run_experiment("kernel_timings", "quick", config=config, store=ResultStore(tmp_path), progress=False)
    res = rec["result"]
    assert [(r["width"], r["density"], r["batch"]) for r in res["mlp"]] == [(64, 0.1, 2)]
    row = res["mlp"][0]
    assert all(row[k] > 0 for k in ("infer_dense_s", "infer_sparse_s", "train_masked_s", "train_sparse_s"))
    assert row["bytes_values"] == 4 * row["nnz"] and row["bytes_dense"] == 4 * (40 * 64 + 64 * 64 + 64 * 10)
    assert {(r["pattern"], r["kernel"]) for r in res["structure"]} == {("er", "csr"), ("block", "csr"),
                                                                         ("block", "bsr"), ("nm", "csr")}
    assert speedups(res)[0]["ideal"] == pytest.approx(10.0) and len(crossovers(res, kind="train")) == 1
    with pytest.raises(ValueError, match="patterns"):
        get_experiment("structure_accuracy").config("quick", patterns=("er", "er"))
    acc = get_experiment("structure_accuracy").config("quick", densities=(0.5,), patterns=("er", "nm"), seeds=(0,),
                                                        n_train=200)
    out = run_experiment("structure_accuracy", "quick", config=acc, store=ResultStore(tmp_path), progress=False,
                         device="cpu")["result"]
    table = accuracy_table(out)
    assert [(r["pattern"], r["density"]) for r in table] == [("dense", 1.0), ("er", 0.5), ("nm", 0.5)]
    assert all(0 <= r["mean"] <= 1 for r in table)
