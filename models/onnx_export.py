"""TF ``tf.function`` -> plain-ONNX conversion, and fusing a step into an epoch.

Why plain ONNX: ONNX Runtime's training builds are deprecated, so a training
step is exported as an ordinary inference graph (params + batch in, new params
+ loss out).  Every ONNX Runtime build — Python, Node, browser WASM, mobile —
can then train.  Two TF gradient ops have no tf2onnx mapping and get small
handlers here; everything else maps to standard ops once input shapes are
static (grappler folds ``BroadcastGradientArgs``).

Why fuse: an epoch of 500 batches called one batch at a time pays the Python ->
ORT call overhead 500 times.  ``fuse_epoch`` wraps the converted step graph as
the body of an ONNX ``Loop`` that walks the leading ``num_batches`` axis, so an
epoch is one session call.

Heavy imports (tensorflow, tf2onnx, onnx) happen inside the functions.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

import numpy as np

OPSET = 17
PRODUCER = "fedmark.models"


def _relu_grad_handler(ctx: Any, node: Any, name: str, args: Any) -> None:
    """ReluGrad(g, x) -> Where(x > 0, g, 0): the gradient passes where the unit was active."""
    from tf2onnx import utils

    grad, feat = node.input[0], node.input[1]
    dtype = ctx.get_dtype(feat)
    np_dtype = utils.map_onnx_to_numpy_type(dtype)
    zero = ctx.make_const(utils.make_name(f"{name}_zero"), np.array(0, dtype=np_dtype)).output[0]
    positive = ctx.make_node("Greater", [feat, zero], op_name_scope=name).output[0]
    ctx.remove_node(node.name)
    ctx.make_node("Where", [positive, grad, zero], outputs=node.output, name=name,
                  shapes=[ctx.get_shape(grad)], dtypes=[dtype])


def _log1p_handler(ctx: Any, node: Any, name: str, args: Any) -> None:
    """Log1p(x) -> Log(1 + x).  Precision is fine here: x = exp(-|z|) is in (0, 1]."""
    from tf2onnx import utils

    x = node.input[0]
    dtype = ctx.get_dtype(x)
    one = ctx.make_const(utils.make_name(f"{name}_one"), np.array(1, dtype=utils.map_onnx_to_numpy_type(dtype))).output[0]
    plus = ctx.make_node("Add", [x, one], op_name_scope=name).output[0]
    ctx.remove_node(node.name)
    ctx.make_node("Log", [plus], outputs=node.output, name=name, shapes=[ctx.get_shape(x)], dtypes=[dtype])


def _bias_add_grad_handler(ctx: Any, node: Any, name: str, args: Any) -> None:
    """BiasAddGrad(g) -> ReduceSum(g) over every axis but the last (Keras ``Dense`` adds its bias with BiasAdd)."""
    from tf2onnx import utils

    grad = node.input[0]
    shape = ctx.get_shape(grad)
    if shape is None or len(shape) < 2:
        raise ValueError(f"BiasAddGrad {name}: needs a static rank >= 2 (train steps have static shapes)")
    axes = ctx.make_const(utils.make_name(f"{name}_axes"), np.arange(len(shape) - 1, dtype=np.int64)).output[0]
    dtype = ctx.get_dtype(grad)
    ctx.remove_node(node.name)
    ctx.make_node("ReduceSum", [grad, axes], outputs=node.output, name=name, attr={"keepdims": 0},
                  shapes=[[shape[-1]]], dtypes=[dtype])


def _sigmoid_grad_handler(ctx: Any, node: Any, name: str, args: Any) -> None:
    """SigmoidGrad(y, g) -> g * y * (1 - y), y being the sigmoid's output."""
    _activation_grad(ctx, node, name, lambda y, one: ctx.make_node(
        "Mul", [y, ctx.make_node("Sub", [one, y], op_name_scope=name).output[0]], op_name_scope=name).output[0])


def _tanh_grad_handler(ctx: Any, node: Any, name: str, args: Any) -> None:
    """TanhGrad(y, g) -> g * (1 - y²), y being the tanh's output."""
    _activation_grad(ctx, node, name, lambda y, one: ctx.make_node(
        "Sub", [one, ctx.make_node("Mul", [y, y], op_name_scope=name).output[0]], op_name_scope=name).output[0])


def _activation_grad(ctx: Any, node: Any, name: str, derivative: Callable[[str, str], str]) -> None:
    from tf2onnx import utils

    y, grad = node.input[0], node.input[1]
    dtype = ctx.get_dtype(y)
    one = ctx.make_const(utils.make_name(f"{name}_one"), np.array(1, dtype=utils.map_onnx_to_numpy_type(dtype))).output[0]
    local = derivative(y, one)
    shape = ctx.get_shape(grad)
    ctx.remove_node(node.name)
    ctx.make_node("Mul", [grad, local], outputs=node.output, name=name, shapes=[shape], dtypes=[dtype])


