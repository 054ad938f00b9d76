package wechatpay

import (
	"encoding/base64"
	"errors"
	"maps"
	"strings"
	"testing"

	"github.com/orderledger/orderledger/domain"
)

func TestDecryptV2RefundGopay(t *testing.T) {
	reqInfo := strings.TrimSpace(string(vec(t, "v2_refund_reqinfo_gopay.txt")))
	f, err := DecryptV2RefundReqInfo(reqInfo, gopayKey)
	if err != nil {
		t.Fatal(err)
	}
	r, err := DecodeV2Refund(f)
	if err != nil {
		t.Fatal(err)
	}
	if r.Status != domain.RefundStatusSuccess || r.RefundFee != 6 || r.TotalFee != 6 || r.TransactionID != "4200000015201711256947025404" {
		t.Errorf("%+v", r)
	}
	if r.SuccessTime.IsZero() {
		t.Error("no success_time")
	}
	if _, off := r.SuccessTime.Zone(); off != 8*3600 {
		t.Errorf("success_time offset %d", off)
	}
	ev := domain.Evidence{Channel: "wechatpay-v2-refund-notify"}
	d := r.Refund("1900000109", ev)
	if d.MchID != "1900000109" || d.RefundFee != 6 || d.Status != "SUCCESS" || d.OutRefundNo != r.OutRefundNo || d.ReceivedAccount != r.RefundRecvAccount || !d.SucceededAt.Equal(r.SuccessTime) {
		t.Errorf("Refund = %+v", d)
	}
}

func TestV2RefundNotifyWechatpy(t *testing.T) {
	n, err := ParseV2RefundNotify(vec(t, "v2_refund_notify_wechatpy.xml"))
	if err != nil {
		t.Fatal(err)
	}
	if n.AppID != "wx4f4bc4dec97d474b" || n.MchID != "12345678" {
		t.Errorf("outer %+v", n)
	}
	f, err := DecryptV2RefundReqInfo(n.ReqInfo, wechatpyKey)
	if err != nil {
		t.Fatal(err)
	}
	r, err := DecodeV2Refund(f)
	if err != nil {
		t.Fatal(err)
	}
	if r.OutRefundNo != "1234" || r.RefundFee != 1 || r.Status != domain.RefundStatusSuccess {
		t.Errorf("%+v", r)
	}
}

func TestV2RefundNotifyChange(t *testing.T) {
	n, err := ParseV2RefundNotify(vec(t, "synthetic/v2_refund_notify_change.xml"))
	if err != nil {
		t.Fatal(err)
	}
	f, err := DecryptV2RefundReqInfo(n.ReqInfo, docKey)
	if err != nil {
		t.Fatal(err)
	}
	r, err := DecodeV2Refund(f)
	if err != nil {
		t.Fatal(err)
	}
	if r.RefundStatus != "CHANGE" || r.Status != domain.RefundStatusAbnormal || r.RefundFee != 50 {
		t.Errorf("%+v", r)
	}
	if d := r.Refund(n.MchID, domain.Evidence{}); d.Status != domain.RefundStatusAbnormal || d.MchID != "10000100" {
		t.Errorf("%+v", d)
	}
}

func TestV2RefundStatusNormalised(t *testing.T) {
	for wx, want := range map[string]string{"SUCCESS": domain.RefundStatusSuccess, "CHANGE": domain.RefundStatusAbnormal, "REFUNDCLOSE": domain.RefundStatusClosed} {
		f := refundFields()
		f["refund_status"] = wx
		r, err := DecodeV2Refund(f)
		if err != nil || r.Status != want {
			t.Errorf("%s: %q, %v; want %s", wx, r.Status, err, want)
		}
	}
	f := refundFields()
	f["refund_status"] = "PROCESSING"
	if _, err := DecodeV2Refund(f); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "refund_status") {
		t.Errorf("PROCESSING: %v", err)
	}
}

func refundFields() Fields {
	return Fields{
		"transaction_id": "4200000000000000000000000001", "out_trade_no": "o1", "refund_id": "50000000000000000000000001",
		"out_refund_no": "r1", "total_fee": "100", "refund_fee": "50", "settlement_refund_fee": "50",
		"refund_status": "SUCCESS", "success_time": "2025-01-01 09:00:00", "refund_recv_accout": "支付用户零钱",
		"refund_account": "REFUND_SOURCE_RECHARGE_FUNDS", "refund_request_source": "API",
	}
}

func TestDecodeV2RefundInvalid(t *testing.T) {
	tests := []struct {
		name, field string
		edit        func(Fields)
	}{
		{"refund_id_missing", "refund_id", func(f Fields) { delete(f, "refund_id") }},
		{"out_refund_no_missing", "out_refund_no", func(f Fields) { delete(f, "out_refund_no") }},
		{"refund_fee_bad", "refund_fee", func(f Fields) { f["refund_fee"] = "5.0" }},
		{"total_fee_missing", "total_fee", func(f Fields) { delete(f, "total_fee") }},
		{"success_time_compact", "success_time", func(f Fields) { f["success_time"] = "20250101090000" }},
		{"success_time_missing_on_success", "success_time", func(f Fields) { delete(f, "success_time") }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := refundFields()
			tt.edit(f)
			if _, err := DecodeV2Refund(f); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tt.field) {
				t.Fatalf("err = %v, want ErrInvalid naming %s", err, tt.field)
			}
		})
	}
	// Closed refunds need no success_time; documented-required extras may be absent.
	f := refundFields()
	f["refund_status"] = "REFUNDCLOSE"
	delete(f, "success_time")
	delete(f, "refund_recv_accout")
	delete(f, "settlement_refund_fee")
	if r, err := DecodeV2Refund(f); err != nil || !r.SuccessTime.IsZero() {
		t.Fatalf("closed refund: %+v, %v", r, err)
	}
}

