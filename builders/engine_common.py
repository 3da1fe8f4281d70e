"""What classic TensorRT (10.x/11.x) and TensorRT-RTX builds share, written once for both.

The TensorRT module is a parameter (``trt``: ``tensorrt`` or ``tensorrt_rtx``, same API for everything
here), never a global import, so the classic path (only on the device) and the RTX path (anywhere) run
the same code: a strongly typed network, the ONNX parser with errors as ``node NAME (OpType): reason``,
optimization profiles from the manifest's ``{input: {"min", "opt", "max"}}``, workspace, builder
optimization level, a progress bar fed by a ``trt.IProgressMonitor``, and the plan written to a file.

    build = EngineBuild(trt, EngineRequest(onnx, plan_path, profiles, label="rtx-ada"))
    build.config.set_compute_capability(...)       # flavour-specific settings (engine_rtx, engine_trt)
    size = build.run()
"""

from __future__ import annotations

import contextlib
import functools
import logging
import signal
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from builders.progress_bar import ProgressBar
from edge.backends.trt_logger import flavour_name, process_logger
from edge.errors import BuildError

log = logging.getLogger("builders.engine")

Profiles = Mapping[str, Mapping[str, Sequence[int]]]


@dataclass(frozen=True)
class EngineRequest:
    """One plan to build: the ONNX it comes from, where it goes, and the settings both flavours share."""

    onnx_path: Path
    plan_path: Path
    profiles: Profiles = field(default_factory=dict)
    workspace_mib: int | None = None
    optimization_level: int | None = None  # 0-5; TensorRT's default is 3
    label: str = "engine"
    strongly_typed: bool = True  # classic DLA builds use the weakly typed route (see engine_trt)
    source_name: str | None = None  # the model file named in errors (default: onnx_path's name)


def library_version(trt: ModuleType) -> str:
    return str(getattr(trt, "__version__", "unknown"))


@functools.cache
def _monitor_class(trt: ModuleType) -> type:
    class ProgressMonitor(trt.IProgressMonitor):  # type: ignore[name-defined]
        """Feeds TensorRT's build phases into a :class:`ProgressBar`; Ctrl-C cancels the build cleanly.

        The top-level phase ("Building engine") sets the bar's total and its steps move the bar; its
        direct sub-phase is shown as text (deeper phases only tick the clock: a log gets a few lines
        per build, not hundreds). A KeyboardInterrupt raised inside a callback (this one or the
        logger's) cannot cross TensorRT's C++ frames, so it is recorded, the build is cancelled
        (``step_complete`` returns False) and :meth:`EngineBuild.run` raises it again once TensorRT
        has returned.
        """

        def __init__(self, progress: ProgressBar, logger: Any) -> None:
            trt.IProgressMonitor.__init__(self)
            self.progress = progress
            self.logger = logger
            self._stack: list[str] = []

        @property
        def interrupted(self) -> bool:
            return bool(self.logger.interrupted)

        @interrupted.setter
        def interrupted(self, value: bool) -> None:
            self.logger.interrupted = value

        def phase_start(self, phase_name: str, parent_phase: str | None, num_steps: int) -> None:
            try:
                if parent_phase is None:
                    self.progress.set_total(num_steps, done=0)
                self._stack.append(phase_name)
                if len(self._stack) == 2:
                    self.progress.set_phase(phase_name)
            except KeyboardInterrupt:
                self.interrupted = True

        def step_complete(self, phase_name: str, step: int) -> bool:
            try:
                if len(self._stack) == 1:
                    self.progress.set_total(self.progress.total, done=step + 1)
                else:
                    self.progress.tick()
            except KeyboardInterrupt:
                self.interrupted = True
            return not self.interrupted

        def phase_finish(self, phase_name: str) -> None:
            try:
                if phase_name in self._stack:
                    depth = self._stack.index(phase_name)
                    del self._stack[depth:]
                    if depth == 0:
                        self.progress.set_total(self.progress.total, done=self.progress.total)
                    if depth <= 1:
                        self.progress.set_phase("")
            except KeyboardInterrupt:
                self.interrupted = True

    return ProgressMonitor


