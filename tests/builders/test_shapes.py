"""Stage 3: trtexec shape spellings, re-shaping models (RetinaFace, odd fixed shapes), optimization profiles."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnx.helper as oh
import pytest

from builders.onnx_load import describe_io, load_onnx
from builders.shapes import fix_shapes, make_profiles, ort_session, parse_shapes
from edge.errors import BuildError, ConfigError
from edge.spec import PreprocessSpec


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("input:1x3x480x640", {"input": (1, 3, 480, 640)}),
        ("input:1x3x480x640,other:1x10", {"input": (1, 3, 480, 640), "other": (1, 10)}),
        (" images : 8x3x640x640 , mask:8 ", {"images": (8, 3, 640, 640), "mask": (8,)}),
        ("'input:0':1x3x224x224", {"input:0": (1, 3, 224, 224)}),
        ("input:0:1x3x224x224", {"input:0": (1, 3, 224, 224)}),
        ("", ConfigError("--shapes: empty")),
        ("input", ConfigError("'input' is not NAME:DxDx")),
        (":1x3", ConfigError("':1x3' is not NAME:DxDx")),
        ("input:1x3xHx640", ConfigError("dimension 'H' is not a positive integer")),
        ("input:1x3x0x640", ConfigError("dimension '0' is not a positive integer")),
        ("input:1x-3", ConfigError("dimension '-3' is not a positive integer")),
        ("input:1X3", ConfigError("dimension '1X3' is not a positive integer")),
        ("input:1x3,", ConfigError("entry 2 is empty")),
        ("a:1,a:2", ConfigError("input 'a' is given twice")),
    ],
)
def test_parse_shapes(text: str, expected: object) -> None:
    if isinstance(expected, ConfigError):
        with pytest.raises(ConfigError) as info:
            parse_shapes(text)
        assert str(expected) in str(info.value)
        assert str(info.value).startswith("--shapes: ")
    else:
        assert parse_shapes(text) == expected


def test_parse_shapes_names_the_flag() -> None:
    with pytest.raises(ConfigError, match=r"^--max-shapes: 'x:1xa'"):
        parse_shapes("x:1xa", "--max-shapes")


@pytest.fixture(scope="module")
def retinaface(retinaface_onnx: Path) -> onnx.ModelProto:
    return load_onnx(retinaface_onnx)


def test_fix_shapes_retinaface_outputs_follow(retinaface: onnx.ModelProto) -> None:
    fixed = fix_shapes(retinaface, {"input": (1, 3, 480, 640)})
    inputs, outputs = describe_io(fixed)
    priors = (60 * 80 + 30 * 40 + 15 * 20) * 2  # two anchors per cell on strides 8, 16, 32
    assert inputs[0].shape == (1, 3, 480, 640)
    assert [o.shape for o in outputs] == [(1, priors, 4), (1, priors, 2), (1, priors, 10)]
    got = ort_session(fixed).run(None, {"input": np.zeros((1, 3, 480, 640), np.float32)})
    assert [g.shape for g in got] == [o.shape for o in outputs]
    assert describe_io(retinaface)[0][0].shape == (-1, 3, -1, -1)  # the original is untouched


def _conv_model(input_shape: list[int], reshape_to: list[int] | None = None) -> onnx.ModelProto:
    """A 3x3 conv (4 filters) exported at a FIXED shape; optionally a Reshape with hard-coded sizes."""
    rng = np.random.default_rng(0)
    weight = onnx.numpy_helper.from_array(rng.standard_normal((4, 3, 3, 3)).astype(np.float32), "w")
    nodes = [oh.make_node("Conv", ["x", "w"], ["y"], pads=[1, 1, 1, 1], name="conv")]
    inits = [weight]
    out_shape = [input_shape[0], 4, *input_shape[2:]]
    out = "y"
    if reshape_to is not None:
        inits.append(onnx.numpy_helper.from_array(np.array(reshape_to, np.int64), "s"))
        nodes.append(oh.make_node("Reshape", ["y", "s"], ["z"], name="flatten"))
        out, out_shape = "z", reshape_to
    graph = oh.make_graph(
        nodes,
        "odd",
        [oh.make_tensor_value_info("x", onnx.TensorProto.FLOAT, input_shape)],
        [oh.make_tensor_value_info(out, onnx.TensorProto.FLOAT, out_shape)],
        inits,
    )
    return oh.make_model(graph, opset_imports=[oh.make_opsetid("", 17)])


def test_fix_shapes_reshapes_a_model_exported_at_an_odd_fixed_size() -> None:
    model = _conv_model([1, 3, 37, 53])
    fixed = fix_shapes(model, {"x": (2, 3, 64, 96)})
    inputs, outputs = describe_io(fixed)
    assert inputs[0].shape == (2, 3, 64, 96)
    assert outputs[0].shape == (2, 4, 64, 96)
    x = np.random.default_rng(1).standard_normal((2, 3, 64, 96)).astype(np.float32)
    (y,) = ort_session(fixed).run(None, {"x": x})
    assert y.shape == (2, 4, 64, 96)


def test_fix_shapes_refuses_a_model_whose_layers_hard_code_the_size() -> None:
    model = _conv_model([1, 3, 37, 53], reshape_to=[1, 4 * 37 * 53])
    fix_shapes(model, {"x": (1, 3, 37, 53)})  # its own size works
    with pytest.raises(BuildError, match=r"does not work at x:1x3x64x64: node flatten \(Reshape\)"):
        fix_shapes(model, {"x": (1, 3, 64, 64)})


@pytest.mark.parametrize(
    ("shapes", "message"),
    [
        ({"image": (1, 3, 64, 64)}, "'image' is not an input of the model; its inputs are: x"),
        ({"x": (1, 3, 64)}, "x:1x3x64 has 3 dimensions but the model's input 'x' has 4"),
    ],
)
def test_fix_shapes_bad_requests(shapes: dict[str, tuple[int, ...]], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        fix_shapes(_conv_model([1, 3, 37, 53]), shapes)


SIZE_320 = PreprocessSpec(input="input", size=(320, 320))
P = dict[str, tuple[int, ...]]


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({"preprocess": SIZE_320}, ((1, 3, 320, 320), (1, 3, 320, 320), (1, 3, 320, 320))),
        ({"shapes": {"input": (2, 3, 480, 640)}}, ((2, 3, 480, 640),) * 3),
        ({"opt_shapes": {"input": (1, 3, 640, 640)}}, ((1, 3, 640, 640),) * 3),
        (
            {"min_shapes": {"input": (1, 3, 320, 320)}, "max_shapes": {"input": (8, 3, 640, 640)}},
            ((1, 3, 320, 320), (8, 3, 640, 640), (8, 3, 640, 640)),
        ),
        (
            {
                "min_shapes": {"input": (1, 3, 320, 320)},
                "opt_shapes": {"input": (4, 3, 480, 640)},
                "max_shapes": {"input": (8, 3, 640, 640)},
                "preprocess": SIZE_320,
            },
            ((1, 3, 320, 320), (4, 3, 480, 640), (8, 3, 640, 640)),
        ),
        ({}, ConfigError("input 'input' has dynamic axes (?x3x?x?) and no shape was given")),
        ({"preprocess": PreprocessSpec(input="input")}, ConfigError("no shape was given")),
        (
            {"min_shapes": {"input": (1, 3, 700, 320)}, "max_shapes": {"input": (8, 3, 640, 640)}},
            ConfigError("input 'input' axis 2: needs min <= opt <= max, got 700, 640, 640"),
        ),
        (
            {"max_shapes": {"input": (8, 4, 640, 640)}},
            ConfigError("--max-shapes: input:8x4x640x640 sets axis 1 to 4 but the model fixes it at 3"),
        ),
        ({"opt_shapes": {"input": (1, 3, 640)}}, ConfigError("--opt-shapes: input:1x3x640 has 3 dimensions but")),
        ({"shapes": {"input": (1, 1, 64, 64)}}, ConfigError("--shapes: input:1x1x64x64 sets axis 1 to 1")),
        ({"max_shapes": {"images": (1, 3, 640, 640)}}, ConfigError("--max-shapes: 'images' is not an input")),
    ],
)
def test_make_profiles_retinaface(retinaface: onnx.ModelProto, kwargs: dict[str, object], expected: object) -> None:
    if isinstance(expected, ConfigError):
        with pytest.raises(ConfigError) as info:
            make_profiles(retinaface, **kwargs)  # type: ignore[arg-type]
        assert str(expected) in str(info.value)
    else:
        assert isinstance(expected, tuple)
        want = {"input": {"min": expected[0], "opt": expected[1], "max": expected[2]}}
        assert make_profiles(retinaface, **kwargs) == want  # type: ignore[arg-type]


def test_make_profiles_static_and_dynamic_batch(squeezenet_onnx: Path) -> None:
    model = load_onnx(squeezenet_onnx)  # batch axis dynamic, 3x224x224 fixed
    assert make_profiles(model) == {
        "data_0": {"min": (1, 3, 224, 224), "opt": (1, 3, 224, 224), "max": (1, 3, 224, 224)}
    }
    prof = make_profiles(model, max_shapes={"data_0": (16, 3, 224, 224)}, opt_shapes={"data_0": (4, 3, 224, 224)})
    assert prof["data_0"] == {"min": (4, 3, 224, 224), "opt": (4, 3, 224, 224), "max": (16, 3, 224, 224)}
    static = fix_shapes(model, {"data_0": (2, 3, 224, 224)})
    assert make_profiles(static) == {}
    assert make_profiles(static, opt_shapes={"data_0": (2, 3, 224, 224)}) == {}
    with pytest.raises(ConfigError, match=r"input 'data_0' is fixed at 2x3x224x224 in the model, not 4x3x224x224"):
        make_profiles(static, max_shapes={"data_0": (4, 3, 224, 224)})
