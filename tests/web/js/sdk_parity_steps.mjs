// The JS SDK's steps the parity test runs in Node and in the browser page alike (tests/web/test_js_sdk_parity.py):
// local evaluation, federated validation and segment reports on a propensity model; a recommender round from a
// given user vector and plan, then recommend().  Pure SDK calls: `sdk` is the SDK module, `client` a Client.

const hex = (a) => Array.from(new Uint8Array(a.buffer, a.byteOffset, a.byteLength), (b) => b.toString(16).padStart(2, '0')).join('');
const f32 = (h) => new Float32Array(Uint8Array.from(h.match(/../g).map((x) => parseInt(x, 16))).buffer);
const blocks = (b) => ({ idx: Int32Array.from(b.idx.flat()), labels: Float32Array.from(b.labels.flat()),
  mask: Float32Array.from(b.mask.flat()), nb: b.idx.length, k: b.idx[0]?.length ?? 0 });

export async function propensitySteps(client, spec) {
  const answer = await client.validate(spec.propensity_model, spec.holdout); // under an evaluation task first
  const ev = await client.evaluate(spec.propensity_model, spec.holdout);
  const segments = await client.reportSegments(spec.propensity_model, spec.holdout);
  return { evaluation: { loss: ev.metrics.loss, n: ev.metrics.n, positive_rate: ev.metrics.positive_rate, histogram: ev.histogram },
    validate_accepted: answer?.accepted ?? null, segments };
}

export async function recommenderSteps(client, spec) {
  const r = spec.recommender;
  await client.personal.save(r.model, { user_emb: f32(r.user_emb) }, []);
  const plan = { positives: r.plan.positives, recon: blocks(r.plan.recon), epochs: r.plan.epochs.map(blocks) };
  const report = await client.train(r.model, r.records, { conditions: spec.conditions, plan });
  const recs = await client.recommend(r.model, 5);
  const { local } = await client.personal.load(r.model);
  return { status: report.status, round_id: report.roundId, num_examples: report.numExamples, delta: hex(report.update.vector),
    user_emb: hex(local.user_emb), recommend: recs, consent: report.consent };
}
