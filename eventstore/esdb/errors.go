package esdb

import (
	"errors"
	"fmt"
	"slices"

	esdbclient "github.com/EventStore/EventStore-Client-Go/v4/esdb"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/orderledger/orderledger/eventstore"
)

// clientCode returns the client's error code for err, recognising the
// client's *esdb.Error anywhere in the chain. It never uses esdb.FromError,
// whose boolean means "there was no error" and is false for the client's own
// errors.
func clientCode(err error) (esdbclient.ErrorCode, bool) {
	var e *esdbclient.Error
	if errors.As(err, &e) {
		return e.Code(), true
	}
	return 0, false
}

// isCode reports whether err carries one of the client error codes.
func isCode(err error, codes ...esdbclient.ErrorCode) bool {
	c, ok := clientCode(err)
	return ok && slices.Contains(codes, c)
}

// isUnavailable reports whether the server or the connection to it is
// unavailable: the client's ErrorUnavailable, or a raw gRPC Unavailable
// status (the client's ReadStream and ReadAll return the error of starting
// the call unwrapped).
func isUnavailable(err error) bool {
	if err == nil {
		return false
	}
	if c, ok := clientCode(err); ok {
		return c == esdbclient.ErrorUnavailable
	}
	return status.Code(err) == codes.Unavailable
}

// retryable reports whether an attempt that failed with err may be repeated
// at once: the server said it could not take the request now (NotLeader,
// Unavailable), or the client lost or dropped its connection. For an append
// the outcome of the failed attempt is unknown, and repeating it is safe
// only because the event IDs are the same.
func retryable(err error) bool {
	return errors.Is(err, errClientDied) || isUnavailable(err) ||
		isCode(err, esdbclient.ErrorCodeNotLeader, esdbclient.ErrorCodeConnectionClosed, esdbclient.ErrorAborted)
}

// transient reports whether err says something about the connection, so
// that the client's health is worth checking.
func transient(err error) bool {
	return isCode(err, esdbclient.ErrorCodeNotLeader, esdbclient.ErrorUnavailable,
		esdbclient.ErrorCodeDeadlineExceeded, esdbclient.ErrorAborted)
}

// closedClient reports whether err says the client is closed. The store
// closes a client only when nothing is in flight, so during a call this
// means the client closed itself after failed discovery.
func closedClient(err error) bool {
	return isCode(err, esdbclient.ErrorCodeConnectionClosed)
}

// permanent reports errors that say the request itself was refused and
// nothing happened: retrying cannot help and the outcome is known.
func permanent(err error) bool {
	return isCode(err, esdbclient.ErrorCodeAccessDenied, esdbclient.ErrorCodeUnauthenticated,
		esdbclient.ErrorCodeStreamDeleted, esdbclient.ErrorCodeUnsupportedFeature,
		esdbclient.ErrorCodeParsing)
}

// outcomeKnown reports errors that are returned as they are: the contract's
// answers (wrong expected revision, event-ID conflict), a closed store, and
// requests the server refused (permanent). Nothing is retried after them.
func outcomeKnown(err error) bool {
	return errors.Is(err, eventstore.ErrWrongExpectedRevision) ||
		errors.Is(err, eventstore.ErrEventIDConflict) ||
		errors.Is(err, eventstore.ErrClosed) ||
		permanent(err)
}

// classify is the error a caller of the store gets for a failed operation:
// err itself when its outcome is known (outcomeKnown), otherwise err as
// "outcome unknown" (s.unavailable).
func (s *Store) classify(err error) error {
	if outcomeKnown(err) {
		return err
	}
	return s.unavailable(err)
}

// unavailable wraps err as "outcome unknown", keeping err in the chain.
// It turns ErrClosed into itself and leaves ErrUnavailable alone.
func (s *Store) unavailable(err error) error {
	if errors.Is(err, eventstore.ErrClosed) || errors.Is(err, eventstore.ErrUnavailable) {
		return err
	}
	if s.isClosed() {
		return fmt.Errorf("%w: %w", eventstore.ErrClosed, err)
	}
	return fmt.Errorf("%w: %w", eventstore.ErrUnavailable, err)
}