CUSTOM_HANDLERS: dict[str, tuple[Callable[..., None], list[Any]]] = {
    "ReluGrad": (_relu_grad_handler, []),
    "Log1p": (_log1p_handler, []),
    "BiasAddGrad": (_bias_add_grad_handler, []),
    "SigmoidGrad": (_sigmoid_grad_handler, []),
    "TanhGrad": (_tanh_grad_handler, []),
}


def convert(fn: Any, input_names: Sequence[str], output_names: Sequence[str], *, opset: int = OPSET) -> Any:
    """Convert a ``tf.function`` that has an ``input_signature`` to an ONNX ModelProto.

    The function must return a dict or tuple of tensors; graph inputs and
    outputs are renamed to ``input_names`` / ``output_names`` (in order), so the
    artifact's I/O names are stable and documented rather than tf2onnx's
    ``Identity_3:0``.
    """
    import tf2onnx

    sig = fn.input_signature
    if sig is None or any(None in s.shape.as_list() for s in sig):
        raise ValueError("train-step conversion needs a tf.function with a fully static input_signature")
    model, _ = tf2onnx.convert.from_function(fn, input_signature=sig, opset=opset,
                                             custom_op_handlers=dict(CUSTOM_HANDLERS))
    return _finish(model, input_names, output_names)


def convert_dynamic(fn: Any, input_names: Sequence[str], output_names: Sequence[str], *, opset: int = OPSET) -> Any:
    """Like ``convert`` but allows dynamic dims (forward-only graphs such as inference)."""
    import tf2onnx

    model, _ = tf2onnx.convert.from_function(fn, input_signature=fn.input_signature, opset=opset,
                                             custom_op_handlers=dict(CUSTOM_HANDLERS))
    return _finish(model, input_names, output_names)


def _finish(model: Any, input_names: Sequence[str], output_names: Sequence[str]) -> Any:
    """Rename I/O to the documented names, drop unused opsets, make the bytes reproducible, check."""
    import onnx

    graph_inputs = [i.name for i in model.graph.input if i.name not in {t.name for t in model.graph.initializer}]
    if len(graph_inputs) != len(input_names):
        raise RuntimeError(f"converted graph has inputs {graph_inputs}, expected {len(input_names)} ({input_names})")
    if len(model.graph.output) != len(output_names):
        raise RuntimeError(f"converted graph has {len(model.graph.output)} outputs, expected {list(output_names)}")
    mapping = dict(zip(graph_inputs, input_names))
    mapping.update({o.name: n for o, n in zip(model.graph.output, output_names)})
    rename(model.graph, mapping)
    model.producer_name = PRODUCER
    model.doc_string = ""
    _strip_unused_opsets(model)
    canonicalize(model.graph)
    onnx.checker.check_model(model)
    return model


def _strip_unused_opsets(model: Any) -> None:
    # tf2onnx declares ai.onnx.ml even when no node uses it; a lean runtime
    # (onnxruntime-web minimal builds) should not have to support it.
    used = {n.domain or "" for n in model.graph.node}
    keep = [o for o in model.opset_import if (o.domain or "") in used or (o.domain or "") == ""]
    del model.opset_import[:]
    model.opset_import.extend(keep)


def _stable_node_order(graph: Any, init_sig: Mapping[str, str]) -> None:
    """Re-sort nodes topologically with ties broken by a name-free structural hash.

    tf2onnx's own order can differ between runs; a node's hash covers its op,
    attributes and (recursively) the hashes of its inputs, so equal graphs get
    equal orders whatever their generated names.
    """
    import heapq

    producer = {o: i for i, n in enumerate(graph.node) for o in n.output}
    sig: dict[int, str] = {}

    def value_sig(name: str) -> str:
        if not name:
            return "-"
        if name in producer:
            i = producer[name]
            return f"{node_sig(i)}:{list(graph.node[i].output).index(name)}"
        return "c" + init_sig[name] if name in init_sig else "in:" + name

    def node_sig(i: int) -> str:
        if i not in sig:
            n = graph.node[i]
            attrs = b"".join(a.SerializeToString(deterministic=True) for a in n.attribute)
            text = "|".join([n.op_type, n.domain, attrs.hex()] + [value_sig(v) for v in n.input])
            sig[i] = hashlib.sha256(text.encode()).hexdigest()
        return sig[i]

    for i in range(len(graph.node)):  # tf2onnx emits a topological order: no deep recursion
        node_sig(i)
    waiting = {i: sum(1 for v in n.input if v in producer) for i, n in enumerate(graph.node)}
    consumers: dict[int, list[int]] = {}
    for i, n in enumerate(graph.node):
        for v in n.input:
            if v in producer:
                consumers.setdefault(producer[v], []).append(i)
    ready = [(sig[i], i) for i, w in waiting.items() if w == 0]
    heapq.heapify(ready)
    order = []
    while ready:
        _, i = heapq.heappop(ready)
        order.append(i)
        for c in consumers.get(i, []):
            waiting[c] -= 1
            if waiting[c] == 0:
                heapq.heappush(ready, (sig[c], c))
    if len(order) != len(graph.node):
        raise RuntimeError("converted graph has a cycle; cannot order it")
    nodes = [graph.node[i] for i in order]
    copies = []
    for n in nodes:
        c = type(n)()
        c.CopyFrom(n)
        copies.append(c)
    del graph.node[:]
    graph.node.extend(copies)


