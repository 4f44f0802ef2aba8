"""SET and RigL as training callbacks (chapter 5, appendix *Formulas and notation*, pruning scores and dynamic sparse training)."""
import math
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from rpbook.dst import SET, DynamicSparseTraining, RigL, cosine_drop_fraction, drop_and_grow
from rpbook.gradflow import masked_gradients
from rpbook.init import initialize_
from rpbook.masks import Masking, sample_masks
from rpbook.train import Callback, TrainConfig, fit


def toy_data(n=330, d=12, classes=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g)
    y = (x @ torch.randn(d, classes, generator=g)).argmax(1)
    return SimpleNamespace(name="toy", x_train=x[:240], y_train=y[:240], x_val=x[240:270], y_val=y[240:270],
                           x_test=x[270:], y_test=y[270:], task="classification", in_shape=(d,), num_classes=classes)


def sparse_net(density=0.2, seed=0, dense_last=False):
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(12, 40), nn.ReLU(), nn.Linear(40, 24), nn.ReLU(), nn.Linear(24, 4))
    masks = sample_masks(model, density, "uniform", seed=seed)
    if dense_last:
        masks["4"] = torch.ones(4, 24, dtype=torch.bool)
    masking = Masking(model, masks)
    initialize_(model, "unit-scaled", seed=seed)
    return model, masking


class Watch(Callback):
    """Masks, weights and momentum right after every step (after any mask update of that step)."""

    def __init__(self):
        self.rows = []

    def on_step_end(self, state):
        mom = {}
        for name, m in state.model.named_children():
            buf = state.optimizer.state.get(m.weight, {}).get("momentum_buffer") if hasattr(m, "weight") else None
            if buf is not None:
                mom[name] = buf.clone()
        self.rows.append({"step": state.step, "masks": state.masking.masks, "momentum": mom,
                          "weights": {n: m.weight.detach().clone() for n, m in state.model.named_children()
                                      if hasattr(m, "weight")}})


CFG = TrainConfig(epochs=4, batch_size=24, lr=0.05, seed=0)  # 10 steps per epoch, 40 steps


@pytest.mark.parametrize("cls", [SET, RigL])
def test_updates_keep_every_layers_count_and_stay_in_the_layer(cls):
    data = toy_data()
    model, masking = sparse_net(dense_last=True)
    start = masking.masks
    dst, watch = cls(update_every=5, drop_fraction=0.3), Watch()
    fit(model, data, CFG, masking=masking, callbacks=[dst, watch], progress=False, device="cpu")
    assert [e["step"] for e in dst.events] == [5, 10, 15, 20, 25]  # none at or after 75 % of 40 steps
    assert all(e["swapped"] > 0 for e in dst.events[:3])
    for row in watch.rows:
        for name, mask in row["masks"].items():
            assert mask.shape == start[name].shape
            assert int(mask.sum()) == int(start[name].sum())
    # The dense last layer is never touched; the sparse layers did change.
    assert torch.equal(masking.masks["4"], start["4"]) and "4" not in dst.events[0]["per_layer"]
    assert any(not torch.equal(masking.masks[n], start[n]) for n in ("0", "2"))
    # After the last update the mask is frozen.
    frozen = [r for r in watch.rows if r["step"] >= 25]
    for a, b in zip(frozen, frozen[1:]):
        assert all(torch.equal(a["masks"][n], b["masks"][n]) for n in a["masks"])


@pytest.mark.parametrize("cls", [SET, RigL])
def test_regrown_weights_start_at_zero_with_reset_momentum(cls):
    data = toy_data()
    model, masking = sparse_net()
    dst, watch = cls(update_every=10, drop_fraction=0.3), Watch()
    fit(model, data, CFG, masking=masking, callbacks=[dst, watch], progress=False, device="cpu")
    by_step = {r["step"]: r for r in watch.rows}
    for event in dst.events:
        before, after = by_step[event["step"] - 1], by_step[event["step"]]
        for name in event["per_layer"]:
            m0, m1 = before["masks"][name], after["masks"][name]
            grown = m1 & ~m0
            assert grown.any()
            assert torch.all(after["weights"][name][grown] == 0)
            assert torch.all(after["momentum"][name][grown] == 0)
            assert torch.all(after["weights"][name][~m1] == 0)
            assert torch.all(after["momentum"][name][~m1] == 0)
            # Survivors keep training: their momentum is not wiped.
            assert after["momentum"][name][m0 & m1].abs().sum() > 0


