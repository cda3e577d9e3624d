import dataclasses

import pytest
import torch

from rem_unlearn.checkpoint import CheckpointError, load_weights, read_meta, save_checkpoint
from rem_unlearn.config import ConfigError, CorruptionConfig, ExperimentConfig, load_config
from rem_unlearn.corruptions import corrupt, discovered_ids
from rem_unlearn.experiment import model_key
from rem_unlearn.models import ResNet9, build_model, partition, partition_state
from rem_unlearn.models.gates import example_masks
from rem_unlearn.training import Runtime, train_model
from rem_unlearn.config import TrainConfig

from conftest import make_toy


@pytest.mark.parametrize("kind", ["random", "interclass", "poison"])
def test_corruption_counts_exact_and_labels_changed(kind):
    data = make_toy(n=400, classes=4)
    c = corrupt(data, CorruptionConfig(kind=kind, size=40, seed=3, class_pair=(1, 2)))
    rows = c.corrupted_rows
    assert len(c.corrupted_ids) == 40 == len(torch.unique(c.corrupted_ids))
    assert bool((c.train.labels[rows] != c.true_labels[rows]).all())
    untouched = torch.ones(len(data), dtype=torch.bool)
    untouched[rows] = False
    assert torch.equal(c.train.labels[untouched], data.labels[untouched])
    if kind == "poison":
        assert bool(c.train.triggered[rows].all()) and int(c.train.triggered.sum()) == 40
        assert bool((c.train.labels[rows] == 0).all())
    if kind == "interclass":
        assert sorted(c.true_labels[rows].tolist()) == [1] * 20 + [2] * 20
    again = corrupt(data, CorruptionConfig(kind=kind, size=40, seed=3, class_pair=(1, 2)))
    assert torch.equal(again.corrupted_ids, c.corrupted_ids)


def test_corruption_fraction_and_errors():
    data = make_toy(n=400)
    assert len(corrupt(data, CorruptionConfig(kind="random", size=0.05)).corrupted_ids) == 20
    with pytest.raises(ValueError, match="larger than the training set"):
        corrupt(data, CorruptionConfig(kind="random", size=401))
    with pytest.raises(ValueError, match="only 100 available"):
        corrupt(data, CorruptionConfig(kind="interclass", size=300, class_pair=(0, 1)))


def test_discovery_nested_and_validated():
    ids = torch.arange(1000, 1200)
    sets = [set(discovered_ids(ids, r, seed=5).tolist()) for r in (0.1, 0.3, 0.5, 1.0)]
    assert [len(s) for s in sets] == [20, 60, 100, 200]
    assert sets[0] <= sets[1] <= sets[2] <= sets[3] == set(ids.tolist())
    assert set(discovered_ids(ids, 0.1, seed=6).tolist()) != sets[0]
    for bad in (0.0, -0.1, 1.5):
        with pytest.raises(ValueError, match="discovery rate"):
            discovered_ids(ids, bad, seed=0)


def test_masks_deterministic_and_batch_order_independent():
    ids = torch.tensor([5, 17, 3, 99999, 0])
    a = example_masks(ids, 64, group=1, seed=0, p_mem=0.2)
    perm = torch.tensor([3, 0, 4, 1, 2])
    b = example_masks(ids[perm], 64, group=1, seed=0, p_mem=0.2)
    assert torch.equal(a[perm], b)
    assert not torch.equal(a, example_masks(ids, 64, group=2, seed=0, p_mem=0.2))
    assert not torch.equal(a, example_masks(ids, 64, group=1, seed=1, p_mem=0.2))
    rate = example_masks(torch.arange(2000), 64, 0, 0, 0.2).float().mean()
    assert 0.18 < float(rate) < 0.22

    model = ResNet9(4, 1, width=0.125).eval()
    partition_state(model).p_mem = 0.2
    x = torch.randn(5, 1, 12, 12)
    with partition(model, "own", ids=ids):
        full = model(x)
    with partition(model, "own", ids=ids[perm]):
        permuted = model(x[perm])
    torch.testing.assert_close(full[perm], permuted)