def make_logger(trt: ModuleType) -> Any:
    """The process's one ``trt.ILogger`` (:func:`edge.backends.trt_logger.process_logger`), shared with the
    runtime backends: TensorRT keeps the first logger it is given and ignores later ones."""
    return process_logger(trt)


def check_api(trt: ModuleType) -> None:
    """A BuildError in one line when this TensorRT lacks what the kit's builds use (TensorRT 8.6, JetPack 6.0).

    The kit builds strongly typed networks (precision lives in the ONNX) and reports progress through
    ``IProgressMonitor``; both arrived in TensorRT 10.0, so 8.x is refused before anything is built.
    """
    flags = getattr(trt, "NetworkDefinitionCreationFlag", None)
    missing = [
        what
        for what, present in (
            ("strongly typed networks", hasattr(flags, "STRONGLY_TYPED")),
            ("IProgressMonitor", hasattr(trt, "IProgressMonitor")),
        )
        if not present
    ]
    if missing:
        raise BuildError(
            f"{flavour_name(trt)} {library_version(trt)} has no {' and no '.join(missing)}, which the kit's builds "
            "need (TensorRT 10.x or newer): upgrade to JetPack 6.1 or newer (TensorRT 10.3), or build for the cpu "
            "target (ONNX Runtime) only"
        )


def make_progress_monitor(trt: ModuleType, progress: ProgressBar, logger: Any) -> Any:
    """A ``trt.IProgressMonitor`` feeding ``progress``; ``.interrupted`` (shared with ``logger``) after a Ctrl-C."""
    return _monitor_class(trt)(progress, logger)


def format_parser_error(trt: ModuleType, error: Any) -> str:
    """``node NAME (OpType): reason`` for one ``ParserError`` (reason from desc, else the error code)."""
    desc = str(error.desc()).strip()
    code = error.code()
    code_name = getattr(code, "name", str(code))
    if desc in ("", "false", "true"):
        if code_name == "UNSUPPORTED_NODE":
            reason = f"{flavour_name(trt)} {library_version(trt)} cannot import this operator"
        else:
            reason = f"the ONNX parser rejected it ({code_name})"
        desc = reason
    node = int(error.node())
    if node < 0:
        return desc
    name = str(error.node_name()) or f"#{node}"
    op = str(error.node_operator()) or "?"
    return f"node {name} ({op}): {desc}"


def parse_onnx(trt: ModuleType, network: Any, logger: Any, onnx_path: Path, source_name: str | None = None) -> None:
    """Parse ``onnx_path`` into ``network``; a :class:`BuildError` naming the failing node otherwise."""
    parser = trt.OnnxParser(network, logger)
    with logger.collect() as logged:
        if parser.parse_from_file(str(onnx_path)):
            return
    if getattr(logger, "interrupted", False):
        raise KeyboardInterrupt
    errors = [format_parser_error(trt, parser.get_error(i)) for i in range(parser.num_errors)]
    if not errors:
        errors = logged[-1:] or ["the parser gave no reason"]
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    raise BuildError(
        f"{source_name or onnx_path.name}: {flavour_name(trt)} cannot parse the model: {errors[0]}{more}; replace or remove "
        "that operator in the exporter, or build for the cpu target (ONNX Runtime) only"
    )


def _shape(value: Sequence[int]) -> tuple[int, ...]:
    return tuple(int(d) for d in value)


