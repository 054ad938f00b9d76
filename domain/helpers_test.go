package domain_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/orderledger/orderledger/domain"
)

// Fixtures. One merchant, one order; transactions tx1, tx2, ...; refunds r1, r2, ...

const (
	mch   = "1900000109"
	appid = "wx2421b1c4370ec43b"
	otn   = "20261130-a_b"
	fee   = int64(1000)
	tx1   = "4200000001202611300000000001"
	tx2   = "4200000001202611300000000002"
	tx3   = "4200000001202611300000000003"
)

var (
	beijing = time.FixedZone("CST", 8*3600)
	t0      = time.Date(2026, 11, 30, 10, 0, 0, 0, beijing)
	// now stamps anomalies in every decision of these tests.
	now = time.Date(2026, 11, 30, 12, 0, 0, 0, beijing)
)

// placeCmd is the POST /v1/orders command for the fixture order.
func placeCmd(mods ...func(*domain.OrderPlaced)) domain.OrderPlaced {
	p := domain.OrderPlaced{
		MchID: mch, AppID: appid, OutTradeNo: otn, TotalFee: fee, FeeType: "CNY",
		Description: "小程序订单", OpenID: "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o", PlacedAt: t0,
	}
	for _, m := range mods {
		m(&p)
	}
	return p
}

func closeCmd() domain.OrderClosed {
	return domain.OrderClosed{MchID: mch, OutTradeNo: otn, Reason: "expired", ClosedAt: t0.Add(2 * time.Hour)}
}

// pay is a verified SUCCESS payment notification for transaction tx.
func pay(tx string, total int64, mods ...func(*domain.Payment)) domain.Payment {
	p := domain.Payment{
		MchID: mch, AppID: appid, OutTradeNo: otn, TransactionID: tx,
		TotalFee: total, CashFee: total, FeeType: "CNY", TradeType: "JSAPI", BankType: "CFT",
		OpenID: "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o", PaidAt: t0.Add(time.Minute), ResultCode: "SUCCESS",
		Evidence: domain.Evidence{Channel: "wechatpay-v2-notify", Body: "<xml>" + tx + "</xml>", ReceivedAt: t0.Add(time.Minute)},
	}
	for _, m := range mods {
		m(&p)
	}
	return p
}

// payFail is a signed result_code FAIL notification.
func payFail(tx, errCode string) domain.Payment {
	return pay(tx, fee, func(p *domain.Payment) {
		p.ResultCode, p.ErrCode, p.ErrCodeDes = "FAIL", errCode, "支付失败"
	})
}

// refund is a verified refund notification of tx1.
func refund(id, status string, amount int64, mods ...func(*domain.Refund)) domain.Refund {
	r := domain.Refund{
		MchID: mch, OutTradeNo: otn, TransactionID: tx1, RefundID: id, OutRefundNo: "R-" + id,
		Status: status, TotalFee: fee, RefundFee: amount, SettlementRefundFee: amount,
		ReceivedAccount: "支付用户的零钱",
		Evidence:        domain.Evidence{Channel: "wechatpay-v2-refund-notify", Body: "<xml>" + id + status + "</xml>", ReceivedAt: t0.Add(time.Hour)},
	}
	if status == domain.RefundStatusSuccess {
		r.SucceededAt = t0.Add(time.Hour)
	}
	for _, m := range mods {
		m(&r)
	}
	return r
}

func ofTx(tx string) func(*domain.Refund) { return func(r *domain.Refund) { r.TransactionID = tx } }

// decide runs the Decide function for a command or notification.
func decide(o domain.Order, step any) ([]domain.Event, error) { return decideAt(o, step, now) }

// decideAt is decide with another clock.
func decideAt(o domain.Order, step any, at time.Time) ([]domain.Event, error) {
	switch s := step.(type) {
	case domain.OrderPlaced:
		return domain.DecidePlace(o, s)
	case domain.OrderClosed:
		return domain.DecideClose(o, s)
	case domain.Payment:
		return domain.DecidePayment(o, s, at), nil
	case domain.Refund:
		return domain.DecideRefund(o, s, at), nil
	}
	panic(fmt.Sprintf("unknown step %T", step))
}

// apply decides on step and evolves o with the events, as the application
// does after a successful append.
func apply(o domain.Order, step any) (domain.Order, []domain.Event, error) {
	events, err := decide(o, step)
	for _, e := range events {
		o = domain.Evolve(o, e)
	}
	return o, events, err
}

// hist is the event history that the given steps record, decided one after
// the other. Steps that fail (e.g. closing a paid order) record nothing.
func hist(steps ...any) []domain.Event {
	var o domain.Order
	var all []domain.Event
	for _, s := range steps {
		var events []domain.Event
		o, events, _ = apply(o, s)
		all = append(all, events...)
	}
	return all
}

// describe is a compact, comparable rendering of an event's type and key
// fields.
func describe(e domain.Event) string {
	switch v := e.(type) {
	case domain.OrderPlaced:
		return fmt.Sprintf("OrderPlaced %s fee=%d %s", v.OutTradeNo, v.TotalFee, v.FeeType)
	case domain.OrderClosed:
		return fmt.Sprintf("OrderClosed %s", v.OutTradeNo)
	case domain.PaymentConfirmed:
		return fmt.Sprintf("PaymentConfirmed %s fee=%d", short(v.TransactionID), v.TotalFee)
	case domain.PaymentFailed:
		return fmt.Sprintf("PaymentFailed %s %s", short(v.TransactionID), v.ErrCode)
	case domain.AnomalyDetected:
		s := "AnomalyDetected " + v.Code
		if v.TransactionID != "" {
			s += " tx=" + short(v.TransactionID)
		}
		if v.RefundID != "" {
			s += " refund=" + v.RefundID
		}
		if v.ExpectedFee != 0 {
			s += fmt.Sprintf(" expected=%d", v.ExpectedFee)
		}
		if v.NotifiedFee != 0 {
			s += fmt.Sprintf(" notified=%d", v.NotifiedFee)
		}
		if v.ExpectedAppID != "" || v.NotifiedAppID != "" {
			s += fmt.Sprintf(" appid=%s!=%s", v.NotifiedAppID, v.ExpectedAppID)
		}
		if v.Payment != nil {
			s += " +payment"
		}
		return s
	case domain.RefundSucceeded:
		return fmt.Sprintf("RefundSucceeded %s fee=%d", v.RefundID, v.RefundFee)
	case domain.RefundClosed:
		return fmt.Sprintf("RefundClosed %s", v.RefundID)
	case domain.RefundAbnormal:
		return fmt.Sprintf("RefundAbnormal %s", v.RefundID)
	}
	return fmt.Sprintf("%T %s", e, e.EventType())
}

func describeAll(events []domain.Event) []string {
	out := make([]string, 0, len(events))
	for _, e := range events {
		out = append(out, describe(e))
	}
	return out
}

// short names the fixture transactions tx1, tx2, tx3.
func short(tx string) string {
	switch tx {
	case tx1:
		return "tx1"
	case tx2:
		return "tx2"
	case tx3:
		return "tx3"
	}
	return tx
}

// anomalyCodes lists the codes of o's anomalies in order.
func anomalyCodes(o domain.Order) string {
	codes := make([]string, 0, len(o.Anomalies))
	for _, a := range o.Anomalies {
		codes = append(codes, a.Code)
	}
	return strings.Join(codes, ",")
}

func eventIDs(events []domain.Event) [][16]byte {
	ids := make([][16]byte, len(events))
	for i, e := range events {
		ids[i] = domain.ID(e)
	}
	return ids
}

func mustNoErr(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
