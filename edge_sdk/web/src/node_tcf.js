// Node: TC strings are decoded by the IAB Tech Lab's @iabtechlabtcf/core (registered on import of node.js).

import { TCString } from '@iabtechlabtcf/core';

import { registerTCStringDecoder, tcfFromTCModel } from './consent_signals.js';

/** Decode a TC string with the IAB library into the normalised TCF signal consent_signals.js decides on. */
export function decodeWithIab(tcString) {
  return tcfFromTCModel(TCString.decode(tcString));
}

registerTCStringDecoder(decodeWithIab);
