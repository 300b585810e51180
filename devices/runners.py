"""Load an exported artifact (.pte, .onnx, .pt2) and run it on numpy inputs.

Runtimes are imported lazily, inside the loader that needs them, so that a machine with only
torch (a CUDA box without ExecuTorch) or only onnxruntime can import this module.
"""

from __future__ import annotations

import logging
import time
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any

import numpy as np

from easrec.errors import EasrecError
from easrec.io import package_version

log = logging.getLogger(__name__)

_THREADPOOL: dict[str, int] = {}  # the XNNPACK threadpool size this process last set

# ExecuTorch ScalarType codes (c10 numbering) -> numpy dtypes.
_ET_DTYPES = {
    0: np.uint8, 1: np.int8, 2: np.int16, 3: np.int32, 4: np.int64,
    5: np.float16, 6: np.float32, 7: np.float64, 11: np.bool_,
}
# ONNX Runtime type strings -> numpy dtypes.
_ORT_DTYPES = {
    "tensor(uint8)": np.uint8, "tensor(int8)": np.int8, "tensor(int16)": np.int16,
    "tensor(int32)": np.int32, "tensor(int64)": np.int64, "tensor(float16)": np.float16,
    "tensor(float)": np.float32, "tensor(double)": np.float64, "tensor(bool)": np.bool_,
}

SUFFIXES = {".pte": "executorch", ".onnx": "onnxruntime", ".pt2": "torch"}


class Runner(ABC):
    """A loaded artifact: `run(inputs)` maps numpy arrays to numpy arrays."""

    runtime: str = ""
    runtime_version: str = ""

    def __init__(self, path: Path, threads: int, device: str) -> None:
        self.path = Path(path)
        self.threads = threads
        self.device = device
        self.load_ms: float = 0.0
        # One (dtype, shape or None) per input, filled by the loader when the runtime tells.
        self.input_specs: list[tuple[np.dtype, tuple | None]] | None = None

    def check_inputs(self, inputs: list[np.ndarray]) -> None:
        """Raise EasrecError unless the inputs match the artifact's count and dtypes exactly."""
        if self.input_specs is None:
            return
        if len(inputs) != len(self.input_specs):
            raise EasrecError(
                f"{self.path.name}: running with {self.runtime} failed: expected {len(self.input_specs)} "
                f"input(s), got {len(inputs)}"
            )
        for i, (arr, (dtype, shape)) in enumerate(zip(inputs, self.input_specs)):
            arr = np.asarray(arr)
            if arr.dtype != dtype:
                raise EasrecError(
                    f"{self.path.name}: running with {self.runtime} failed: input {i} has dtype {arr.dtype}, "
                    f"expected {np.dtype(dtype).name} (convert ids with .astype(np.int64))"
                )
            if shape is not None and all(isinstance(s, int) for s in shape) and tuple(arr.shape) != tuple(shape):
                raise EasrecError(
                    f"{self.path.name}: running with {self.runtime} failed: input {i} has shape "
                    f"{tuple(arr.shape)}, expected {tuple(shape)}"
                )

    def prepare(self, inputs: list[np.ndarray]) -> Any:
        """Check the inputs and convert them once to the runtime's own objects (for timing loops)."""
        self.check_inputs(inputs)
        return self._prepare([np.ascontiguousarray(x) for x in inputs])

    def call(self, prepared: Any) -> Any:
        """One inference on prepared inputs; the result is finished (device synchronized)."""
        return self._call(prepared)

    def run(self, inputs: list[np.ndarray]) -> list[np.ndarray]:
        """One inference: numpy in, numpy out."""
        return self._to_numpy(self._call(self.prepare(inputs)))

    def synchronize(self) -> None:
        """Wait for queued device work (no-op on CPU)."""

    @abstractmethod
    def _prepare(self, inputs: list[np.ndarray]) -> Any: ...

    @abstractmethod
    def _call(self, prepared: Any) -> Any: ...

    @abstractmethod
    def _to_numpy(self, outputs: Any) -> list[np.ndarray]: ...


def _torch_outputs(outputs: Any) -> list[np.ndarray]:
    import torch

    if isinstance(outputs, torch.Tensor):
        outputs = [outputs]
    result = []
    for o in outputs:
        if isinstance(o, torch.Tensor):
            result.append(o.detach().cpu().numpy())
        else:
            result.append(np.asarray(o))
    return result


