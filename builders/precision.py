"""Stage 4: precision in the ONNX (TensorRT then builds it strongly typed, see ``docs/build.md``).

- :func:`to_fp16`: the kit's FP16 conversion (:mod:`builders.fp16`: shape and index computation keep their
  types, FP32 inputs/outputs kept, Casts inside), ops that overflow easily (``Exp``, ``Pow``, sums and
  products over axes, ...) kept in FP32, and, when sample inputs are given, a range check: every node
  whose output reaches ``|x| > FP16_LIMIT`` (a quarter of FP16's 65504, headroom for inputs brighter
  than the samples) stays FP32 together with the nodes reading that tensor, as does every node reading a
  weight beyond FP16's range.
- :func:`quantize`: INT8 (or FP8 E4M3) Q/DQ with ONNX Runtime's ``quantize_static`` laid out the way
  TensorRT wants it: symmetric scales (zero point 0), per-channel weights, per-tensor activations,
  Q/DQ only on the inputs of Conv/ConvTranspose/Gemm/MatMul and of residual Adds (no output Q/DQ, so no
  stray pairs), biases left in float. INT8 activation ranges come from :mod:`builders.calibration`
  (``entropy`` as TensorRT's calibrator, ``minmax``, ``percentile`` 99.99); FP8 uses ONNX Runtime's
  ``distribution`` calibration, the only one it offers for float8.
- :func:`quantize_dynamic_int8`: ONNX Runtime's dynamic quantization (``int8-dynamic``): int8 weights of
  MatMul/Attention/LSTM, activations quantized at run time, no calibration; ONNX Runtime artifacts only.
- :func:`convert` picks one by name.
"""

from __future__ import annotations

import contextlib
import io
import logging
import tempfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

from builders.calibration import Sample, collect_stats, float_tensor_types
from builders.onnx_load import lowest_ir_version, nonstandard_ops, with_plugin_domain
from builders.shapes import ort_error_summary, ort_session
from edge.errors import BuildError, ConfigError, first_line

log = logging.getLogger(__name__)

FP16_MAX = 65504.0
FP16_LIMIT = FP16_MAX / 4
FP8_MAX = 448.0  # largest finite float8 E4M3FN
# float8 Q/DQ needs opset 19; ONNX Runtime's quantizer moves a DequantizeLinear past a Transpose/Reshape, and
# those take float8 tensors only from opset 21 (YOLO12's attention: Split -> Transpose -> MatMul).
FP8_OPSET = 21
LARGE_MODEL = 1 << 30  # weights beyond 1 GiB go through external data files (protobuf stops at 2 GiB)
# Ops whose results overflow FP16 on ordinary inputs (exponentials, powers, sums/products over axes).
OVERFLOW_OPS = (
    "Exp",
    "Pow",
    "Softplus",
    "CumSum",
    "ReduceSum",
    "ReduceSumSquare",
    "ReduceProd",
    "ReduceL1",
    "ReduceL2",
    "ReduceLogSumExp",
)
# Kept in FP32 besides those: NMS and RoiAlign (box arithmetic; ONNX Runtime has no FP16 kernels) and
# LayerNormalization (TensorRT advises FP32 for it, its variance overflows FP16; and ONNX Runtime 1.32's
# full graph optimisation crashed on torchvision ViT-B/16 with FP16 LayerNormalization).
FP16_BLOCK_OPS = (*OVERFLOW_OPS, "NonMaxSuppression", "RoiAlign", "LayerNormalization")
WEIGHTED_OPS = ("Conv", "ConvTranspose", "Gemm", "MatMul")
CALIB_METHODS = ("entropy", "minmax", "percentile")
PRECISIONS = ("fp32", "fp16", "int8", "fp8", "int8-dynamic")
# int8-dynamic quantizes the weights of these (MatMul with a constant B); Conv is left out on purpose: ONNX
# Runtime's ConvInteger ran 3.6-5.7x slower than FP32 on CPU (docs/build.md).
DYNAMIC_OPS = ("MatMul", "Attention", "LSTM")
DYNAMIC_INT8_OPS = ("MatMulInteger", "DynamicQuantizeMatMul", "DynamicQuantizeLSTM", "QAttention")


