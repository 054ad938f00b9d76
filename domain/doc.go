// Package domain is the pure core of the ledger: the events of an order's
// life, the order state folded from them (Evolve), and the decisions that
// turn a command or a verified WeChat Pay notification into new events
// (Decide*). It imports only the standard library and does no I/O.
//
// Rules that hold everywhere:
//   - Money is integer fen (int64), never float.
//   - Event type names and JSON field names are permanent: auditors read
//     them years later. Add fields, never rename or remove them.
//   - Decisions are idempotent: a repeated notification decides to no
//     events and no error. Every event has a deterministic ID (UUIDv5 of the
//     merchant, the WeChat transaction or refund id, and the event kind), and
//     a decision never emits an ID the stream already holds.
//   - A notification only moves an order forward: a late copy after a refund
//     or a close changes nothing.
//   - Evolve never fails on a stored event; unknown event types are skipped
//     so that old binaries can read newer streams.
package domain
