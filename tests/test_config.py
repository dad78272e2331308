import pytest

from clcc.config import config_differences, dump_config, load_config
from clcc.errors import ClccError


def test_yaml_then_dotted_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("train:\n  epochs: 7\nmethod:\n  name: clcc\n  params: {n: 4}\n")
    cfg = load_config(path, ["train.epochs=9", "method.params.tau=0.1", "model.widths=[8,16]"])
    assert cfg.train.epochs == 9 and cfg.method.name == "clcc"
    assert cfg.method.params == {"n": 4, "tau": 0.1} and cfg.model.widths == [8, 16]
    assert load_config(None, []).train.labelled_batch == 4  # paper default: 4 + 4


def test_round_trip_through_yaml(tmp_path):
    cfg = load_config(None, ["data.size=64", "method.params.variant=authors"])
    path = tmp_path / "resolved.yaml"
    path.write_text(dump_config(cfg))
    assert load_config(path) == cfg


def test_config_errors_name_the_problem(tmp_path):
    with pytest.raises(ClccError, match="unknown config key train.epoch; choose from epochs"):
        load_config(None, ["train.epoch=3"])
    with pytest.raises(ClccError, match="must look like key.sub=value"):
        load_config(None, ["train.epochs"])
    with pytest.raises(ClccError, match="missing.yaml: config file not found"):
        load_config(tmp_path / "missing.yaml")


def test_base_chain_and_the_shipped_configs():
    from pathlib import Path

    configs = Path(__file__).resolve().parents[1] / "configs"
    ablation = load_config(configs / "ablations" / "kvasir-quick-clcc-wo-contrast.yaml")
    assert ablation.method.name == "clcc" and ablation.method.params == {"n": 4, "alpha": 0.0}
    assert ablation.data.size == 128 and ablation.train.epochs == 60  # from the base
    paper = load_config(configs / "kvasir.yaml")
    assert (paper.data.size, paper.train.epochs, paper.train.labelled_batch) == (320, 300, 4)
    for path in configs.rglob("*.yaml"):
        load_config(path)


def test_base_loop_is_reported(tmp_path):
    (tmp_path / "a.yaml").write_text("base: b.yaml\n")
    (tmp_path / "b.yaml").write_text("base: a.yaml\n")
    with pytest.raises(ClccError, match="loops back"):
        load_config(tmp_path / "a.yaml")


@pytest.mark.parametrize("override,message", [
    ("train.epochs=ten", "train.epochs must be int, got 'ten'"),
    ("train.epochs=true", "train.epochs must be int, got True"),
    ("optim.lr=fast", "optim.lr must be float, got 'fast'"),
    ("train.augment=3", "train.augment must be bool, got 3"),
])
def test_wrong_value_types_are_refused(override, message):
    with pytest.raises(ClccError, match=message):
        load_config(None, [override])
    assert load_config(None, ["optim.lr=1"]).optim.lr == 1.0
    assert load_config(None, ["optim.lr=1e-3"]).optim.lr == 0.001  # a string to YAML 1.1


@pytest.mark.parametrize("override,message", [
    ("train.epochs=0", "train.epochs must be at least 1, got 0"),
    ("train.epochs=-3", "train.epochs must be at least 1, got -3"),
    ("train.labelled_batch=0", "train.labelled_batch must be at least 1, got 0"),
    ("data.size=-1", "data.size must be at least 1, got -1"),
    ("train.eval_every=0", "train.eval_every must be at least 1, got 0"),
    ("optim.lr=0", "optim.lr must be a positive number, got 0.0"),
    ("model.widths=[16,0,32]", r"model.widths must be two or more positive counts"),
    ("train.compile_mode=fast", r"train.compile_mode must be one of default\|reduce-overhead"),
    ("optim.schedule_unit=iteration", r"optim.schedule_unit must be one of step\|epoch, got"),
    ("train.precision=fp64", r"train.precision must be one of auto\|fp32\|bf16\|fp16, got"),
])
def test_counts_and_sizes_out_of_range_are_refused(override, message):
    with pytest.raises(ClccError, match=message):
        load_config(None, [override])


def test_cli_refuses_zero_epochs_before_making_a_folder(tmp_path, capsys):
    from clcc.cli import main

    code = main(["train", "--set", "train.epochs=0", "--set", f"train.output={tmp_path / 'r'}"])
    assert code == 2 and "train.epochs must be at least 1, got 0" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def test_auto_precision_is_bf16_only_on_cpus_with_native_bf16(tmp_path, monkeypatch):
    import torch

    from clcc.engine import runtime

    flags = {"amx": "flags\t\t: fpu sse avx512f amx_bf16 amx_tile", "zen4": "flags : avx512_bf16",
             "old": "flags\t\t: fpu sse avx512f avx512bw avx512_vnni"}
    for name, line in flags.items():
        (tmp_path / name).write_text(f"processor\t: 0\n{line}\n")
    assert runtime.cpu_has_native_bf16(tmp_path / "amx")
    assert runtime.cpu_has_native_bf16(tmp_path / "zen4")
    assert not runtime.cpu_has_native_bf16(tmp_path / "old")
    assert not runtime.cpu_has_native_bf16(tmp_path / "missing")
    for native, expected in ((True, torch.bfloat16), (False, torch.float32)):
        monkeypatch.setattr(runtime, "cpu_has_native_bf16", lambda native=native: native)
        assert runtime.make_runtime("cpu", "auto").dtype == expected
        assert runtime.make_runtime("cpu", "fp32").dtype == torch.float32  # asked for: kept


def test_method_parameters_compare_one_by_one():
    """Runs save every parameter with its default: a changed default reads as a difference;
    older runs, which saved only the parameters given, still match."""
    cfg = load_config(None, ["method.name=bcp", "method.params.passes=joint"])
    saved = cfg.to_dict()
    assert config_differences(saved, cfg) == []
    saved["method"]["params"] = {"passes": "separate"}  # made when the default was separate
    assert config_differences(saved, cfg) == ["method.params.passes"]
    saved["method"]["params"] = {}  # an older run: nothing saved, nothing to compare
    assert config_differences(saved, cfg) == []
    saved["method"]["params"] = {"passes": "joint", "consistency": "mean"}  # a parameter since
    assert config_differences(saved, cfg) == ["method.params.consistency"]  # renamed


def test_a_data_root_spelled_otherwise_is_the_same_root(tmp_path, monkeypatch):
    """A run saved with an absolute data.root, asked for again with the relative spelling of
    the same folder (a grid re-run or a resume): no difference; another folder is one."""
    (tmp_path / "p").mkdir()
    (tmp_path / "q").mkdir()
    saved = load_config(None, [f"data.root={tmp_path / 'p'}"]).to_dict()
    monkeypatch.chdir(tmp_path)
    assert config_differences(saved, load_config(None, ["data.root=p"])) == []
    assert config_differences(saved, load_config(None, ["data.root=./q/../p"])) == []
    assert config_differences(saved, load_config(None, ["data.root=q"])) == ["data.root"]