def _copy(model: onnx.ModelProto) -> onnx.ModelProto:
    out = onnx.ModelProto()
    out.CopyFrom(model)
    return out


def name_nodes(model: onnx.ModelProto) -> None:
    """Give every unnamed node a unique name (block and quantize lists address nodes by name)."""
    used = {n.name for n in model.graph.node if n.name}
    for index, node in enumerate(model.graph.node):
        if not node.name:
            name = f"{node.op_type}_{index}"
            while name in used:
                name += "_"
            node.name = name
            used.add(name)


# -- FP16 ------------------------------------------------------------------------------------------


def fp16_block_nodes(model: onnx.ModelProto, samples: Sequence[Sample] = (), limit: float = FP16_LIMIT) -> list[str]:
    """Names of nodes that must stay FP32: large weights, and activations beyond ``limit`` on ``samples``."""
    inits = {t.name: t for t in model.graph.initializer}
    big_weights = set()
    for name, tensor in inits.items():
        if tensor.data_type == onnx.TensorProto.FLOAT:
            values = numpy_helper.to_array(tensor)
            if values.size and float(np.abs(values).max()) > FP16_MAX:
                big_weights.add(name)
    hot: set[str] = set()
    if samples:
        names = [n for n in float_tensor_types(model) if n not in inits]
        stats = collect_stats(model, samples, names, histogram=False, label="fp16 range check")
        hot = {name for name, s in stats.items() if s.amax > limit}
    blocked = []
    for node in model.graph.node:
        if set(node.input) & (hot | big_weights) or set(node.output) & hot:
            blocked.append(node.name)
    return blocked


def to_fp16(
    model: onnx.ModelProto, samples: Sequence[Sample] = (), *, limit: float = FP16_LIMIT, fp16_io: bool = False
) -> onnx.ModelProto:
    """FP16 compute, FP32 inputs and outputs (FP16 ones with ``fp16_io``); see the module doc for what stays FP32."""
    lowest_ir_version(model)

    work = _copy(model)
    name_nodes(work)
    plugins = nonstandard_ops(work)
    if plugins and samples:
        log.warning("fp16: no range check (ONNX Runtime cannot run %s); only the op rules apply", ", ".join(plugins))
        samples = ()
    blocked = fp16_block_nodes(work, samples, limit)
    if blocked:
        log.info("fp16: keeping %d node(s) in fp32 (out of fp16 range): %s", len(blocked), ", ".join(blocked[:5]))
    return _convert_checked(work, blocked, plugins, keep_io_types=not fp16_io)


def _convert_checked(
    work: onnx.ModelProto, blocked: list[str], plugins: list[str], *, keep_io_types: bool = True
) -> onnx.ModelProto:
    """Convert; a node ONNX Runtime has no FP16 kernel for is kept in FP32 and the conversion repeated."""
    from builders.fp16 import MAX_RETRIES, convert_float_to_half, missing_kernel

    block = list(blocked)
    for _ in range(MAX_RETRIES):
        try:
            converted, plan = convert_float_to_half(
                work, block_ops=FP16_BLOCK_OPS, block_nodes=block, keep_io_types=keep_io_types
            )
            if plugins:
                onnx.checker.check_model(with_plugin_domain(converted, plugins))
            else:
                onnx.checker.check_model(converted)
                ort_session(converted)
        except Exception as exc:  # the checker and ORT raise assorted exceptions
            missing = missing_kernel(str(exc))
            if missing is not None and missing[1] not in block:
                log.info("fp16: ONNX Runtime has no FP16 %s kernel: node %s stays fp32", *missing)
                block.append(missing[1])
                continue
            raise BuildError(
                f"fp16 conversion failed: {ort_error_summary(str(exc))}; build with --precision fp32"
            ) from None
        reasons: dict[str, int] = {}
        for reason in plan.kept.values():
            reasons[reason] = reasons.get(reason, 0) + 1
        log.info(
            "fp16: %d node(s) converted, %d kept in fp32 (%s)",
            len(plan.converted),
            len(plan.kept),
            ", ".join(f"{r}: {n}" for r, n in sorted(reasons.items())) or "none",
        )
        return converted
    raise BuildError(
        f"fp16 conversion failed: ONNX Runtime lacks FP16 kernels for {len(block)} nodes; build with --precision fp32"
    )


