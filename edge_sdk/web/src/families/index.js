// Training-protocol plug-ins: the JavaScript twin of edge_sdk/families/ (Python).
//
// The manifest names the protocol an artifact is trained with; the Trainer asks
// protocolFor() for its plug-in instead of branching on a family name, so a new
// kind of model is one new module here (and its Python twin), and an artifact of
// a protocol this SDK does not know is refused with a clear error.

import { ContractError, ManifestError } from '../contract_errors.js';
import { pyRepr } from '../pycompat.js';

/** Training input does not fit the artifact (shape, values). */
export class TrainerError extends ContractError {}

/** True iff every value is finite; a plain loop, ~10× faster than `.every(Number.isFinite)` on 10⁵ values. */
export function allFinite(a) {
  for (let i = 0; i < a.length; i += 1) if (!Number.isFinite(a[i])) return false;
  return true;
}

export function tensor(ort, data, dims) {
  return new ort.Tensor('float32', data, dims);
}

export function scalar(ort, value) {
  return new ort.Tensor('float32', new Float32Array([value]), []);
}

/** Mean of per-batch losses weighted by each batch's real rows (mask). */
export function weightedLoss(losses, mask, nb, b) {
  let num = 0;
  let den = 0;
  for (let i = 0; i < nb; i += 1) {
    let c = 0;
    for (let j = 0; j < b; j += 1) c += mask[i * b + j];
    num += losses[i] * c;
    den += c;
  }
  return num / den;
}

/** Base class: a protocol bound to one artifact (`trainer` may be null for manifest-only questions). */
export class TrainingProtocol {
  static protocol = '';

  static graphs = [];

  constructor(manifest, trainer = null) {
    this.manifest = manifest;
    this.trainer = trainer;
    const missing = this.constructor.graphs.filter((g) => !Object.hasOwn(manifest.graphs, g));
    if (missing.length) {
      throw new ManifestError(`artifact lacks graph(s) ${JSON.stringify(missing)} that protocol `
        + `${this.constructor.protocol} needs; re-export it with \`fedmark export\``);
    }
  }

  /**
   * Client verbs the protocol supports: 'train', 'score' (one number per record), 'evaluate' (local holdout
   * metrics), 'validate' (federated evaluation's histogram report), 'recommend' (recommend()/personalize()).
   */
  get verbs() { return new Set(); }

  // ---------------------------------------------------------------- device side (what the Client asks)
  // The Client runs consent, sync, clipping and upload the same way for every protocol; what it feeds the
  // Trainer and what it keeps afterwards are these methods' (the twin of edge_sdk/families/base.py).

  /** Whether a run starts from device-only state (PersonalStore) that must be kept between runs. */
  get needsPersonalState() { return false; }

  /**
   * The Trainer's input from consented records: {data, report}; `data` goes to Trainer.train as is.
   * `opts`: {strict, consentField, allowed} (allowed = the per-record consent decision).
   */
  trainingInput(_rows, _opts) {
    throw new TypeError(`protocol ${this.constructor.protocol} does not say how records become training input`);
  }

  /** Keep what stays on the device after a local run (nothing by default). */
  async afterTraining(_store, _model, _data, _result, _history) {}
}

const REGISTRY = new Map();

/** Make a protocol class known to every Trainer of this page/process. */
export function registerProtocol(cls) {
  if (!cls.protocol) throw new TypeError(`${cls.name} has no protocol name`);
  REGISTRY.set(cls.protocol, cls);
  return cls;
}

export function knownProtocols() {
  return [...REGISTRY.keys()].sort();
}

/** The plug-in for an artifact; a ManifestError for a protocol this SDK does not know. */
export function protocolFor(manifest, trainer = null) {
  const cls = REGISTRY.get(manifest.protocol);
  if (cls === undefined) {
    throw new ManifestError(`artifact ${pyRepr(manifest.model)} is trained with protocol ${pyRepr(manifest.protocol)}, `
      + `which this SDK does not know (it knows ${knownProtocols().join(', ')}); update the SDK`);
  }
  return new cls(manifest, trainer);
}

/** Whether a Client verb applies to a manifest's protocol (what the Client checks instead of the family). */
export function supportsVerb(manifest, verb) {
  return protocolFor(manifest).verbs.has(verb);
}

/** What a Client verb needs, in words, for the error that refuses it. */
const VERB_NEEDS = {
  train: 'a model this SDK can train',
  score: 'a model that scores each record',
  evaluate: 'a model with a local evaluation',
  validate: 'a binary model (federated validation reports a score histogram)',
  recommend: 'a recommender model',
};

/**
 * The reason a Client verb (`call`, e.g. 'score()') does not apply to `model`'s protocol, or null when it does:
 * the one place the Client's "wrong kind of model" errors are worded.
 */
export function verbRefusal(model, manifest, verb, call) {
  const plugin = protocolFor(manifest);
  if (plugin.verbs.has(verb)) return null;
  const other = plugin.verbs.has('recommend') ? ' — use recommend()' : '';
  return `${call} needs ${VERB_NEEDS[verb] ?? verb}; '${model}' is a ${manifest.family} model (protocol `
    + `${manifest.protocol}, which supports ${[...plugin.verbs].sort().join(', ')})${other}`;
}
