package domain_test

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/orderledger/orderledger/domain"
)

var update = flag.Bool("update", false, "rewrite domain/testdata/golden from the representative events")

// goldenEvents holds one representative value of every event type, with
// every field set, so that the golden files show every permanent JSON name.
func goldenEvents() []domain.Event {
	bj := func(s string) time.Time {
		t, err := time.ParseInLocation("2006-01-02 15:04:05", s, beijing)
		if err != nil {
			panic(err)
		}
		return t
	}
	expires := bj("2026-11-30 12:00:00")
	v2pay := domain.Payment{
		MchID: "10000100", AppID: "wx2421b1c4370ec43b", OutTradeNo: "20261130508001",
		TransactionID: "42000038002026113035904109", TotalFee: 2990, CashFee: 2790, CouponFee: 200,
		FeeType: "CNY", TradeType: "JSAPI", BankType: "CFT", OpenID: "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o",
		Attach: "支付测试", PaidAt: bj("2026-11-30 10:01:02"), ResultCode: "SUCCESS",
		Evidence: domain.Evidence{
			Channel:    "wechatpay-v2-notify",
			Body:       "<xml><appid><![CDATA[wx2421b1c4370ec43b]]></appid><total_fee>2990</total_fee></xml>",
			ReceivedAt: bj("2026-11-30 10:01:03"),
		},
	}
	v3pay := v2pay
	v3pay.TransactionID = "42000024242026113076811020"
	v3pay.TotalFee, v3pay.CashFee, v3pay.CouponFee, v3pay.Attach = 1, 1, 0, ""
	v3pay.Evidence = domain.Evidence{
		Channel: "wechatpay-v3-notify",
		Body:    `{"id":"EV-2018022511223320873","resource":{"algorithm":"AEAD_AES_256_GCM","ciphertext":"..."}}`,
		Headers: map[string]string{
			"Wechatpay-Nonce": "fdasflkja484w", "Wechatpay-Serial": "PUB_KEY_ID_0114232134912410000000000000",
			"Wechatpay-Signature": "cVAy…==", "Wechatpay-Timestamp": "1785376862",
		},
		ReceivedAt: bj("2026-11-30 10:01:03"),
	}
	failed := v2pay
	failed.ResultCode, failed.ErrCode, failed.ErrCodeDes = "FAIL", "NOTENOUGH", "余额不足"
	failed.CashFee, failed.CouponFee = 0, 0
	ref := domain.Refund{
		MchID: "10000100", OutTradeNo: "20261130157013", TransactionID: "4200000001202611300000000013",
		RefundID: "50000000382019052709732678859", OutRefundNo: "R20261130157013-1", Status: domain.RefundStatusSuccess,
		TotalFee: 5000, RefundFee: 2000, SettlementRefundFee: 2000, PayerTotal: 5000, PayerRefund: 2000,
		ReceivedAccount: "支付用户的零钱", SucceededAt: bj("2026-11-30 15:00:00"),
		Evidence: domain.Evidence{
			Channel:    "wechatpay-v2-refund-notify",
			Body:       "<xml><return_code>SUCCESS</return_code><req_info><![CDATA[T87GAHG17TGAHG1TGHAHAHA1Y1CIOA9UGJH1GAHV871HAGAGQYQQPOOJMXNBCXBVNMNMAJAA]]></req_info></xml>",
			ReceivedAt: bj("2026-11-30 15:00:05"),
		},
	}
	closedRef := ref
	closedRef.Status, closedRef.SucceededAt = domain.RefundStatusClosed, time.Time{}
	abnormalRef := ref
	abnormalRef.Status, abnormalRef.SucceededAt = domain.RefundStatusAbnormal, time.Time{}
	abnormalRef.ReceivedAccount = "招商银行信用卡0403"
	dup := v3pay
	return []domain.Event{
		domain.OrderPlaced{
			MchID: "10000100", AppID: "wx2421b1c4370ec43b", OutTradeNo: "20261130508001", TotalFee: 2990,
			FeeType: "CNY", Description: "小程序订单 20261130508001", OpenID: "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o",
			ExpiresAt: &expires, PlacedAt: bj("2026-11-30 10:00:00"),
		},
		domain.OrderClosed{MchID: "10000100", OutTradeNo: "20261130508001", Reason: "expired", ClosedAt: bj("2026-11-30 12:00:01")},
		domain.PaymentConfirmed{Payment: v2pay},
		domain.PaymentFailed{Payment: failed},
		domain.AnomalyDetected{
			Code: domain.AppIDMismatch, MchID: "10000100", OutTradeNo: "20261130508001",
			TransactionID: "42000024242026113076811020", RefundID: "", ExpectedFee: 2990, NotifiedFee: 1,
			ExpectedAppID: "wx2421b1c4370ec43b", NotifiedAppID: "wxd930ea5d5a258f4f",
			Detail: "signed payment under another appid", DetectedAt: bj("2026-11-30 10:01:04"), Payment: &dup,
		},
		domain.RefundSucceeded{Refund: ref},
		domain.RefundClosed{Refund: closedRef},
		domain.RefundAbnormal{Refund: abnormalRef},
	}
}

