package httpapi

import (
	"net/http"
	"time"

	"github.com/orderledger/orderledger/cmd/internal/app"
	"github.com/orderledger/orderledger/cmd/internal/merchant"
	"github.com/orderledger/orderledger/cmd/internal/wechatpay"
	"github.com/orderledger/orderledger/domain"
)

func v2Fail(msg string) []byte { return wechatpay.V2Fail(msg) }

// v2Notify handles WeChat Pay API v2 payment notifications.
//
// Order of work (each step refuses with FAIL, never a 2xx, so WeChat
// retries anything that was not stored): size limit, safe XML parse (no
// DTD, flat, no duplicate elements), return_code (a FAIL message is not
// signed and is never credited), merchant by mch_id, signature with the
// message's own sign_type, field validation, then the durable append. Only
// after that does the exact SUCCESS body go out, written once.
func (s *Server) v2Notify(w http.ResponseWriter, r *http.Request) {
	const channel = "v2-pay"
	received := s.Now()
	body, fields, m, err := s.readV2(w, r)
	if err != nil {
		s.refuse(w, r, channel, replyV2XML, err)
		return
	}
	if err := wechatpay.VerifyV2(fields, m.APIKey.Reveal()); err != nil {
		s.refuse(w, r, channel, replyV2XML, unauthorized("invalid signature", err))
		return
	}
	n, err := wechatpay.DecodeV2Pay(fields)
	if err != nil {
		s.refuse(w, r, channel, replyV2XML, badRequest("invalid notification fields", err))
		return
	}
	p := n.Payment(domain.Evidence{Channel: "wechatpay-v2-notify", Body: string(body), ReceivedAt: received})
	s.recordPayment(w, r, channel, replyV2XML, p, received)
}

// readV2 does what every v2 endpoint does first: read the body within the
// limit, parse it safely (no DTD, flat, no duplicate elements), refuse a
// return_code other than SUCCESS (such a message carries no signature and
// proves nothing), and find the merchant by mch_id.
func (s *Server) readV2(w http.ResponseWriter, r *http.Request) ([]byte, wechatpay.Fields, *merchant.Merchant, error) {
	body, err := readBody(w, r, MaxNotifyBody)
	if err != nil {
		return nil, nil, nil, err
	}
	fields, err := wechatpay.ParseV2(body)
	if err != nil {
		return nil, nil, nil, badRequest("malformed notification", err)
	}
	if fields["return_code"] != "SUCCESS" {
		// The public message goes into the FAIL reply: it must not contain
		// the word SUCCESS, which a careless reader takes for an ack.
		return nil, nil, nil, badRequest("return_code reports a failure: nothing to record", nil)
	}
	m, ok := s.Merchants.Get(fields["mch_id"])
	if !ok {
		return nil, nil, nil, badRequest("unknown merchant", nil)
	}
	if m.APIKey.IsZero() {
		// Never verify against an empty key: anyone could sign with it.
		return nil, nil, nil, badRequest("merchant has no v2 API key configured", nil)
	}
	return body, fields, m, nil
}

// recordPayment appends a verified payment and replies. It is shared by the
// v2 and v3 endpoints: only the reply shape differs.
func (s *Server) recordPayment(w http.ResponseWriter, r *http.Request, channel string, kind replyKind, p domain.Payment, received time.Time) {
	ctx, cancel := s.appendContext(r)
	defer cancel()
	out, err := s.Ledger.RecordPayment(ctx, p)
	if err != nil {
		s.refuse(w, r, channel, kind, err)
		return
	}
	s.acknowledge(w, r, channel, kind, out, received,
		"mch_id", p.MchID, "out_trade_no", p.OutTradeNo, "transaction_id", p.TransactionID)
}

// acknowledge writes the success reply; by now the outcome is durable.
func (s *Server) acknowledge(w http.ResponseWriter, r *http.Request, channel string, kind replyKind, out app.Outcome, received time.Time, attrs ...any) {
	s.head.note(out.Position)
	outcome := "recorded"
	if out.Duplicate {
		outcome = "duplicate"
	}
	var types []string
	for _, e := range out.Appended {
		types = append(types, e.EventType())
		if a, ok := e.(domain.AnomalyDetected); ok {
			outcome = "anomaly"
			s.metrics.IncAnomaly(channel, a.Code)
		}
	}
	s.metrics.Inc(channel, outcome)
	attrs = append(attrs, "outcome", outcome, "events", types, "status", out.Order.Status(),
		"revision", out.Revision, "attempts", out.Attempts, "latency", s.Now().Sub(received))
	s.log.Info("notification acknowledged", attrs...)
	switch kind {
	case replyV2XML:
		w.Header().Set("Content-Type", "text/xml; charset=utf-8")
		w.WriteHeader(http.StatusOK)
		w.Write(wechatpay.V2Success())
	default:
		w.WriteHeader(http.StatusNoContent)
	}
}

func (s *Server) refuse(w http.ResponseWriter, r *http.Request, channel string, kind replyKind, err error) {
	status, _, _ := classify(err)
	outcome := "rejected"
	if status >= 500 {
		outcome = "store_error"
	}
	s.metrics.Inc(channel, outcome)
	s.fail(w, r, kind, err)
}
