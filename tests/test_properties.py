"""Property-based tests of the readers of a user's ids and training sets (hypothesis).

Whatever the bytes, shapes or dtypes: either a correct result, or the
package's own one-line :class:`UserError`; never another exception, and never
a file written next to the input.
"""

from __future__ import annotations

import io
import tempfile
import zipfile
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from rem_unlearn.api import forget_rows
from rem_unlearn.data.user import UserDataError, load_npz, make_dataset
from rem_unlearn.errors import UserError
from rem_unlearn.ids import ForgetIdError, as_integers, read_ids

from conftest import make_toy

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
INT64 = (-(2**63), 2**63 - 1)


@contextmanager
def folder():
    """A fresh folder per example; nothing but the input may be in it afterwards."""
    with tempfile.TemporaryDirectory() as d:
        yield Path(d)


def only(path: Path) -> None:
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name], "a reader wrote a file"


def cut_short(path: Path, data) -> bool:
    """Truncate ``path`` at a drawn length; True when the whole file is left."""
    raw = path.read_bytes()
    cut = data.draw(st.integers(0, len(raw)))
    path.write_bytes(raw[:cut])
    return cut == len(raw)


def one_line(exc: BaseException) -> None:
    assert str(exc) and "\n" not in str(exc)


def expected_ids(arr: np.ndarray) -> list[int] | None:
    """What a correct reader returns for ``arr``, or None when it must refuse it."""
    if arr.dtype.kind in "iu":
        values = [int(v) for v in arr.ravel()]
    elif arr.dtype.kind == "f":
        flat = arr.astype(np.float64).ravel()
        if not np.isfinite(flat).all() or (flat != np.round(flat)).any():
            return None
        values = [int(v) for v in flat]
    else:
        return None
    return values if all(INT64[0] <= v <= INT64[1] for v in values) else None


dtypes = st.one_of(hnp.integer_dtypes(), hnp.unsigned_integer_dtypes(), hnp.floating_dtypes(),
                   hnp.boolean_dtypes(), hnp.complex_number_dtypes(), st.just(np.dtype("<U3")))
arrays = dtypes.flatmap(lambda dt: hnp.arrays(dt, hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=5)))


@SETTINGS
@given(arrays)
def test_npy_ids_are_integers_or_refused(arr):
    with folder() as d:
        path = d / "ids.npy"
        np.save(path, arr)
        want = expected_ids(arr)
        try:
            got = read_ids(path)
        except ForgetIdError as exc:
            one_line(exc)
            assert want is None, f"refused valid ids {arr!r}: {exc}"
        else:
            assert want is not None, f"accepted {arr.dtype} {arr!r}"
            assert got.dtype == torch.int64 and got.tolist() == want
        only(path)


@SETTINGS
@given(st.binary(max_size=300), st.sampled_from([".txt", ".csv", ".npy"]))
def test_any_bytes_as_an_ids_file(data, suffix):
    with folder() as d:
        path = d / f"ids{suffix}"
        path.write_bytes(data)
        try:
            got = read_ids(path)
        except ForgetIdError as exc:
            one_line(exc)
        else:
            assert got.dtype == torch.int64 and got.dim() == 1
        only(path)


@SETTINGS
@given(st.lists(st.integers(*INT64), max_size=30), st.sampled_from(["\n", ",", " ", ", ", "\t"]),
       st.booleans(), st.booleans())
def test_text_ids_round_trip(ids, sep, header, comment):
    with folder() as d:
        path = d / "ids.csv"
        text = ("id\n" if header else "") + sep.join(map(str, ids)) + (" # found by hand\n" if comment else "\n")
        path.write_text(text)
        assert read_ids(path).tolist() == ids
        only(path)


@SETTINGS
@given(hnp.arrays(np.int64, st.integers(0, 40), elements=st.integers(0, 1000)), st.data())
def test_truncated_npy_is_refused_or_complete(arr, data):
    with folder() as d:
        path = d / "ids.npy"
        np.save(path, arr)
        whole = cut_short(path, data)
        try:
            got = read_ids(path)
        except ForgetIdError as exc:
            one_line(exc)
        else:
            assert whole and got.tolist() == arr.tolist()
        only(path)


