"""``export(family, out_dir, **opts)``: build a trainer artifact directory.

An artifact is everything a device needs to train one model version without
TensorFlow: ONNX graphs (single step, fused epoch, inference), the initial
global parameters (``params.bin``, raw little-endian float32 in manifest
order) and ``manifest.json`` (``fedmark.contract.Manifest``) that hashes every
file.  docs/ARTIFACT.md documents each field and graph.
"""
from __future__ import annotations

import json
import os
import sys
import types
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from fedmark.contract import MANIFEST_FILE, Manifest, sha256_file
from models import data as data_mod
from models import propensity as prop
from models import recommender as rec
from models.family import Family

PARAMS_FILE = "params.bin"


class ExportError(ValueError):
    """Export options are invalid (unknown family, bad size, unusable data)."""


def _versions() -> dict[str, str]:
    import onnx
    import tensorflow as tf
    import tf2onnx

    return {"tensorflow": tf.__version__, "tf2onnx": tf2onnx.__version__, "onnx": onnx.__version__}


def _write_graphs(out_dir: str, graphs: dict[str, Any]) -> tuple[dict[str, str], dict[str, dict[str, list[str]]]]:
    from models import onnx_export as oe

    roles, io = {}, {}
    for role, model in graphs.items():
        fname = f"{role}.onnx"
        oe.save(model, os.path.join(out_dir, fname))
        roles[role] = fname
        io[role] = {"inputs": [i.name for i in model.graph.input], "outputs": [o.name for o in model.graph.output]}
    return roles, io


def _write_params(out_dir: str, params: Sequence[np.ndarray]) -> None:
    with open(os.path.join(out_dir, PARAMS_FILE), "wb") as f:
        for p in params:
            f.write(np.ascontiguousarray(p, dtype="<f4").tobytes())


def _finish(out_dir: str, build: Callable[[dict[str, str]], Manifest]) -> Manifest:
    files = {name: sha256_file(os.path.join(out_dir, name)) for name in sorted(os.listdir(out_dir))
             if name != MANIFEST_FILE and not name.startswith(".")}
    manifest = build(files)
    # Round-trip through the contract's parser: the artifact we write is one we can read.
    checked = Manifest.loads(manifest.dumps())
    with open(os.path.join(out_dir, MANIFEST_FILE), "w", encoding="utf-8") as f:
        f.write(checked.dumps() + "\n")
    return checked


def _prepare_dir(out_dir: str | os.PathLike[str]) -> str:
    out = os.fspath(out_dir)
    os.makedirs(out, exist_ok=True)
    stale = [n for n in os.listdir(out) if n.endswith(".onnx") or n in (PARAMS_FILE, MANIFEST_FILE)]
    for name in stale:  # a re-export must not leave files from an older layout behind
        os.remove(os.path.join(out, name))
    return out


# --------------------------------------------------------------------------- any supervised family
def export_family(family: Any, out_dir: str | os.PathLike[str], *, name: str | None = None,
                  purpose: str = "marketing", version: int = 1, seed: int = 0,
                  params: Sequence[np.ndarray] | None = None, clip_norm: float = 1.0,
                  noise_multiplier: float = 1.0, data: Mapping[str, Any] | None = None,
                  rules: Mapping[str, Any] | None = None) -> Manifest:
    """Write the trainer artifact of a family: a :class:`models.family.Family` (protocol
    ``supervised-tabular/1``) or a :class:`models.recommender.ReconstructionFamily` (``mf-reconstruction/1``).

    The family supplies its graphs (``onnx_graphs()``), parameters and manifest
    fields; this writes them, hashes every file and checks the manifest parses.
    ``params`` overrides the family's seeded initial parameters (e.g. a
    centrally pre-trained model); ``data`` describes the training data in ``extra``; ``rules`` (a
    declaration's quality rules, ``fedmark.contract.statistics.rules_of``) go to ``features.rules``, which
    devices check before training.
    """
    from models import onnx_export as oe
    from models.recommender import ReconstructionFamily

    if not isinstance(family, (Family, ReconstructionFamily)):
        raise ExportError(f"export_family needs a models.family.Family or a models.recommender.ReconstructionFamily, "
                          f"got {type(family).__name__}")
    specs = family.param_specs()
    init = [np.asarray(p, np.float32) for p in params] if params is not None else family.initial_params(seed)
    if [tuple(p.shape) for p in init] != [s.shape for s in specs]:
        raise ExportError(f"params have shapes {[p.shape for p in init]}, the model needs {[s.shape for s in specs]}")
    built = family.onnx_graphs()
    fields = family.manifest_fields()
    if rules:
        fields = dict(fields, features=dict(fields["features"], rules=dict(rules)))
    out = _prepare_dir(out_dir)
    graphs, io = _write_graphs(out, built)
    _write_params(out, init)
    extra = {"params_file": PARAMS_FILE, "graph_io": io, "seed": seed, "exported_by": _versions(),
             "data": dict(data or {})}
    return _finish(out, lambda files: Manifest(
        model=name or family.name, family=family.name, protocol=family.protocol, version=version, params=specs,
        local_params=tuple(fields["local_params"]), batch_size=family.batch_size, graphs=graphs, files=files,
        features=fields["features"], hyperparams=fields["hyperparams"], clip_norm=clip_norm,
        privacy={"mechanism": "gaussian", "noise_multiplier": noise_multiplier}, opset=oe.OPSET, purpose=purpose,
        extra=extra))