# -- INT8 / FP8 ------------------------------------------------------------------------------------


def quant_nodes(model: onnx.ModelProto) -> list[str]:
    """Nodes to quantize: every Conv/ConvTranspose/Gemm/MatMul, and Adds of two float activations (residuals).

    An Add whose result reaches no Conv/Gemm/MatMul is no residual but output arithmetic (a detection
    head's box decoding, ``anchors + distances`` in pixels): int8 there moves boxes by whole pixels, so it stays
    float.
    """
    consts = {t.name for t in model.graph.initializer}
    consts |= {o for n in model.graph.node if n.op_type == "Constant" for o in n.output}
    floats = float_tensor_types(model)
    feeds_weighted: set[str] = set()  # tensors a Conv/Gemm/MatMul reads, directly or further down
    for node in reversed(model.graph.node):  # ONNX graphs are topologically sorted
        if node.op_type in WEIGHTED_OPS or any(o in feeds_weighted for o in node.output):
            feeds_weighted.update(node.input)
    chosen = []
    for node in model.graph.node:
        if node.op_type in WEIGHTED_OPS or (
            node.op_type == "Add"
            and len(node.input) == 2
            and all(i not in consts and i in floats for i in node.input)
            and any(o in feeds_weighted for o in node.output)
        ):
            chosen.append(node.name)
    return chosen


def _activation_inputs(model: onnx.ModelProto, nodes: Sequence[str]) -> tuple[list[str], list[str]]:
    """(typed float activation inputs of ``nodes``, inputs whose type is unknown)."""
    consts = {t.name for t in model.graph.initializer}
    consts |= {o for n in model.graph.node if n.op_type == "Constant" for o in n.output}
    floats = float_tensor_types(model)
    wanted = set(nodes)
    typed: dict[str, None] = {}
    unknown: dict[str, None] = {}
    for node in model.graph.node:
        if node.name in wanted:
            for name in node.input[:2]:
                if name and name not in consts:
                    (typed if name in floats else unknown)[name] = None
    return list(typed), list(unknown)


class _Reader:
    """ONNX Runtime CalibrationDataReader over in-memory samples."""

    def __init__(self, samples: Sequence[Sample]) -> None:
        self._samples = list(samples)
        self._index = 0

    def get_next(self) -> Sample | None:
        if self._index >= len(self._samples):
            return None
        sample = self._samples[self._index]
        self._index += 1
        return sample

    def __len__(self) -> int:
        return len(self._samples)

    def set_range(self, start_index: int, end_index: int) -> None:
        self._samples = self._samples[start_index:end_index]
        self._index = 0


def _with_opset(model: onnx.ModelProto, version: int) -> onnx.ModelProto:
    current = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    if current >= version:
        return model
    try:
        return onnx.version_converter.convert_version(model, version)
    except Exception as exc:  # the converter raises assorted exceptions
        raise BuildError(
            f"quantization needs ONNX opset {version} or newer; converting from opset {current} failed "
            f"({first_line(exc, type(exc).__name__)}); re-export the model with opset >= {version}"
        ) from None


