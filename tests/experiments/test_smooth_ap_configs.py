"""The Smooth-AP experiments (experiments/smooth_ap): every config validates and carries the paper's known
settings, every table resolves at paper and demo scale into runs whose metric keys are the table's columns,
and every published number is one that docs/sources.md prints, for the dataset it is
compared with, from the source it names."""
from __future__ import annotations

import re
from functools import cache
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from retrieval.config import config_to_dict, load_config
from retrieval.data.split import Split, load_splits
from retrieval.engine.evaluate import metric_name
from retrieval.evaluation import PROTOCOLS
from retrieval.tables.runner import resolve_config
from retrieval.tables.spec import is_table_file, load_published, load_table

ROOT = Path(__file__).resolve().parents[2]
SMOOTH_AP = ROOT / "experiments" / "smooth_ap"
PUBLISHED_MD = ROOT / "docs" / "sources.md"  # the repository's copy of the published numbers

TABLES = sorted(p for p in SMOOTH_AP.glob("*.yaml") if is_table_file(p))
CONFIGS = sorted(p for p in SMOOTH_AP.glob("*.yaml")
                 if p not in TABLES and p.name not in ("demo.yaml", "published.yaml"))
# docs/sources.md's dataset names -> our dataset registry names; VehicleID's test lists by their size names.
DATASETS = {"SOP": "sop", "iNaturalist": "inaturalist", "VehicleID": "vehicleid"}
VEHICLEID_LISTS = {"small": "test_800", "medium": "test_1600", "large": "test_2400"}
# The K of each dataset's Recall@K (the issue's, independent of the configs).
KS = {"sop": [1, 10, 100, 1000], "inaturalist": [1, 4, 16, 32], "vehicleid": [1, 5]}
FACE_NETS = {"senet50_face": 256, "iresnet50": 512}


# ---------------------------------------------------------------------------- docs/sources.md, parsed independently
def smooth_ap_section() -> str:
    text = PUBLISHED_MD.read_text()
    match = re.search(r"^## Smooth-AP.*?$(.*?)(?=^## )", text, re.S | re.M)
    assert match, f"{PUBLISHED_MD} has no '## Smooth-AP' section"
    return match.group(1)


def paragraph(opening: str) -> str:
    """The blank-line separated paragraph of the Smooth-AP section that starts with ``opening``."""
    found = [p for p in re.split(r"\n\s*\n", smooth_ap_section()) if p.strip().startswith(opening)]
    assert len(found) == 1, f"docs/sources.md's Smooth-AP section has {len(found)} paragraphs starting {opening!r}"
    return " ".join(found[0].split())


def published_facts() -> dict[tuple[str, str], float]:
    """``(dataset, metric key) -> percent`` for every Source E number, e.g. ``("vehicleid",
    "test_800/recall@5")``. The paragraph lists ``<dataset> R@<k>/<k>... <values>`` items separated by
    ";", where VehicleID's values come per test list: ``small v/v, medium v/v, large v/v``."""
    facts = {}
    text = paragraph("Source E").rsplit(":", 1)[1].strip().rstrip(".")  # the numbers follow the last colon
    for item in text.split(";"):
        head = re.match(r"\s*(\S+) (R@[\dR@/]+) ", item)
        dataset, ks = DATASETS[head.group(1)], [int(k) for k in re.findall(r"\d+", head.group(2))]
        for subset, values in re.findall(r"(?:(small|medium|large) )?(\d+\.\d+(?:/\d+\.\d+)*)", item[head.end():]):
            numbers = [float(v) for v in values.split("/")]
            assert len(numbers) == len(ks), f"docs/sources.md Source E {item!r}: {numbers} vs R@{ks}"
            prefix = f"{VEHICLEID_LISTS[subset]}/" if subset else ""
            facts.update({(dataset, f"{prefix}recall@{k}"): v for k, v in zip(ks, numbers)})
    return facts


def test_published_md_parses_into_every_smooth_ap_number():
    facts = published_facts()
    assert facts["sop", "recall@1"] == 80.1
    assert [facts["inaturalist", f"recall@{k}"] for k in (1, 4, 16, 32)] == [67.2, 81.8, 90.3, 93.1]
    assert facts["vehicleid", "test_1600/recall@5"] == 96.4 and facts["vehicleid", "test_2400/recall@1"] == 91.9
    assert len(facts) == 1 + 4 + 6


@cache
def resolved(path: Path, demo: bool) -> list:
    """``(row, config)`` for every row of the table at ``path``, resolved once per test session."""
    table = load_table(path)
    return [(row, resolve_config(table, row, demo)) for row in table.rows]


