"""Rebuild a Keras 2 or TF.js layers-model topology as a Keras 3 model, reading it as data.

Keras 3 cannot load what Teachable Machine exports: its ``keras_model.h5`` fails on the
Keras 2 key ``groups`` of ``DepthwiseConv2D``, and a TF.js ``model.json`` has no Python
loader at all. Both describe the same thing: a Sequential wrapping a functional MobileNet,
as JSON. Instead of handing that JSON to a deserializer (which would resolve whatever class
names it holds), this module walks it as plain data: every layer's class must be on a short
allowlist, only the keys that shape the computation are read (initializers, regularizers,
constraints and anything unknown are dropped, which is also what makes Keras 2's extra keys
harmless), every number is bounded, and the graph is rebuilt with Keras 3's own layers.

Before anything is built, the same walk runs on shapes instead of tensors (``config_cost``,
with each layer's rule in ``vision.models.config_cost``): parameters, weight bytes and the
activation values of one image are counted from the config alone and refused above the
bounds, the figure named. Keras allocates and initialises every weight while it builds.

Nested models are inlined, so the result is one flat functional model. A final
``Dense(..., activation="softmax")`` becomes a Dense named ``logits`` plus a float32
softmax named ``probabilities``: the shape every classifier here has (see
``vision.models.heads``), so Grad-CAM, calibration and the "unknown" detector work on it.

Weights are matched by ``<layer>/<variable>`` name, never by position: TF.js lists
trainable weights before the BatchNorm statistics.

Writing a model in this form (Teachable Machine's TF.js export) is ``vision.export.tfjs_layers``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np

from vision.errors import InvalidModelFileError
from vision.models import config_cost as rules
from vision.models.config_cost import Cost, layer_output
from vision.models.heads import LOGITS_LAYER, OUTPUT_LAYER

#: Largest input side and channel count accepted: a declared shape beyond this is hostile or
#: a mistake, and would make Keras allocate it while building.
MAX_SIDE = 1024
MAX_CHANNELS = 4
MAX_UNITS = 65536
MAX_KERNEL = 15
MAX_LAYERS = 2000
MAX_DEPTH = 4
MAX_PARAMETERS = 50_000_000
#: float32 weights; TM's own exports hold 2-10 MB.
MAX_WEIGHT_BYTES = 4 * MAX_PARAMETERS
#: Values one forward pass (batch 1) writes, added over every layer, and in its largest
#: layer. Counted by ``config_cost``: Keras's MobileNetV2 at 224 px writes 21.8 M (largest
#: layer 1.2 M) at alpha 1.0 and 31.2 M (1.8 M) at alpha 1.4; these bounds leave 3-9x that.
MAX_ACTIVATIONS = 100_000_000
MAX_LAYER_ACTIVATION = 16_000_000

_ACTIVATIONS = ("linear", "relu", "relu6", "softmax", "sigmoid", "tanh", "swish", "hard_sigmoid", "elu",
                "selu", "softplus", "gelu")
_CONTAINERS = ("Sequential", "Model", "Functional")
#: Keras 2 / TF.js weight names that Keras 3 spells differently.
_WEIGHT_ALIASES = {"depthwise_kernel": "kernel"}


@dataclass
class Rebuilt:
    """A rebuilt model, and for each of its weights the name the source file gives it."""

    model: Any
    #: Keras 3 layer name -> ordered source names ``"<source layer>/<variable>"`` of its weights.
    weight_names: dict[str, list[str]] = field(default_factory=dict)

    def load_weights(self, source: Mapping[str, np.ndarray], where: str) -> None:
        """Set every weight from ``source`` (``"<layer>/<variable>"`` -> array).

        Raises:
            InvalidModelFileError: a weight is missing, its shape differs, or ``source`` has
                weights the topology does not use.
        """
        by_name = {_short_weight_name(name): value for name, value in source.items()}
        used: set[str] = set()
        for layer in self.model.layers:
            names = self.weight_names.get(layer.name)
            if not names:
                continue
            values = []
            for variable, name in zip(layer.weights, names, strict=True):
                if name not in by_name:
                    raise InvalidModelFileError(f"{where}: the weight {name!r} is missing")
                value = by_name[name]
                if tuple(value.shape) != tuple(variable.shape):
                    raise InvalidModelFileError(f"{where}: the weight {name!r} has shape {tuple(value.shape)}; "
                                                f"its layer needs {tuple(variable.shape)}")
                values.append(value)
                used.add(name)
            layer.set_weights(values)
        unused = sorted(set(by_name) - used)
        if unused:
            raise InvalidModelFileError(f"{where}: {len(unused)} weights belong to no layer, e.g. {unused[0]!r}")


def rebuild(topology: Mapping[str, Any], where: str) -> Rebuilt:
    """A Keras 3 model built from a Keras 2 ``model_config`` or TF.js ``modelTopology``.

    The config is costed first (``config_cost``): parameters, weight bytes and activation
    values at the declared input are counted from the config alone, and a model over the
    bounds is refused before Keras (or even its import) allocates anything.

    Args:
        topology: ``{"class_name": "Sequential" | "Model" | "Functional", "config": ...}``,
            parsed JSON.
        where: The file it came from, for error messages.

    Raises:
        InvalidModelFileError: a layer type that is not allowed (Lambda, custom classes, ...),
            a value out of bounds, a model over the cost bounds (the figure named), or a
            graph that does not hold together.
    """
    check_cost(topology, where)
    import keras  # lazy: only after the cost check, since importing it costs seconds

    builder = _Builder(keras, where)
    inputs = builder.input_for(topology)
    outputs = builder.call(topology, [inputs], depth=0)
    if len(outputs) != 1:
        raise InvalidModelFileError(f"{where}: the model has {len(outputs)} outputs; a classifier has one")
    outputs = builder.split_softmax(outputs[0])
    model = keras.Model(inputs, outputs, name=_safe_name(_config(topology, where).get("name", "imported")))
    return Rebuilt(model, builder.weight_names)


def config_cost(topology: Mapping[str, Any], where: str) -> Cost:
    """Parameters and activation values of ``topology`` at its declared input (batch 1),
    walked as data: no layer is built and nothing proportional to the model is allocated.

    Raises:
        InvalidModelFileError: the config is malformed or uses a layer that is not accepted
            (the same checks as ``rebuild``).
    """
    planner = _Planner(where)
    outputs = planner.call(topology, [planner.input_for(topology)], depth=0)
    if len(outputs) != 1:
        raise InvalidModelFileError(f"{where}: the model has {len(outputs)} outputs; a classifier has one")
    return planner.cost


def check_cost(topology: Mapping[str, Any], where: str) -> Cost:
    """``config_cost`` of ``topology``, refused above the bounds with the figure named.

    Raises:
        InvalidModelFileError: over ``MAX_PARAMETERS``, ``MAX_WEIGHT_BYTES``,
            ``MAX_ACTIVATIONS`` or ``MAX_LAYER_ACTIVATION``; or see ``config_cost``.
    """
    cost = config_cost(topology, where)
    error = _over_bounds(cost, where)
    if error is not None:
        raise error
    return cost


def _over_bounds(cost: Cost, where: str) -> InvalidModelFileError | None:
    """The refusal for the first bound ``cost`` is over, naming the figure; None if under all."""
    if cost.parameters > MAX_PARAMETERS:
        return InvalidModelFileError(f"{where}: {cost.parameters:,} parameters is over the {MAX_PARAMETERS:,} accepted")
    if cost.weight_bytes > MAX_WEIGHT_BYTES:
        return InvalidModelFileError(f"{where}: {cost.weight_bytes:,} bytes of weights is over the "
                                     f"{MAX_WEIGHT_BYTES:,} accepted")
    if cost.largest > MAX_LAYER_ACTIVATION:
        return InvalidModelFileError(f"{where}: layer {cost.largest_layer[:60]!r} outputs {cost.largest:,} values "
                                     f"per image, over the {MAX_LAYER_ACTIVATION:,} accepted for one layer")
    if cost.activations > MAX_ACTIVATIONS:
        return InvalidModelFileError(f"{where}: the layers output {cost.activations:,} values per image, over the "
                                     f"{MAX_ACTIVATIONS:,} accepted")
    return None


class _Walk:
    """The graph walk that costing and building share: nested models inlined, every layer
    checked against the allowlist and applied in order. Subclasses say what a tensor is
    (a shape, or a Keras tensor) and what applying a layer does."""

    def __init__(self, where: str) -> None:
        self.where = where
        self.layers = 0

    def make_input(self, shape: tuple[int, ...]) -> Any:
        raise NotImplementedError

    def apply(self, class_name: str, source_name: str, kwargs: dict[str, Any], inputs: list[Any]) -> Any:
        raise NotImplementedError

    # --- the graph ------------------------------------------------------------------------

    def input_for(self, topology: Mapping[str, Any]) -> Any:
        """The model's input tensor, from the first declared input shape found."""
        shape = self._declared_input_shape(topology, depth=0)
        if shape is None:
            raise InvalidModelFileError(f"{self.where}: the model declares no input shape")
        return self.make_input(shape)

    def _declared_input_shape(self, node: Mapping[str, Any], depth: int) -> tuple[int, ...] | None:
        if depth > MAX_DEPTH:
            raise InvalidModelFileError(f"{self.where}: models nested more than {MAX_DEPTH} deep")
        config = _config(node, self.where)
        for key in ("batch_input_shape", "batch_shape"):
            if key in config:
                return self._input_shape(config[key])
        for layer in _layer_list(node, self.where)[:1] if node.get("class_name") in _CONTAINERS else []:
            found = self._declared_input_shape(layer, depth + 1)
            if found is not None:
                return found
        return None

    def _input_shape(self, value: Any) -> tuple[int, ...]:
        if not isinstance(value, list) or len(value) != 4 or value[0] is not None:
            raise InvalidModelFileError(f"{self.where}: input shape {value!r} is not (batch, height, width, channels)")
        height, width, channels = (_bounded_int(v, 1, MAX_SIDE, "input size", self.where) for v in value[1:])
        if channels > MAX_CHANNELS:
            raise InvalidModelFileError(f"{self.where}: input with {channels} channels; at most {MAX_CHANNELS}")
        return (height, width, channels)

    def call(self, node: Mapping[str, Any], inputs: list[Any], depth: int) -> list[Any]:
        """Apply ``node`` (a container or one layer) to ``inputs``; returns its outputs."""
        class_name = node.get("class_name")
        if class_name in _CONTAINERS:
            if depth > MAX_DEPTH:
                raise InvalidModelFileError(f"{self.where}: models nested more than {MAX_DEPTH} deep")
            if class_name == "Sequential":
                return self._sequential(node, inputs, depth)
            return self._functional(node, inputs, depth)
        return [self._layer(node, inputs)]

    def _sequential(self, node: Mapping[str, Any], inputs: list[Any], depth: int) -> list[Any]:
        outputs = inputs
        for layer in _layer_list(node, self.where):
            if layer.get("class_name") == "InputLayer":
                continue
            outputs = self.call(layer, outputs, depth + 1)
        return outputs

    def _functional(self, node: Mapping[str, Any], inputs: list[Any], depth: int) -> list[Any]:
        config = _config(node, self.where)
        input_names = [_node_ref(ref, self.where)[0] for ref in _refs(config.get("input_layers", []))]
        if len(input_names) != len(inputs):
            raise InvalidModelFileError(f"{self.where}: a nested model takes {len(input_names)} inputs; "
                                        f"it is given {len(inputs)}")
        tensors: dict[str, Any] = dict(zip(input_names, inputs, strict=True))
        for layer in _layer_list(node, self.where):
            name = _layer_name(layer, self.where)
            if layer.get("class_name") == "InputLayer":
                if name not in tensors:
                    raise InvalidModelFileError(f"{self.where}: input layer {name!r} is not a model input")
                continue
            sources = [_node_ref(ref, self.where) for ref in _inbound(layer, self.where)]
            missing = [source for source, *_ in sources if source not in tensors]
            if missing:
                # Configs list layers in topological order; anything else is malformed.
                raise InvalidModelFileError(f"{self.where}: layer {name!r} reads {missing[0]!r} before it exists")
            outputs = self.call(layer, [tensors[source] for source, *_ in sources], depth + 1)
            if len(outputs) != 1:
                raise InvalidModelFileError(f"{self.where}: layer {name!r} has {len(outputs)} outputs")
            tensors[name] = outputs[0]
        outputs = []
        for ref in _refs(config.get("output_layers", [])):
            source = _node_ref(ref, self.where)[0]
            if source not in tensors:
                raise InvalidModelFileError(f"{self.where}: output {source!r} is not a layer of the model")
            outputs.append(tensors[source])
        return outputs

    # --- one layer -----------------------------------------------------------------------

    def _layer(self, node: Mapping[str, Any], inputs: list[Any]) -> Any:
        class_name = node.get("class_name")
        accepted = _LAYERS.get(class_name) if isinstance(class_name, str) else None
        if accepted is None:
            raise InvalidModelFileError(
                f"{self.where}: layer type {str(class_name)[:60]!r} is not accepted; an imported model may use "
                f"only {', '.join(sorted(_LAYERS))}")
        self.layers += 1
        if self.layers > MAX_LAYERS:
            raise InvalidModelFileError(f"{self.where}: more than {MAX_LAYERS} layers")
        source_name = _layer_name(node, self.where)
        kwargs = accepted.read(_config(node, self.where), self.where)
        if class_name not in ("Add", "Concatenate", "Multiply"):
            inputs = [_single(inputs, source_name, self.where)]
        return self.apply(class_name, source_name, kwargs, inputs)