class ExecuTorchRunner(Runner):
    """`.pte` through `executorch.runtime.Runtime` (XNNPACK and portable kernels)."""

    runtime = "executorch"

    def __init__(self, path: Path, threads: int = 1, device: str = "cpu") -> None:
        super().__init__(path, threads, device)
        if device != "cpu":
            raise EasrecError(f"{self.path.name}: loading with executorch failed: .pte runs on cpu only, not {device}")
        try:
            import executorch
            from executorch.extension.pybindings import portable_lib
            from executorch.runtime import Runtime
        except ImportError as exc:
            raise EasrecError(f"{self.path.name}: loading with executorch failed: executorch is not installed ({exc})") from exc
        try:  # int8 artifacts look item embeddings up with the quantized kernels (embedding_byte / _4bit)
            import executorch.kernels.quantized  # noqa: F401
        except ImportError as exc:  # an fp32 artifact still loads
            log.debug("executorch quantized kernels unavailable: %s", exc)
        self.runtime_version = _version("executorch", executorch)
        # The XNNPACK threadpool is global and must be sized before the program is loaded.
        # Reset only when the size changes: every reset also prints a line from the C++ runtime.
        if threads and threads > 0 and _THREADPOOL.get("size") != int(threads):
            try:
                import warnings

                with warnings.catch_warnings():  # the call is marked experimental
                    warnings.simplefilter("ignore")
                    portable_lib._unsafe_reset_threadpool(int(threads))
                _THREADPOOL["size"] = int(threads)
            except Exception as exc:  # an ExecuTorch build without a threadpool
                log.warning("executorch: cannot set threadpool size to %d: %s", threads, exc)
        t0 = time.perf_counter()
        try:
            program = Runtime.get().load_program(self.path)
            self._method = program.load_method("forward")
        except Exception as exc:
            raise EasrecError(f"{self.path.name}: loading with executorch failed: {_one_line(exc)}") from exc
        self.load_ms = (time.perf_counter() - t0) * 1e3
        if self._method is None:
            raise EasrecError(f"{self.path.name}: loading with executorch failed: no 'forward' method")
        try:
            meta = self._method.metadata
            specs = []
            for i in range(meta.num_inputs()):
                info = meta.input_tensor_meta(i)
                specs.append((np.dtype(_ET_DTYPES[int(info.dtype())]), tuple(int(s) for s in info.sizes())))
            self.input_specs = specs
        except Exception as exc:  # metadata API drift: fall back to the runtime's own checks
            log.debug("executorch: no input metadata (%s)", exc)

    def _prepare(self, inputs: list[np.ndarray]) -> Any:
        import torch

        return [torch.from_numpy(x) for x in inputs]

    def _call(self, prepared: Any) -> Any:
        try:
            return self._method.execute(prepared)
        except Exception as exc:
            raise EasrecError(f"{self.path.name}: running with executorch failed: {_one_line(exc)}") from exc

    def _to_numpy(self, outputs: Any) -> list[np.ndarray]:
        return _torch_outputs(outputs)


class OrtRunner(Runner):
    """`.onnx` through an onnxruntime InferenceSession (CPU, or the CUDA provider)."""

    runtime = "onnxruntime"

    def __init__(self, path: Path, threads: int = 1, device: str = "cpu") -> None:
        super().__init__(path, threads, device)
        try:
            import onnxruntime as ort
        except ImportError as exc:
            raise EasrecError(f"{self.path.name}: loading with onnxruntime failed: onnxruntime is not installed") from exc
        self.runtime_version = ort.__version__
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = max(0, int(threads))
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        providers = ["CPUExecutionProvider"]
        if device.startswith("cuda"):
            if "CUDAExecutionProvider" not in ort.get_available_providers():
                raise EasrecError(
                    f"{self.path.name}: loading with onnxruntime failed: CUDAExecutionProvider is not available "
                    f"(providers: {', '.join(ort.get_available_providers())}; install onnxruntime-gpu)"
                )
            index = int(device.split(":", 1)[1]) if ":" in device else 0
            providers = [("CUDAExecutionProvider", {"device_id": index}), "CPUExecutionProvider"]
        t0 = time.perf_counter()
        try:
            self._session = ort.InferenceSession(str(self.path), sess_options=opts, providers=providers)
        except Exception as exc:
            raise EasrecError(f"{self.path.name}: loading with onnxruntime failed: {_one_line(exc)}") from exc
        self.load_ms = (time.perf_counter() - t0) * 1e3
        if device.startswith("cuda") and "CUDAExecutionProvider" not in self._session.get_providers():
            raise EasrecError(f"{self.path.name}: loading with onnxruntime failed: the CUDA provider did not initialise")
        self._inputs = self._session.get_inputs()
        self.input_specs = [
            (np.dtype(_ORT_DTYPES.get(i.type, np.float32)), tuple(i.shape) if i.shape else None) for i in self._inputs
        ]
        self._names = [i.name for i in self._inputs]

    def _prepare(self, inputs: list[np.ndarray]) -> Any:
        return dict(zip(self._names, inputs))

    def _call(self, prepared: Any) -> Any:
        try:
            return self._session.run(None, prepared)
        except Exception as exc:
            raise EasrecError(f"{self.path.name}: running with onnxruntime failed: {_one_line(exc)}") from exc

    def _to_numpy(self, outputs: Any) -> list[np.ndarray]:
        return [np.asarray(o) for o in outputs]


