// A training task as the server hands it out (POST /v1/tasks, docs/API.md).
//
// The task decides privacy-relevant settings (clip norm, local noise,
// encoding) and the eligibility policy, so a malformed field fails loudly here
// instead of silently falling back to a default in the training path.

import { ENCODINGS } from './update.js';
import { ServerError } from './errors.js';

const bad = (msg) => new ServerError(200, 'bad_task', `the server's task is malformed: ${msg}`);
const isObject = (v) => v !== null && typeof v === 'object' && !Array.isArray(v);

export function parseTask(d) {
  if (!isObject(d)) throw bad('not a JSON object');
  const missing = ['round_id', 'model', 'version', 'upload_url', 'clip_norm'].filter((k) => d[k] === undefined || d[k] === null);
  if (missing.length) throw bad(`missing field(s) ${JSON.stringify(missing)}`);
  const version = Number(d.version);
  const clipNorm = Number(d.clip_norm);
  const localNoise = Number(d.local_noise || 0);
  if (!Number.isInteger(version)) throw bad(`version must be an integer, got ${JSON.stringify(d.version)}`);
  if (!(Number.isFinite(clipNorm) && clipNorm > 0)) throw bad(`clip_norm must be a positive number, got ${JSON.stringify(d.clip_norm)}`);
  if (!(Number.isFinite(localNoise) && localNoise >= 0)) throw bad(`local_noise must be >= 0, got ${JSON.stringify(d.local_noise)}`);
  const encoding = String(d.encoding || 'f32');
  if (!Object.hasOwn(ENCODINGS, encoding)) throw bad(`unknown update encoding '${encoding}'`);
  const hyperparams = d.hyperparams ?? {};
  const eligibility = d.eligibility ?? {};
  if (!isObject(hyperparams) || !isObject(eligibility)) throw bad('hyperparams and eligibility must be JSON objects');
  const model = String(d.model);
  return Object.freeze({
    taskId: String(d.task_id || d.round_id), roundId: String(d.round_id), model, version,
    manifestUrl: String(d.manifest_url || `/v1/models/${model}/versions/${version}/manifest`),
    uploadUrl: String(d.upload_url), clipNorm, localNoise, encoding, deadline: d.deadline ?? null,
    hyperparams: { ...hyperparams }, eligibility: { ...eligibility },
  });
}