func TestDecryptV2RefundRefusals(t *testing.T) {
	good, err := EncryptV2RefundReqInfo(refundFields(), docKey)
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := base64.StdEncoding.DecodeString(good)
	enc := func(b []byte) string { return base64.StdEncoding.EncodeToString(b) }
	encryptRaw := func(plain []byte) string { return encryptECBForTest(t, plain, docKey) }
	tests := []struct {
		name, reqInfo, key string
	}{
		{"wrong_key", good, gopayKey},
		{"empty_key", good, ""},
		{"empty", "", docKey},
		{"garbage", "this is not base64!", docKey},
		{"spaces_inside", good[:20] + " " + good[20:], docKey},
		{"url_alphabet", strings.NewReplacer("+", "-", "/", "_").Replace(good) + "-_", docKey},
		{"missing_padding", strings.TrimRight(enc(raw[:len(raw)-1]), "="), docKey},
		{"not_whole_blocks", enc(raw[:len(raw)-1]), docKey},
		{"truncated_block", enc(raw[:len(raw)-16]), docKey},
		{"bad_padding", encryptRaw(append([]byte("<root><a>1</a></root>"), make([]byte, 11)...)), docKey},
		{"plaintext_wrong_root", encryptPadded(t, "<xml><a>1</a></xml>", docKey), docKey},
		{"plaintext_not_xml", encryptPadded(t, "hello", docKey), docKey},
		{"plaintext_doctype", encryptPadded(t, `<!DOCTYPE root><root><a>1</a></root>`, docKey), docKey},
		{"plaintext_duplicate", encryptPadded(t, `<root><a>1</a><a>2</a></root>`, docKey), docKey},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, err := DecryptV2RefundReqInfo(tt.reqInfo, tt.key)
			if !errors.Is(err, ErrUndecryptable) {
				t.Fatalf("= %q, %v; want ErrUndecryptable", f, err)
			}
		})
	}
}

func TestDecryptV2RefundRoundTripAndNewlines(t *testing.T) {
	want := refundFields()
	ri, err := EncryptV2RefundReqInfo(want, docKey)
	if err != nil {
		t.Fatal(err)
	}
	got, err := DecryptV2RefundReqInfo(ri, docKey)
	if err != nil || !maps.Equal(got, want) {
		t.Fatalf("round trip: %q, %v", got, err)
	}
	// Line-wrapped base64 (76 columns, CRLF) is accepted: see reqInfoEncoding.
	var wrapped strings.Builder
	for i := 0; i < len(ri); i += 76 {
		wrapped.WriteString(ri[i:min(i+76, len(ri))])
		wrapped.WriteString("\r\n")
	}
	if got, err := DecryptV2RefundReqInfo(wrapped.String(), docKey); err != nil || !maps.Equal(got, want) {
		t.Fatalf("wrapped: %v", err)
	}
}

func TestParseV2RefundNotifyRefusals(t *testing.T) {
	if _, err := ParseV2RefundNotify([]byte(`<xml><return_code>FAIL</return_code><return_msg>x</return_msg></xml>`)); !errors.Is(err, ErrReturnFail) {
		t.Errorf("FAIL: %v", err)
	}
	if _, err := ParseV2RefundNotify([]byte(`<xml><return_code>SUCCESS</return_code><appid>wx1</appid><mch_id>1</mch_id></xml>`)); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "req_info") {
		t.Errorf("no req_info: %v", err)
	}
	if _, err := ParseV2RefundNotify([]byte(`<xml><return_code>SUCCESS</return_code><req_info>x</req_info></xml>`)); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "mch_id") {
		t.Errorf("no mch_id: %v", err)
	}
	// WxJava's sample (masked ids, no key) still parses.
	if n, err := ParseV2RefundNotify(vec(t, "samples_without_key/v2_refund_notify_wxjava_test.xml")); err != nil || n.ReqInfo == "" {
		t.Errorf("wxjava sample: %v", err)
	}
}

// encryptPadded encrypts a plaintext document as WeChat would.
func encryptPadded(t testing.TB, doc, apiKey string) string {
	pad := 16 - len(doc)%16
	return encryptECBForTest(t, append([]byte(doc), []byte(strings.Repeat(string(rune(pad)), pad))...), apiKey)
}

// encryptECBForTest encrypts whole blocks with the req_info key, no padding added.
func encryptECBForTest(t testing.TB, plain []byte, apiKey string) string {
	t.Helper()
	out, err := ecbEncryptRaw(plain, apiKey)
	if err != nil {
		t.Fatal(err)
	}
	return out
}