# --------------------------------------------------------------------------- propensity
def export_propensity(out_dir: str | os.PathLike[str], *, data_path: str | None = None, seed: int = 0,
                      hidden: int = prop.DEFAULT_HIDDEN, batch_size: int = prop.DEFAULT_BATCH,
                      learning_rate: float = prop.DEFAULT_LR, epochs: int = prop.DEFAULT_EPOCHS,
                      clip_norm: float = 1.0, noise_multiplier: float = 1.0, model: str = "propensity",
                      version: int = 1, train_records: Sequence[dict[str, Any]] | None = None,
                      params: Sequence[np.ndarray] | None = None, schema: Any = None,
                      rules: Mapping[str, Any] | None = None) -> Manifest:
    """Export the Bank Marketing propensity model (the :func:`models.propensity.family` recipe).

    The feature schema is fitted on the stratified training split (seed
    ``seed``) of ``data_path`` (default: the bundled bank-full.csv.gz), unless
    ``train_records`` are given.  ``params`` overrides the seeded initial
    parameters (e.g. to publish a centrally pre-trained model).  ``schema``: a fitted
    ``FeatureSchema`` to use instead (e.g. from a federated statistics release, issue #15), with its
    quality ``rules``.
    """
    if batch_size <= 0 or hidden < 0:
        raise ExportError("batch_size must be positive and hidden >= 0 (0 = logistic regression)")
    if train_records is None:
        train_records, _ = data_mod.stratified_split(data_mod.load_bank(data_path), seed=seed)
    fam = prop.family(schema if schema is not None else prop.build_schema(train_records), hidden, batch_size=batch_size, learning_rate=learning_rate,
                      epochs=epochs)
    return export_family(fam, out_dir, name=model, purpose="propensity_scoring", version=version, seed=seed,
                         params=params, clip_norm=clip_norm, noise_multiplier=noise_multiplier,
                         data={"source": "UCI Bank Marketing (bank-full), CC BY 4.0, doi:10.24432/C5K306",
                               "train_rows": len(train_records),
                               "schema": "central" if schema is None else "given"}, rules=rules)


