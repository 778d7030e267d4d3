"""keras_ltpa.utils.batches: one function over slices, outputs joined."""

import keras
import numpy as np
import pytest

from keras_ltpa.utils.batches import map_batches


def test_slices_cover_every_row_once_in_order():
    calls = []

    def record(x, y):
        calls.append((x.tolist(), y.tolist()))
        return x + y

    out = map_batches(record, np.arange(7), np.arange(7) * 10, batch_size=3)
    assert calls == [([0, 1, 2], [0, 10, 20]), ([3, 4, 5], [30, 40, 50]), ([6], [60])]
    np.testing.assert_array_equal(out, np.arange(7) * 11)


def test_dict_and_tuple_outputs_keep_their_structure_as_float32():
    def model_like(x):
        tensor = keras.ops.convert_to_tensor(x, "bfloat16")
        return {"probabilities": tensor, "pair": (x, -x)}

    out = map_batches(model_like, np.array([1.0, 2.0, 3.0]), batch_size=2)
    assert out["probabilities"].dtype == np.float32
    np.testing.assert_array_equal(out["probabilities"], [1.0, 2.0, 3.0])
    np.testing.assert_array_equal(out["pair"][1], [-1.0, -2.0, -3.0])


@pytest.mark.parametrize(
    "arrays, batch_size, match",
    [
        ((np.zeros(3),), 0, "batch_size"),
        ((np.zeros(3),), 2.0, "batch_size"),
        ((np.zeros(3), np.zeros(2)), 2, "different lengths"),
        ((np.zeros(0),), 2, "empty"),
        ((), 2, "at least one array"),
    ],
)
def test_bad_arguments_are_named(arrays, batch_size, match):
    with pytest.raises(ValueError, match=match):
        map_batches(lambda *a: a[0], *arrays, batch_size=batch_size)