def quantize(
    model: onnx.ModelProto, samples: Sequence[Sample], *, precision: str = "int8", method: str = "entropy"
) -> onnx.ModelProto:
    """Q/DQ model for TensorRT (``precision`` ``int8`` or ``fp8``), calibrated on ``samples``."""
    lowest_ir_version(model)
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    if precision not in ("int8", "fp8"):
        raise ConfigError(f"quantize: precision must be int8 or fp8, got {precision!r}")
    if method not in CALIB_METHODS:
        raise ConfigError(f"--calib-method: {method!r} is not one of {', '.join(CALIB_METHODS)}")
    if not samples:
        raise BuildError("no calibration samples: give --calib with at least one image")
    work = _with_opset(_copy(model), FP8_OPSET if precision == "fp8" else 13)
    name_nodes(work)
    work = onnx.shape_inference.infer_shapes(work)
    nodes = quant_nodes(work)
    if not nodes:
        raise BuildError(f"{precision}: the model has no Conv, Gemm or MatMul to quantize; build it in fp16 instead")
    extra: dict[str, object] = {
        "QuantizeBias": False,
        "OpTypesToExcludeOutputQuantization": [*WEIGHTED_OPS, "Add"],
        "DedicatedQDQPair": True,  # a tensor's other readers (Resize, Concat, ...) keep the float value
    }
    names, unknown = _activation_inputs(work, nodes)
    if precision == "int8":
        qtype, calibrate = QuantType.QInt8, CalibrationMethod.MinMax
        stats = collect_stats(work, samples, names, histogram=method != "minmax", label=f"calibrate ({method})")
        extra.update(ActivationSymmetric=True, WeightSymmetric=True)
        extra["TensorQuantOverrides"] = {
            name: [{"rmin": np.array(-t, np.float32), "rmax": np.array(t, np.float32)}]
            for name, s in stats.items()
            if (t := s.threshold(method)) > 0
        }
    else:
        from ml_dtypes import float8_e4m3fn

        # ONNX Runtime only offers its 'distribution' calibration for float8, which sets scales from the
        # standard deviation; TensorRT's FP8 recipe (ModelOpt) maps the largest |x| to E4M3's 448.
        qtype, calibrate = QuantType.QFLOAT8E4M3FN, CalibrationMethod.Distribution
        if method != "minmax":
            log.info("fp8: activation scales come from the largest |x| (FP8's range needs no clipping), not %s", method)
        stats = collect_stats(work, samples, names, histogram=False, label="calibrate (fp8, max)")
        zero = np.array(0, dtype=float8_e4m3fn)
        extra["TensorQuantOverrides"] = {
            name: [{"scale": np.array(s.amax / FP8_MAX, np.float32), "zero_point": zero}]
            for name, s in stats.items()
            if s.amax > 0
        }
    # The ranges above replace ONNX Runtime's own calibration; it still wants a reader, and reads it in
    # full only if some input could not be typed (then ORT's own statistics cover that tensor).
    reader = _Reader(samples if unknown else samples[:1])
    work.metadata_props.add(key="onnx.quant.pre_process", value="onnxruntime.quant")  # silences ORT's hint

    def run(src: Path, dst: Path, large: bool) -> None:
        quantize_static(
            src,
            dst,
            reader,
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=qtype,
            weight_type=qtype,
            calibrate_method=calibrate,
            nodes_to_quantize=nodes,
            extra_options=extra,
            use_external_data_format=large,
        )

    out = _run_quantizer(work, precision, run)
    keep = [p for p in out.metadata_props if p.key != "onnx.quant.pre_process"]
    del out.metadata_props[:]
    out.metadata_props.extend(keep)
    try:
        ort_session(out)
    except Exception as exc:  # ORT raises its own untyped exception family
        raise BuildError(f"{precision} model does not load in ONNX Runtime: {ort_error_summary(str(exc))}") from None
    return out