class _Planner(_Walk):
    """Walks a config with shapes for tensors, adding up what each layer costs."""

    def __init__(self, where: str) -> None:
        super().__init__(where)
        self.cost = Cost()

    def make_input(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        self.cost.add("input", shape, 0)
        return shape

    def apply(self, class_name: str, source_name: str, kwargs: dict[str, Any], inputs: list[Any]) -> Any:
        shape, parameters = layer_output(_LAYERS[class_name].cost, kwargs, inputs, source_name, self.where)
        self.cost.add(source_name, shape, parameters)
        # Refused at the first layer over a bound: the walk itself stays cheap.
        error = _over_bounds(self.cost, self.where)
        if error is not None:
            raise error
        return shape


class _Builder(_Walk):
    """Turns config dicts into Keras 3 tensors; one per rebuild."""

    def __init__(self, keras: Any, where: str) -> None:
        super().__init__(where)
        self.keras = keras
        self.names: set[str] = set()
        self.weight_names: dict[str, list[str]] = {}
        #: id(output tensor) -> (the layer that made it, its keyword arguments)
        self.producers: dict[int, tuple[Any, dict[str, Any]]] = {}

    def make_input(self, shape: tuple[int, ...]) -> Any:
        return self.keras.Input(shape, name="image")

    def apply(self, class_name: str, source_name: str, kwargs: dict[str, Any], inputs: list[Any]) -> Any:
        name = self._unique(source_name)
        layer = getattr(self.keras.layers, class_name)(name=name, **kwargs)
        output = layer(inputs if class_name in ("Add", "Concatenate", "Multiply") else inputs[0])
        self.weight_names[name] = [f"{source_name}/{_variable_name(v)}" for v in layer.weights]
        self.producers[id(output)] = (layer, kwargs)
        return output

    def split_softmax(self, output: Any) -> Any:
        """End the model in a ``logits`` Dense + a float32 ``probabilities`` softmax: from a
        final Dense with a softmax, or a linear Dense followed by a softmax Activation."""
        keras = self.keras
        layer, kwargs = self.producers.get(id(output), (None, {}))
        if isinstance(layer, keras.layers.Activation) and kwargs["activation"] == "softmax":
            layer, kwargs = self.producers.get(id(layer.input), (None, {}))
            if kwargs.get("activation") != "linear":
                layer = None
        elif kwargs.get("activation") != "softmax":
            layer = None
        if not isinstance(layer, keras.layers.Dense):
            raise InvalidModelFileError(f"{self.where}: the model must end in a Dense layer and a softmax, "
                                        "as a classifier does")
        # Its weights (loaded later, under the source's names) go to the layer names the
        # rest of the package looks for.
        logits = keras.layers.Dense(kwargs["units"], use_bias=kwargs["use_bias"], name=LOGITS_LAYER)
        pre_softmax = logits(layer.input)
        self.weight_names[LOGITS_LAYER] = self.weight_names.pop(layer.name)
        return keras.layers.Activation("softmax", dtype="float32", name=OUTPUT_LAYER)(pre_softmax)

    def _unique(self, name: str) -> str:
        # Inlining a nested model can bring two layers of one name together (its "dense" and
        # the outer one's); the reserved head names are kept for split_softmax.
        candidate = _safe_name(name)
        if candidate in (LOGITS_LAYER, OUTPUT_LAYER):
            candidate = f"{candidate}_source"
        base, n = candidate, 1
        while candidate in self.names:
            candidate = f"{base}_{n}"
            n += 1
        self.names.add(candidate)
        return candidate


# --- per-layer keyword arguments: only what shapes the computation, each bounded ------------------

def _conv(config: Mapping[str, Any], where: str, depthwise: bool = False) -> dict[str, Any]:
    kwargs = {
        "kernel_size": _pair(config.get("kernel_size", 1), 1, MAX_KERNEL, "kernel_size", where),
        "strides": _pair(config.get("strides", 1), 1, MAX_KERNEL, "strides", where),
        "padding": _choice(config.get("padding", "valid"), ("valid", "same"), "padding", where),
        "dilation_rate": _pair(config.get("dilation_rate", 1), 1, MAX_KERNEL, "dilation_rate", where),
        "activation": _activation(config.get("activation", "linear"), where),
        "use_bias": bool(config.get("use_bias", True)),
    }
    _channels_last(config, where)
    if depthwise:
        kwargs["depth_multiplier"] = _bounded_int(config.get("depth_multiplier", 1), 1, 64, "depth_multiplier", where)
    else:
        kwargs["filters"] = _bounded_int(config.get("filters"), 1, MAX_UNITS, "filters", where)
        groups = _bounded_int(config.get("groups", 1), 1, MAX_UNITS, "groups", where)
        if groups != 1:
            raise InvalidModelFileError(f"{where}: grouped convolutions (groups={groups}) are not accepted")
    return kwargs


def _batch_norm(config: Mapping[str, Any], where: str) -> dict[str, Any]:
    axis = config.get("axis", -1)
    axis = axis[0] if isinstance(axis, list) and len(axis) == 1 else axis
    if axis not in (-1, 3):
        raise InvalidModelFileError(f"{where}: batch normalisation over axis {axis!r}; only channels last")
    return {"axis": -1,
            "momentum": _bounded_float(config.get("momentum", 0.99), 0.0, 1.0, "momentum", where),
            "epsilon": _bounded_float(config.get("epsilon", 1e-3), 0.0, 1.0, "epsilon", where),
            "center": bool(config.get("center", True)), "scale": bool(config.get("scale", True))}


def _relu(config: Mapping[str, Any], where: str) -> dict[str, Any]:
    max_value = config.get("max_value")
    return {"max_value": None if max_value is None else _bounded_float(max_value, 0.0, 1e6, "max_value", where),
            "negative_slope": _bounded_float(config.get("negative_slope", 0.0), 0.0, 1.0, "negative_slope", where),
            "threshold": _bounded_float(config.get("threshold", 0.0), -1e6, 1e6, "threshold", where)}


def _dense(config: Mapping[str, Any], where: str) -> dict[str, Any]:
    return {"units": _bounded_int(config.get("units"), 1, MAX_UNITS, "units", where),
            "activation": _activation(config.get("activation", "linear"), where),
            "use_bias": bool(config.get("use_bias", True))}


def _pooling(config: Mapping[str, Any], where: str) -> dict[str, Any]:
    _channels_last(config, where)
    strides = config.get("strides")
    return {"pool_size": _pair(config.get("pool_size", 2), 1, MAX_KERNEL, "pool_size", where),
            "strides": None if strides is None else _pair(strides, 1, MAX_KERNEL, "strides", where),
            "padding": _choice(config.get("padding", "valid"), ("valid", "same"), "padding", where)}


def _zero_padding(config: Mapping[str, Any], where: str) -> dict[str, Any]:
    _channels_last(config, where)
    padding = config.get("padding", 1)
    if isinstance(padding, list):
        padding = tuple(_pair(p, 0, MAX_KERNEL, "padding", where) if isinstance(p, list)
                        else _bounded_int(p, 0, MAX_KERNEL, "padding", where) for p in padding)
        return {"padding": padding}
    return {"padding": _bounded_int(padding, 0, MAX_KERNEL, "padding", where)}


def _global_pooling(config: Mapping[str, Any], where: str) -> dict[str, Any]:
    _channels_last(config, where)
    return {"keepdims": bool(config.get("keepdims", False))}


def _no_arguments(config: Mapping[str, Any], where: str) -> dict[str, Any]:
    return {}


def _flatten(config: Mapping[str, Any], where: str) -> dict[str, Any]:
    _channels_last(config, where)
    return {}


class _Accepted(NamedTuple):
    """An accepted layer type: how its config is read (only what shapes the computation, each
    value bounded) and its rule in ``vision.models.config_cost`` (what it costs)."""

    read: Callable[[Mapping[str, Any], str], dict[str, Any]]
    cost: rules.Rule


#: The allowlist, the one list of layer types an imported model may use.
_LAYERS: dict[str, _Accepted] = {
    "Conv2D": _Accepted(_conv, rules.conv),
    "DepthwiseConv2D": _Accepted(lambda config, where: _conv(config, where, depthwise=True), rules.depthwise),
    "BatchNormalization": _Accepted(_batch_norm, rules.batch_norm),
    "ReLU": _Accepted(_relu, rules.same),
    "Activation": _Accepted(lambda config, where: {"activation": _activation(config.get("activation"), where)},
                            rules.same),
    "Dense": _Accepted(_dense, rules.dense),
    "Dropout": _Accepted(lambda config, where: {"rate": _bounded_float(config.get("rate", 0.0), 0.0, 1.0, "rate",
                                                                       where)}, rules.same),
    "Add": _Accepted(_no_arguments, rules.elementwise),
    "Multiply": _Accepted(_no_arguments, rules.elementwise),
    "Concatenate": _Accepted(lambda config, where: {"axis": _choice(config.get("axis", -1), (-1, 3), "axis", where)},
                             rules.concatenate),
    "ZeroPadding2D": _Accepted(_zero_padding, rules.zero_padding),
    "GlobalAveragePooling2D": _Accepted(_global_pooling, rules.global_pooling),
    "GlobalMaxPooling2D": _Accepted(_global_pooling, rules.global_pooling),
    "MaxPooling2D": _Accepted(_pooling, rules.pooling),
    "AveragePooling2D": _Accepted(_pooling, rules.pooling),
    "Flatten": _Accepted(_flatten, rules.flatten),
}


# --- reading values ---------------------------------------------------------------------------

def _config(node: Any, where: str) -> dict[str, Any]:
    if not isinstance(node, Mapping):
        raise InvalidModelFileError(f"{where}: a layer entry is {type(node).__name__}, not an object")
    config = node.get("config", {})
    if isinstance(config, list):  # old Keras Sequential: the config is the layer list itself
        return {"layers": config}
    if not isinstance(config, Mapping):
        raise InvalidModelFileError(f"{where}: a layer's config is {type(config).__name__}, not an object")
    return dict(config)


def _layer_list(node: Mapping[str, Any], where: str) -> list[Any]:
    layers = _config(node, where).get("layers")
    if not isinstance(layers, list) or not layers:
        raise InvalidModelFileError(f"{where}: a model with no layer list")
    if len(layers) > MAX_LAYERS:
        raise InvalidModelFileError(f"{where}: more than {MAX_LAYERS} layers")
    return layers


def _layer_name(node: Mapping[str, Any], where: str) -> str:
    name = node.get("name") or _config(node, where).get("name")
    if not isinstance(name, str) or not name or len(name) > 200:
        raise InvalidModelFileError(f"{where}: a layer without a usable name")
    return name


def _refs(value: Any) -> list[Any]:
    # Keras 3 writes a model's only input or output as one [name, 0, 0], not a list of them.
    return [value] if isinstance(value, list) and value and isinstance(value[0], str) else value


def _inbound(node: Mapping[str, Any], where: str) -> list[Any]:
    """The layer's inputs as ``[name, node, tensor, kwargs]`` references, from either format."""
    nodes = node.get("inbound_nodes", [])
    if not isinstance(nodes, list) or len(nodes) != 1:
        raise InvalidModelFileError(f"{where}: layer {_layer_name(node, where)!r} is not called exactly once")
    if isinstance(nodes[0], dict):  # Keras 3: {"args": [tensors], "kwargs": {...}}
        # Keras 3 records the defaults it passed (mask None, training False); anything else
        # would change what the layer computes.
        kwargs = nodes[0].get("kwargs") or {}
        if not isinstance(kwargs, dict) or any(key not in ("mask", "training") or value not in (None, False)
                                               for key, value in kwargs.items()):
            raise InvalidModelFileError(f"{where}: layer {_layer_name(node, where)!r} is called with arguments")
        return [[name, 0, 0] for name in inbound_layer_names(node, _layer_name(node, where))]
    if not isinstance(nodes[0], list):
        raise InvalidModelFileError(f"{where}: layer {_layer_name(node, where)!r} has malformed connections")
    return nodes[0]


def _node_ref(ref: Any, where: str) -> tuple[str, int, int]:
    # Keras 2 / TF.js: [layer name, node index, tensor index, call kwargs]
    if not isinstance(ref, list) or len(ref) < 3 or not isinstance(ref[0], str):
        raise InvalidModelFileError(f"{where}: a connection {str(ref)[:80]!r} is not [layer, node, tensor]")
    if ref[1] != 0 or ref[2] != 0 or (len(ref) > 3 and ref[3]):
        raise InvalidModelFileError(f"{where}: shared layers and call arguments are not accepted ({ref[0]!r})")
    return ref[0], 0, 0


def _single(inputs: list[Any], name: str, where: str) -> Any:
    if len(inputs) != 1:
        raise InvalidModelFileError(f"{where}: layer {name!r} takes one input; it is given {len(inputs)}")
    return inputs[0]


def _channels_last(config: Mapping[str, Any], where: str) -> None:
    if config.get("data_format", "channels_last") != "channels_last":
        raise InvalidModelFileError(f"{where}: only channels-last models are accepted")


def _activation(value: Any, where: str) -> str:
    return _choice(value if value is not None else "linear", _ACTIVATIONS, "activation", where)


def _choice(value: Any, allowed: tuple, what: str, where: str) -> Any:
    if value not in allowed:
        raise InvalidModelFileError(f"{where}: {what} {str(value)[:40]!r} is not one of {allowed}")
    return value


def _bounded_int(value: Any, low: int, high: int, what: str, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float) or not float(value).is_integer() \
            or not low <= value <= high:
        raise InvalidModelFileError(f"{where}: {what} {str(value)[:40]!r} is not a whole number in {low}..{high}")
    return int(value)


def _bounded_float(value: Any, low: float, high: float, what: str, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) \
            or not low <= value <= high:
        raise InvalidModelFileError(f"{where}: {what} {str(value)[:40]!r} is not a number in {low}..{high}")
    return float(value)


def _pair(value: Any, low: int, high: int, what: str, where: str) -> tuple[int, int]:
    values = value if isinstance(value, list) else [value, value]
    if len(values) != 2:
        raise InvalidModelFileError(f"{where}: {what} {str(value)[:40]!r} is not one or two numbers")
    return (_bounded_int(values[0], low, high, what, where), _bounded_int(values[1], low, high, what, where))


def _safe_name(name: str) -> str:
    # Keras 3 refuses "/" in layer names; TF.js scopes sometimes contain it.
    return "".join(c if c.isalnum() or c in "_-." else "_" for c in name)[:120] or "layer"


def _variable_name(variable: Any) -> str:
    return variable.path.rsplit("/", 1)[-1]


def _short_weight_name(name: str) -> str:
    """``"<layer>/<variable>"`` from a file's weight name: TF.js may prefix scopes
    (``model1/Conv1/kernel``) and Keras 2's HDF5 appends ``:0``."""
    parts = name.split(":")[0].split("/")
    if len(parts) < 2:
        return name
    variable = _WEIGHT_ALIASES.get(parts[-1], parts[-1])
    return f"{parts[-2]}/{variable}"


# --- Keras 3 connections ---------------------------------------------------------------------

def inbound_layer_names(entry: Mapping[str, Any], name: str) -> list[str]:
    """The layers whose outputs the layer ``name`` reads, from its entry in a Keras 3
    functional model's ``get_config()["layers"]``.

    Raises:
        InvalidModelFileError: the layer is called more than once (a shared layer).
    """
    # Keras 3: [{"args": [keras tensor or list of them], "kwargs": {}}], one node per call.
    nodes = entry.get("inbound_nodes", [])
    if len(nodes) != 1:
        raise InvalidModelFileError(f"layer {name!r} is called {len(nodes)} times; a layers model needs once")
    sources: list[str] = []

    def collect(value: Any) -> None:
        if isinstance(value, dict) and value.get("class_name") == "__keras_tensor__":
            history = value.get("config", {}).get("keras_history")
            if not isinstance(history, list) or not history or not isinstance(history[0], str) or any(history[1:]):
                raise InvalidModelFileError(f"layer {name!r} reads a tensor {str(history)[:60]} it cannot have")
            sources.append(history[0])
        elif isinstance(value, list | tuple):
            for item in value:
                collect(item)

    collect(nodes[0].get("args", []))
    return sources