def canonicalize(graph: Any) -> None:
    """Give internal tensors and nodes position-based names.

    tf2onnx numbers its generated names with process-wide counters, so the
    same model exported twice would get different bytes — and a different
    content hash, which defeats the registry's content addressing.  Graph
    inputs and outputs keep their documented names.
    """
    io = {v.name for v in graph.input} | {v.name for v in graph.output}
    mapping: dict[str, str] = {}

    def content(t: Any) -> bytes:  # an initializer's bytes without its (unstable) name
        c = type(t)()
        c.CopyFrom(t)
        c.name = ""
        return c.SerializeToString(deterministic=True)

    inits = sorted(graph.initializer, key=content)
    _stable_node_order(graph, {t.name: hashlib.sha256(content(t)).hexdigest() for t in inits})
    del graph.initializer[:]
    graph.initializer.extend(inits)
    for i, t in enumerate(graph.initializer):
        if t.name not in io:
            mapping[t.name] = f"c{i}"
    graph.doc_string = ""  # tf2onnx writes the TF function's counter-numbered name here
    for v in list(graph.input) + list(graph.output):
        for dim in v.type.tensor_type.shape.dim:
            if dim.dim_param:  # tf2onnx's counter-numbered "unk__123"; our only dynamic axis is rows
                dim.dim_param = "N"
    for i, node in enumerate(graph.node):
        node.name = f"n{i}_{node.op_type}"
        for j, out in enumerate(node.output):
            if out and out not in io and out not in mapping:
                mapping[out] = f"t{i}_{j}"
    del graph.value_info[:]
    rename(graph, mapping)


def rename(graph: Any, mapping: Mapping[str, str]) -> None:
    """Rename value names everywhere in a graph (I/O, nodes, initializers, value_info)."""
    for coll in (graph.input, graph.output, graph.value_info):
        for v in coll:
            if v.name in mapping:
                v.name = mapping[v.name]
    for t in graph.initializer:
        if t.name in mapping:
            t.name = mapping[t.name]
    for node in graph.node:
        for i, name in enumerate(node.input):
            if name in mapping:
                node.input[i] = mapping[name]
        for i, name in enumerate(node.output):
            if name in mapping:
                node.output[i] = mapping[name]
        for attr in node.attribute:
            if attr.g is not None and attr.HasField("g"):
                rename(attr.g, mapping)


@dataclass(frozen=True)
class FuseSpec:
    """How each step input/output behaves across the batches of an epoch.

    carried: (input, output) pairs threaded from one batch to the next (params).
    sliced:  inputs given to the epoch graph with a leading [num_batches] axis;
             batch i reads slice i.
    constant: inputs that are the same for every batch (lr, a frozen vector).
    stacked: outputs collected per batch into a leading [num_batches] axis
             (the per-batch loss, per-block new rows).
    """

    carried: tuple[tuple[str, str], ...]
    sliced: tuple[str, ...]
    constant: tuple[str, ...]
    stacked: tuple[str, ...]


