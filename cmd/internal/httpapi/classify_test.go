package httpapi

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/orderledger/orderledger/cmd/internal/app"
	"github.com/orderledger/orderledger/domain"
	"github.com/orderledger/orderledger/eventstore"
)

// TestClassify: every sentinel, wrapped as the layers below wrap it, maps
// to its status; anything unknown is a 500 (never a 2xx: WeChat must
// retry); the public message never carries the cause.
func TestClassify(t *testing.T) {
	const internal = "sqlite: disk I/O error at /var/lib/ledger/events.db"
	wrap := func(err error) error {
		return fmt.Errorf("append order-1900000109-A1: %w", fmt.Errorf("%s: %w", internal, err))
	}
	for _, tc := range []struct {
		name   string
		err    error
		status int
	}{
		{"order conflict", wrap(domain.ErrOrderConflict), http.StatusConflict},
		{"not closable", wrap(domain.ErrNotClosable), http.StatusConflict},
		{"unknown order", wrap(domain.ErrUnknownOrder), http.StatusNotFound},
		{"invalid", wrap(domain.ErrInvalid), http.StatusBadRequest},
		{"contention", wrap(app.ErrContention), http.StatusServiceUnavailable},
		{"store unavailable", wrap(eventstore.ErrUnavailable), http.StatusServiceUnavailable},
		{"store closed", wrap(eventstore.ErrClosed), http.StatusServiceUnavailable},
		{"deadline", wrap(context.DeadlineExceeded), http.StatusServiceUnavailable},
		{"canceled", wrap(context.Canceled), http.StatusServiceUnavailable},
		{"corrupt stream", wrap(app.ErrCorruptStream), http.StatusInternalServerError},
		{"wrong expected revision leaked", wrap(eventstore.ErrWrongExpectedRevision), http.StatusInternalServerError},
		{"event id conflict", wrap(eventstore.ErrEventIDConflict), http.StatusInternalServerError},
		{"invalid argument", wrap(eventstore.ErrInvalidArgument), http.StatusInternalServerError},
		{"unknown", errors.New(internal), http.StatusInternalServerError},
		{"bad request", badRequest("malformed notification", errors.New(internal)), http.StatusBadRequest},
		{"unauthorized", unauthorized("invalid signature", errors.New(internal)), http.StatusUnauthorized},
		{"not found", notFound("order not found"), http.StatusNotFound},
		{"unprocessable", unprocessable("unknown merchant"), http.StatusUnprocessableEntity},
		{"invalid fields", invalidFields(map[string]string{"total_fee": "is required"}), http.StatusBadRequest},
		{"too large", &reject{status: http.StatusRequestEntityTooLarge, msg: "body too large", cause: &http.MaxBytesError{Limit: MaxNotifyBody}}, http.StatusRequestEntityTooLarge},
		// A reject wrapped further keeps its own status: it was classified
		// where it was made.
		{"wrapped reject", fmt.Errorf("v2: %w", unauthorized("invalid signature", eventstore.ErrUnavailable)), http.StatusUnauthorized},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status, msg, _ := classify(tc.err)
			if status != tc.status {
				t.Errorf("status %d, want %d", status, tc.status)
			}
			if msg == "" || strings.Contains(msg, "sqlite") || strings.Contains(msg, "/var/lib") || strings.Contains(msg, "order-1900000109") {
				t.Errorf("public message %q is empty or leaks the cause", msg)
			}
			if strings.Contains(strings.ToUpper(msg), "SUCCESS") {
				t.Errorf("public message %q mentions SUCCESS", msg)
			}
		})
	}

	_, _, fields := classify(invalidFields(map[string]string{"total_fee": "is required"}))
	if fields["total_fee"] != "is required" {
		t.Errorf("fields = %v, want total_fee named", fields)
	}
	if _, _, fields := classify(fmt.Errorf("x: %w", domain.ErrInvalid)); fields != nil {
		t.Errorf("fields = %v for an unclassified error, want nil", fields)
	}
}
