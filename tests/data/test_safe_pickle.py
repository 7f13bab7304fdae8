"""The restricted unpickler: plain data and numeric arrays load, anything that could run code is refused."""
import pickle
import warnings
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np
import pytest

from retrieval.data import safe_pickle
from retrieval.data.safe_pickle import UnsafePickleError

PLAIN = {
    "imlist": ["all_souls_000000", "radcliffe_camera_000519"],
    "gnd": [{"bbx": np.array([1.5, 2.0, 30.0, 40.0]), "easy": np.arange(3, dtype=np.int64),
             "hard": np.array([], dtype=np.int32), "ok": np.array([True, False])}],
    "nested": (1, 2.5, None, b"raw", bytearray(b"xy"), complex(1, 2), frozenset({1}), {3, 4}),
    "scalars": [np.float32(0.25), np.int64(7), np.bool_(True)],
    "ordered": OrderedDict(a=1),
}


def assert_same(a, b):
    if isinstance(a, dict):
        assert a.keys() == b.keys() and all(assert_same(a[k], b[k]) is None for k in a)
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b) and all(assert_same(x, y) is None for x, y in zip(a, b))
    elif isinstance(a, np.ndarray):
        assert a.dtype == b.dtype
        np.testing.assert_array_equal(a, b)
    else:
        assert a == b and type(a) is type(b)


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_plain_data_round_trips_under_every_protocol(protocol):
    assert_same(safe_pickle.loads(pickle.dumps(PLAIN, protocol=protocol)), PLAIN)


def test_pickles_written_by_numpy_1_load_without_deprecation():
    old = pickle.dumps(np.arange(4.0), protocol=2).replace(b"numpy._core", b"numpy.core")
    assert b"numpy.core.multiarray" in old
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        np.testing.assert_array_equal(safe_pickle.loads(old), np.arange(4.0))


def test_a_pickle_that_runs_code_is_refused_before_running_it(tmp_path):
    marker = tmp_path / "executed"

    class Payload:
        def __reduce__(self):
            return (exec, (f"open({str(marker)!r}, 'w').close()",))

    data = pickle.dumps({"gnd": [Payload()]})
    (tmp_path / "gnd.pkl").write_bytes(data)
    with pytest.raises(UnsafePickleError, match=r"refusing to load .*gnd\.pkl: it references builtins\.exec"):
        safe_pickle.load(tmp_path / "gnd.pkl")
    assert not marker.exists()
    pickle.loads(data)  # the plain unpickler would have run it: the payload is real
    assert marker.exists()


@pytest.mark.parametrize("value, culprit", [
    (np.array([{"a": 1}], dtype=object), "dtype object"),
    (np.array(["text"]), "dtype <U4"),
])
def test_non_numeric_arrays_are_refused(value, culprit):
    with pytest.raises(UnsafePickleError, match=culprit):
        safe_pickle.loads(pickle.dumps({"x": [value]}))


@dataclass
class Record:
    value: int


def test_instances_of_arbitrary_classes_are_refused():
    with pytest.raises(UnsafePickleError, match=r"references .*Record"):
        safe_pickle.loads(pickle.dumps([Record(1)]))


def test_a_truncated_pickle_is_named():
    with pytest.raises(pickle.UnpicklingError, match=r"gnd\.pkl is not a valid pickle"):
        safe_pickle.loads(pickle.dumps(PLAIN)[:40], source="gnd.pkl")


def test_a_self_referencing_list_is_refused_by_name(tmp_path):
    looped = []
    looped.append(looped)
    (tmp_path / "gnd_loop.pkl").write_bytes(pickle.dumps({"gnd": looped}))
    with pytest.raises(UnsafePickleError, match=r"gnd_loop\.pkl: value\['gnd'\]\[0\] contains itself"):
        safe_pickle.load(tmp_path / "gnd_loop.pkl")


def shared_chain(levels: int) -> list:
    """A list holding the level below twice, ``levels`` deep: ``levels`` objects, 2^levels paths."""
    level: list = []
    for _ in range(levels):
        level = [level, level]
    return level


def test_a_shared_list_nested_40_levels_is_refused_at_once(tmp_path):
    data = pickle.dumps(shared_chain(40), protocol=2)
    assert len(data) < 600  # the size of the file that kept `data verify` busy for minutes
    (tmp_path / "gnd_bomb.pkl").write_bytes(data)
    with pytest.raises(UnsafePickleError, match=rf"gnd_bomb\.pkl: value(\[[01]\]){{{safe_pickle.MAX_DEPTH}}} nests "
                                                rf"deeper than {safe_pickle.MAX_DEPTH} levels"):
        safe_pickle.load(tmp_path / "gnd_bomb.pkl")


def test_shared_objects_are_checked_once():
    # 2^30 paths through 30 objects: a check that revisited shared objects would not end.
    level, depth = safe_pickle.loads(pickle.dumps(shared_chain(30))), 0
    while level:  # walked down one branch (== would compare all 2^30 paths)
        assert len(level) == 2 and level[0] is level[1]
        level, depth = level[0], depth + 1
    assert depth == 30


def test_a_chain_longer_than_the_cap_through_shared_objects_is_refused():
    # Each list also sits directly in the root, so the first path that reaches it is short; the chain is long.
    chain = [[]]
    for _ in range(safe_pickle.MAX_DEPTH + 5):
        chain.append([chain[-1]])
    with pytest.raises(UnsafePickleError, match="nests deeper than"):
        safe_pickle.loads(pickle.dumps(chain))
    safe_pickle.check_plain(chain, max_depth=safe_pickle.MAX_DEPTH + 10)


def test_the_number_of_objects_is_capped():
    value = [[i] for i in range(100)]
    safe_pickle.check_plain(value, max_objects=101)
    with pytest.raises(UnsafePickleError, match="more than 100 containers"):
        safe_pickle.check_plain(value, max_objects=100)