def _run_quantizer(work: onnx.ModelProto, label: str, run: Callable[[Path, Path, bool], None]) -> onnx.ModelProto:
    """Save ``work`` to a temp file, let ONNX Runtime's quantizer ``run(src, dst, large)`` on it (quietly),
    load the result; its assorted exceptions become one BuildError."""
    with tempfile.TemporaryDirectory(prefix="edge-quant-") as tmp:
        src, dst = Path(tmp) / "model.onnx", Path(tmp) / "quantized.onnx"
        large = sum(len(t.raw_data) for t in work.graph.initializer) > LARGE_MODEL
        onnx.save(work, src, save_as_external_data=large)
        try:
            with contextlib.redirect_stdout(io.StringIO()), _quiet_root_logger():
                run(src, dst, large)
            return onnx.load(dst)
        except Exception as exc:  # the quantizers raise assorted exceptions
            detail = first_line(exc, type(exc).__name__)
            raise BuildError(f"{label} quantization failed: {detail}; try --precision fp16") from None


@contextlib.contextmanager
def _quiet_root_logger() -> Iterator[None]:
    """ONNX Runtime's quantizer logs through the root logger; keep its chatter out of the build's output."""
    root = logging.getLogger()
    handler = logging.NullHandler()
    added = not root.handlers
    if added:
        root.addHandler(handler)  # stops logging.warning() from installing a stderr handler
    previous = root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(previous)
        if added:
            root.removeHandler(handler)


def quantize_dynamic_int8(model: onnx.ModelProto) -> onnx.ModelProto:
    """ONNX Runtime dynamic quantization: int8 weights of MatMul/Attention/LSTM, activations quantized at run
    time (``DynamicQuantizeLinear``), no calibration. For the ONNX Runtime artifact only (no TensorRT plan)."""
    lowest_ir_version(model)
    from onnxruntime.quantization import QuantType, quantize_dynamic

    work = _with_opset(_copy(model), 13)
    name_nodes(work)

    def run(src: Path, dst: Path, large: bool) -> None:
        quantize_dynamic(
            src,
            dst,
            op_types_to_quantize=list(DYNAMIC_OPS),
            weight_type=QuantType.QInt8,
            use_external_data_format=large,
            extra_options={"MatMulConstBOnly": True},  # weights only: activation x activation stays float
        )

    out = _run_quantizer(work, "int8-dynamic", run)
    quantized = sum(n.op_type in DYNAMIC_INT8_OPS for n in out.graph.node)
    if not quantized:
        convs = sum(n.op_type == "Conv" for n in work.graph.node)
        raise BuildError(
            f"int8-dynamic: nothing to quantize (no MatMul with constant weights, Attention or LSTM; {convs} Conv): "
            "dynamic quantization pays on MatMul-heavy models (transformers, MLPs); for a conv net use "
            "--precision int8 --calib DIR (or fp16)"
        )
    log.info("int8-dynamic: %d node(s) quantized (int8 weights, activations quantized at run time)", quantized)
    convs = sum(n.op_type == "Conv" for n in work.graph.node)
    if convs > quantized:
        log.warning(
            "int8-dynamic: %d MatMul(s) quantized but %d Conv(s) stay FP32: a conv net gains little from dynamic "
            "quantization; --precision int8 --calib DIR quantizes the convolutions",
            quantized,
            convs,
        )
    try:
        ort_session(out)
    except Exception as exc:  # ORT raises its own untyped exception family
        raise BuildError(f"int8-dynamic model does not load in ONNX Runtime: {ort_error_summary(str(exc))}") from None
    return out


def convert(
    model: onnx.ModelProto,
    precision: str,
    samples: Sequence[Sample] = (),
    *,
    method: str = "entropy",
    fp16_io: bool = False,
) -> onnx.ModelProto:
    """The model in ``precision`` (``fp32`` returns it unchanged)."""
    if precision == "fp32":
        return model
    if precision == "fp16":
        return to_fp16(model, samples, fp16_io=fp16_io)
    if precision in ("int8", "fp8"):
        return quantize(model, samples, precision=precision, method=method)
    if precision == "int8-dynamic":
        return quantize_dynamic_int8(model)
    raise ConfigError(f"--precision: {precision!r} is not one of {', '.join(PRECISIONS)}")
