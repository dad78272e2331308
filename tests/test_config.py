import pytest

from clcc.config import dump_config, load_config
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
