"""TensorRT engines built from our ONNX files, cached on disk, run through pycuda.

Written to TensorRT 10's Python API (name-based tensors, ``execute_async_v3``); TensorRT
and pycuda are imported only when ``runtime.engine = "tensorrt"`` uses them. Each model
has a recipe in ``recipes/<model>.toml`` (package data beside this file, so an installed
wheel has them): the dynamic batch profile (min/opt/max batch) and input sizes, and
whether fp16 is allowed. A built engine is cached under ``runtime.engine_cache`` by a key
of GPU name, compute capability, TensorRT version, ONNX sha256 and recipe, so a new
driver, card, model or recipe rebuilds it and an unchanged one loads in milliseconds.

Execution: one CUDA stream per model; inputs are staged in page-locked host memory and
copied asynchronously, outputs come back the same way, and the host waits once per call.
"""

from __future__ import annotations

import hashlib
import importlib.resources
import json
import tomllib
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from stream_gate.config import RuntimeConfig
from stream_gate.errors import ModelError
from stream_gate.log import get_logger

log = get_logger(__name__)
RECIPES = Path(str(importlib.resources.files("stream_gate.runtime") / "recipes"))


@dataclass(frozen=True)
class Recipe:
    """How to build one model's engine (``recipes/<model>.toml``)."""

    model: str
    batch: tuple[int, int, int]  # min, opt, max
    height: tuple[int, int, int]
    width: tuple[int, int, int]
    fp16: bool = True
    workspace_mb: int = 1024

    @staticmethod
    def for_model(name: str, folder: Path = RECIPES) -> Recipe:
        """The recipe whose file name starts the model name (``cr-fiqa-s@1`` -> cr-fiqa-s)."""
        for path in sorted(folder.glob("*.toml"), key=lambda p: -len(p.stem)):
            if name.startswith(path.stem):
                data = tomllib.loads(path.read_text())
                try:
                    return Recipe(model=path.stem, batch=tuple(data["batch"]),
                                  height=tuple(data["height"]), width=tuple(data["width"]),
                                  fp16=bool(data.get("fp16", True)),
                                  workspace_mb=int(data.get("workspace_mb", 1024)))
                except (KeyError, TypeError) as exc:
                    raise ModelError(f"{path}: bad engine recipe: {exc}") from None
        raise ModelError(f"no engine recipe for model {name!r} in {folder}")

    def shapes(self, channels: int = 3
               ) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]:
        """NCHW min / opt / max shapes of the optimisation profile (``channels``: the
        network input's, e.g. 4 for a landmark-guided quality model)."""
        return tuple(  # type: ignore[return-value]
            (self.batch[i], channels, self.height[i], self.width[i]) for i in range(3))


def cache_key(onnx: bytes, recipe: Recipe, gpu: str, capability: tuple[int, int],
              trt_version: str) -> str:
    """What an engine depends on, hashed: a change in any part means a rebuild."""
    parts = {"onnx_sha256": hashlib.sha256(onnx).hexdigest(), "recipe": asdict(recipe),
             "gpu": gpu, "capability": list(capability), "tensorrt": trt_version}
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:20]


class Calibration:
    """Int8 calibration for a build: input batches and where TensorRT's cache is kept.

    ``batches`` are float32 NCHW arrays preprocessed exactly as at run time (for the
    detector: letterboxed frames from the user's own video). The cache TensorRT writes
    (per-tensor scales) is reused by later builds of the same ONNX file on any GPU, so
    calibration runs once.
    """

    def __init__(self, batches: list[npt.NDArray[np.float32]], cache: Path) -> None:
        self.batches = batches
        self.cache = cache

    def calibrator(self) -> Any:
        """A ``trt.IInt8EntropyCalibrator2`` feeding ``batches`` through pycuda buffers."""
        import pycuda.driver as cuda
        import tensorrt as trt

        outer = self

        class _Calibrator(trt.IInt8EntropyCalibrator2):  # type: ignore[misc]
            def __init__(self) -> None:
                trt.IInt8EntropyCalibrator2.__init__(self)
                self.index = 0
                size = max((b.nbytes for b in outer.batches), default=1)
                self.device = cuda.mem_alloc(size)

            def get_batch_size(self) -> int:
                return int(outer.batches[0].shape[0]) if outer.batches else 1

            def get_batch(self, names: list[str]) -> list[int] | None:
                if self.index >= len(outer.batches):
                    return None
                cuda.memcpy_htod(self.device, np.ascontiguousarray(outer.batches[self.index]))
                self.index += 1
                return [int(self.device)]

            def read_calibration_cache(self) -> bytes | None:
                return outer.cache.read_bytes() if outer.cache.is_file() else None

            def write_calibration_cache(self, cache: Any) -> None:
                outer.cache.parent.mkdir(parents=True, exist_ok=True)
                outer.cache.write_bytes(bytes(cache))

        return _Calibrator()