# --------------------------------------------------------------------------- recommender
def export_recommender(out_dir: str | os.PathLike[str], *, data_path: str | None = None, seed: int = 0,
                       dim: int = rec.DEFAULT_DIM, block: int = rec.DEFAULT_BLOCK,
                       learning_rate: float = rec.DEFAULT_LR, epochs: int = rec.DEFAULT_EPOCHS,
                       negatives: int = rec.DEFAULT_NEGATIVES, recon_steps: int = rec.DEFAULT_RECON_STEPS,
                       recon_lr: float = rec.DEFAULT_RECON_LR, clip_norm: float = 1.0,
                       noise_multiplier: float = 1.0, model: str = "recommender", version: int = 1,
                       items: Sequence[str] | None = None, params: Sequence[np.ndarray] | None = None) -> Manifest:
    """Export the Online Retail recommender (the :func:`models.recommender.family` recipe).

    The item vocabulary comes from ``data_path`` (default: the bundled
    online_retail.csv.gz) unless ``items`` (stock codes, index = position) is given.
    """
    if dim <= 0 or block <= 0 or negatives < 0 or recon_steps < 1:
        raise ExportError("dim and block must be positive, negatives >= 0 and recon_steps >= 1")
    if items is None:
        items = data_mod.load_retail(data_path).items
    items = [str(i) for i in items]
    if len(items) < 2:
        raise ExportError("the recommender needs at least two items")
    fam = rec.family(items, dim=dim, block=block, learning_rate=learning_rate, epochs=epochs, negatives=negatives,
                     recon_steps=recon_steps, recon_lr=recon_lr)
    return export_family(fam, out_dir, name=model, purpose="recommendations", version=version, seed=seed,
                         params=params, clip_norm=clip_norm, noise_multiplier=noise_multiplier,
                         data={"source": "UCI Online Retail, CC BY 4.0, doi:10.24432/C5BW33", "items": len(items)})


# --------------------------------------------------------------------------- any table
DEFAULT_TABULAR_HIDDEN = 32
INFERRED_SCHEMA_FILE = "schema.inferred.json"


def tabular_family(schema: Any, *, hidden: int = DEFAULT_TABULAR_HIDDEN, batch_size: int = prop.DEFAULT_BATCH,
                   learning_rate: float = prop.DEFAULT_LR, epochs: int = 1, name: str = "tabular") -> Family:
    """The generic tabular recipe: an MLP width -> hidden -> the task's units, on a fitted schema (index
    columns through an Embedding first, see ``models.family.tabular_builder``)."""
    from models.family import tabular_builder
    from models.tasks import get_task

    if hidden < 0:
        raise ExportError("--hidden must be >= 0 (0 = a linear model)")
    units = get_task(schema.task).units(len(schema.classes))
    return Family(name=name, build_model=tabular_builder(schema, units, hidden), task=schema.task, schema=schema,
                  batch_size=batch_size, learning_rate=learning_rate, epochs=epochs, hyperparams={"hidden": hidden})


def _fitted_schema(data_path: str | None, rows: Sequence[dict[str, Any]] | None, *, label: str | None, task: str,
                   positive: str | None, schema_path: str | None, declaration: Mapping[str, Any] | None,
                   drop: Sequence[str], sep: str | None, out: str,
                   embed: Mapping[str, int] | None = None) -> tuple[Any, int, str]:
    """(fitted schema, training rows, where the declaration came from) for export_tabular."""
    from models import tabular

    if rows is None:
        if not data_path:
            raise ExportError("export tabular needs --data FILE (the training table)")
        rows = tabular.read_table(data_path, sep=sep)
    if declaration is None and schema_path:
        declaration = tabular.load_declaration(schema_path)
    if declaration is None:
        if not label:
            raise ExportError("export tabular needs --label COL (or a --schema declaring the label)")
        declaration = tabular.infer_declaration(rows, label=label, task=task, positive=positive, drop=drop)
        if embed:
            declaration = tabular.with_embeddings(declaration, embed)
        with open(os.path.join(out, INFERRED_SCHEMA_FILE), "w", encoding="utf-8") as f:
            json.dump(declaration, f, indent=2, sort_keys=True)
            f.write("\n")
        origin = "inferred"
    else:
        declaration = dict(declaration)
        for key, value in (("label", label), ("positive", positive)):
            if value is not None:
                declaration[key] = value
        if task != "binary":
            declaration["task"] = task
        declaration["drop"] = list(declaration.get("drop", [])) + [d for d in drop if d not in declaration.get("drop", [])]
        if embed:
            declaration = tabular.with_embeddings(declaration, embed)
        origin = "declared"
    return tabular.fit_schema(rows, declaration), len(rows), origin


