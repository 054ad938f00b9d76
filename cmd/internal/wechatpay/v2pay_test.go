package wechatpay

import (
	"bytes"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/orderledger/orderledger/domain"
)

func TestDecodeV2PayVector(t *testing.T) {
	f := parseVec(t, "synthetic/v2_pay_notify_md5.xml")
	if err := VerifyV2(f, docKey); err != nil {
		t.Fatal(err)
	}
	n, err := DecodeV2Pay(f)
	if err != nil {
		t.Fatal(err)
	}
	ev := domain.Evidence{Channel: "wechatpay-v2-notify", Body: "<xml/>"}
	p := n.Payment(ev)
	want := domain.Payment{
		MchID: "10000100", AppID: "wx2421b1c4370ec43b", OutTradeNo: "1409811653",
		TransactionID: "1004400740201409030005092168", TotalFee: 100, CashFee: 90, CouponFee: 10,
		FeeType: "CNY", TradeType: "JSAPI", BankType: "CFT", OpenID: "oUpF8uMEb4qRXf22hE3X68TekukE",
		Attach: "支付测试", PaidAt: time.Date(2014, 9, 3, 13, 15, 40, 0, domain.Beijing), ResultCode: "SUCCESS",
		Evidence: ev,
	}
	if !p.PaidAt.Equal(want.PaidAt) {
		t.Errorf("PaidAt %v, want %v", p.PaidAt, want.PaidAt)
	}
	if _, off := p.PaidAt.Zone(); off != 8*3600 {
		t.Errorf("PaidAt zone offset %d, want +8h", off)
	}
	p.PaidAt, want.PaidAt = time.Time{}, time.Time{}
	if !reflect.DeepEqual(p, want) {
		t.Errorf("Payment:\n got %+v\nwant %+v", p, want)
	}
	if n.CouponCount != 1 || n.Raw["coupon_id_0"] != "10000" {
		t.Errorf("coupon fields: %+v", n)
	}
}

func TestDecodeV2PayResultFail(t *testing.T) {
	n, err := DecodeV2Pay(parseVec(t, "synthetic/v2_pay_notify_result_code_fail.xml"))
	if err != nil {
		t.Fatal(err)
	}
	p := n.Payment(domain.Evidence{})
	if p.ResultCode != "FAIL" || p.ErrCode != "SYSTEMERROR" || p.ErrCodeDes != "系统错误" {
		t.Errorf("%+v", p)
	}
	// A FAIL result needs no transaction details.
	f := Fields{"return_code": "SUCCESS", "result_code": "FAIL", "appid": "wx1", "mch_id": "1", "nonce_str": "n", "sign": "S", "out_trade_no": "o", "err_code": "X"}
	if _, err := DecodeV2Pay(f); err != nil {
		t.Errorf("minimal FAIL: %v", err)
	}
}

func TestDecodeV2PayReturnFail(t *testing.T) {
	f := parseVec(t, "synthetic/v2_pay_notify_return_code_fail.xml")
	if err := CheckV2Return(f); !errors.Is(err, ErrReturnFail) {
		t.Errorf("CheckV2Return = %v", err)
	}
	if _, err := DecodeV2Pay(f); !errors.Is(err, ErrReturnFail) {
		t.Errorf("DecodeV2Pay = %v, want ErrReturnFail", err)
	}
	// A forged message with no return_code at all is invalid, not FAIL.
	f = parseVec(t, "synthetic/neg_v2_pay_notify_forged_no_sign.xml")
	if err := CheckV2Return(f); err != nil {
		t.Errorf("CheckV2Return(no return_code) = %v", err)
	}
	if _, err := DecodeV2Pay(f); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "return_code") {
		t.Errorf("DecodeV2Pay(no return_code) = %v, want ErrInvalid naming return_code", err)
	}
}