def known_setting(pattern: str) -> float:
    """A number of docs/sources.md's Smooth-AP "Known settings" paragraph."""
    match = re.search(pattern, paragraph("Known settings"))
    assert match, f"docs/sources.md's Smooth-AP known settings do not say {pattern!r}"
    return float(match.group(1))


# ---------------------------------------------------------------------------- configs
@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_every_config_validates_with_the_known_settings_of_published_md(path):
    cfg = load_config(path)
    ranking = cfg.losses["ranking"]
    assert ranking.name == "smooth_ap" and ranking.input == "embedding"
    assert ranking.args["temperature"] == known_setting(r"sigmoid temperature (\d+\.\d+)")
    assert ranking.args["include_self"] is True  # the authors' code, which produced the published numbers
    assert cfg.data.samples_per_class == known_setting(r"(\d+) samples per class")
    assert cfg.data.batch_size in (known_setting(r"batch (\d+) or"), known_setting(r"batch \d+ or (\d+)"))
    assert cfg.train.optimizer.name == "adam" and cfg.train.optimizer.lr == known_setting(r"Adam lr (\S+),")
    assert cfg.train.freeze_bn is True


@pytest.mark.parametrize("dataset", sorted(KS))
def test_image_retrieval_configs_are_resnet50_512d_with_the_papers_k(dataset):
    cfg = load_config(SMOOTH_AP / f"{dataset}.yaml")
    assert cfg.data.dataset.name == dataset
    assert cfg.model.backbone.name == "resnet50" and cfg.model.head.name == "embedding"
    assert cfg.model.head.args["dim"] == known_setting(r"(\d+)-d linear embedding")
    for target in cfg.eval.targets.values():
        assert target.protocol.args["ks"] == KS[dataset]
    if dataset == "vehicleid":  # one target per test list, named like it: keys "test_800/recall@1"
        assert {name: t.splits for name, t in cfg.eval.targets.items()} == {
            name: [name] for name in VEHICLEID_LISTS.values()}
        assert {t.protocol.name for t in cfg.eval.targets.values()} == {"vehicleid"}


@pytest.mark.parametrize("config", ["ijbc.yaml", "ijbc_arcface.yaml"])
def test_face_configs_fine_tune_a_face_net_from_local_weights_on_vggface2_and_evaluate_both(config):
    cfg = load_config(SMOOTH_AP / config)
    net = cfg.model.backbone
    assert net.name in FACE_NETS and net.args["embedding_dim"] == FACE_NETS[net.name]
    assert Path(net.args["pretrained"]).suffix == ".pth" and cfg.model.head.name == "identity_l2"
    assert cfg.data.dataset.name == "vggface2" and cfg.data.crop_boxes
    assert set(cfg.eval.targets) == {"vggface2", "ijbc"}
    assert cfg.eval.targets["ijbc"].dataset.name == "ijbc"
    assert {t.protocol.name for t in cfg.eval.targets.values()} == {"faces"}


# ---------------------------------------------------------------------------- tables
def tiny_split(name: str) -> Split:
    """Four classes of five items (and IJB-C-like groups), to learn the keys a protocol reports."""
    labels = np.repeat(np.arange(4), 5)
    return Split(name, labels=labels, images=np.zeros((len(labels), 2, 2, 3), np.uint8),
                 groups=np.arange(len(labels)))


def produced_metrics(cfg) -> set[str]:
    """The metric keys a run of ``cfg`` reports: each target's protocol run on a tiny split, named as the
    engine names them."""
    keys = set()
    for target_name, target in cfg.eval.targets.items():
        protocol = PROTOCOLS.get(target.protocol.name)
        for split in target.splits:
            features = torch.nn.functional.normalize(torch.randn(20, 8, generator=torch.Generator().manual_seed(0)))
            for key in protocol(features, tiny_split(split), **target.protocol.args):
                keys.add(metric_name(target_name, split, key, cfg))
    return keys


def test_every_smooth_ap_table_is_found():
    assert {p.stem for p in TABLES} == {"table_sop", "table_vehicleid", "table_inaturalist", "table_faces",
                                       "ablation_temperature", "ablation_positives", "ablation_batch_size",
                                       "include_self"}


@pytest.mark.parametrize("path", TABLES, ids=lambda p: p.stem)
@pytest.mark.parametrize("demo", [False, True], ids=["paper", "demo"])
def test_every_row_resolves_and_yields_the_table_metrics(path, demo):
    table = load_table(path)
    assert table.paper == "smooth_ap"
    for row, cfg in resolved(path, demo):
        produced = produced_metrics(cfg)
        assert set(table.metrics) <= produced, f"{row.name}: {table.metrics} not all among {sorted(produced)}"
        if demo:
            assert cfg.data.dataset.name in ("synthetic", "digits") and cfg.model.backbone.name == "small_cnn"
            assert cfg.train.device == "cpu" and cfg.train.epochs <= 3
            assert all(t.dataset is None or t.dataset.name == "synthetic" for t in cfg.eval.targets.values())
        else:
            assert cfg.model.backbone.name in ("resnet50", *FACE_NETS)


