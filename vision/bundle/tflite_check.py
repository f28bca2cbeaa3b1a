"""An uploaded TFLite flatbuffer, checked before the server runs it.

LiteRT trusts the flatbuffers it is given: a 2.9 KB file whose first convolution names no
filter tensor (index -1) makes it dereference a null pointer while the interpreter is being
prepared, and the process dies with SIGSEGV. In the app, that process is the server. So an
upload goes through two gates before the server builds an interpreter of it:

1. ``validate_flatbuffer`` reads it as data with TFLite's own schema (the generated reader
   that ships in ``ai_edge_litert``): one subgraph, operators on an allowlist with the inputs
   they need, every index in range, every tensor's size and type bounded, constant data the
   size its shape says, no custom ops, variables, sparsity or data outside the file. Reading
   is pure Python, so a hostile file can only raise, never crash.
2. ``run_isolated`` builds the interpreter, allocates and runs it once on zeros in a child
   process (``python -m vision.bundle.tflite_check``, the flatbuffer on its stdin, no
   inherited environment, memory and CPU capped), under a time-out. A crash, a hang or an
   error there is a refusal; the child is always reaped. It reports the first input's and
   output's shape, dtype and quantization, so the import itself needs no interpreter.
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np

from vision.errors import InvalidModelFileError

#: What a TFLite image classifier needs, with (fewest, most) inputs per operator. The
#: converters here (TF's, Keras's ``export(format="litert")``) and Teachable Machine's
#: MobileNets use a subset; control flow (extra subgraphs), custom and Flex ops, lookups and
#: string ops are not accepted.
OPERATORS: dict[str, tuple[int, int]] = {
    **{name: (1, 1) for name in (
        "AVERAGE_POOL_2D", "MAX_POOL_2D", "L2_POOL_2D", "DEQUANTIZE", "QUANTIZE", "HARD_SWISH", "LOGISTIC", "TANH",
        "RELU", "RELU6", "RELU_N1_TO_1", "RELU_0_TO_1", "LEAKY_RELU", "ELU", "GELU", "SOFTMAX", "LOG_SOFTMAX",
        "SQUEEZE", "CAST", "SHAPE", "RSQRT", "SQRT", "EXP", "ABS", "NEG", "SQUARE", "FLOOR",
        "L2_NORMALIZATION")},
    **{name: (2, 2) for name in (
        "ADD", "SUB", "MUL", "DIV", "MAXIMUM", "MINIMUM", "SQUARED_DIFFERENCE", "PRELU", "MEAN", "SUM",
        "REDUCE_MAX", "REDUCE_MIN", "PAD", "EXPAND_DIMS", "TRANSPOSE", "RESIZE_BILINEAR",
        "RESIZE_NEAREST_NEIGHBOR", "BATCH_MATMUL")},
    "CONV_2D": (2, 3), "DEPTHWISE_CONV_2D": (2, 3), "FULLY_CONNECTED": (2, 3),
    "RESHAPE": (1, 2), "PADV2": (3, 3), "SLICE": (3, 3), "STRIDED_SLICE": (4, 4),
    "CONCATENATION": (1, 64), "PACK": (1, 64),
}
#: Inputs that may be absent (index -1): the bias of these operators, nothing else.
OPTIONAL_INPUTS = {"CONV_2D": {2}, "DEPTHWISE_CONV_2D": {2}, "FULLY_CONNECTED": {2}}
#: Tensor types accepted, by the schema's names, and their bytes per value.
TYPES = {"FLOAT32": 4, "FLOAT16": 2, "INT32": 4, "UINT8": 1, "INT64": 8, "INT8": 1, "INT16": 2, "BOOL": 1}
MAX_FLATBUFFER_BYTES = 250 * 1024**2
MAX_TENSORS = 10_000
MAX_OPERATORS = 5_000
MAX_RANK = 6
#: One tensor, and every tensor the interpreter allocates (those without constant data)
#: added up: MobileNetV2 at 224 px needs ~90 MB in float32 added over all its tensors.
MAX_TENSOR_BYTES = 256 * 1024**2
MAX_ACTIVATION_BYTES = 1024**3
MAX_OUTPUTS = 4
#: The child's limits: the first run of TM's MobileNet takes ~0.1 s and ~150 MB on top of
#: the interpreter's start; these leave room for a slow, busy machine.
CHILD_SECONDS = 60
CHILD_MEMORY_BYTES = 4 * 1024**3


def validate_flatbuffer(flatbuffer: bytes, where: str) -> dict[str, Any]:
    """Check ``flatbuffer`` against the schema and the bounds above, without running it.

    Returns:
        ``{"operators": [names used], "tensors": count, "activation_bytes": bytes}``.

    Raises:
        InvalidModelFileError: not a TFLite flatbuffer, or a part of it that is not accepted
            (named in the message).
    """
    from ai_edge_litert import schema_py_generated as schema  # lazy: the schema is 20,000 lines

    if len(flatbuffer) > MAX_FLATBUFFER_BYTES:
        raise InvalidModelFileError(f"{where} is {len(flatbuffer):,} bytes; at most {MAX_FLATBUFFER_BYTES:,}")
    if len(flatbuffer) < 16 or not schema.Model.ModelBufferHasIdentifier(flatbuffer, 0):
        raise InvalidModelFileError(f"{where} is not a TFLite model (no 'TFL3' identifier)")
    try:
        return _Validator(schema, flatbuffer, where).model()
    except InvalidModelFileError:
        raise
    except (ArithmeticError, IndexError, KeyError, TypeError, ValueError, UnicodeDecodeError, RecursionError) as error:
        # The generated reader follows offsets as they are: a damaged file raises here (struct.error
        # is a ValueError... or an IndexError of numpy's), never reads outside the bytes.
        raise InvalidModelFileError(f"{where} is not a readable TFLite flatbuffer ({type(error).__name__})") from None


class _Validator:
    def __init__(self, schema: Any, flatbuffer: bytes, where: str) -> None:
        self.schema = schema
        self.buffer = flatbuffer
        self.where = where
        self.names = {value: name for name, value in vars(schema.BuiltinOperator).items() if not name.startswith("_")}
        self.types = {value: name for name, value in vars(schema.TensorType).items() if not name.startswith("_")}

    def fail(self, why: str) -> InvalidModelFileError:
        return InvalidModelFileError(f"{self.where}: {why}")

    def count(self, length: int, most: int, what: str) -> int:
        # Every vector entry takes at least one byte of the file: no count can exceed its size.
        if not 0 <= length <= min(most, len(self.buffer)):
            raise self.fail(f"{length:,} {what}; at most {most:,} are accepted")
        return length

    def model(self) -> dict[str, Any]:
        model = self.schema.Model.GetRootAs(self.buffer, 0)
        if model.Version() != 3:
            raise self.fail(f"schema version {model.Version()}; LiteRT reads version 3")
        if not model.ExternalBuffersIsNone() or not model.ExternalBufferGroupsIsNone():
            raise self.fail("weights in external files are not accepted")
        if self.count(model.SubgraphsLength(), 1, "subgraphs") != 1:
            raise self.fail("no subgraph")
        buffers = self.count(model.BuffersLength(), MAX_TENSORS + 1, "buffers")
        codes = [self._operator_code(model.OperatorCodes(i))
                 for i in range(self.count(model.OperatorCodesLength(), len(OPERATORS) * 8, "operator codes"))]
        for i in range(self.count(model.MetadataLength(), 64, "metadata entries")):
            if not 0 <= model.Metadata(i).Buffer() < buffers:
                raise self.fail("a metadata entry points at a buffer that does not exist")
        graph = model.Subgraphs(0)
        tensors = self.count(graph.TensorsLength(), MAX_TENSORS, "tensors")
        constant = set()
        activation_bytes = 0
        for index in range(tensors):
            size, has_data = self._tensor(graph.Tensors(index), index, model, buffers)
            if has_data:
                constant.add(index)
            else:
                activation_bytes += size
        if activation_bytes > MAX_ACTIVATION_BYTES:
            raise self.fail(f"its tensors need {activation_bytes:,} bytes; at most {MAX_ACTIVATION_BYTES:,}")
        inputs = self._indices(graph.InputsAsNumpy() if graph.InputsLength() else [], tensors, "the model's inputs")
        outputs = self._indices(graph.OutputsAsNumpy() if graph.OutputsLength() else [], tensors, "its outputs")
        if len(inputs) != 1 or not 1 <= len(outputs) <= MAX_OUTPUTS:
            raise self.fail(f"{len(inputs)} inputs and {len(outputs)} outputs; an image classifier has one input and "
                            f"1 to {MAX_OUTPUTS} outputs")
        used = set()
        for i in range(self.count(graph.OperatorsLength(), MAX_OPERATORS, "operators")):
            used.add(self._operator(graph.Operators(i), i, codes, tensors))
        for i in range(self.count(model.SignatureDefsLength(), 8, "signatures")):
            self._signature(model.SignatureDefs(i), tensors)
        return {"operators": sorted(used), "tensors": tensors, "activation_bytes": activation_bytes}

    def _operator_code(self, code: Any) -> str | None:
        if code.CustomCode() is not None:
            raise self.fail(f"custom operator {code.CustomCode()[:40]!r} is not accepted")
        # TFLite's own rule: the larger of the two fields (the old one tops out at 127).
        name = self.names.get(max(code.BuiltinCode(), code.DeprecatedBuiltinCode()))
        return name if name in OPERATORS else None  # refused where an operator uses it

    def _tensor(self, tensor: Any, index: int, model: Any, buffers: int) -> tuple[int, bool]:
        type_name = self.types.get(tensor.Type())
        if type_name not in TYPES:
            raise self.fail(f"tensor {index} has type {type_name or tensor.Type()}; accepted: {', '.join(TYPES)}")
        if tensor.Sparsity() is not None or tensor.IsVariable() or tensor.VariantTensorsLength() \
                or tensor.ExternalBuffer():
            raise self.fail(f"tensor {index} is sparse, variable or external; none is accepted")
        rank = self.count(tensor.ShapeLength(), MAX_RANK, f"dimensions in tensor {index}")
        shape = [int(n) for n in tensor.ShapeAsNumpy()] if rank else []
        if any(not 1 <= n <= 1 << 24 for n in shape):
            raise self.fail(f"tensor {index} has shape {shape}")
        if tensor.ShapeSignatureLength():
            signature = [int(n) for n in tensor.ShapeSignatureAsNumpy()[:MAX_RANK + 1]]
            if len(signature) != rank or any(s not in (-1, n) for s, n in zip(signature, shape)):
                raise self.fail(f"tensor {index}'s shape signature {signature} does not fit its shape {shape}")
        size = math.prod(shape) * TYPES[type_name]
        if size > MAX_TENSOR_BYTES:
            raise self.fail(f"tensor {index} holds {size:,} bytes; at most {MAX_TENSOR_BYTES:,} are accepted")
        self._quantization(tensor.Quantization(), index, shape)
        if not 0 <= tensor.Buffer() < buffers:
            raise self.fail(f"tensor {index} points at buffer {tensor.Buffer()}; there are {buffers}")
        data = model.Buffers(tensor.Buffer())
        if data.Offset() or data.Size():
            raise self.fail(f"tensor {index}'s data lies outside the flatbuffer's own buffers")
        stored = data.DataLength()
        if stored and stored != size:
            raise self.fail(f"tensor {index} has {stored:,} bytes of data; its shape {shape} needs {size:,}")
        return size, bool(stored)

    def _quantization(self, quantization: Any, index: int, shape: list[int]) -> None:
        if quantization is None:
            return
        scales, zero_points = quantization.ScaleLength(), quantization.ZeroPointLength()
        if quantization.DetailsType() != 0:
            raise self.fail(f"tensor {index} has custom quantization details")
        if scales != zero_points or scales > 1 and (quantization.QuantizedDimension() >= len(shape)
                                                    or scales != shape[quantization.QuantizedDimension()]):
            raise self.fail(f"tensor {index}'s quantization ({scales} scales, {zero_points} zero points) does not "
                            f"fit its shape {shape}")

    def _indices(self, values: Any, tensors: int, what: str, optional: set[int] = frozenset()) -> list[int]:
        indices = [int(v) for v in values]
        for position, value in enumerate(indices):
            if not (0 <= value < tensors or value == -1 and position in optional):
                raise self.fail(f"{what} name tensor {value}; there are {tensors}")
        return indices

    def _operator(self, operator: Any, number: int, codes: list[str | None], tensors: int) -> str:
        if not 0 <= operator.OpcodeIndex() < len(codes):
            raise self.fail(f"operator {number} names operator code {operator.OpcodeIndex()}; there are {len(codes)}")
        name = codes[operator.OpcodeIndex()]
        if name is None:
            raise self.fail(f"operator {number} is not one an image classifier needs; accepted: "
                            f"{', '.join(sorted(OPERATORS))}")
        if operator.LargeCustomOptionsOffset() or operator.CustomOptionsLength() or operator.IntermediatesLength():
            raise self.fail(f"operator {number} ({name}) carries custom options or intermediates")
        fewest, most = OPERATORS[name]
        count = self.count(operator.InputsLength(), most, f"inputs to operator {number} ({name})")
        if count < fewest:
            raise self.fail(f"operator {number} ({name}) has {count} inputs; it needs {fewest}")
        self._indices(operator.InputsAsNumpy() if count else [], tensors, f"operator {number}'s ({name}) inputs",
                      OPTIONAL_INPUTS.get(name, set()))
        if self.count(operator.OutputsLength(), 1, f"outputs of operator {number} ({name})") != 1:
            raise self.fail(f"operator {number} ({name}) has no output")
        self._indices(operator.OutputsAsNumpy(), tensors, f"operator {number}'s ({name}) output")
        return name

    def _signature(self, signature: Any, tensors: int) -> None:
        if signature.SubgraphIndex() != 0:
            raise self.fail("a signature names a subgraph that does not exist")
        for length, read in ((signature.InputsLength(), signature.Inputs),
                             (signature.OutputsLength(), signature.Outputs)):
            for i in range(self.count(length, MAX_OUTPUTS + 1, "signature tensors")):
                if not 0 <= read(i).TensorIndex() < tensors:
                    raise self.fail("a signature names a tensor that does not exist")


def run_isolated(flatbuffer: bytes, where: str, timeout: float = CHILD_SECONDS) -> dict[str, dict[str, Any]]:
    """Build, allocate and run ``flatbuffer`` once on zeros in a child process.

    The child gets the bytes on stdin and no environment but what Python needs (no tokens);
    it caps its own memory and CPU time before reading them. Started with ``subprocess`` (an
    exec, not a fork of the threaded server).

    Returns:
        The first input's and output's ``shape``, ``dtype``, ``scale`` and ``zero_point``, as
        LiteRT reports them.

    Raises:
        InvalidModelFileError: the child crashed (a signal), ran past ``timeout``, or LiteRT
            refused the model; the message says which.
    """
    environment = {"PATH": os.defpath, "PYTHONPATH": str(Path(__file__).resolve().parents[2]),
                   "PYTHONDONTWRITEBYTECODE": "1", "TF_CPP_MIN_LOG_LEVEL": "3"}
    try:
        done = subprocess.run([sys.executable, "-m", __name__], input=flatbuffer, capture_output=True,
                              timeout=timeout, env=environment, cwd=Path(__file__).resolve().parents[2],
                              start_new_session=True)
    except subprocess.TimeoutExpired:  # run() has killed and reaped the child
        raise InvalidModelFileError(f"{where}: LiteRT did not build and run it within {timeout:g} s") from None
    if done.returncode < 0:
        crash = signal.Signals(-done.returncode).name if -done.returncode in signal.valid_signals() else "a signal"
        raise InvalidModelFileError(f"{where} crashes LiteRT ({crash}) while it is built and run: not accepted")
    try:
        answer = json.loads(done.stdout.decode("utf-8", "replace").strip().splitlines()[-1])
    except (ValueError, IndexError):
        answer = {"error": f"exit status {done.returncode}"}
    if done.returncode != 0 or "error" in answer:
        raise InvalidModelFileError(f"{where} is not a TFLite model LiteRT can run ({str(answer.get('error'))[:200]})")
    return answer


def check_tflite(flatbuffer: bytes, where: str) -> dict[str, dict[str, Any]]:
    """``validate_flatbuffer``, then ``run_isolated``: what an upload passes before the
    server builds an interpreter of it. Returns ``run_isolated``'s description.

    Raises:
        InvalidModelFileError: from either.
    """
    validate_flatbuffer(flatbuffer, where)
    return run_isolated(flatbuffer, where)


def _child() -> None:
    """The child's side: cap memory and CPU, read stdin, build, allocate, invoke on zeros,
    print the I/O description (or the error) as one JSON line."""
    import resource  # lazy: Unix only, and only the child caps its own limits

    resource.setrlimit(resource.RLIMIT_AS, (CHILD_MEMORY_BYTES, CHILD_MEMORY_BYTES))
    resource.setrlimit(resource.RLIMIT_CPU, (CHILD_SECONDS, CHILD_SECONDS))
    flatbuffer = sys.stdin.buffer.read(MAX_FLATBUFFER_BYTES + 1)
    try:
        from ai_edge_litert.interpreter import Interpreter  # lazy: loaded in the child, under its memory and CPU caps

        interpreter = Interpreter(model_content=flatbuffer, num_threads=1)
        interpreter.allocate_tensors()
        for detail in interpreter.get_input_details():
            interpreter.set_tensor(detail["index"], np.zeros(detail["shape"], detail["dtype"]))
        interpreter.invoke()

        def described(detail: dict[str, Any]) -> dict[str, Any]:
            scale, zero_point = detail["quantization"]
            return {"shape": [int(n) for n in detail["shape"]], "dtype": np.dtype(detail["dtype"]).name,
                    "scale": float(scale), "zero_point": int(zero_point)}

        answer = {"input": described(interpreter.get_input_details()[0]),
                  "output": described(interpreter.get_output_details()[0])}
    except (RuntimeError, ValueError, MemoryError) as error:  # LiteRT's refusals
        answer = {"error": f"{type(error).__name__}: {str(error).strip().splitlines()[-1][:200] if str(error) else ''}"}
    print(json.dumps(answer), flush=True)


if __name__ == "__main__":
    _child()
