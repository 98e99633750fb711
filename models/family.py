"""The family API: one Keras model + one task + one feature schema feed both the ONNX trainer and TFF.

Why one definition: a model that is written once as an exported train step and
once more for TFF drifts — the parity tests would then test two programs.
Here the Keras builder is turned into a *functional* model with
``tff.learning.models.functional_model_from_keras``, whose forward pass takes
the weights as inputs.  That same forward pass is

* differentiated inside the exported train step
  ``(params…, x, y, mask, lr) -> (params_new…, loss)`` (plain SGD on the
  task's masked mean loss), converted to plain ONNX (``models.onnx_export``);
* handed to ``tff.learning.algorithms.build_weighted_fed_avg`` by
  ``models.federated.build_process`` (client work = the same SGD, the Keras
  form of the same loss).

TFF's functional model only runs in a graph context (it refuses eager
execution), so every TF function here is traced inside its own ``tf.Graph``
(:class:`GraphFunction`) and run through a session when called from Python.

Supported layers (``SUPPORTED_LAYERS``): Input, Dense, Embedding,
Concatenate, Activation, Flatten, Reshape, Add and :class:`TakeSlots` — with
the activations linear, relu, sigmoid, tanh, softmax.  Layers with state updated during training
(BatchNormalization) or randomness (Dropout) are refused: the exported step is
a pure function of its inputs.  The ``supervised-tabular/1`` protocol feeds
one float matrix ``x`` (the schema's encoding), so a model has one input of
width ``schema.width``.  An Embedding is fed by a categorical column declared
with ``"embed": D`` (a contract column of kind "index": one slot of x holding
the category's index): ``TakeSlots`` picks that slot out of x and the
Embedding casts it to an integer id and looks it up (ONNX: Cast + Gather, its
gradient a ScatterND), see :func:`tabular_builder`.

TensorFlow and TFF are imported inside the functions.
"""
from __future__ import annotations

import collections
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from fedmark.contract import FeatureSchema, ParamSpec
from models.tasks import Task, get_task

__all__ = ["PROTOCOL_SUPERVISED", "SUPPORTED_LAYERS", "SUPPORTED_ACTIVATIONS", "FamilyError", "Family",
           "GraphFunction", "mlp_builder", "tabular_builder", "take_slots", "column_slots"]

PROTOCOL_SUPERVISED = "supervised-tabular/1"
SUPPORTED_LAYERS = frozenset({"InputLayer", "Dense", "Embedding", "Concatenate", "Activation", "Flatten", "Reshape",
                              "Add", "TakeSlots"})
SUPPORTED_ACTIVATIONS = frozenset({"linear", "relu", "sigmoid", "tanh", "softmax"})


class FamilyError(ValueError):
    """A family definition the export cannot turn into a trainer (layer, shape, loss, schema)."""


class GraphFunction:
    """A ``tf.function`` traced in a private ``tf.Graph``: callable on numpy arrays, convertible to ONNX.

    Why: TFF's functional Keras model refuses eager execution, and tf2onnx
    converts a function traced in the graph it is given; owning the graph gives
    both from one trace.
    """

    def __init__(self, body: Callable[..., Any], signature: Sequence[Any]) -> None:
        import tensorflow as tf

        self.signature = list(signature)
        self.graph = tf.Graph()
        with self.graph.as_default():
            self.fn = tf.function(body, input_signature=self.signature)
            self._feeds = [tf.compat.v1.placeholder(s.dtype, s.shape) for s in self.signature]
            out = self.fn(*self._feeds)
            self._outputs = list(out) if isinstance(out, (tuple, list)) else [out]
        self._session: Any = None

    def __call__(self, *args: Any) -> list[np.ndarray]:
        import tensorflow as tf

        if len(args) != len(self._feeds):
            raise TypeError(f"expected {len(self._feeds)} inputs, got {len(args)}")
        if self._session is None:
            self._session = tf.compat.v1.Session(graph=self.graph)
        vals = self._session.run(self._outputs, feed_dict=dict(zip(self._feeds, (np.asarray(a) for a in args))))
        return [np.asarray(v) for v in vals]

    def to_onnx(self, input_names: Sequence[str], output_names: Sequence[str], *, dynamic: bool = False) -> Any:
        from models import onnx_export as oe

        with self.graph.as_default():
            conv = oe.convert_dynamic if dynamic else oe.convert
            return conv(self.fn, input_names, output_names)