@SETTINGS
@given(st.lists(st.one_of(st.integers(-5, 300), st.floats(allow_nan=True), st.booleans(), st.text(max_size=3),
                          st.none()), max_size=8))
def test_forget_ids_in_the_api(values):
    toy = make_toy(n=64)
    try:
        rows = forget_rows(toy, values)
    except ForgetIdError as exc:
        one_line(exc)
    else:
        ids = toy.ids[rows].tolist()
        assert ids == [int(v) for v in values] and len(set(ids)) == len(ids) and ids
        assert all(not isinstance(v, (bool, str)) and v is not None for v in values)


label_arrays = st.one_of(hnp.integer_dtypes(), hnp.floating_dtypes(), hnp.boolean_dtypes()).flatmap(
    lambda dt: hnp.arrays(dt, st.integers(0, 12)))


@SETTINGS
@given(hnp.arrays(st.sampled_from([np.uint8, np.uint8, np.float32, np.int16]),
                  hnp.array_shapes(min_dims=1, max_dims=5, min_side=0, max_side=6)),
       label_arrays, st.one_of(st.none(), label_arrays), st.booleans())
def test_any_npz_loads_or_is_refused(images, labels, ids, names):
    with folder() as d:
        path = d / "train.npz"
        arrays = {"images": images, "labels": labels}
        if ids is not None:
            arrays["ids"] = ids
        if names:
            arrays["class_names"] = np.array(["a", "b", "c"])
        np.savez(path, **arrays)
        try:
            ds = load_npz(path)
        except UserDataError as exc:
            one_line(exc)
        else:
            n = len(ds)
            assert ds.images.dtype == torch.uint8 and ds.images.dim() == 4 and n == images.shape[0] > 0
            assert ds.labels.tolist() == [int(v) for v in labels.ravel()]  # never truncated
            assert ds.labels.dtype == torch.int64 and int(ds.labels.min()) >= 0
            assert int(ds.labels.max()) < ds.num_classes and len(torch.unique(ds.ids)) == n
            assert all(np.isfinite(ds.mean)) and all(s > 0 for s in ds.std)
        only(path)


@SETTINGS
@given(st.data())
def test_truncated_npz_is_refused_or_complete(data):
    with folder() as d:
        path = d / "train.npz"
        n = data.draw(st.integers(1, 6))
        np.savez(path, images=np.zeros((n, 4, 4), np.uint8), labels=np.arange(n) % 2)
        whole = cut_short(path, data)
        try:
            ds = load_npz(path)
        except UserDataError as exc:
            one_line(exc)
        else:
            assert len(ds) == n and whole
        only(path)


@SETTINGS
@given(st.binary(max_size=400))
def test_any_bytes_inside_a_zip_member(payload):
    with folder() as d:
        path = d / "train.npz"
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as z:
            z.writestr("images.npy", payload)
            z.writestr("labels.npy", payload[::-1])
        path.write_bytes(buf.getvalue())
        with pytest.raises(UserError) as info:
            load_npz(path)
        one_line(info.value)
        only(path)


@SETTINGS
@given(st.lists(st.one_of(st.integers(-2, 5), st.floats(allow_nan=True, allow_infinity=True)), min_size=1,
                max_size=6))
def test_make_dataset_labels(labels):
    images = torch.zeros(len(labels), 1, 3, 3, dtype=torch.uint8)
    try:
        ds = make_dataset(images, labels, mean=[0.5], std=[0.2])
    except UserDataError as exc:
        one_line(exc)
        want = expected_ids(np.asarray(labels))
        assert want is None or min(want) < 0, f"refused valid labels {labels}: {exc}"
    else:
        assert ds.labels.tolist() == [int(v) for v in labels]


@SETTINGS
@given(st.recursive(st.one_of(st.integers(-3, 3), st.floats(), st.text(max_size=2), st.none(), st.booleans()),
                    lambda inner: st.lists(inner, max_size=3), max_leaves=8))
def test_as_integers_never_crashes(value):
    try:
        out = as_integers(value, "ids")
    except ForgetIdError as exc:
        one_line(exc)
    else:
        assert out.dtype == torch.int64 and out.dim() == 1