def fuse_epoch(step: Any, spec: FuseSpec, *, graph_name: str = "epoch") -> Any:
    """Wrap a converted step model as the body of an ONNX ``Loop`` over batches.

    The outer graph's inputs keep the step's names: carried and constant inputs
    have the step's shapes; sliced inputs gain a leading ``num_batches`` axis.
    Outputs: the carried outputs' final values (step names), then the stacked
    outputs with a leading ``num_batches`` axis (step names).  The trip count is
    read from the first sliced input's leading dimension.
    """
    import onnx
    from onnx import TensorProto, helper

    g = step.graph
    by_name = {v.name: v for v in list(g.input) + list(g.output)}
    step_inputs = [i.name for i in g.input]
    declared = {n for pair in spec.carried for n in pair[:1]} | set(spec.sliced) | set(spec.constant)
    if set(step_inputs) != declared:
        raise ValueError(f"fuse spec covers {sorted(declared)}, step inputs are {sorted(step_inputs)}")
    if not spec.sliced:
        raise ValueError("a fused epoch needs at least one sliced input (the batch)")

    def tensor_type(v: Any) -> tuple[int, list[int]]:
        t = v.type.tensor_type
        return t.elem_type, [d.dim_value for d in t.shape.dim]

    # Body: internal names get a prefix so they can never shadow outer-scope names.
    prefix = "step/"
    keep = set(spec.constant)  # read from the outer scope as-is
    internal = {}
    for node in g.node:
        for name in list(node.input) + list(node.output):
            if name and name not in keep and name not in internal:
                internal[name] = prefix + name
    for t in g.initializer:
        internal.setdefault(t.name, prefix + t.name)
    carried_in = {i: f"{prefix}{i}" for i, _ in spec.carried}
    sliced_in = {s: f"{prefix}{s}" for s in spec.sliced}
    internal.update(carried_in)
    internal.update(sliced_in)

    body = onnx.GraphProto()
    body.CopyFrom(g)
    del body.input[:]
    del body.output[:]
    del body.value_info[:]
    rename(body, internal)
    body.name = f"{graph_name}_body"

    gathers = [helper.make_node("Gather", [s, "iter"], [sliced_in[s]], axis=0, name=f"slice_{s}") for s in spec.sliced]
    cond_out = helper.make_node("Identity", ["cond_in"], ["cond_out"], name="cond_passthrough")
    nodes = gathers + [cond_out] + list(body.node)
    del body.node[:]
    body.node.extend(nodes)

    body.input.extend([helper.make_tensor_value_info("iter", TensorProto.INT64, []),
                       helper.make_tensor_value_info("cond_in", TensorProto.BOOL, [])])
    for i, _o in spec.carried:
        et, shape = tensor_type(by_name[i])
        body.input.append(helper.make_tensor_value_info(carried_in[i], et, shape))
    body.output.append(helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []))
    for _i, o in spec.carried:
        et, shape = tensor_type(by_name[o])
        body.output.append(helper.make_tensor_value_info(internal[o], et, shape))
    for o in spec.stacked:
        et, shape = tensor_type(by_name[o])
        body.output.append(helper.make_tensor_value_info(internal[o], et, shape))

    # Outer graph.
    first = spec.sliced[0]
    outer_nodes = [
        helper.make_node("Shape", [first], ["first_shape"], name="batches_shape"),
        helper.make_node("Gather", ["first_shape", "zero_idx"], ["trip_count"], axis=0, name="batches_count"),
        helper.make_node("Loop", ["trip_count", "always"] + [i for i, _ in spec.carried],
                         [o for _, o in spec.carried] + list(spec.stacked), body=body, name=f"{graph_name}_loop"),
    ]
    inits = [helper.make_tensor("zero_idx", TensorProto.INT64, [], [0]),
             helper.make_tensor("always", TensorProto.BOOL, [], [True])]
    inputs = []
    for i, _o in spec.carried:
        et, shape = tensor_type(by_name[i])
        inputs.append(helper.make_tensor_value_info(i, et, shape))
    for s in spec.sliced:
        et, shape = tensor_type(by_name[s])
        inputs.append(helper.make_tensor_value_info(s, et, ["num_batches"] + shape))
    for c in spec.constant:
        et, shape = tensor_type(by_name[c])
        inputs.append(helper.make_tensor_value_info(c, et, shape))
    outputs = []
    for _i, o in spec.carried:
        et, shape = tensor_type(by_name[o])
        outputs.append(helper.make_tensor_value_info(o, et, shape))
    for o in spec.stacked:
        et, shape = tensor_type(by_name[o])
        outputs.append(helper.make_tensor_value_info(o, et, ["num_batches"] + shape))
    graph = helper.make_graph(outer_nodes, graph_name, inputs, outputs, initializer=inits)
    model = helper.make_model(graph, opset_imports=list(step.opset_import), producer_name=PRODUCER)
    model.ir_version = step.ir_version
    onnx.checker.check_model(model, full_check=True)
    return model


def save(model: Any, path: str) -> None:
    """Serialize deterministically (same model -> same bytes -> same hash)."""
    with open(path, "wb") as f:
        f.write(model.SerializeToString(deterministic=True))
