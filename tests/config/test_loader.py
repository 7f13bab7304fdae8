"""YAML loading: _base_ inheritance, provenance, overrides and the errors users see."""
import pytest

from retrieval.config.loader import ConfigError, apply_overrides, load_yaml_tree, merge


def write(path, text):
    path.write_text(text)
    return path


def test_bases_merge_in_order_and_child_wins(tmp_path):
    write(tmp_path / "a.yaml", "x: 1\nnested: {p: 1, q: 1}\n")
    write(tmp_path / "b.yaml", "x: 2\nnested: {q: 2}\n")
    child = write(tmp_path / "c.yaml", "_base_: [a.yaml, b.yaml]\nnested: {r: 3}\n")
    data, sources = load_yaml_tree(child)
    assert data == {"x": 2, "nested": {"p": 1, "q": 2, "r": 3}}
    assert sources["x"].endswith("b.yaml:1")
    assert sources["nested.r"].endswith("c.yaml:2")


def test_component_with_new_name_replaces_inherited_arguments():
    base = {"loss": {"name": "triplet", "args": {"margin": 0.1}}}
    assert merge(base, {"loss": {"name": "smooth_ap"}}) == {"loss": {"name": "smooth_ap"}}
    assert merge(base, {"loss": {"args": {"margin": 0.2}}}) == {"loss": {"name": "triplet", "args": {"margin": 0.2}}}


def test_null_removes_an_inherited_entry():
    assert merge({"losses": {"a": {"name": "x"}, "b": {"name": "y"}}}, {"losses": {"b": None}}) == \
        {"losses": {"a": {"name": "x"}, "b": None}}


def test_missing_base_names_the_referring_file_and_line(tmp_path):
    child = write(tmp_path / "c.yaml", "seed: 1\n_base_: nothere.yaml\n")
    with pytest.raises(ConfigError, match=r"c\.yaml:2.*nothere\.yaml"):
        load_yaml_tree(child)


def test_circular_base_is_reported_with_the_cycle(tmp_path):
    write(tmp_path / "a.yaml", "_base_: b.yaml\n")
    write(tmp_path / "b.yaml", "_base_: a.yaml\n")
    with pytest.raises(ConfigError, match="circular _base_.*a.yaml -> .*b.yaml -> .*a.yaml"):
        load_yaml_tree(tmp_path / "a.yaml")


def test_invalid_yaml_names_the_file(tmp_path):
    bad = write(tmp_path / "bad.yaml", "a: [1, 2\n")
    with pytest.raises(ConfigError, match="bad.yaml: not valid YAML"):
        load_yaml_tree(bad)


def test_overrides_parse_yaml_values_and_record_their_source():
    data, sources = {"train": {"lr": 0.1}}, {}
    apply_overrides(data, sources, ["train.lr=1e-4", "train.milestones=[1, 2]", "data.root=null"])
    assert data == {"train": {"lr": 1e-4, "milestones": [1, 2]}, "data": {"root": None}}
    assert sources["train.lr"] == "the command line"
    apply_overrides(data, sources, {"train.lr": 0.5}, source="table row")
    assert data["train"]["lr"] == 0.5 and sources["train.lr"] == "table row"


def test_malformed_override_is_an_error():
    with pytest.raises(ConfigError, match="key.sub=value"):
        apply_overrides({}, {}, ["train.lr"])
    with pytest.raises(ConfigError, match="train.lr is not a mapping"):
        apply_overrides({"train": {"lr": 1}}, {}, ["train.lr.x=2"])


def test_override_naming_another_component_replaces_it_whole():
    data = {"model": {"backbone": {"name": "resnet50", "args": {"pretrained": "IMAGENET1K_V1"}}}}
    apply_overrides(data, {}, {"model.backbone": {"name": "small_cnn", "args": {"width": 8}}})
    assert data["model"]["backbone"] == {"name": "small_cnn", "args": {"width": 8}}
    apply_overrides(data, {}, {"model.backbone": {"args": {"width": 4}}})
    assert data["model"]["backbone"] == {"name": "small_cnn", "args": {"width": 4}}