func TestDecodeV2PayInvalid(t *testing.T) {
	base := func() Fields { return parseVec(t, "synthetic/v2_pay_notify_md5.xml") }
	tests := []struct {
		name  string
		edit  func(Fields)
		field string
	}{
		{"total_fee_negative", func(f Fields) { f["total_fee"] = "-1" }, "total_fee"},
		{"total_fee_plus", func(f Fields) { f["total_fee"] = "+1" }, "total_fee"},
		{"total_fee_space", func(f Fields) { f["total_fee"] = " 100" }, "total_fee"},
		{"total_fee_leading_zero", func(f Fields) { f["total_fee"] = "0100" }, "total_fee"},
		{"total_fee_decimal", func(f Fields) { f["total_fee"] = "1.00" }, "total_fee"},
		{"total_fee_exponent", func(f Fields) { f["total_fee"] = "1e2" }, "total_fee"},
		{"total_fee_overflow", func(f Fields) { f["total_fee"] = "99999999999999999999" }, "total_fee"},
		{"total_fee_missing", func(f Fields) { delete(f, "total_fee") }, "total_fee"},
		{"total_fee_empty", func(f Fields) { f["total_fee"] = "" }, "total_fee"},
		{"cash_fee_missing", func(f Fields) { delete(f, "cash_fee") }, "cash_fee"},
		{"coupon_fee_bad", func(f Fields) { f["coupon_fee"] = "ten" }, "coupon_fee"},
		{"time_end_dashes", func(f Fields) { f["time_end"] = "2014-09-03 13:15" }, "time_end"},
		{"time_end_month_13", func(f Fields) { f["time_end"] = "20141303131540" }, "time_end"},
		{"time_end_signed", func(f Fields) { f["time_end"] = "+0140903131540" }, "time_end"},
		{"time_end_missing", func(f Fields) { delete(f, "time_end") }, "time_end"},
		{"result_code_other", func(f Fields) { f["result_code"] = "OK" }, "result_code"},
		{"return_code_other", func(f Fields) { f["return_code"] = "success" }, "return_code"},
		{"out_trade_no_missing", func(f Fields) { delete(f, "out_trade_no") }, "out_trade_no"},
		{"transaction_id_missing", func(f Fields) { delete(f, "transaction_id") }, "transaction_id"},
		{"appid_missing", func(f Fields) { delete(f, "appid") }, "appid"},
		{"mch_id_missing", func(f Fields) { delete(f, "mch_id") }, "mch_id"},
		{"openid_missing", func(f Fields) { delete(f, "openid") }, "openid"},
		{"fee_type_lower", func(f Fields) { f["fee_type"] = "cny" }, "fee_type"},
		{"sign_type_other", func(f Fields) { f["sign_type"] = "SHA1" }, "sign_type"},
		{"out_trade_no_non_ascii", func(f Fields) { f["out_trade_no"] = "订单1" }, "out_trade_no"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := base()
			tt.edit(f)
			_, err := DecodeV2Pay(f)
			if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tt.field) {
				t.Fatalf("err = %v, want ErrInvalid naming %s", err, tt.field)
			}
		})
	}
	// Several problems are reported together.
	f := base()
	delete(f, "out_trade_no")
	f["total_fee"] = "x"
	_, err := DecodeV2Pay(f)
	if err == nil || !strings.Contains(err.Error(), "out_trade_no") || !strings.Contains(err.Error(), "total_fee") {
		t.Fatalf("err = %v, want both fields named", err)
	}
}

func TestDecodeV2PayDefaults(t *testing.T) {
	f := parseVec(t, "synthetic/v2_pay_notify_md5.xml")
	delete(f, "fee_type")
	n, err := DecodeV2Pay(f)
	if err != nil {
		t.Fatal(err)
	}
	if n.FeeType != "CNY" {
		t.Errorf("FeeType %q, want CNY", n.FeeType)
	}
	f["total_fee"] = "0"
	if _, err := DecodeV2Pay(f); err != nil {
		t.Errorf("total_fee 0: %v", err)
	}
}

func TestV2Replies(t *testing.T) {
	const want = `<xml><return_code><![CDATA[SUCCESS]]></return_code><return_msg><![CDATA[OK]]></return_msg></xml>`
	if got := string(V2Success()); got != want {
		t.Fatalf("V2Success = %s", got)
	}
	s := V2Success()
	s[0] = 'X' // callers may not corrupt later replies
	if string(V2Success()) != want {
		t.Fatal("V2Success shares its buffer")
	}
	for _, msg := range []string{"签名失败", "a]]>b", "]]>]]>", "", "ctl\x00\x1b\r", "bad\xffutf8", strings.Repeat("长", 100)} {
		b := V2Fail(msg)
		f, err := ParseV2(b)
		if err != nil {
			t.Fatalf("V2Fail(%q) does not parse: %v\n%s", msg, err, b)
		}
		if f["return_code"] != "FAIL" || len(f) != 2 {
			t.Errorf("V2Fail(%q) fields %q", msg, f)
		}
		got := f["return_msg"]
		if len(got) > V2MaxFailMsg || !utf8.ValidString(got) {
			t.Errorf("V2Fail(%q) return_msg %q too long or invalid", msg, got)
		}
		if utf8.ValidString(msg) && !strings.ContainsAny(msg, "\x00\x1b\r") && len(msg) <= V2MaxFailMsg && got != msg {
			t.Errorf("V2Fail(%q) return_msg %q", msg, got)
		}
	}
	if !bytes.HasPrefix(V2Fail("x"), []byte(`<xml><return_code><![CDATA[FAIL]]></return_code>`)) {
		t.Errorf("V2Fail shape: %s", V2Fail("x"))
	}
}