def export_tabular(out_dir: str | os.PathLike[str], *, data_path: str | None = None,
                   rows: Sequence[dict[str, Any]] | None = None, label: str | None = None, task: str = "binary",
                   positive: str | None = None, schema_path: str | None = None,
                   declaration: Mapping[str, Any] | None = None, drop: Sequence[str] = (), sep: str | None = None,
                   hidden: int = DEFAULT_TABULAR_HIDDEN, batch_size: int = prop.DEFAULT_BATCH,
                   learning_rate: float = prop.DEFAULT_LR, epochs: int = 1, seed: int = 0, clip_norm: float = 1.0,
                   noise_multiplier: float = 1.0, model: str = "tabular", purpose: str = "marketing",
                   version: int = 1, params: Sequence[np.ndarray] | None = None,
                   embed: Mapping[str, int] | None = None, fitted_schema_path: str | None = None) -> Manifest:
    """Export an MLP for any table: read ``data_path`` (or ``rows``), declare or infer the schema, fit, export.

    Without ``schema_path``/``declaration`` the schema is inferred from the
    data and written to ``schema.inferred.json`` in ``out_dir`` for review
    (pass it back as ``schema_path`` after editing).  ``embed`` ({column: width})
    feeds those categorical columns to Embedding layers (``--embed COL:DIM``).
    ``fitted_schema_path`` (``--fitted-schema``): a federated statistics release (``fedmark statistics
    MODEL --out FILE``) or a fitted schema; nothing is fitted here and no training table is read.
    """
    from models.tasks import TASKS

    if task not in TASKS:
        raise ExportError(f"--task must be one of {', '.join(TASKS)}, got {task!r}")
    if positive is not None and task != "binary":
        raise ExportError("--positive applies to a binary label only; drop it or use --task binary")
    out = _prepare_dir(out_dir)
    stale = os.path.join(out, INFERRED_SCHEMA_FILE)
    if os.path.exists(stale):
        os.remove(stale)
    rules = None
    if fitted_schema_path:
        if embed:
            raise ExportError("--embed applies to a schema fitted here; with --fitted-schema, declare "
                              "\"embed\" in the schema declaration the statistics task was opened with")
        schema, rules, n_rows, origin = _given_schema(fitted_schema_path)
    else:
        schema, n_rows, origin = _fitted_schema(data_path, rows, label=label, task=task, positive=positive,
                                                schema_path=schema_path, declaration=declaration, drop=drop, sep=sep,
                                                out=out, embed=embed)
        if declaration is not None or schema_path:
            from fedmark.contract.statistics import rules_of

            rules = rules_of(declaration if declaration is not None else _declaration_file(schema_path))
    fam = tabular_family(schema, hidden=hidden, batch_size=batch_size, learning_rate=learning_rate, epochs=epochs,
                         name=model)
    source = os.path.basename(data_path) if data_path else "rows"
    return export_family(fam, out, name=model, purpose=purpose, version=version, seed=seed, params=params,
                         clip_norm=clip_norm, noise_multiplier=noise_multiplier,
                         data={"source": source, "train_rows": n_rows, "schema": origin}, rules=rules)


def _declaration_file(path: str | None) -> Mapping[str, Any]:
    from models import tabular

    return tabular.load_declaration(path) if path else {}


def _given_schema(path: str) -> tuple[Any, Mapping[str, Any] | None, int, str]:
    """(schema, rules, rows, origin) from ``--fitted-schema FILE``: a statistics release or a fitted schema."""
    from fedmark.contract import ContractError
    from fedmark.contract.statistics import load_fitted

    try:
        with open(path, encoding="utf-8") as f:
            doc = json.load(f)
        schema, rules = load_fitted(doc)
    except OSError as exc:
        raise ExportError(f"cannot read --fitted-schema {path}: {exc}") from None
    except (ValueError, ContractError, KeyError, TypeError) as exc:
        raise ExportError(f"--fitted-schema {path} is neither a statistics release nor a fitted schema: {exc}") from None
    if not schema.label:
        raise ExportError(f"--fitted-schema {path} has no label; the model needs one to train")
    if "fitted_schema" in doc:
        return schema, rules, int(doc.get("totals", {}).get("records") or 0), \
            f"federated statistics release v{doc.get('schema_version')}"
    return schema, rules, 0, "fitted schema file"


