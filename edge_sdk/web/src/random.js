// Seeded randomness for shuffling and negative sampling, plus OS entropy for privacy.
//
// Why two sources: the *order* of training examples only needs to be
// reproducible (tests replay a run; the Python SDK and the browser can be given
// the same explicit order), so it comes from a small seeded generator.  Privacy
// noise and the q8 quantizer's stochastic rounding must never be predictable,
// so they draw from crypto.getRandomValues unless a test injects its own source.
// The seeded stream is NOT numpy's: the same seed gives a different permutation
// than the Python SDK; pass an explicit order where the two must agree.

/** xoshiro128** seeded through splitmix32: returns () => uniform float in [0, 1) with 32 random bits. */
export function seededRandom(seed = 0) {
  let x = (Number(seed) >>> 0) ^ 0x9e3779b9;
  const split = () => {
    x = (x + 0x9e3779b9) >>> 0;
    let z = x;
    z = Math.imul(z ^ (z >>> 16), 0x85ebca6b) >>> 0;
    z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35) >>> 0;
    return (z ^ (z >>> 16)) >>> 0;
  };
  const s = new Uint32Array([split(), split(), split(), split()]);
  return () => {
    const result = Math.imul(rotl(Math.imul(s[1], 5) >>> 0, 7), 9) >>> 0;
    const t = (s[1] << 9) >>> 0;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 11);
    return result / 4294967296;
  };
}

function rotl(v, k) {
  return ((v << k) | (v >>> (32 - k))) >>> 0;
}

/** Uniform floats in [0, 1) from the operating system's CSPRNG (53 random bits each). */
export function secureRandom() {
  const buf = new Uint32Array(2);
  globalThis.crypto.getRandomValues(buf);
  return (buf[0] * 2 ** 21 + (buf[1] >>> 11)) / 2 ** 53;
}

/** A uniformly random permutation of 0..n-1 (Fisher–Yates). */
export function permutation(n, random) {
  const out = new Int32Array(n);
  for (let i = 0; i < n; i += 1) out[i] = i;
  for (let i = n - 1; i > 0; i -= 1) {
    const j = Math.floor(random() * (i + 1));
    const t = out[i];
    out[i] = out[j];
    out[j] = t;
  }
  return out;
}

/** A standard normal draw (Box–Muller). */
export function normal(random) {
  let u = 0;
  while (u === 0) u = random();
  return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * random());
}