def test_shared_mask_routing():
    model = ResNet9(4, 1, width=0.125).eval()
    partition_state(model).p_mem = 0.5
    gate = model.gate1
    ids = torch.tensor([0, 1, 2, 3])
    with partition(model, "shared", ids=ids, shared_ids=torch.tensor([1, 3])):
        m = gate.unit_mask()
    assert torch.equal(m[1], m[3])
    with partition(model, "own", ids=ids):
        own = gate.unit_mask()
    assert torch.equal(m[0], own[0]) and torch.equal(m[2], own[2])
    assert not torch.equal(m[1], own[0])  # the shared key never equals sample 0's own mask key


def test_drop_mode_independent_of_second_half():
    torch.manual_seed(0)
    model = ResNet9(4, 1, width=0.25).eval()
    x = torch.randn(3, 1, 12, 12)
    before = model(x)
    masks = model.redirection_parameters()
    with torch.no_grad():
        for name, p in model.named_parameters():
            p[masks[name]] = torch.randn(int(masks[name].sum()))
    torch.testing.assert_close(model(x), before)
    with partition(model, "full"):
        assert not torch.allclose(model(x), before)


def test_capacity_model_second_half_gets_no_gradient():
    data = make_toy(n=64)
    model = ResNet9(4, 1, width=0.125)
    rt = Runtime.from_config()
    x = torch.randn(8, 1, 12, 12)
    with partition(model, "own", ids=torch.arange(8)):  # p_mem = 0: capacity 0.5
        model(x).sum().backward()
    masks = model.redirection_parameters()
    for name, p in model.named_parameters():
        if masks[name].any() and "1.bias" not in name and "1.weight" not in name:
            assert float(p.grad[masks[name]].abs().max()) == 0.0, name
    # and training leaves them at initialisation, except weight decay
    cfg = TrainConfig(epochs=1)
    cfg.optim.weight_decay = 0.0
    cfg.optim.batch_size = 32
    start = {k: v.clone() for k, v in model.state_dict().items()}
    train_model(model, data, cfg, rt)
    for name, p in model.named_parameters():
        if "conv" in name and name.endswith(".0.weight"):
            assert torch.equal(p.detach()[masks[name]], start[name][masks[name]]), name


def test_export_equals_drop_mode():
    torch.manual_seed(1)
    model = ResNet9(4, 1, width=0.25)
    partition_state(model).p_mem = 0.2
    with partition(model, "own", ids=torch.arange(16)):
        model(torch.randn(16, 1, 12, 12))  # move BN statistics
    model.eval()
    small = model.discard_redirection().eval()
    x = torch.randn(6, 1, 12, 12)
    torch.testing.assert_close(small(x), model(x), atol=1e-5, rtol=1e-5)
    assert sum(p.numel() for p in small.parameters()) < sum(p.numel() for p in model.parameters())


def test_checkpoint_round_trip_and_wrong_architecture(tmp_path):
    model = ResNet9(4, 1, width=0.125)
    path = save_checkpoint(model, tmp_path / "m.safetensors", {"note": "x"})
    other = ResNet9(4, 1, width=0.125)
    load_weights(other, path)
    for k, v in model.state_dict().items():
        assert torch.equal(v, other.state_dict()[k])
    assert read_meta(path)["note"] == "x" and read_meta(path)["arch"]["channels"] == model.arch["channels"]
    with pytest.raises(CheckpointError, match="shape mismatch"):
        load_weights(ResNet9(4, 1, width=0.25), path)
    with pytest.raises(CheckpointError, match="missing"):
        load_weights(ResNet9(4, 1, width=0.125, partitioned=True, res_channels=(4, 8)).fc, path)