def add_profiles(trt: ModuleType, builder: Any, config: Any, network: Any, profiles: Profiles) -> None:
    """One optimization profile covering every dynamic input; errors name the input and the fix."""
    inputs = {network.get_input(i).name: network.get_input(i) for i in range(network.num_inputs)}
    unknown = sorted(set(profiles) - set(inputs))
    if unknown:
        raise BuildError(f"shape profile for {unknown[0]!r}: the model has no such input (inputs: {', '.join(inputs)})")
    profile = None
    for name, tensor in inputs.items():
        shape = tuple(tensor.shape)
        if name not in profiles:
            if any(d < 0 for d in shape):
                raise BuildError(
                    f"input {name} has dynamic shape {shape} and no min/opt/max profile; "
                    f"give --shapes {name}:1x... or --min-shapes/--opt-shapes/--max-shapes"
                )
            continue
        p = profiles[name]
        lo, opt, hi = _shape(p["min"]), _shape(p["opt"]), _shape(p["max"])
        if not (len(lo) == len(opt) == len(hi) == len(shape)):
            raise BuildError(f"input {name}: profile rank does not match the model's shape {shape}")
        if profile is None:
            profile = builder.create_optimization_profile()
        profile.set_shape(name, lo, opt, hi)
    if profile is not None:
        config.add_optimization_profile(profile)


@contextlib.contextmanager
def deferred_interrupts(logger: Any) -> Iterator[None]:
    """While TensorRT works, Ctrl-C and SIGTERM only set ``logger.interrupted``.

    A KeyboardInterrupt raised inside one of TensorRT's Python callbacks (logger, progress monitor) is
    swallowed by its C++ frames ("Exception caught in log()") and the build would finish as if nothing
    happened. So the signal handlers only record the request; the progress monitor then cancels the build
    and the caller raises KeyboardInterrupt once TensorRT has returned. Outside the main thread (where
    handlers cannot be set) this does nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def record(signum: int, frame: object) -> None:
        logger.interrupted = True

    previous = {sig: signal.signal(sig, record) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


class EngineBuild:
    """The network, parser and builder config for one plan; flavour modules adjust ``config``, then ``run()``."""

    def __init__(self, trt: ModuleType, request: EngineRequest) -> None:
        self.trt = trt
        self.request = request
        check_api(trt)
        self.logger = make_logger(trt)
        self.logger.interrupted = False
        self.builder = trt.Builder(self.logger)
        flags = 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED) if request.strongly_typed else 0
        self.network = self.builder.create_network(flags)
        with deferred_interrupts(self.logger):
            parse_onnx(trt, self.network, self.logger, request.onnx_path, request.source_name)
        if self.logger.interrupted:
            raise KeyboardInterrupt
        self.config = self.builder.create_builder_config()
        if request.workspace_mib is not None:
            self.config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(request.workspace_mib) << 20)
        if request.optimization_level is not None:
            self.config.builder_optimization_level = int(request.optimization_level)
        add_profiles(trt, self.builder, self.config, self.network, request.profiles)

    def run(self) -> int:
        """Build and write the plan to ``request.plan_path``; its size in bytes."""
        name = flavour_name(self.trt)
        t0 = time.perf_counter()
        with ProgressBar(None, f"{name} build {self.request.label}") as bar:
            monitor = make_progress_monitor(self.trt, bar, self.logger)
            self.config.progress_monitor = monitor
            try:
                with deferred_interrupts(self.logger), self.logger.collect() as errors:
                    plan = self.builder.build_serialized_network(self.network, self.config)
            finally:
                self.config.progress_monitor = None
            if monitor.interrupted:
                raise KeyboardInterrupt
        if plan is None:
            why = "; ".join(errors[-2:]) or "no reason was logged (run with -v for the full log)"
            raise BuildError(f"{name} could not build the engine for {self.request.label}: {why}")
        with open(self.request.plan_path, "wb") as f:
            f.write(memoryview(plan))
        size = int(plan.nbytes)
        log.info("%s plan for %s: %.1f MB in %.1f s", name, self.request.label, size / 1e6, time.perf_counter() - t0)
        return size
