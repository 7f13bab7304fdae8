"""Check a prepared dataset: split sizes against the published statistics, and its image files.

``python -m retrieval data verify NAME --root DIR`` parses the dataset as training would, compares
images, classes and query/gallery counts per split with :data:`PUBLISHED`, reports image files
listed more than once, then checks that every image exists and decodes (``--quick``: existence
only; ``--sample N``: decode N per split).
Every difference is printed with the published value; the exit status is 1 if there is any.
"""
from __future__ import annotations

import argparse
import os
import random
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import NamedTuple

from retrieval.data.images import ImageLoadError, load_image
from retrieval.data.split import GALLERY, QUERY, Split, load_splits


@dataclass(frozen=True)
class Statistics:
    """Published size of one split; None where no source gives the number."""

    images: int | None = None
    classes: int | None = None
    queries: int | None = None
    gallery: int | None = None


# Source: docs/sources.md, "Dataset statistics (for verification)".
# VGGFace2 test images ("about 169k") and IJB-C have no exact published count, so they are not compared.
PUBLISHED: dict[str, dict[str, Statistics]] = {
    "cars196": {"train": Statistics(8_054, 98), "test": Statistics(8_131, 98)},
    "cub200": {"train": Statistics(5_864, 100), "test": Statistics(5_924, 100)},
    "sop": {"train": Statistics(59_551, 11_318), "test": Statistics(60_502, 11_316)},
    "inshop": {"train": Statistics(25_882, 3_997), "test": Statistics(26_830, 3_985, queries=14_218, gallery=12_612)},
    "vehicleid": {"train": Statistics(110_178, 13_134), "test_800": Statistics(7_332, 800),
                  "test_1600": Statistics(12_995, 1_600), "test_2400": Statistics(20_038, 2_400)},
    "inaturalist": {"train": Statistics(325_846, 5_690), "test": Statistics(136_093, 2_452)},
    "vggface2": {"train": Statistics(classes=8_631), "test": Statistics(classes=500)},
    "ijbc": {},
    "landmarks_clean": {"train": Statistics(42_410, 586)},
    "roxford5k": {"test": Statistics(queries=70, gallery=4_993)},
    "rparis6k": {"test": Statistics(queries=70, gallery=6_322)},
}
R1M_DISTRACTORS = 1_001_001  # same source, "R1M distractors"


class FileCheck(NamedTuple):
    """How many files failed a check, and the first few of them (with the reason when decoding)."""

    count: int
    names: list[str]


@dataclass
class Report:
    dataset: str
    root: str | None
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def text(self) -> str:
        where = f"at {self.root}" if self.root is not None else "(bundled)"
        lines = [f"{self.dataset} {where}: " + ("OK" if self.ok else f"{len(self.problems)} problem(s)")]
        lines += [f"  PROBLEM {line}" for line in self.problems] + [f"  ok      {line}" for line in self.notes]
        return "\n".join(lines)


def _full_path(split: Split, relative: str) -> str:
    return os.path.join(split.root, relative) if split.root else relative


def _missing(split: Split) -> list[str]:
    return [] if split.paths is None else [p for p in split.paths if not os.path.isfile(_full_path(split, p))]


def check_split_files(split: Split, max_names: int = 5) -> FileCheck:
    """The number of image files of ``split`` that do not exist, and the first ``max_names`` of them."""
    missing = _missing(split)
    return FileCheck(len(missing), missing[:max_names])


def duplicate_files(split: Split) -> dict[str, int]:
    """Image files ``split`` lists more than once (under several ids), with how many times.

    Paths are compared normalised (``a/./b.jpg`` is ``a/b.jpg``). Where the split groups items
    into instances (IJB-C templates), a file may belong to several instances, once in each.
    """
    if split.paths is None:
        return {}
    groups = split.groups if split.groups is not None else [None] * len(split)
    counts = Counter((group, os.path.normpath(path)) for group, path in zip(groups, split.paths))
    duplicates: dict[str, int] = {}
    for (_, path), times in counts.items():
        if times > 1:
            duplicates[path] = duplicates.get(path, 0) + times
    return duplicates


def check_duplicates(name: str, split: Split, report: Report, max_names: int) -> None:
    """A problem naming the files ``split`` lists more than once: the same image counted as two items
    (two gallery entries, or a query that finds itself) changes every metric."""
    duplicates = duplicate_files(split)
    if duplicates:
        named = ", ".join(f"{path} ({times} times)" for path, times in list(duplicates.items())[:max_names])
        report.problems.append(f"{name}: {len(duplicates):,} image files listed more than once (under several ids), "
                               f"first: {named}")


def _decode_error(path: str) -> str | None:
    try:
        load_image(path)
    except ImageLoadError as error:
        return str(error).removeprefix(f"cannot read image {path}: ")
    return None


def check_decoding(split: Split, paths: list[str], workers: int = 1, max_names: int = 5) -> FileCheck:
    """Which of ``paths`` (of ``split``, all existing) cannot be decoded, named with the reason."""
    full = [_full_path(split, p) for p in paths]
    with ThreadPoolExecutor(max(1, workers)) as pool:
        errors = list(pool.map(_decode_error, full))
    bad = [f"{p} ({e})" for p, e in zip(paths, errors) if e is not None]
    return FileCheck(len(bad), bad[:max_names])


