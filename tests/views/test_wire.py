import numpy as np
import pytest
import torch

from llmasos_widgets.views import wire


def test_float32_and_int32_round_trip_exactly():
    x = torch.randn(3, 4)
    desc, data = wire.encode("x", x)
    assert desc == {"name": "x", "dtype": "float32", "shape": [3, 4]}
    assert len(data) == 48
    assert np.array_equal(wire.decode(desc, data), x.numpy())
    ids = torch.tensor([1, -2, 70000], dtype=torch.int32)
    assert wire.decode(*wire.encode("i", ids, "int32")).tolist() == [1, -2, 70000]


def test_float16_error_is_bounded_by_half_precision():
    x = torch.rand(1000)
    got = wire.decode(*wire.encode("x", x, "float16"))
    assert np.abs(got - x.numpy()).max() <= 2**-11


@pytest.mark.parametrize("low", [0.0, -3.0])
def test_uint8_error_is_at_most_half_a_step(low):
    x = torch.rand(64, 64) * 5 + low
    desc, data = wire.encode("p", x, "uint8")
    assert len(data) == 64 * 64
    got = wire.decode(desc, data)
    assert np.abs(got - x.numpy()).max() <= desc["scale"] / 2 + 1e-9
    if low == 0.0:
        assert desc["offset"] == 0.0  # non-negative data keeps an exact zero


def test_attention_like_rows_keep_exact_zeros():
    x = torch.tensor([[1.0, 0.0], [0.25, 0.75]])
    got = wire.decode(*wire.encode("p", x, "uint8"))
    assert got[0, 1] == 0.0 and got[0, 0] == pytest.approx(1.0)


def test_bytes_are_little_endian_c_order():
    desc, data = wire.encode("x", torch.tensor([[1.0, 2.0]]))
    assert data[:4] == np.float32(1.0).tobytes() and np.frombuffer(data, "<f4").tolist() == [1.0, 2.0]


def test_unknown_dtype_is_refused():
    with pytest.raises(ValueError, match="unknown wire dtype"):
        wire.encode("x", torch.zeros(1), "float64")
