package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"

	"github.com/orderledger/orderledger/cmd/internal/app"
	"github.com/orderledger/orderledger/domain"
	"github.com/orderledger/orderledger/eventstore"
)

// reject is an error the handler already classified: the status and the
// short public message to send. The wrapped cause is logged, never sent.
type reject struct {
	status int
	msg    string // public, short, no internals
	fields map[string]string
	cause  error
}

func (r *reject) Error() string {
	if r.cause != nil {
		return r.msg + ": " + r.cause.Error()
	}
	return r.msg
}
func (r *reject) Unwrap() error { return r.cause }

func badRequest(msg string, cause error) error {
	return &reject{status: http.StatusBadRequest, msg: msg, cause: cause}
}
func unauthorized(msg string, cause error) error {
	return &reject{status: http.StatusUnauthorized, msg: msg, cause: cause}
}
func notFound(msg string) error { return &reject{status: http.StatusNotFound, msg: msg} }
func unprocessable(msg string) error {
	return &reject{status: http.StatusUnprocessableEntity, msg: msg}
}
func invalidFields(fields map[string]string) error {
	return &reject{status: http.StatusBadRequest, msg: "invalid request", fields: fields}
}

// replyKind is the wire shape an error reply takes.
type replyKind int

const (
	replyJSON   replyKind = iota // the ledger's own API: {"error": ...}
	replyV2XML                   // WeChat Pay v2: <xml><return_code>FAIL...
	replyV3JSON                  // WeChat Pay v3: {"code":"FAIL","message":...}
)

// classify is the ONE place that maps an error to an HTTP status and a
// public message. Anything not recognised is a server-side failure: the
// notification was not stored, so WeChat must retry (5xx, never 200).
func classify(err error) (status int, msg string, fields map[string]string) {
	var rj *reject
	switch {
	case errors.As(err, &rj):
		return rj.status, rj.msg, rj.fields
	case errors.Is(err, domain.ErrOrderConflict):
		return http.StatusConflict, "out_trade_no already placed with other content", nil
	case errors.Is(err, domain.ErrUnknownOrder):
		return http.StatusNotFound, "order not found", nil
	case errors.Is(err, domain.ErrNotClosable):
		return http.StatusConflict, "order cannot be closed: it is paid", nil
	case errors.Is(err, domain.ErrInvalid):
		return http.StatusBadRequest, "invalid request", nil
	case errors.Is(err, app.ErrContention):
		return http.StatusServiceUnavailable, "busy, retry later", nil
	case errors.Is(err, eventstore.ErrUnavailable), errors.Is(err, eventstore.ErrClosed),
		errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		return http.StatusServiceUnavailable, "storage unavailable, retry later", nil
	}
	return http.StatusInternalServerError, "internal error, retry later", nil
}

// fail writes the error reply in the shape the caller expects and logs the
// cause. For WeChat's notifications any non-2xx status and a FAIL body make
// WeChat retry; a 2xx is never sent on failure.
func (s *Server) fail(w http.ResponseWriter, r *http.Request, kind replyKind, err error) {
	status, msg, fields := classify(err)
	level := slog.LevelWarn
	if status >= 500 {
		level = slog.LevelError
	}
	s.log.Log(r.Context(), level, "request refused", "method", r.Method, "path", r.URL.Path,
		"status", status, "reason", msg, "err", err)
	switch kind {
	case replyV2XML:
		w.Header().Set("Content-Type", "text/xml; charset=utf-8")
		w.WriteHeader(status)
		w.Write(v2Fail(msg))
	case replyV3JSON:
		writeJSON(w, status, map[string]string{"code": "FAIL", "message": msg})
	default:
		body := map[string]any{"error": msg}
		if fields != nil {
			body["fields"] = fields
		}
		writeJSON(w, status, body)
	}
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	enc.Encode(v)
}