var allTypes = []string{
	domain.TypeOrderPlaced, domain.TypeOrderClosed, domain.TypePaymentConfirmed, domain.TypePaymentFailed,
	domain.TypeAnomalyDetected, domain.TypeRefundSucceeded, domain.TypeRefundClosed, domain.TypeRefundAbnormal,
}

func goldenPath(typ string) string { return filepath.Join("testdata", "golden", typ+".json") }

// TestGoldenJSON: the stored form of every event type is permanent
// (auditors read it years later). A failure here means a JSON name or
// encoding changed: add fields, never rename or remove them. Run with
// -update only for a deliberate, additive change, and review the diff.
func TestGoldenJSON(t *testing.T) {
	events := goldenEvents()
	var types []string
	for _, e := range events {
		types = append(types, e.EventType())
	}
	if !slices.Equal(types, allTypes) {
		t.Fatalf("representative events %v, want one of each of %v", types, allTypes)
	}
	if *update {
		mustNoErr(t, os.MkdirAll(filepath.Join("testdata", "golden"), 0o755))
	}
	for _, e := range events {
		t.Run(e.EventType(), func(t *testing.T) {
			typ, data, err := domain.Marshal(e)
			mustNoErr(t, err)
			if typ != e.EventType() {
				t.Fatalf("Marshal type %q, want %q", typ, e.EventType())
			}
			path := goldenPath(typ)
			if *update {
				mustNoErr(t, os.WriteFile(path, append(slices.Clone(data), '\n'), 0o644))
			}
			file, err := os.ReadFile(path)
			mustNoErr(t, err)
			golden := bytes.TrimSuffix(file, []byte("\n"))
			if !bytes.Equal(data, golden) {
				t.Errorf("%s changed\n got %s\nwant %s", path, data, golden)
			}

			// Stored bytes decode to the same event, which encodes to the
			// same bytes.
			back, err := domain.Unmarshal(typ, golden)
			mustNoErr(t, err)
			if reflect.TypeOf(back) != reflect.TypeOf(e) {
				t.Fatalf("Unmarshal gives %T, want %T", back, e)
			}
			if domain.ID(back) != domain.ID(e) {
				t.Errorf("ID changed through the codec")
			}
			_, again, err := domain.Marshal(back)
			mustNoErr(t, err)
			if !bytes.Equal(again, golden) {
				t.Errorf("Marshal(Unmarshal(golden))\n got %s\nwant %s", again, golden)
			}

			// No field is dropped silently: every name in the file is one
			// the type decodes (checked by a strict decoder).
			dec := json.NewDecoder(bytes.NewReader(golden))
			dec.DisallowUnknownFields()
			v := reflect.New(reflect.TypeOf(e))
			if err := dec.Decode(v.Interface()); err != nil {
				t.Errorf("strict decode: %v", err)
			}
		})
	}

	// No stray golden files for types that do not exist.
	files, err := filepath.Glob(filepath.Join("testdata", "golden", "*.json"))
	mustNoErr(t, err)
	for _, f := range files {
		if !slices.Contains(allTypes, strings.TrimSuffix(filepath.Base(f), ".json")) {
			t.Errorf("golden file %s has no event type", f)
		}
	}
}

func TestUnknownEventType(t *testing.T) {
	data := []byte(`{"mch_id":"10000100","out_trade_no":"20261130-a_b","note":"from a newer binary"}`)
	e, err := domain.Unmarshal("InvoiceIssued", data)
	mustNoErr(t, err)
	u, ok := e.(domain.UnknownEvent)
	if !ok || u.Type != "InvoiceIssued" || !bytes.Equal(u.Data, data) || e.EventType() != "InvoiceIssued" {
		t.Fatalf("Unmarshal = %#v", e)
	}

	// Kept as is when written again.
	typ, out, err := domain.Marshal(e)
	mustNoErr(t, err)
	if typ != "InvoiceIssued" || !bytes.Equal(out, data) {
		t.Errorf("Marshal(UnknownEvent) = %s %s, want the stored type and bytes", typ, out)
	}

	// Evolve counts it (revisions stay right) and otherwise skips it.
	before := domain.Fold(hist(placed, pay(tx1, fee), refund("r1", domain.RefundStatusSuccess, 300)))
	after := domain.Evolve(before.Clone(), e)
	if after.Events != before.Events+1 {
		t.Errorf("events %d, want %d", after.Events, before.Events+1)
	}
	after.Events = before.Events
	if !reflect.DeepEqual(after, before) {
		t.Errorf("Evolve(UnknownEvent) changed the state:\n%+v\n%+v", after, before)
	}

	// A known type whose payload does not decode is an error, not skipped.
	if _, err := domain.Unmarshal(domain.TypePaymentConfirmed, []byte(`{"total_fee":"1"}`)); err == nil || !strings.Contains(err.Error(), domain.TypePaymentConfirmed) {
		t.Errorf("bad payload: err = %v", err)
	}
}
