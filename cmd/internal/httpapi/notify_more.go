package httpapi

import (
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/orderledger/orderledger/cmd/internal/merchant"
	"github.com/orderledger/orderledger/cmd/internal/wechatpay"
	"github.com/orderledger/orderledger/domain"
)

// v2RefundNotify handles v2 refund notifications. They carry no sign: the
// proof is that req_info decrypts (AES-256-ECB under md5(API key)) to a
// well-formed refund. Accepted for every merchant with a v2 API key, also
// those who otherwise use v3.
func (s *Server) v2RefundNotify(w http.ResponseWriter, r *http.Request) {
	const channel = "v2-refund"
	received := s.Now()
	body, fields, m, err := s.readV2(w, r)
	if err != nil {
		s.refuse(w, r, channel, replyV2XML, err)
		return
	}
	plain, err := wechatpay.DecryptV2RefundReqInfo(fields["req_info"], m.APIKey.Reveal())
	if err != nil {
		s.refuse(w, r, channel, replyV2XML, unauthorized("req_info cannot be decrypted", err))
		return
	}
	info, err := wechatpay.DecodeV2Refund(plain)
	if err != nil {
		s.refuse(w, r, channel, replyV2XML, badRequest("invalid refund fields", err))
		return
	}
	refund := info.Refund(m.MchID, domain.Evidence{Channel: "wechatpay-v2-refund-notify", Body: string(body), ReceivedAt: received})
	s.recordRefund(w, r, channel, replyV2XML, refund, received)
}

func (s *Server) recordRefund(w http.ResponseWriter, r *http.Request, channel string, kind replyKind, rf domain.Refund, received time.Time) {
	ctx, cancel := s.appendContext(r)
	defer cancel()
	out, err := s.Ledger.RecordRefund(ctx, rf)
	if err != nil {
		s.refuse(w, r, channel, kind, err)
		return
	}
	s.acknowledge(w, r, channel, kind, out, received,
		"mch_id", rf.MchID, "out_trade_no", rf.OutTradeNo, "refund_id", rf.RefundID, "refund_status", rf.Status)
}

// v3Notify handles API v3 notifications: verify the RSA signature over the
// raw body with the key named by Wechatpay-Serial (within the 5-minute
// window), decrypt the resource with that merchant's APIv3 key, then
// dispatch on event_type. Success is 204 after the durable append; any
// failure is 4xx/5xx with {"code":"FAIL"} (WeChat reads only the status).
func (s *Server) v3Notify(w http.ResponseWriter, r *http.Request) {
	const channel = "v3"
	received := s.Now()
	body, err := readBody(w, r, MaxNotifyBody)
	if err != nil {
		s.refuse(w, r, channel, replyV3JSON, err)
		return
	}
	serial := r.Header.Get("Wechatpay-Serial")
	var m *merchant.Merchant
	var verifier *wechatpay.V3Verifier
	for _, mchID := range s.v3IDs {
		if v := s.V3[mchID]; v.HasSerial(serial) {
			m, _ = s.Merchants.Get(mchID)
			verifier = v
			break
		}
	}
	if verifier == nil || m == nil {
		s.refuse(w, r, channel, replyV3JSON, unauthorized("unknown Wechatpay-Serial", fmt.Errorf("serial %.64q", serial)))
		return
	}
	if err := verifier.Verify(r.Header, body); err != nil {
		if errors.Is(err, wechatpay.ErrSignatureProbe) {
			// WeChat checks that we verify: refusing is the right answer.
			s.metrics.Inc(channel, "signature_probe")
			s.log.Info("signature probe refused", "serial", serial)
			writeJSON(w, http.StatusUnauthorized, map[string]string{"code": "SIGN_ERROR", "message": "signature verification failed"})
			return
		}
		s.refuse(w, r, channel, replyV3JSON, unauthorized("signature verification failed", err))
		return
	}
	env, err := wechatpay.ParseV3Envelope(body)
	if err != nil {
		s.refuse(w, r, channel, replyV3JSON, badRequest("malformed notification", err))
		return
	}
	plain, err := wechatpay.DecryptV3Resource(env, []byte(m.APIv3Key.Reveal()))
	if err != nil {
		s.refuse(w, r, channel, replyV3JSON, unauthorized("resource cannot be decrypted", err))
		return
	}
	evidence := domain.Evidence{Channel: "wechatpay-v3-notify", Body: string(body), ReceivedAt: received,
		Headers: wechatpay.SignatureHeaders(r.Header)}
	switch env.EventType {
	case "TRANSACTION.SUCCESS":
		tx, err := wechatpay.DecodeV3Transaction(plain)
		if err != nil {
			s.refuse(w, r, channel, replyV3JSON, badRequest("invalid transaction fields", err))
			return
		}
		if tx.MchID != m.MchID {
			s.refuse(w, r, channel, replyV3JSON, badRequest("mchid does not match the signing key's merchant", nil))
			return
		}
		s.recordPayment(w, r, channel, replyV3JSON, tx.Payment(evidence), received)
	case "REFUND.SUCCESS", "REFUND.ABNORMAL", "REFUND.CLOSED":
		rf, err := wechatpay.DecodeV3Refund(plain)
		if err != nil {
			s.refuse(w, r, channel, replyV3JSON, badRequest("invalid refund fields", err))
			return
		}
		if rf.MchID != m.MchID {
			s.refuse(w, r, channel, replyV3JSON, badRequest("mchid does not match the signing key's merchant", nil))
			return
		}
		s.recordRefund(w, r, channel, replyV3JSON, rf.Refund(evidence), received)
	default:
		s.refuse(w, r, channel, replyV3JSON, badRequest("unsupported event_type", fmt.Errorf("event_type %.64q", env.EventType)))
	}
}