def test_drop_and_grow_by_magnitude_and_score():
    g = torch.Generator().manual_seed(0)
    weight = torch.randn(10, 10, generator=g)
    mask = torch.rand(10, 10, generator=g) < 0.4
    weight = weight * mask
    scores = torch.rand(10, 10, generator=g)
    after_drop, after_grow, k = drop_and_grow(weight, mask, scores, 0.25)
    assert k == round(0.25 * int(mask.sum()))
    dropped = mask & ~after_drop
    assert int(dropped.sum()) == k and not (after_drop & ~mask).any()
    assert float(weight[dropped].abs().max()) <= float(weight[after_drop].abs().min())
    grown = after_grow & ~after_drop
    assert int(grown.sum()) == k and int(after_grow.sum()) == int(mask.sum())
    candidates = ~after_drop & ~grown
    assert float(scores[grown].min()) >= float(scores[candidates].max())


def test_rigl_grows_where_the_dense_gradient_is_largest():
    data = toy_data()
    model, masking = sparse_net()
    batch = (data.x_train[:100], data.y_train[:100])
    with masking.unmasked_gradients():
        dense = masked_gradients(model, *batch, masked=False)
    start = masking.masks
    rigl = RigL(update_every=1, grow_batch=batch, end=1.0)
    state = SimpleNamespace(model=model, masking=masking, optimizer=torch.optim.SGD(model.parameters(), lr=0.1),
                            step=1, data=data, batch=None)
    rigl.update(state, 0.3)
    for name, mask in masking.masks.items():
        grown = mask & ~start[name]
        # Grown positions beat every position that was inactive and stayed inactive.
        left_out = ~mask & ~start[name]
        if grown.any():
            assert float(dense[name].abs()[grown].min()) >= float(dense[name].abs()[left_out].max())


def test_cosine_decay_of_the_drop_fraction():
    assert cosine_drop_fraction(0, 100, 0.3) == pytest.approx(0.3)
    assert cosine_drop_fraction(50, 100, 0.3) == pytest.approx(0.15)
    assert cosine_drop_fraction(100, 100, 0.3) == 0.0
    values = [cosine_drop_fraction(t, 100) for t in range(101)]
    assert all(b <= a for a, b in zip(values, values[1:]))


def test_same_seed_same_masks_and_measurements():
    data = toy_data()
    runs = []
    for _ in range(2):
        model, masking = sparse_net()
        dst = SET(update_every=5, seed=3, measure_batch=(data.x_train[:64], data.y_train[:64]))
        fit(model, data, CFG, masking=masking, callbacks=[dst], progress=False, device="cpu")
        runs.append((masking.masks, dst.events))
    assert all(torch.equal(runs[0][0][n], runs[1][0][n]) for n in runs[0][0])
    assert runs[0][1] == runs[1][1]
    assert all(math.isfinite(e["grad_norm_before"]) and math.isfinite(e["grad_norm_after"]) for e in runs[0][1])


def test_bad_options_are_rejected():
    with pytest.raises(ValueError, match="grow criterion"):
        DynamicSparseTraining("momentum")
    with pytest.raises(ValueError, match="drop_fraction"):
        RigL(drop_fraction=1.5)
    with pytest.raises(ValueError, match="update_every"):
        SET(update_every=0)
    with pytest.raises(ValueError, match="end"):
        SET(end=0)
    model = nn.Sequential(nn.Linear(12, 4))
    with pytest.raises(ValueError, match="masking"):
        fit(model, toy_data(), TrainConfig(epochs=1), callbacks=[SET()], progress=False)


