"""Parity with the public PyTorch implementation's outputs (fixtures)."""

import numpy as np
import pytest

import keras_ltpa
from keras_ltpa import convert
from tests.conftest import FIXTURES_DIR
from tests.conftest import require_package

FIXTURES = [
    ("before", "softmax"),
    ("before", "sigmoid"),
    ("after", "softmax"),
    ("after", "sigmoid"),
]


def fixture_path(position, normalization):
    path = FIXTURES_DIR / f"reference_{position}_{normalization}.npz"
    if not path.is_file():
        pytest.fail(f"reference fixture missing: {path}")
    return path


def reference_outputs(model, fixture):
    """Runs the model on the fixture input; the reference fed [0, 1) as-is."""
    images = fixture["input_nchw"].transpose(0, 2, 3, 1) * 255.0
    return keras_ltpa.attention_model(model).predict(images, verbose=0)


@pytest.mark.parametrize("position, normalization", FIXTURES)
def test_converted_model_reproduces_reference(position, normalization):
    path = fixture_path(position, normalization)
    fixture = np.load(path)
    model = convert.build_model_from_torch(
        path,
        attention_position=position,
        normalization=normalization,
        pixel_mean=(0.0,),
        pixel_std=(1.0,),
    )
    # Widths divided by 8, as the fixtures' README says.
    assert model.get_layer("block1_conv1").filters == 8
    outputs = reference_outputs(model, fixture)
    np.testing.assert_allclose(outputs["logits"], fixture["logits"], atol=1e-4, rtol=0)
    for k in (1, 2, 3):
        np.testing.assert_allclose(
            outputs[f"scores_{k}"], fixture[f"c{k}"][:, 0], atol=1e-4, rtol=0
        )


def test_every_reference_parameter_lands_once():
    path = fixture_path("before", "softmax")
    state_dict = convert.load_state_dict_file(path)
    model = keras_ltpa.build_model(10, width_multiplier=0.125)
    convert.load_torch_state_dict(model, state_dict)
    reference_count = sum(
        v.size for k, v in state_dict.items() if "running" not in k and "num_batches" not in k
    )
    assert reference_count == sum(int(np.prod(w.shape)) for w in model.trainable_weights)
    kernel = model.get_layer("block2_conv1").get_weights()[0]
    np.testing.assert_array_equal(
        kernel, state_dict["conv_block2.op.0.weight"].transpose(2, 3, 1, 0)
    )
    moving_var = model.get_layer("block6_bn2").get_weights()[3]
    np.testing.assert_array_equal(moving_var, state_dict["conv_block6.op.5.running_var"])


def test_torch_pt_file_loads(tmp_path):
    require_package("torch", "torch")  # Reading .pt files needs PyTorch.
    import torch
    fixture = np.load(fixture_path("after", "softmax"))
    state_dict = {
        "module." + key[len("state_dict/") :]: torch.from_numpy(fixture[key])
        for key in fixture.files
        if key.startswith("state_dict/")
    }
    state_dict["module.conv_block1.op.1.num_batches_tracked"] = torch.tensor(5)
    path = tmp_path / "attnvgg.pth"
    torch.save({"state_dict": state_dict, "epoch": 3}, path)
    model = convert.build_model_from_torch(
        path, attention_position="after", pixel_mean=(0.0,), pixel_std=(1.0,)
    )
    outputs = reference_outputs(model, fixture)
    np.testing.assert_allclose(outputs["logits"], fixture["logits"], atol=1e-4, rtol=0)


def test_mismatches_name_the_parameter():
    state_dict = convert.load_state_dict_file(fixture_path("before", "softmax"))
    model = keras_ltpa.build_model(10, width_multiplier=0.125)

    extra = dict(state_dict, **{"attn4.op.weight": np.zeros((1, 64, 1, 1))})
    with pytest.raises(ValueError, match=r"'attn4.op.weight'.*compatibility_4"):
        convert.load_torch_state_dict(model, extra)

    unknown = dict(state_dict, **{"fc.weight": np.zeros((2, 2))})
    with pytest.raises(ValueError, match=r"'fc.weight' has no counterpart"):
        convert.load_torch_state_dict(model, unknown)

    missing = {k: v for k, v in state_dict.items() if not k.startswith("attn2")}
    with pytest.raises(ValueError, match=r"no parameters for model layers \['compatibility_2'\]"):
        convert.load_torch_state_dict(model, missing)

    wrong = keras_ltpa.build_model(10, width_multiplier=0.25)
    with pytest.raises(ValueError, match=r"Shape mismatch for 'conv_block1.op.0.weight'"):
        convert.load_torch_state_dict(wrong, state_dict)


def test_bad_checkpoint_files(tmp_path):
    with pytest.raises(ValueError, match=r"No checkpoint file at .*missing.npz"):
        convert.load_state_dict_file(tmp_path / "missing.npz")
    other = tmp_path / "weights.h5"
    other.write_bytes(b"\0")
    with pytest.raises(ValueError, match=r"extension '.h5'.*\.npz, \.pt, \.pth"):
        convert.load_state_dict_file(other)
    with pytest.raises(ValueError, match=r"no 'dense.weight'"):
        convert.build_model_from_torch({"conv_block1.op.0.weight": np.zeros((8, 3, 3, 3))})