def build_engine(onnx: bytes, recipe: Recipe, calibration: Calibration | None = None) -> bytes:
    """Parse the ONNX graph and build a serialized engine for ``recipe`` (int8 when
    ``calibration`` is given: TensorRT calibrates on its batches or reads its cache)."""
    import tensorrt as trt

    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)  # explicit batch is the only mode in TensorRT 10
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(onnx):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise ModelError(f"TensorRT cannot parse {recipe.model}: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, recipe.workspace_mb << 20)
    if recipe.fp16 and builder.platform_has_fast_fp16:
        config.set_flag(trt.BuilderFlag.FP16)
    profile = builder.create_optimization_profile()
    channels = int(network.get_input(0).shape[1])
    profile.set_shape(network.get_input(0).name, *recipe.shapes(channels if channels > 0 else 3))
    config.add_optimization_profile(profile)
    if calibration is not None:
        if not builder.platform_has_fast_int8:
            raise ModelError(f"{recipe.model}: this GPU has no fast int8; build without int8")
        config.set_flag(trt.BuilderFlag.INT8)
        config.int8_calibrator = calibration.calibrator()
        config.set_calibration_profile(profile)
    blob = builder.build_serialized_network(network, config)
    if blob is None:
        raise ModelError(f"TensorRT failed to build an engine for {recipe.model}")
    return bytes(blob)


def _gpu() -> tuple[str, tuple[int, int]]:
    import pycuda.driver as cuda

    dev = cuda.Context.get_device()
    return str(dev.name()), tuple(dev.compute_capability())


def engine_path(onnx: bytes, name: str, cfg: RuntimeConfig, int8: bool = False) -> Path:
    """Where the engine for this model, recipe, GPU and TensorRT version is cached."""
    import tensorrt as trt

    recipe = Recipe.for_model(name)
    gpu, cc = _gpu()
    key = cache_key(onnx + (b"int8" if int8 else b""), recipe, gpu, cc, trt.__version__)
    return cfg.engine_cache.expanduser() / f"{recipe.model}-{key}.engine"


def calibration_cache(onnx: bytes, name: str, cfg: RuntimeConfig) -> Path:
    """Int8 calibration cache of an ONNX file (independent of GPU and TensorRT version)."""
    digest = hashlib.sha256(onnx).hexdigest()[:16]
    return cfg.engine_cache.expanduser() / f"{Recipe.for_model(name).model}-{digest}.calib"


def load_or_build(onnx: bytes, name: str, cfg: RuntimeConfig,
                  calibration: Calibration | None = None) -> tuple[bytes, Path]:
    """The cached engine for this model on this GPU, built first when missing or stale."""
    import tensorrt as trt

    recipe = Recipe.for_model(name)
    gpu, cc = _gpu()
    path = engine_path(onnx, name, cfg, int8=calibration is not None)
    folder = path.parent
    if path.is_file():
        return path.read_bytes(), path
    log.info("engine_build", model=name, gpu=gpu, capability=cc, path=str(path),
             int8=calibration is not None)
    blob = build_engine(onnx, recipe, calibration)
    folder.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(blob)
    tmp.replace(path)  # never a half-written engine under the final name
    meta = {"model": name, "gpu": gpu, "capability": list(cc), "tensorrt": trt.__version__,
            "onnx_sha256": hashlib.sha256(onnx).hexdigest(), "recipe": asdict(recipe),
            "int8": calibration is not None}
    path.with_suffix(".json").write_text(json.dumps(meta, indent=1) + "\n")
    return blob, path


class TrtModel:
    """A TensorRT engine behind the runtime ``Model`` interface (float32 numpy in/out)."""

    def __init__(self, onnx: bytes, name: str, cfg: RuntimeConfig, int8: bool = False) -> None:
        import pycuda.driver as cuda
        import tensorrt as trt

        # The device's primary context, the one PyTorch uses too, so device pointers and
        # streams can be shared with the torch-side stages (pycuda.autoinit would make a
        # second, private context).
        cuda.init()
        self._ctx = cuda.Device(0).retain_primary_context()
        self._ctx.push()

        self.name = name
        self._cuda = cuda
        self._trt = trt
        self.recipe = Recipe.for_model(name)
        if int8:  # calibrated engines are built ahead, on the user's own video
            self.path = engine_path(onnx, name, cfg, int8=True)
            if not self.path.is_file():
                raise ModelError(f"runtime.trt_int8: no int8 engine for {name} on this GPU in "
                                 f"{self.path.parent}; build it with `stream-gate engines "
                                 "build --config FILE --calibrate VIDEO`")
            blob = self.path.read_bytes()
        else:
            blob, self.path = load_or_build(onnx, name, cfg)
        self._runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        self.engine = self._runtime.deserialize_cuda_engine(blob)
        if self.engine is None:
            raise ModelError(f"cannot load TensorRT engine {self.path} (delete it to rebuild)")
        self.context = self.engine.create_execution_context()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        is_input = [self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT for n in names]
        self.input_name = next(n for n, i in zip(names, is_input, strict=True) if i)
        self.output_names = [n for n, i in zip(names, is_input, strict=True) if not i]
        self.stream = cuda.Stream()
        self._buffers: dict[str, tuple[Any, Any, int]] = {}  # name -> host, device, nbytes
        # With PyTorch on CUDA (runtime.choose_backend), the stages' torch backends hand
        # their tensors straight to the engine (infer_tensor).
        self.device: Any = None
        self.dtype: Any = None
        try:
            import torch

            if torch.cuda.is_available():
                self.device, self.dtype = torch.device("cuda"), torch.float32
        except ImportError:
            pass

    def _buffer(self, name: str, shape: tuple[int, ...]) -> tuple[Any, Any]:
        """Page-locked host + device buffers for a tensor, grown when a batch needs more."""
        dtype = self._trt.nptype(self.engine.get_tensor_dtype(name))
        nbytes = int(np.prod(shape)) * np.dtype(dtype).itemsize
        have = self._buffers.get(name)
        if have is None or have[2] < nbytes:
            host = self._cuda.pagelocked_empty(int(np.prod(shape)), dtype)
            dev = self._cuda.mem_alloc(nbytes)
            self._buffers[name] = (host, dev, nbytes)
        host, dev, _ = self._buffers[name]
        return host[: int(np.prod(shape))].reshape(shape), dev

    def infer(self, batch: npt.NDArray[np.float32]) -> list[npt.NDArray[np.float32]]:
        max_batch = self.recipe.batch[2]
        if len(batch) > max_batch:  # beyond the profile: run it in chunks
            parts = [self.infer(batch[i:i + max_batch]) for i in range(0, len(batch), max_batch)]
            return [np.concatenate(p) for p in zip(*parts, strict=True)]
        cuda = self._cuda
        host_in, dev_in = self._buffer(self.input_name, batch.shape)
        np.copyto(host_in, batch.astype(host_in.dtype, copy=False))
        if not self.context.set_input_shape(self.input_name, batch.shape):
            raise ModelError(f"{self.name}: input {batch.shape} is outside the engine's "
                             f"profile {self.recipe.shapes()} (recipes/{self.recipe.model}.toml)")
        cuda.memcpy_htod_async(dev_in, host_in, self.stream)
        self.context.set_tensor_address(self.input_name, int(dev_in))
        outs = []
        for name in self.output_names:
            shape = tuple(self.context.get_tensor_shape(name))
            host, dev = self._buffer(name, shape)
            self.context.set_tensor_address(name, int(dev))
            outs.append((host, dev))
        if not self.context.execute_async_v3(self.stream.handle):
            raise ModelError(f"{self.name}: TensorRT execution failed")
        for host, dev in outs:
            cuda.memcpy_dtoh_async(host, dev, self.stream)
        self.stream.synchronize()
        return [np.array(h, dtype=np.float32) for h, _ in outs]

    def warm(self, item_shape: tuple[int, ...], up_to: int) -> None:
        """Nothing to do: the engine was built for its whole batch profile ahead."""

    def infer_tensor(self, batch: Any) -> list[Any]:
        """A CUDA torch batch in, float32 CUDA tensors out: no host round trip. Runs on
        PyTorch's current stream, so it orders with the torch stages around it."""
        import torch

        max_batch = self.recipe.batch[2]
        if len(batch) > max_batch:
            parts = [self.infer_tensor(batch[i:i + max_batch])
                     for i in range(0, len(batch), max_batch)]
            return [torch.cat(p) for p in zip(*parts, strict=True)]
        x = batch.to("cuda", torch.float32).contiguous()
        if not self.context.set_input_shape(self.input_name, tuple(x.shape)):
            raise ModelError(f"{self.name}: input {tuple(x.shape)} is outside the engine's "
                             f"profile {self.recipe.shapes()} (recipes/{self.recipe.model}.toml)")
        self.context.set_tensor_address(self.input_name, x.data_ptr())
        outs = []
        for name in self.output_names:
            out = torch.empty(tuple(self.context.get_tensor_shape(name)), device="cuda",
                              dtype=torch.float32)
            self.context.set_tensor_address(name, out.data_ptr())
            outs.append(out)
        if not self.context.execute_async_v3(torch.cuda.current_stream().cuda_stream):
            raise ModelError(f"{self.name}: TensorRT execution failed")
        return outs
