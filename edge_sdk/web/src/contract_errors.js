// The wire contract's errors, named as in fedmark/contract.py.
//
// Why separate from the SDK's errors (errors.js): these say "the data breaks the
// contract" and are shared by every piece that reads contract data; the client
// converts them to its own EdgeError hierarchy where they cross into the app.

import { pyRepr } from './pycompat.js';

/** Base class: data does not follow the wire contract. */
export class ContractError extends Error {
  constructor(message) {
    super(message);
    this.name = new.target.name;
  }
}

/** A manifest is malformed or inconsistent with the files beside it. */
export class ManifestError extends ContractError {}

/** An encoded update body cannot be decoded (size, magic, checksum, values). */
export class WireError extends ContractError {}

/**
 * A task document or an update's headers break the protocol; `code` is the machine-readable
 * error code ('bad_task', 'bad_header'; see codes.js) each side reports.
 */
export class ProtocolError extends ContractError {
  constructor(code, message) {
    super(message);
    this.code = code;
  }
}

/** Why one input row was refused: its 0-based row number, the column and the reason. */
export class RowError {
  constructor(row, column, reason) {
    this.row = row;
    this.column = column;
    this.reason = reason;
  }

  toString() {
    return `row ${this.row}, column ${pyRepr(this.column)}: ${this.reason}`;
  }
}

/** Records do not match a feature schema; `errors` carries every bad row. */
export class SchemaError extends ContractError {
  constructor(errors) {
    const list = [...errors];
    const shown = list.slice(0, 5).map(String).join('; ');
    const more = list.length > 5 ? ` (+${list.length - 5} more)` : '';
    super(`${list.length} bad row(s): ${shown}${more}`);
    this.errors = list;
  }
}
