// HTTP transport: fetch with timeouts always on and bounded, jittered retries.
//
// Policy (the same as edge_sdk/transport.py): network errors and the statuses
// 429/502/503/504 are retried with "full jitter" exponential backoff, or after
// the server's Retry-After (plus a little jitter) when it sent one; a
// Retry-After longer than `maxRetryAfter` is not waited out — the call fails
// with a TransportError carrying the hint and a queued update stays queued.
// Every other error answer becomes the SDK's exception at once.  Retrying a
// POST is safe because every mutating call the SDK makes is idempotent
// (enrolment, task requests, uploads carrying an Idempotency-Key).

import { ConfigurationError, TransportError, errorFromResponse } from './errors.js';

/** Bounded retries with jittered exponential backoff (seconds). */
export class RetryPolicy {
  constructor({ maxRetries = 4, baseBackoff = 0.5, maxBackoff = 30.0, maxRetryAfter = 60.0,
    retryStatuses = [429, 502, 503, 504] } = {}) {
    if (!(Number.isInteger(maxRetries) && maxRetries >= 0)) {
      throw new ConfigurationError(`retry.maxRetries must be an integer >= 0, got ${maxRetries}`);
    }
    if (!(baseBackoff >= 0 && maxBackoff >= 0 && maxRetryAfter >= 0)) {
      throw new ConfigurationError('retry backoff times must be >= 0 seconds');
    }
    Object.assign(this, { maxRetries, baseBackoff, maxBackoff, maxRetryAfter, retryStatuses: new Set(retryStatuses) });
    Object.freeze(this);
  }
}

/** Seconds to wait from a Retry-After header (delta-seconds or an HTTP date); null if absent/invalid. */
export function parseRetryAfter(value, now = Date.now()) {
  if (!value) return null;
  const v = String(value).trim();
  if (/^[+-]?(\d+\.?\d*|\.\d+)$/.test(v)) return Math.max(0, Number(v));
  const when = Date.parse(v);
  return Number.isNaN(when) ? null : Math.max(0, (when - now) / 1000);
}

/** A completed HTTP exchange; header names lower-cased, body as bytes. */
export class Response {
  constructor(status, headers, body) {
    this.status = status;
    this.headers = headers;
    this.body = body;
  }

  header(name) {
    return this.headers[name.toLowerCase()] ?? null;
  }

  json() {
    try {
      return JSON.parse(new TextDecoder().decode(this.body));
    } catch (exc) {
      throw new TransportError(`server sent a ${this.status} answer that is not valid JSON: ${exc.message}`);
    }
  }
}

function errorFields(resp) {
  try {
    const err = resp.json().error ?? {};
    return [String(err.code || `http_${resp.status}`), String(err.message || `HTTP ${resp.status}`)];
  } catch {
    const text = new TextDecoder().decode(resp.body.subarray(0, 200)).trim();
    return [`http_${resp.status}`, text || `HTTP ${resp.status}`];
  }
}

const defaultSleep = (seconds) => new Promise((resolve) => { setTimeout(resolve, seconds * 1000); });

/** Sends requests to one server; `fetch`, `sleep` and `random` are injectable for tests. */
export class Transport {
  constructor(baseUrl, { timeout = 10.0, retry = new RetryPolicy(), fetch = globalThis.fetch,
    sleep = defaultSleep, random = Math.random, log = null } = {}) {
    if (typeof fetch !== 'function') throw new ConfigurationError('no fetch() available: use Node >= 20 or a browser');
    this.base = new URL(baseUrl.replace(/\/+$/, '') + '/');
    this.baseUrl = baseUrl.replace(/\/+$/, '');
    this.timeout = timeout;
    this.retry = retry;
    this._fetch = (url, init) => fetch(url, init); // a plain call: window.fetch refuses another `this`
    this._sleep = sleep;
    this._random = random;
    this._log = log;
  }