def differences(a, b, prefix: str = "") -> set[str]:
    """Dotted keys whose values differ between two resolved configs (as plain dicts)."""
    if isinstance(a, dict) and isinstance(b, dict):
        return {key for k in a.keys() | b.keys() for key in differences(a.get(k), b.get(k), f"{prefix}{k}.")}
    return set() if a == b else {prefix.rstrip(".")}


def varied_keys(path: Path, demo: bool = False) -> list[set[str]]:
    """For every row, the config keys in which it differs from the table's first row."""
    configs = [config_to_dict(cfg) for _, cfg in resolved(path, demo)]
    return [differences(configs[0], cfg) for cfg in configs]


@pytest.mark.parametrize("table, key, values", [
    ("ablation_temperature", "losses.ranking.args.temperature", [0.0001, 0.001, 0.01, 0.1, 1.0]),
    ("ablation_positives", "data.samples_per_class", [2, 4, 8, 16]),
    ("ablation_batch_size", "data.batch_size", [64, 128, 224, 384]),
])
def test_ablations_vary_only_their_setting_and_include_the_papers_value(table, key, values):
    path = SMOOTH_AP / f"{table}.yaml"
    assert all(varied <= {key} for varied in varied_keys(path)) and all(v <= {key} for v in varied_keys(path, True))
    settings = [config_to_dict(cfg) for _, cfg in resolved(path, False)]
    for part in key.split("."):
        settings = [s[part] for s in settings]
    assert settings == values
    # The paper's ablation (section 6.4, seed 002_949bf950d118a0ad.txt): SENet-50 on VGGFace2, mAP on VGGFace2, IJB-C.
    for _, cfg in resolved(path, False):
        assert cfg.data.dataset.name == "vggface2" and cfg.model.backbone.name == "senet50_face"
        assert {name: target.protocol.name for name, target in cfg.eval.targets.items()} == {
            "vggface2": "faces", "ijbc": "faces"}
    assert load_table(path).metrics == ["vggface2/map", "ijbc/map"]


def test_include_self_table_compares_the_two_conventions_and_nothing_else():
    path = SMOOTH_AP / "include_self.yaml"
    assert varied_keys(path) == [set(), {"losses.ranking.args.include_self"}]
    assert [cfg.losses["ranking"].args["include_self"] for _, cfg in resolved(path, False)] == [True, False]


@pytest.mark.parametrize("dataset", ["sop", "vehicleid", "inaturalist"])
def test_baseline_tables_change_only_the_loss_and_run_smooth_ap_at_224_and_384(dataset):
    path = SMOOTH_AP / f"table_{dataset}.yaml"
    rows = resolved(path, False)
    losses = [cfg.losses["ranking"].name for _, cfg in rows]
    baselines = [loss for loss in losses if loss != "smooth_ap"]
    assert len(set(baselines)) == len(baselines) >= 4
    assert sorted(cfg.data.batch_size for _, cfg in rows if cfg.losses["ranking"].name == "smooth_ap") == [224, 384]
    allowed = ("losses.ranking.name", "losses.ranking.args", "data.batch_size", "train.optimizer.lr_multipliers")
    for (row, _), varied in zip(rows, varied_keys(path)):
        assert all(key.startswith(allowed) for key in varied), f"{row.name}: {sorted(varied)}"


def test_face_table_has_baseline_pairwise_triplet_and_smooth_ap_for_both_nets():
    rows = resolved(SMOOTH_AP / "table_faces.yaml", False)
    variants = {}
    for _, cfg in rows:
        kind = "baseline" if cfg.train.epochs == 0 else cfg.losses["ranking"].name
        variants.setdefault(cfg.model.backbone.name, []).append(kind)
    assert variants == {net: ["baseline", "contrastive", "triplet", "smooth_ap"] for net in FACE_NETS}
    assert all(cfg.train.epochs == 0 for row, cfg in resolved(SMOOTH_AP / "table_faces.yaml", True)
               if "baseline" in row.name)


