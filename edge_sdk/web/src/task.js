// A training task as the server hands it out (POST /v1/tasks, docs/API.md).
//
// The task decides privacy-relevant settings (clip norm, local noise,
// encoding), the eligibility policy and the consent purposes records must
// carry, so a malformed field fails loudly here instead of silently falling
// back to a default in the training path.  The schema is the contract's
// (protocol.js, the twin of fedmark/contract/protocol.py).

import { ERR_BAD_TASK } from './codes.js';
import { ProtocolError } from './contract_errors.js';
import { ServerError } from './errors.js';
import { parseTaskDocument } from './protocol.js';

/** Parse a task; a document that breaks the protocol becomes ServerError(200, 'bad_task'). */
export function parseTask(d) {
  try {
    return parseTaskDocument(d);
  } catch (exc) {
    if (exc instanceof ProtocolError) throw new ServerError(200, ERR_BAD_TASK, `the server's task is malformed: ${exc.message}`);
    throw exc;
  }
}