def mlp_builder(width: int, units: int, hidden: int | Sequence[int] = 32, *, activation: str = "relu",
                names: Sequence[str] | None = None) -> Callable[[], Any]:
    """A no-arg builder of ``width -> hidden… -> units`` Dense layers (``hidden=0``: a linear model).

    ``names`` are the layer names (the last one is the output layer).
    """
    sizes = [h for h in ([hidden] if isinstance(hidden, int) else list(hidden)) if h > 0]
    layer_names = list(names) if names is not None else [f"hidden{i + 1}" for i in range(len(sizes))] + ["out"]
    if len(layer_names) != len(sizes) + 1:
        raise FamilyError(f"{len(sizes) + 1} layers need {len(sizes) + 1} names, got {layer_names}")

    def build() -> Any:
        import tensorflow as tf

        x = inputs = tf.keras.Input(shape=(width,), name="x")
        for h, name in zip(sizes, layer_names):
            x = tf.keras.layers.Dense(h, activation=activation, name=name)(x)
        out = tf.keras.layers.Dense(units, name=layer_names[-1])(x)
        return tf.keras.Model(inputs, out)

    return build


def column_slots(schema: FeatureSchema) -> dict[str, list[int]]:
    """Each schema column's slots in x, by column name (what :func:`take_slots` picks)."""
    out, off = {}, 0
    for c in schema.columns:
        out[c.name] = list(range(off, off + c.width))
        off += c.width
    return out


def take_slots(slots: Sequence[int], **kwargs: Any) -> Any:
    """A ``TakeSlots`` Keras layer: x [N, width] -> x[:, slots] (no weights).

    Why a layer of its own: the protocol feeds one matrix x, and a model that
    embeds an index column must split that column off the dense ones; a Lambda
    would hide arbitrary code from the layer check, this does one thing
    (ONNX: a Gather on axis 1).  TensorFlow is imported on first use.
    """
    return _take_slots_class()(slots, **kwargs)


_TAKE_SLOTS: list[Any] = []


def _take_slots_class() -> Any:
    if not _TAKE_SLOTS:
        import tensorflow as tf

        class TakeSlots(tf.keras.layers.Layer):
            def __init__(self, slots: Sequence[int], **kwargs: Any) -> None:
                super().__init__(**kwargs)
                self.slots = [int(i) for i in slots]
                if not self.slots:
                    raise FamilyError("TakeSlots needs at least one slot")

            def call(self, x: Any) -> Any:
                return tf.gather(x, self.slots, axis=1)

            def compute_output_shape(self, input_shape: Any) -> Any:
                return tf.TensorShape([input_shape[0], len(self.slots)])

            def get_config(self) -> dict[str, Any]:
                return {**super().get_config(), "slots": self.slots}

        _TAKE_SLOTS.append(TakeSlots)
    return _TAKE_SLOTS[0]


def tabular_builder(schema: FeatureSchema, units: int, hidden: int | Sequence[int] = 32, *,
                    activation: str = "relu") -> Callable[[], Any]:
    """The tabular recipe's model: :func:`mlp_builder` on x, except that each "index" column (a categorical
    declared with ``embed``) goes through its own Embedding(cardinality, embed), concatenated with the
    dense slots before the hidden layers.  Without index columns it *is* ``mlp_builder`` (same parameters)."""
    index_cols = [c for c in schema.columns if c.kind == "index"]
    if not index_cols:
        return mlp_builder(schema.width, units, hidden, activation=activation)
    sizes = [h for h in ([hidden] if isinstance(hidden, int) else list(hidden)) if h > 0]
    slots = column_slots(schema)
    dense = [i for c in schema.columns if c.kind != "index" for i in slots[c.name]]

    def build() -> Any:
        import tensorflow as tf

        x = tf.keras.Input(shape=(schema.width,), name="x")
        parts = [take_slots(dense, name="dense_slots")(x)] if dense else []
        for c in index_cols:
            tag = re.sub(r"[^A-Za-z0-9_]", "_", c.name)
            ids = take_slots(slots[c.name], name=f"{tag}_index")(x)  # [N, 1] float index; Embedding casts it
            vec = tf.keras.layers.Embedding(c.cardinality, c.embed, name=f"{tag}_embed")(ids)
            parts.append(tf.keras.layers.Flatten(name=f"{tag}_flat")(vec))
        h = tf.keras.layers.Concatenate(name="features")(parts) if len(parts) > 1 else parts[0]
        for i, size in enumerate(sizes):
            h = tf.keras.layers.Dense(size, activation=activation, name=f"hidden{i + 1}")(h)
        return tf.keras.Model(x, tf.keras.layers.Dense(units, name="out")(h))

    return build


