// The SDK's one exception hierarchy (the same names as edge_sdk/errors.py).
//
// Why one hierarchy: an app embedding the SDK should need a single
// `catch (e) { if (e instanceof EdgeError) … }` to stay safe, and a few precise
// subclasses to react well (retry later, ask for consent, fix the data).
// Errors from below — fetch, onnxruntime, the contract — are converted where
// they cross into the SDK, so nothing foreign leaks to the app.
//
//   EdgeError
//   ├── ConfigurationError      the Client or a call was set up wrongly
//   ├── SchemaError             records do not fit the model's feature schema
//   ├── ConsentError            no record carries the purpose the model needs
//   ├── NotEligibleError        the device's conditions fail the task's policy
//   ├── ArtifactIntegrityError  a downloaded or cached artifact fails its hashes
//   ├── ModelError              the artifact could not be run (onnxruntime)
//   ├── TransportError          the server could not be reached (retriable)
//   └── ServerError             the server answered with an error
//       ├── AuthenticationError bad/expired token or app key (401/403)
//       ├── NoTaskError         nothing to train right now (409 no_task)
//       └── RejectedUpdateError the server refused an update (carries its code)

export class EdgeError extends Error {
  constructor(message, options) {
    super(message, options);
    this.name = new.target.name;
  }
}

export class ConfigurationError extends EdgeError {}

/** `errors` lists every refused row ({row, column, reason}; row = index in the caller's input). */
export class SchemaError extends EdgeError {
  constructor(message, errors = [], options) {
    const list = [...errors];
    let text = message;
    if (list.length) {
      const shown = list.slice(0, 5).map(String).join('; ');
      const more = list.length > 5 ? ` (+${list.length - 5} more)` : '';
      text = `${message}: ${shown}${more}`;
    }
    super(text, options);
    this.errors = list;
  }
}

export class ConsentError extends EdgeError {}

/** `reasons`: one sentence per failed eligibility rule. */
export class NotEligibleError extends EdgeError {
  constructor(reasons) {
    super(`device is not eligible to train: ${reasons.join('; ')}`);
    this.reasons = [...reasons];
  }
}

export class ArtifactIntegrityError extends EdgeError {}

export class ModelError extends EdgeError {}

/** Retriable by nature; `retryAfter` is the server's last Retry-After hint in seconds, if any. */
export class TransportError extends EdgeError {
  constructor(message, { retryAfter = null, cause } = {}) {
    super(message, cause ? { cause } : undefined);
    this.retryAfter = retryAfter;
  }
}

/** The server answered with an HTTP error: `status`, machine-readable `code`, its `serverMessage`. */
export class ServerError extends EdgeError {
  constructor(status, code, message, { retryAfter = null } = {}) {
    super(`server refused the request (${status} ${code}): ${message}`);
    this.status = status;
    this.code = code;
    this.serverMessage = message;
    this.retryAfter = retryAfter;
  }
}

export class AuthenticationError extends ServerError {}

export class NoTaskError extends ServerError {}

export class RejectedUpdateError extends ServerError {}

/** Map an HTTP error answer (docs/API.md error shape) to the most specific exception. */
export function errorFromResponse(status, code, message, retryAfter = null) {
  if (status === 401 || status === 403) return new AuthenticationError(status, code, message, { retryAfter });
  if (code === 'no_task') return new NoTaskError(status, code, message, { retryAfter });
  return new ServerError(status, code, message, { retryAfter });
}
