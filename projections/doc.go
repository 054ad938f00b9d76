// Package projections keeps the ledger's read model: a SQLite file that
// auditors can open with any SQLite tool and that the HTTP API reads.
//
// The read model is derived data. It is folded from the order streams of the
// event store (streams named with domain.StreamPrefix) by a Runner, and it
// can be thrown away and rebuilt from zero at any time with Rebuild.
//
// # Tables
//
//   - orders: one row per order stream, with the columns an auditor wants
//     (status, fees, transaction id, times in Beijing time, anomaly codes)
//     and state_json, the JSON of the folded domain.Order from which the
//     next event is applied with domain.Evolve. Statuses come from
//     domain.Order.Status; this package never re-implements them.
//   - daily_totals and daily_anomalies: per merchant and Beijing calendar
//     day, counts and sums of fen (see DailyTotal for which time decides the
//     day of each fact).
//   - checkpoint: how far in the store's global log the model has read.
//
// # The checkpoint rule
//
// Every batch of events is applied in ONE SQLite transaction that also
// writes the checkpoint covering it. The rows and the checkpoint therefore
// become durable together or not at all: after a crash (or a failed commit)
// the model is exactly as it was after some earlier batch, and resuming from
// the stored checkpoint re-reads precisely the events whose effects are not
// in the file. No event is applied twice and none is skipped. That is also
// why the file can use WAL with synchronous=NORMAL: a power failure may
// roll back the last few commits, but always together with their
// checkpoint, so those batches are simply applied again; and the whole
// model can be rebuilt from the store at any time.
//
// Two guards make re-delivery harmless even if a backend repeats events:
// an event at or before the stored checkpoint is ignored, and so is an event
// whose stream revision is not beyond the revision stored in its orders row.
// A revision that skips ahead is reported as ErrInconsistent, never papered
// over.
//
// # The state cache
//
// To apply an event, the runner needs the folded state of its order. A
// ReadModel keeps the states of recently written rows in memory (an LRU of
// about 64 MiB), so that the usual next event of an order, its payment,
// needs no read and decoding of state_json. The cache holds committed rows
// only: a batch takes the rows it touches out of it and puts them back
// after its commit, and any failed batch clears it. The ReadModel is the
// only writer of its file (the lock), and a reopened ReadModel starts with
// an empty cache; the results are the same with or without it.
//
// # Concurrency
//
// A ReadModel is safe for concurrent use: queries run in parallel with the
// runner (the file is in WAL mode). One process at a time may have the file
// open: OpenReadModel and Rebuild take an exclusive lock on path+".lock"
// and fail with ErrLocked when another holder has it, so Rebuild refuses to
// run under a live server.
package projections
