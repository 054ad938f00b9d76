package esdb

import (
	"errors"

	esdbclient "github.com/EventStore/EventStore-Client-Go/v4/esdb"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
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

// isCode reports whether err carries the client error code code.
func isCode(err error, code esdbclient.ErrorCode) bool {
	c, ok := clientCode(err)
	return ok && c == code
}

// unavailable reports whether the server or the connection to it is
// unavailable: the client's ErrorUnavailable, or a raw gRPC Unavailable
// status (the client's ReadStream and ReadAll return the error of starting
// the call unwrapped).
func unavailable(err error) bool {
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
	if errors.Is(err, errClientDied) || unavailable(err) {
		return true
	}
	c, ok := clientCode(err)
	if !ok {
		return false
	}
	switch c {
	case esdbclient.ErrorCodeNotLeader, esdbclient.ErrorUnavailable,
		esdbclient.ErrorCodeConnectionClosed, esdbclient.ErrorAborted:
		return true
	}
	return false
}

// transient reports whether err says something about the connection, so
// that the client's health is worth checking.
func transient(err error) bool {
	if err == nil {
		return false
	}
	c, ok := clientCode(err)
	if !ok {
		return false
	}
	switch c {
	case esdbclient.ErrorCodeNotLeader, esdbclient.ErrorUnavailable,
		esdbclient.ErrorCodeDeadlineExceeded, esdbclient.ErrorAborted:
		return true
	}
	return false
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
	c, ok := clientCode(err)
	if !ok {
		return false
	}
	switch c {
	case esdbclient.ErrorCodeAccessDenied, esdbclient.ErrorCodeUnauthenticated,
		esdbclient.ErrorCodeStreamDeleted, esdbclient.ErrorCodeUnsupportedFeature,
		esdbclient.ErrorCodeParsing:
		return true
	}
	return false
}