  /** The absolute URL of `path` (relative to the server URL, or an absolute URL on the same server). */
  target(path) {
    if (/^https?:\/\//.test(path)) {
      const u = new URL(path);
      if (u.origin !== this.base.origin) {
        throw new TransportError(`refusing to follow '${path}': it is not on the configured server ${this.baseUrl}`);
      }
      return u.href;
    }
    return new URL(path.replace(/^\/+/, ''), this.base).href;
  }

  /**
   * Send one request; retry transient failures; throw an EdgeError for any other error answer.
   * Statuses in `accept` are returned as a Response; 4xx/5xx throw the matching ServerError.
   */
  async request(method, path, { body = null, json = undefined, headers = {}, timeout = null,
    accept = [200, 201, 202, 204, 304] } = {}) {
    const hdrs = { Accept: 'application/json' };
    let payload = body;
    if (json !== undefined) {
      payload = JSON.stringify(json);
      hdrs['Content-Type'] = 'application/json';
    }
    Object.assign(hdrs, headers);
    const url = this.target(path);
    const attempts = this.retry.maxRetries + 1;
    let lastHint = null;
    for (let attempt = 0; attempt < attempts; attempt += 1) {
      let resp;
      try {
        resp = await this._sendOnce(method, url, payload, hdrs, timeout ?? this.timeout);
      } catch (exc) {
        const cause = exc.cause ? ` (${exc.cause.code ?? exc.cause.message ?? exc.cause})` : '';
        const reason = `${exc.name}: ${exc.message}${cause}`;
        if (attempt + 1 >= attempts) {
          throw new TransportError(`${method} ${url} failed after ${attempts} attempt(s): ${reason}; check the `
            + 'network and the server URL, or try again later', { retryAfter: lastHint, cause: exc });
        }
        await this._backoff(attempt, null, `${method} ${url}: ${reason}`);
        continue;
      }
      if (accept.includes(resp.status)) return resp;
      const retryAfter = parseRetryAfter(resp.header('Retry-After'));
      if (this.retry.retryStatuses.has(resp.status)) {
        lastHint = retryAfter;
        const tooLong = retryAfter !== null && retryAfter > this.retry.maxRetryAfter;
        if (attempt + 1 >= attempts || tooLong) {
          const [code, message] = errorFields(resp);
          const wait = retryAfter !== null ? `; the server asks to retry after ${Math.round(retryAfter)} s` : '';
          throw new TransportError(`${method} ${url}: server busy (${resp.status} ${code}: ${message}) after `
            + `${attempt + 1} attempt(s)${wait}`, { retryAfter });
        }
        await this._backoff(attempt, retryAfter, `${method} ${url}: HTTP ${resp.status}`);
        continue;
      }
      const [code, message] = errorFields(resp);
      throw errorFromResponse(resp.status, code, message, retryAfter);
    }
    throw new Error('unreachable');
  }

  async _sendOnce(method, url, body, headers, timeout) {
    const controller = new AbortController();
    const timer = setTimeout(() => controller.abort(), timeout * 1000);
    try {
      const r = await this._fetch(url, { method, body, headers, signal: controller.signal, redirect: 'error',
        cache: 'no-store' });
      const data = new Uint8Array(await r.arrayBuffer());
      const hdrs = {};
      r.headers.forEach((v, k) => { hdrs[k.toLowerCase()] = v; });
      return new Response(r.status, hdrs, data);
    } catch (exc) {
      if (controller.signal.aborted) {
        const err = new Error(`no answer within ${timeout} s`);
        err.name = 'TimeoutError';
        throw err;
      }
      throw exc;
    } finally {
      clearTimeout(timer);
    }
  }

  async _backoff(attempt, retryAfter, what) {
    const delay = retryAfter !== null
      ? retryAfter + this._random() * this.retry.baseBackoff
      : this._random() * Math.min(this.retry.maxBackoff, this.retry.baseBackoff * 2 ** attempt);
    this._log?.(`retrying ${what} in ${delay.toFixed(2)} s (attempt ${attempt + 2} of ${this.retry.maxRetries + 1})`);
    await this._sleep(delay);
  }
}