def test_cache_key_changes_with_every_seed():
    base = ExperimentConfig()
    keys = {model_key(base, "data")}
    for section, name in [("corruption", "seed"), ("train", "seed"), ("model", "mask_seed"), ("data", "subset_seed")]:
        cfg = ExperimentConfig()
        setattr(getattr(cfg, section), name, 7)
        keys.add(model_key(cfg, "data"))
    keys.add(model_key(base, "other data"))  # the training split's content is part of the key
    cfg = ExperimentConfig()
    cfg.data.root = "/elsewhere"  # where the files are does not change the model, only what they hold
    assert model_key(cfg, "data") == model_key(base, "data")
    assert len(keys) == 6


def test_config_errors_name_valid_choices(tmp_path):
    with pytest.raises(ConfigError, match="valid keys: .*epochs"):
        load_config(ExperimentConfig, overrides=["train.epoch=3"])
    with pytest.raises(ConfigError, match="fashion-mnist"):
        load_config(ExperimentConfig, overrides=["data.name=mnist"])
    with pytest.raises(ConfigError, match="poison"):
        load_config(ExperimentConfig, overrides=["corruption.kind=backdoor"])
    f = tmp_path / "c.toml"
    f.write_text('[train]\nepochs = 4\n[corruption]\nkind = "random"\n')
    cfg = load_config(ExperimentConfig, f, ["train.optim.lr=0.1"])
    assert cfg.train.epochs == 4 and cfg.corruption.kind == "random" and cfg.train.optim.lr == 0.1
    y = tmp_path / "c.yaml"
    y.write_text("model:\n  width: 0.5\n")
    assert load_config(ExperimentConfig, y).model.width == 0.5


def test_unknown_dataset_is_clear_error():
    from rem_unlearn.data import load_dataset

    with pytest.raises(ValueError, match="valid names"):
        load_dataset("imagenet")


def test_build_model_sets_variant_p_mem():
    cfg = ExperimentConfig().model
    cfg = dataclasses.replace(cfg, width=0.125, variant="etd")
    model = build_model(cfg, 1, 10, 28)
    assert partition_state(model).p_mem == 0.2
    assert model(torch.randn(2, 1, 28, 28)).shape == (2, 10)


@pytest.mark.parametrize("native", [True, False])
def test_auto_precision_is_bf16_only_where_the_cpu_has_it(native, monkeypatch):
    """auto is bf16 on a CPU with AVX512-BF16 or AMX and fp32 elsewhere (emulated bf16 runs at a tenth of fp32);
    the model cache and a bench cell's key follow what runs, so an fp32 model is never reused as a bf16 one."""
    from rem_unlearn.bench.grid import BENCH_FORMAT, grid_dict, grid_id, keyed_experiment, load_grid
    from rem_unlearn.checkpoint import cache_key
    from rem_unlearn.config import RuntimeConfig

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: native)
    assert Runtime.from_config(RuntimeConfig(progress=False)).precision == ("bf16" if native else "fp32")
    assert Runtime.from_config(RuntimeConfig(precision="fp16")).autocast_dtype is torch.bfloat16  # no fp16 on CPU
    assert Runtime.from_config(RuntimeConfig(precision="bf16")).precision == "bf16"  # asked for: kept
    auto, fp32 = ExperimentConfig(), ExperimentConfig()
    fp32.runtime.precision = "fp32"
    assert (model_key(auto, "data") == model_key(fp32, "data")) == (not native)
    # Keys name auto as they always did where it means bf16 (earlier records keep their keys), else as fp32; so
    # does a results folder's grid id: bf16 cells are not resumed in fp32.
    assert keyed_experiment(auto)["runtime"]["precision"] == ("auto" if native else "fp32")
    grid = load_grid("smoke")
    as_it_was = {k: v for k, v in grid_dict(grid).items() if k != "seeds"}
    assert (grid_id(grid) == cache_key({"bench_format": BENCH_FORMAT, "grid": as_it_was})) == native