def compare(name: str, split: Split, expected: Statistics, report: Report) -> None:
    """Append the split's counts to ``report``: a problem where they differ from ``expected``."""
    counts = {"images": (len(split), expected.images)}
    if expected.classes is not None:
        counts["classes"] = (split.num_classes, expected.classes)
    distractors = int(split.extra.get("num_distractors", 0))
    if split.roles is not None:
        counts["queries"] = (int((split.roles == QUERY).sum()), expected.queries)
        counts["gallery images"] = (int((split.roles == GALLERY).sum()) - distractors, expected.gallery)
    if distractors:
        counts["R1M distractors"] = (distractors, R1M_DISTRACTORS)
    for what, (actual, published) in counts.items():
        if published is None:
            report.notes.append(f"{name}: {actual:,} {what} (no published number to compare)")
        elif actual == published:
            report.notes.append(f"{name}: {actual:,} {what}, as published")
        else:
            report.problems.append(f"{name}: {actual:,} {what}, published {published:,}")


def check_files(name: str, split: Split, report: Report, decode: bool, sample: int | None, workers: int,
                max_names: int, seed: int = 0) -> None:
    missing = _missing(split)
    if missing:
        report.problems.append(f"{name}: {len(missing):,} of {len(split):,} image files missing under "
                               f"{split.root}, first: {', '.join(missing[:max_names])}")
    else:
        report.notes.append(f"{name}: all {len(split):,} image files exist")
    if not decode or split.paths is None:
        return
    absent = set(missing)
    present = list(dict.fromkeys(p for p in split.paths if p not in absent))
    if sample is not None and sample < len(present):
        present = random.Random(seed).sample(present, sample)
    unreadable = check_decoding(split, present, workers, max_names)
    if unreadable.count:
        report.problems.append(f"{name}: {unreadable.count:,} of {len(present):,} decoded images unreadable, "
                               f"first: {'; '.join(unreadable.names)}")
    else:
        report.notes.append(f"{name}: {len(present):,} images decoded without error")


def verify(dataset: str, root: str | None, options: dict | None = None, decode: bool = True,
           sample: int | None = None, workers: int = 1, max_names: int = 5,
           published: dict[str, Statistics] | None = None) -> Report:
    """Parse ``dataset`` at ``root`` and check it; parse errors propagate (they name file and line)."""
    options = dict(options or {})
    splits = load_splits(dataset, root, **options)
    expected = PUBLISHED.get(dataset, {}) if published is None else published
    if "splits" in options:  # a dataset loaded in part (VGGFace2 test only) is checked on those splits
        expected = {name: stats for name, stats in expected.items() if name in options["splits"]}
    report = Report(dataset, root)
    for name in sorted(set(expected) - set(splits)):
        report.problems.append(f"{name}: split missing (the dataset returned {sorted(splits)})")
    if not expected:
        report.notes.append("no published statistics for this dataset: only its files are checked")
    for name, split in splits.items():
        if name in expected:
            compare(name, split, expected[name], report)
        for key in ("removed_identities", "removed_images"):
            if key in split.extra:
                report.notes.append(f"{name}: {split.extra[key]:,} {key.replace('_', ' ')} by the protocol")
        check_duplicates(name, split, report, max_names)
        check_files(name, split, report, decode, sample, workers, max_names)
    return report


def _option(text: str) -> tuple[str, object]:
    import yaml

    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"{text!r}: expected KEY=VALUE, e.g. distractors_root=/data/revisitop1m")
    return key, yaml.safe_load(value)


def main(argv: list[str] | None = None) -> None:
    from retrieval.data.bundled import BUNDLED
    from retrieval.data.datasets.parsing import DatasetFormatError, DatasetNotFoundError, prepare_command

    parser = argparse.ArgumentParser(prog="python -m retrieval data verify", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("name", help=f"dataset: {', '.join(PUBLISHED)}")
    parser.add_argument("--root", help="the folder the preparation script wrote (not for the bundled "
                                       f"{' and '.join(BUNDLED)}, which read no files)")
    how = parser.add_mutually_exclusive_group()
    how.add_argument("--quick", action="store_true", help="check that files exist, decode none")
    how.add_argument("--sample", type=int, metavar="N", help="decode N random images per split, not all")
    parser.add_argument("--workers", type=int, default=1, help="threads decoding images")
    parser.add_argument("--max-names", type=int, default=5, help="how many bad files to name per check")
    parser.add_argument("--option", type=_option, action="append", default=[], metavar="KEY=VALUE",
                        help="a dataset option (YAML value), e.g. --option distractors_root=DIR")
    args = parser.parse_args(argv)
    if args.name in BUNDLED:
        if args.root is not None:  # it would be ignored: a folder is never "OK" for data it does not hold
            print(f"{args.name} is bundled and reads no files, so --root {args.root} is not used; "
                  f"run `python -m retrieval data verify {args.name}` without --root")
            raise SystemExit(1)
    elif args.root is None:
        parser.error(f"--root DIR is required for {args.name}: the folder `{prepare_command(args.name)}` wrote")
    elif not os.path.isdir(args.root):
        print(f"{args.name} at {args.root}: --root {args.root} is not a folder; prepare the dataset with "
              f"`{prepare_command(args.name)}` and give the folder it wrote")
        raise SystemExit(1)
    try:
        report = verify(args.name, args.root, dict(args.option), decode=not args.quick, sample=args.sample,
                        workers=args.workers, max_names=args.max_names)
    except (DatasetNotFoundError, DatasetFormatError, KeyError, ValueError) as error:
        print(f"{args.name} at {args.root}: cannot be parsed: {error.args[0] if error.args else error}")
        raise SystemExit(1) from None
    print(report.text())
    if not report.ok:
        raise SystemExit(1)