def test_demo_vehicleid_test_lists_are_growing_synthetic_sets_disjoint_from_training():
    (_, cfg), *_ = resolved(SMOOTH_AP / "table_vehicleid.yaml", True)
    train = set(load_splits("synthetic", None, **cfg.data.dataset.args)["train"].labels)
    sizes = []
    for name in VEHICLEID_LISTS.values():
        test = load_splits("synthetic", None, **cfg.eval.targets[name].dataset.args)["test"]
        assert not train & set(test.labels), f"demo {name} shares classes with the training set"
        sizes.append(test.num_classes)
    assert sizes == sorted(set(sizes)), f"demo test lists do not grow: {sizes}"


# ---------------------------------------------------------------------------- published numbers
def test_published_source_names_source_e():
    sources, _ = load_published(SMOOTH_AP / "published.yaml")
    assert list(sources) == ["E"] and re.search(r"\bSource E\b", sources["E"])


def test_every_published_value_is_in_published_md_for_the_row_it_is_compared_with():
    facts, seen = published_facts(), set()
    for path in TABLES:
        for row, cfg in resolved(path, False):
            if row.published is None:
                continue
            assert re.search(r"\bSource E\b", row.published.source), f"{path.name}: {row.name!r}"
            ranking = cfg.losses["ranking"]
            assert ranking.name == "smooth_ap" and ranking.args["include_self"] is True, f"{row.name!r}"
            for metric, value in row.published.values.items():
                key = (cfg.data.dataset.name, metric)
                assert facts.get(key) == value, f"{path.name}: row {row.name!r} cites {value} for {key}"
                seen.add(key)
    assert seen == set(facts), f"docs/sources.md numbers no row is compared with: {set(facts) - seen}"


def test_every_published_entry_is_used():
    entries = yaml.safe_load((SMOOTH_AP / "published.yaml").read_text())["entries"]
    used = {row.get("published") for path in TABLES for row in yaml.safe_load(path.read_text())["rows"]}
    assert set(entries) <= used


# ---------------------------------------------------------------------------- the authors' code vs the paper's text
def test_embedding_layer_multiplier_reaches_exactly_the_linear_embedding_layer():
    """The authors' code (Smooth_AP src/main.py, --fc_lr_mul 5) trains the embedding layer at 5x the rate of the
    rest; the config's parameter-name prefix must select that layer's weight and bias and nothing else."""
    from retrieval.engine.optim import build_optimizer
    from retrieval.models.net import build_model

    cfg = load_config(SMOOTH_AP / "sop.yaml")
    model = build_model("resnet18", {}, cfg.model.head.name, cfg.model.head.args, num_classes=10)
    optimizer = build_optimizer(model.named_parameters(), cfg.train.optimizer)
    names = {id(p): n for n, p in model.named_parameters()}
    by_lr = {group["lr"]: {names[id(p)] for p in group["params"]} for group in optimizer.param_groups}
    base = cfg.train.optimizer.lr
    assert set(by_lr) == {base, 5 * base}
    assert by_lr[5 * base] == {"head.fc.weight", "head.fc.bias"}
    assert len(by_lr[base]) == sum(1 for n, p in model.named_parameters() if p.requires_grad) - 2


def test_the_authors_code_is_the_default_and_the_papers_text_differs_only_where_it_says_so():
    """Seed 002 section 5.3 (paper text): weight decay 4e-5, images resized to 256x256; the authors' defaults
    (src/main.py, src/datasets.py): 4e-4, RandomResizedCrop(224), shorter side 256 at test."""
    code, text = (load_config(SMOOTH_AP / name) for name in ("sop.yaml", "sop_paper_text.yaml"))
    assert code.train.optimizer.weight_decay == 4e-4 and text.train.optimizer.weight_decay == 4e-5
    assert code.data.train_transform.random_resized_crop == 224 and code.data.test_transform.resize == 256
    assert tuple(text.data.train_transform.resize) == tuple(text.data.test_transform.resize) == (256, 256)
    assert differences(config_to_dict(code), config_to_dict(text)) <= {
        "train.optimizer.weight_decay", *(f"data.{split}_transform.{key}" for split in ("train", "test")
                                          for key in ("resize", "crop", "random_crop", "random_resized_crop"))}


def test_schedule_is_the_authors_step_schedule_and_the_demo_keeps_one_constant_rate():
    inat, vehicleid = (load_config(SMOOTH_AP / f"{name}.yaml") for name in ("inaturalist", "vehicleid"))
    assert (inat.train.epochs, inat.train.schedule.milestones) == (90, [40, 70])
    assert (vehicleid.train.epochs, vehicleid.train.schedule.milestones) == (400, [200, 300])
    assert inat.train.schedule.name == "multistep" and inat.train.schedule.gamma == 0.3
    for _, cfg in resolved(SMOOTH_AP / "table_inaturalist.yaml", True):
        assert cfg.train.schedule.name == "constant" and cfg.train.optimizer.lr_multipliers["head.fc."] == 1.0