def load_builder(spec: str) -> Callable[..., Any]:
    """``PATH.py:FUNCTION`` -> the function (a user's Keras model builder)."""
    import importlib.util

    path, _, fn = spec.rpartition(":")
    if not path or not fn or not path.endswith(".py"):
        raise ExportError(f"--model must be PATH.py:FUNCTION, got {spec!r}")
    if not os.path.exists(path):
        raise ExportError(f"--model file {path} not found")
    mod_spec = importlib.util.spec_from_file_location(f"fedmark_user_model_{abs(hash(path))}", path)
    assert mod_spec is not None and mod_spec.loader is not None
    module = importlib.util.module_from_spec(mod_spec)
    try:
        mod_spec.loader.exec_module(module)
    except Exception as exc:
        raise ExportError(f"--model {path} failed to import: {type(exc).__name__}: {exc}") from exc
    builder = getattr(module, fn, None)
    if not callable(builder):
        raise ExportError(f"--model {path} has no function {fn!r}")
    return builder


def export_keras(out_dir: str | os.PathLike[str], *, model_fn: str | Callable[..., Any],
                 schema_path: str | None = None, schema: Any = None, data_path: str | None = None,
                 sep: str | None = None, batch_size: int = prop.DEFAULT_BATCH, learning_rate: float = prop.DEFAULT_LR,
                 epochs: int = 1, seed: int = 0, clip_norm: float = 1.0, noise_multiplier: float = 1.0,
                 model: str = "keras", purpose: str = "marketing", version: int = 1,
                 params: Sequence[np.ndarray] | None = None) -> Manifest:
    """Export a user's Keras builder ``FUNCTION(width, units) -> tf.keras.Model`` (logits out).

    ``schema_path`` is either a fitted schema (the manifest's ``features``:
    ``columns`` is a list) or a declaration (``columns`` is a mapping), which
    is fitted on ``data_path``.
    """
    from fedmark.contract import FeatureSchema, ManifestError
    from models import tabular
    from models.tasks import get_task

    builder = load_builder(model_fn) if isinstance(model_fn, str) else model_fn
    if schema is None:
        if not schema_path:
            raise ExportError("export keras needs --schema FILE (a fitted schema, or a declaration with --data)")
        decl = tabular.load_declaration(schema_path)
        if isinstance(decl.get("columns"), list):
            try:
                schema = FeatureSchema.from_json(decl)
            except ManifestError as exc:
                raise ExportError(f"--schema {schema_path}: {exc}") from exc
        else:
            if not data_path:
                raise ExportError(f"--schema {schema_path} is a declaration; fitting it needs --data FILE")
            schema = tabular.fit_schema(tabular.read_table(data_path, sep=sep), decl)
    units = get_task(schema.task).units(len(schema.classes))
    import inspect

    try:
        wants_schema = "schema" in inspect.signature(builder).parameters
    except (TypeError, ValueError):
        wants_schema = False
    # a builder taking `schema` gets the fitted schema too: where each column's slots are (models.family.column_slots),
    # which an Embedding of an index column needs
    extra = {"schema": schema} if wants_schema else {}
    fam = Family(name=model, build_model=lambda: builder(schema.width, units, **extra), task=schema.task, schema=schema,
                 batch_size=batch_size, learning_rate=learning_rate, epochs=epochs)
    return export_family(fam, out_dir, name=model, purpose=purpose, version=version, seed=seed, params=params,
                         clip_norm=clip_norm, noise_multiplier=noise_multiplier,
                         data={"source": os.path.basename(data_path) if data_path else "schema", "builder":
                               model_fn if isinstance(model_fn, str) else getattr(model_fn, "__name__", "builder")})


def export(family: str | Family, out_dir: str | os.PathLike[str], **opts: Any) -> Manifest:
    """Export a registered family by name (``models.registry``), or a Family object; returns the manifest."""
    from models import registry

    if isinstance(family, Family):
        return export_family(family, out_dir, **opts)
    try:
        fn = registry.exporter(family)
    except KeyError:
        names = ", ".join(e.name for e in registry.families())
        raise ExportError(f"unknown model family {family!r}; choose one of {names}") from None
    return fn(out_dir, **opts)


class _CallableModule(types.ModuleType):
    """Lets ``models.export(family, out_dir, **opts)`` call ``export`` although
    ``models.export`` is also this submodule (importing a submodule binds it
    on the package, shadowing any function of the same name)."""

    def __call__(self, family: str, out_dir: str | os.PathLike[str], **opts: Any) -> Manifest:
        return export(family, out_dir, **opts)


sys.modules[__name__].__class__ = _CallableModule
