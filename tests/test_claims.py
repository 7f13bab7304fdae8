"""The published claims of the three papers (experiments/<paper>/published.yaml, ``claims:``): each loads, names
rows of an existing table, cites the seed it comes from, and is shown in that table's results."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from retrieval.tables.results import NOT_RUN, Outcome, write_results
from retrieval.tables.spec import find_tables, load_claims, load_table

REPO = Path(__file__).resolve().parents[1]
EXPERIMENTS = REPO / "experiments"
# each seed describes one paper (docs/sources.md, "Results the seeds state in words")
SEEDS = {"000_3fa190535db36bc4.txt": "listwise_ap", "001_9c7907d135c59971.txt": "cgd",
         "002_949bf950d118a0ad.txt": "smooth_ap"}
PAPERS = sorted(set(SEEDS.values()))


def tables_of(paper: str) -> dict:
    return {path.stem: load_table(path) for path in find_tables(EXPERIMENTS) if path.parent.name == paper}


@pytest.mark.parametrize("paper", PAPERS)
def test_every_claim_names_rows_of_an_existing_table_and_the_seed_it_comes_from(paper):
    claims = load_claims(EXPERIMENTS / paper / "published.yaml")
    tables = tables_of(paper)
    assert claims, f"{paper}: no claims recorded"
    for claim in claims:
        assert claim.table in tables, f"{claim.text!r}: no table {claim.table!r} in experiments/{paper}"
        table = tables[claim.table]
        assert claim in table.claims and set(claim.rows) <= set(table.row_names()), claim.text
        match = re.fullmatch(r"seed (\S+), (.+)", claim.source)
        assert match and SEEDS.get(match.group(1)) == paper, f"{claim.text!r}: source {claim.source!r}"
        # the section a claim cites is one docs/sources.md lists for that seed
        assert match.group(1) in (REPO / "docs" / "sources.md").read_text()


def test_the_seeds_relations_are_recorded_as_relations():
    """The results the seeds state as a relation between rows are checked as one (not only quoted)."""
    relations = {(c.table, c.relation.kind) for paper in PAPERS
                 for c in load_claims(EXPERIMENTS / paper / "published.yaml") if c.relation is not None}
    assert {("table_sop", "gain"), ("table_vehicleid", "gain"), ("table_inaturalist", "gain"),
            ("table_inaturalist", "value"), ("table_faces", "gain"), ("ceteris_paribus", "gain"),
            ("ceteris_paribus", "no_gain"), ("class_sampling", "gain"), ("batch_size", "no_gain"),
            ("whitening", "gain"), ("losses", "gain"), ("label_smoothing_temperature", "gain"),
            ("architecture", "gain")} <= relations


@pytest.mark.parametrize("paper", PAPERS)
def test_every_claim_appears_in_the_results_of_its_table(paper, tmp_path):
    for name, table in tables_of(paper).items():
        outcomes = {row.name: Outcome(NOT_RUN) for row in table.rows}
        for demo in (True, False):
            write_results(tmp_path / name, table, outcomes, demo)
            md = (tmp_path / f"{name}.md").read_text()
            for claim in table.claims:
                rows = ", ".join(f'"{row}"' for row in claim.rows)
                assert f"{claim.text} ({claim.source}; rows: {rows})" in md, (name, claim.text)
                if claim.relation is not None:
                    assert "not evaluated yet" in md