def _param_name(var_name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_]", "_", var_name.split(":")[0])


@dataclass(frozen=True)
class Family:
    """A trainable model family: what ``models.export`` exports and ``models.federated`` federates.

    build_model: a no-arg callable returning an *uncompiled* Keras model from x
      [N, schema.width] to the task's output units (``task.units(classes)``),
      logits — no final sigmoid/softmax (the task applies it).
    task: "binary" | "regression" | "multiclass" (``models.tasks``).
    schema: the fitted feature schema (its label rule must match the task).
    param_names: manifest names of the parameters in Keras creation order
      (default: the variable names, e.g. ``hidden1_kernel``).
    init: ``seed -> list of arrays`` for the initial parameters (default: the
      Keras initializers under ``tf.keras.utils.set_random_seed(seed)``).
    """

    name: str
    build_model: Callable[[], Any]
    task: Task | str
    schema: FeatureSchema
    batch_size: int = 64
    learning_rate: float = 0.1
    epochs: int = 1
    param_names: Sequence[str] | None = None
    init: Callable[[int], Sequence[np.ndarray]] | None = None
    hyperparams: Mapping[str, Any] = field(default_factory=dict)
    protocol: str = PROTOCOL_SUPERVISED

    def __post_init__(self) -> None:
        if isinstance(self.task, str):
            object.__setattr__(self, "task", get_task(self.task))
        if self.batch_size <= 0:
            raise FamilyError(f"batch_size must be positive, got {self.batch_size}")
        if not self.learning_rate > 0 or self.epochs < 1:
            raise FamilyError("learning_rate must be > 0 and epochs >= 1")
        if self.schema.task != self.the_task.name:
            raise FamilyError(f"the schema's label is for a {self.schema.task} task, the family's task is "
                              f"{self.the_task.name}; declare the label with the matching task")

    # ------------------------------------------------------------------ shape facts
    @property
    def the_task(self) -> Task:
        assert isinstance(self.task, Task)
        return self.task

    @property
    def width(self) -> int:
        return self.schema.width

    @property
    def classes(self) -> int:
        return len(self.schema.classes) if self.the_task.name == "multiclass" else 1

    @property
    def units(self) -> int:
        return self.the_task.units(self.classes)

    def _build_recording(self) -> tuple[Any, list[Any]]:
        """Build the model, recording its variables in creation order (TFF's weight order, not Keras'
        ``model.weights`` order, which follows the layer list and can differ for branching models)."""
        import tensorflow as tf

        created: list[Any] = []

        def record(next_creator: Any, **kwargs: Any) -> Any:
            v = next_creator(**kwargs)
            created.append(v)
            return v

        with tf.variable_creator_scope(record):
            model = self.build_model()
        self._check_model(model)
        # Eager Keras creates helper variables of its own; keep the model's, in creation order.
        own = {id(v) for v in model.variables}
        return model, [v for v in created if id(v) in own]

    def _variables(self) -> list[tuple[str, tuple[int, ...], bool]]:
        """(name, shape, trainable) of the model's variables in creation order, from a fresh graph."""
        import tensorflow as tf

        with tf.Graph().as_default():
            _, created = self._build_recording()
            return [(v.name, tuple(int(d) for d in v.shape), bool(v.trainable)) for v in created]

    def _check_model(self, model: Any) -> None:
        import tensorflow as tf

        if not isinstance(model, tf.keras.Model):
            raise FamilyError(f"the model builder returned {type(model).__name__}, not a tf.keras.Model")
        for layer in model.layers:
            kind = type(layer).__name__
            if kind not in SUPPORTED_LAYERS:
                raise FamilyError(f"layer {layer.name!r} is a {kind}; supported layers: {', '.join(sorted(SUPPORTED_LAYERS))}")
            act = getattr(layer, "activation", None)
            if act is not None and getattr(act, "__name__", "") not in SUPPORTED_ACTIVATIONS:
                raise FamilyError(f"layer {layer.name!r} uses activation {getattr(act, '__name__', act)!r}; "
                                  f"supported: {', '.join(sorted(SUPPORTED_ACTIVATIONS))}")
        if len(model.inputs) != 1 or tuple(model.inputs[0].shape[1:]) != (self.width,):
            raise FamilyError(f"the model must take one input x of shape [N, {self.width}] (the schema's width); "
                              f"it takes {[tuple(i.shape) for i in model.inputs]}")
        if len(model.outputs) != 1 or tuple(model.outputs[0].shape[1:]) != (self.units,):
            raise FamilyError(f"a {self.the_task.name} model must output [N, {self.units}] logits; this one outputs "
                              f"{[tuple(o.shape) for o in model.outputs]}")

    def param_specs(self) -> tuple[ParamSpec, ...]:
        """Manifest order of the global parameters = Keras variable creation order (TFF's order)."""
        cached = self.__dict__.get("_specs")
        if cached is None:
            cached = self._param_specs()
            object.__setattr__(self, "_specs", cached)  # building the model to list its variables takes a while
        return cached

    def _param_specs(self) -> tuple[ParamSpec, ...]:
        variables = self._variables()
        frozen = [n for n, _, trainable in variables if not trainable]
        if frozen:
            raise FamilyError(f"non-trainable variables {frozen} are not supported (a device trains every parameter)")
        names = list(self.param_names) if self.param_names is not None else [_param_name(n) for n, _, _ in variables]
        if len(names) != len(variables):
            raise FamilyError(f"param_names has {len(names)} names for {len(variables)} variables")
        return tuple(ParamSpec(n, shape) for n, (_, shape, _) in zip(names, variables))

    def initial_params(self, seed: int = 0) -> list[np.ndarray]:
        """Seeded initial parameters in manifest order."""
        specs = self.param_specs()
        if self.init is not None:
            params = [np.asarray(p, np.float32) for p in self.init(seed)]
        else:
            import tensorflow as tf

            tf.keras.utils.set_random_seed(seed)
            with tf.Graph().as_default():
                _, created = self._build_recording()
                with tf.compat.v1.Session() as sess:
                    sess.run(tf.compat.v1.global_variables_initializer())
                    params = [np.asarray(v, np.float32) for v in sess.run(created)]
        if [tuple(p.shape) for p in params] != [s.shape for s in specs]:
            raise FamilyError(f"initial params have shapes {[p.shape for p in params]}, the model needs "
                              f"{[s.shape for s in specs]}")
        return params

    # ------------------------------------------------------------------ TFF's functional model
    def input_spec(self) -> tuple[Any, Any]:
        import tensorflow as tf

        label = [None, self.classes] if self.the_task.name == "multiclass" else [None, 1]
        return tf.TensorSpec([None, self.width], tf.float32), tf.TensorSpec(label, tf.float32)

    def functional_model(self, initial_params: Sequence[np.ndarray] | None = None) -> Any:
        """``tff.learning.models.FunctionalModel`` of this family, starting from ``initial_params``."""
        from models.tff_runtime import import_tff

        tff = import_tff()
        fm = tff.learning.models.functional_model_from_keras(
            self.build_model, self.the_task.keras_loss(), input_spec=self.input_spec(),
            metrics_constructor=lambda: collections.OrderedDict(
                num_examples=tff.learning.metrics.NumExamplesCounter(),
                num_batches=tff.learning.metrics.NumBatchesCounter()))
        if len(fm.initial_weights[1]):
            raise FamilyError("non-trainable variables are not supported")
        init = list(initial_params) if initial_params is not None else self.initial_params()
        return tff.learning.models.FunctionalModel(
            initial_weights=(tuple(np.asarray(p, np.float32) for p in init), ()),
            predict_on_batch_fn=fm.predict_on_batch, loss_fn=fm.loss, input_spec=fm.input_spec,
            metrics_fns=(fm.initialize_metrics_state, fm.update_metrics_state, fm.finalize_metrics))

    # ------------------------------------------------------------------ exported graphs
    def step_io_names(self) -> tuple[list[str], list[str]]:
        """Train-step input and output names (see docs/ARTIFACT.md)."""
        names = [s.name for s in self.param_specs()]
        return names + ["x", "y", "mask", "lr"], [f"{n}_new" for n in names] + ["loss"]

    def make_train_step(self) -> GraphFunction:
        """(params…, x [B, width], y, mask [B], lr) -> (params_new…, loss): one SGD step, static shapes."""
        import tensorflow as tf

        specs = self.param_specs()
        fm = self.functional_model([np.zeros(s.shape, np.float32) for s in specs])
        task, b, n = self.the_task, self.batch_size, len(specs)
        sig = [tf.TensorSpec(s.shape, tf.float32, name=s.name) for s in specs] + [
            tf.TensorSpec([b, self.width], tf.float32, name="x"),
            tf.TensorSpec(task.label_shape(b, self.classes), tf.float32, name="y"),
            tf.TensorSpec([b], tf.float32, name="mask"),
            tf.TensorSpec([], tf.float32, name="lr"),
        ]

        def train_step(*args: Any) -> Any:
            params = list(args[:n])
            x, y, mask, lr = args[n:]
            with tf.GradientTape() as tape:
                tape.watch(params)
                loss = task.masked_loss(fm.predict_on_batch((params, []), x, False), y, mask)
            grads = tape.gradient(loss, params)
            return tuple(p - lr * tf.convert_to_tensor(g) for p, g in zip(params, grads)) + (loss,)

        return GraphFunction(train_step, sig)

    def make_predict(self) -> GraphFunction:
        """(params…, x [N, width]) -> the task's output (N dynamic)."""
        import tensorflow as tf

        specs = self.param_specs()
        fm = self.functional_model([np.zeros(s.shape, np.float32) for s in specs])
        task, n = self.the_task, len(specs)
        mean, std, transform = self.schema.label_mean, self.schema.label_std, self.schema.label_transform
        sig = [tf.TensorSpec(s.shape, tf.float32, name=s.name) for s in specs] + [
            tf.TensorSpec([None, self.width], tf.float32, name="x")]

        def predict(*args: Any) -> Any:
            return task.infer(fm.predict_on_batch((list(args[:n]), []), args[n], False), mean, std, transform)

        return GraphFunction(predict, sig)

    def onnx_graphs(self) -> dict[str, Any]:
        """The artifact's graphs by role: ``train_step``, ``train_epoch`` (the step fused over batches), ``infer``."""
        from models import onnx_export as oe

        ins, outs = self.step_io_names()
        step = self.make_train_step().to_onnx(ins, outs)
        names = [s.name for s in self.param_specs()]
        epoch = oe.fuse_epoch(step, oe.FuseSpec(carried=tuple((n, f"{n}_new") for n in names),
                                                 sliced=("x", "y", "mask"), constant=("lr",), stacked=("loss",)),
                              graph_name=f"{self.the_task.name}_epoch")
        infer = self.make_predict().to_onnx(names + ["x"], [self.the_task.output_name], dynamic=True)
        return {"train_step": step, "train_epoch": epoch, "infer": infer}

    def manifest_fields(self) -> dict[str, Any]:
        """What this family puts in its manifest besides graphs, files and params."""
        return {"features": self.schema.to_json(), "local_params": (),
                "hyperparams": {"learning_rate": self.learning_rate, "epochs": self.epochs, **dict(self.hyperparams)}}

    def keras_model(self, params: Sequence[np.ndarray] | None = None) -> Any:
        """An eager Keras model of this family with ``params`` (for centralized baselines)."""
        values = list(params) if params is not None else self.initial_params()
        model, created = self._build_recording()
        if len(created) != len(values):
            raise FamilyError(f"got {len(values)} parameter arrays, the model has {len(created)} variables")
        for var, value in zip(created, values):
            var.assign(np.asarray(value, np.float32))
        return model

    def train_centralized(self, x: np.ndarray, y: np.ndarray, *, epochs: int = 5, lr: float | None = None,
                          seed: int = 0, params: Sequence[np.ndarray] | None = None) -> list[np.ndarray]:
        """Centralized baseline: Keras ``fit`` with plain SGD on the pooled data (labels as the trainer feeds them)."""
        import tensorflow as tf

        tf.keras.utils.set_random_seed(seed)
        model = self.keras_model(params if params is not None else self.initial_params(seed))
        model.compile(optimizer=tf.keras.optimizers.SGD(learning_rate=lr or self.learning_rate),
                      loss=self.the_task.keras_loss())
        model.fit(x, self.graph_labels(y).reshape(len(x), -1), batch_size=self.batch_size, epochs=epochs,
                  shuffle=True, verbose=0)
        return [np.asarray(v.numpy(), np.float32) for v in self._creation_order(model)]

    def _creation_order(self, model: Any) -> list[Any]:
        # keras_model() assigned through the creation-order list; recover it from the layers' build order
        by_id = {id(v): v for v in model.trainable_variables}
        order = self.__dict__.get("_order_cache")
        if order is None:
            import tensorflow as tf

            with tf.Graph().as_default():
                ref, created = self._build_recording()
                index = {id(v): i for i, v in enumerate(ref.trainable_variables)}
                order = [index[id(v)] for v in created]
            object.__setattr__(self, "_order_cache", order)
        weights = list(by_id.values())
        return [weights[i] for i in order]

    def graph_labels(self, y: np.ndarray) -> np.ndarray:
        """Labels as the schema encodes them -> as the train graph takes them (see ``FeatureSchema.graph_labels``)."""
        return self.schema.graph_labels(y)
