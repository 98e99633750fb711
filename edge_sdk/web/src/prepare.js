// From new parameters to the bytes that travel: delta, clip, local noise, encode
// (the JavaScript twin of edge_sdk/update.py).
//
// Why in this order: the server's DP guarantee assumes each device's
// contribution has L2 norm at most C, so the update is clipped here (and
// re-checked on the server).  The within-clip bit (norm <= C) is taken *before*
// clipping, because adaptive clipping moves C towards a quantile of raw update
// norms.  Optional local Gaussian noise (std local_noise·C) is added after
// clipping.  Noise and q8 rounding draw from OS entropy unless a test injects
// a source: seeded privacy noise would be no privacy at all.

import { ContractError } from './contract_errors.js';
import { ENCODINGS, encodeUpdate, flatten, l2Clip, l2Norm } from './update.js';
import { ConfigurationError, ModelError } from './errors.js';
import { normal, secureRandom } from './random.js';

/** new − old global parameters, flattened in manifest order (float32, difference taken in float64). */
export function computeDelta(newParams, oldParams, specs) {
  if (newParams.length !== specs.length || oldParams.length !== specs.length) {
    throw new ModelError(`the trainer returned ${newParams.length} parameter tensors, the manifest lists ${specs.length}`);
  }
  specs.forEach((s, i) => {
    if (newParams[i].length !== s.size || oldParams[i].length !== s.size) {
      throw new ModelError(`parameter '${s.name}' has ${newParams[i].length} values, the manifest says ${s.size}`);
    }
  });
  const a = flatten(newParams);
  const b = flatten(oldParams);
  const out = new Float32Array(a.length);
  for (let i = 0; i < a.length; i += 1) out[i] = a[i] - b[i];
  return out;
}

/**
 * Clip to L2 norm `clipNorm`, then add N(0, (localNoise·C)²) per coordinate: {vec, norm, within}.
 * `clipNorm` null (a server configured without clipping) sends the update unclipped; local noise,
 * defined relative to C, then cannot be applied.
 */
export function privatize(delta, clipNorm, localNoise = 0, { random = secureRandom } = {}) {
  if (clipNorm === null) {
    if (localNoise) throw new ConfigurationError('local noise is a multiple of the clip norm; it needs a clip norm');
    const norm = l2Norm(delta);
    if (!Number.isFinite(norm)) {
      throw new ModelError('training produced an invalid update: it contains NaN or Inf; check the data and learning rate');
    }
    return { vec: Float32Array.from(delta), norm, within: true };
  }
  if (!(typeof clipNorm === 'number' && Number.isFinite(clipNorm) && clipNorm > 0)) {
    throw new ConfigurationError(`clip norm must be a positive number, got ${clipNorm}`);
  }
  if (!(Number.isFinite(localNoise) && localNoise >= 0)) {
    throw new ConfigurationError(`local_noise must be >= 0, got ${localNoise}`);
  }
  let clipped;
  try {
    clipped = l2Clip(delta, clipNorm);
  } catch (exc) {
    if (exc instanceof ContractError) {
      throw new ModelError(`training produced an invalid update: ${exc.message}; check the data and learning rate`);
    }
    throw exc;
  }
  if (localNoise > 0) {
    const sd = localNoise * clipNorm;
    const noisy = new Float32Array(clipped.vec.length);
    for (let i = 0; i < noisy.length; i += 1) noisy[i] = clipped.vec[i] + normal(random) * sd;
    clipped = { ...clipped, vec: noisy };
  }
  return clipped;
}

/** The whole device-side pipeline for one update: {vector, body, encoding, norm, within, clipNorm, numExamples}. */
export function buildUpdate(newParams, oldParams, specs, { clipNorm, numExamples, encoding = 'f32', localNoise = 0,
  random = secureRandom } = {}) {
  if (!Object.hasOwn(ENCODINGS, encoding)) {
    throw new ConfigurationError(`update encoding '${encoding}' is unknown; use one of ${Object.keys(ENCODINGS).sort().join(', ')}`);
  }
  if (!(numExamples > 0)) throw new ConfigurationError('an update needs at least one training example');
  const delta = computeDelta(newParams, oldParams, specs);
  const { vec, norm, within } = privatize(delta, clipNorm, localNoise, { random });
  let body;
  try {
    body = encodeUpdate(vec, encoding, { random });
  } catch (exc) {
    if (exc instanceof ContractError) throw new ModelError(`update cannot be encoded as ${encoding}: ${exc.message}`);
    throw exc;
  }
  return { vector: vec, body, encoding, norm, within, clipNorm: clipNorm ?? null, numExamples: Math.trunc(numExamples) };
}