class TorchRunner(Runner):
    """`.pt2` (torch.export.save) through `torch.export.load(...).module()` in inference mode."""

    runtime = "torch"

    def __init__(self, path: Path, threads: int = 1, device: str = "cpu") -> None:
        super().__init__(path, threads, device)
        import torch

        self.runtime_version = torch.__version__
        if device == "cpu" and threads and threads > 0:
            torch.set_num_threads(int(threads))
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise EasrecError(f"{self.path.name}: loading with torch failed: CUDA is not available to torch {torch.__version__}")
        self._torch_device = torch.device(device)
        t0 = time.perf_counter()
        try:
            ep = torch.export.load(str(self.path))
            if self._torch_device.type != "cpu":
                # Rewrites the device arguments recorded at export (device=cpu in metadata asserts and
                # factory calls) as well as moving the weights: `.module().to()` alone does only the latter.
                from torch.export.passes import move_to_device_pass

                ep = move_to_device_pass(ep, self._torch_device)
            self._module = ep.module().to(self._torch_device)
        except Exception as exc:
            raise EasrecError(f"{self.path.name}: loading with torch failed: {_one_line(exc)}") from exc
        if device.startswith("cuda"):
            torch.cuda.synchronize(self._torch_device)
        self.load_ms = (time.perf_counter() - t0) * 1e3
        try:
            specs = []
            user_inputs = set(ep.graph_signature.user_inputs)
            for node in ep.graph.nodes:
                if node.op == "placeholder" and node.name in user_inputs:
                    val = node.meta.get("val")
                    dtype = torch.empty((), dtype=val.dtype).numpy().dtype
                    shape = tuple(int(s) if isinstance(s, int) else None for s in val.shape)
                    specs.append((dtype, shape if all(s is not None for s in shape) else None))
            self.input_specs = specs
        except Exception as exc:
            log.debug("torch: no input metadata (%s)", exc)

    def _prepare(self, inputs: list[np.ndarray]) -> Any:
        import torch

        return [torch.from_numpy(x).to(self._torch_device) for x in inputs]

    def _call(self, prepared: Any) -> Any:
        import torch

        try:
            with torch.inference_mode():
                return self._module(*prepared)
        except Exception as exc:
            raise EasrecError(f"{self.path.name}: running with torch failed: {_one_line(exc)}") from exc

    def synchronize(self) -> None:
        if self._torch_device.type == "cuda":
            import torch

            torch.cuda.synchronize(self._torch_device)

    def _to_numpy(self, outputs: Any) -> list[np.ndarray]:
        if isinstance(outputs, dict):
            outputs = list(outputs.values())
        return _torch_outputs(outputs)


def load_runner(path: str | Path, *, threads: int = 1, device: str = "cpu") -> Runner:
    """Load an artifact with the runtime its suffix names (.pte, .onnx, .pt2)."""
    path = Path(path)
    if not path.is_file():
        raise EasrecError(f"{path}: loading failed: no such file")
    suffix = path.suffix.lower()
    if suffix == ".pte":
        return ExecuTorchRunner(path, threads, device)
    if suffix == ".onnx":
        return OrtRunner(path, threads, device)
    if suffix == ".pt2":
        return TorchRunner(path, threads, device)
    raise EasrecError(f"{path}: loading failed: unknown artifact type {suffix!r} (expected .pte, .onnx or .pt2)")


def runtime_for(path: str | Path) -> str:
    """The runtime name an artifact's suffix selects ('executorch', 'onnxruntime', 'torch')."""
    suffix = Path(path).suffix.lower()
    if suffix not in SUFFIXES:
        raise EasrecError(f"{path}: unknown artifact type {suffix!r} (expected .pte, .onnx or .pt2)")
    return SUFFIXES[suffix]


def _version(dist: str, module: Any) -> str:
    return package_version(dist) or str(getattr(module, "__version__", "unknown"))


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0][:300] if text else type(exc).__name__
