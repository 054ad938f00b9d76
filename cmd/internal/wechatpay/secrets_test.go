package wechatpay

import (
	"strings"
	"testing"
)

// TestErrorsNeverContainSecrets collects the errors of failing verifies,
// decrypts and decodes and checks that none shows a key or a piece of
// decrypted plaintext.
func TestErrorsNeverContainSecrets(t *testing.T) {
	const (
		v2Key   = "SECRETv2KEYsecretv2keySECRETv2KE" // 32 bytes
		v3Key   = "SECRETv3KEYsecretv3keySECRETv3KE"
		marker  = "PLAINTEXTMARKER"
		marker2 = "ORDERSECRET42"
	)
	var errs []error
	add := func(err error) {
		if err == nil {
			t.Fatal("expected an error")
		}
		errs = append(errs, err)
	}

	// v2 signatures.
	f := docFields()
	f["sign"] = docMD5
	add(VerifyV2(f, v2Key))
	f["sign_type"] = "HMAC-SHA256"
	add(VerifyV2(f, v2Key))
	f["sign_type"] = "BOGUS"
	add(VerifyV2(f, v2Key))
	_, err := SignV2(f, v2Key, "BOGUS")
	add(err)

	// v2 refunds: wrong key, bad base64, a plaintext that is not <root>,
	// a <root> with invalid fields.
	good, _ := EncryptV2RefundReqInfo(refundFields(), v2Key)
	_, err = DecryptV2RefundReqInfo(good, v2Key+"x")
	add(err)
	_, err = DecryptV2RefundReqInfo("%%"+v2Key, v2Key)
	add(err)
	_, err = DecryptV2RefundReqInfo(encryptPadded(t, "<xml><a>"+marker+"</a></xml>", v2Key), v2Key)
	add(err)
	_, err = DecryptV2RefundReqInfo(encryptPadded(t, "<root><a>"+marker+"</a><b>&bad;</b></root>", v2Key), v2Key)
	add(err)
	_, err = DecryptV2RefundReqInfo(encryptPadded(t, "<root><a>"+marker+"</a><a>"+marker+"</a></root>", v2Key), v2Key)
	add(err)
	rf := refundFields()
	rf["refund_fee"] = marker
	rf["out_trade_no"] = marker2 + "非ASCII"
	rf["refund_status"] = marker
	rf["success_time"] = marker
	_, err = DecodeV2Refund(rf)
	add(err)

	// v2 payments with bad values.
	pf := parseVec(t, "synthetic/v2_pay_notify_md5.xml")
	pf["total_fee"] = marker
	pf["time_end"] = marker
	pf["result_code"] = marker
	_, err = DecodeV2Pay(pf)
	add(err)

	// v3: wrong key, wrong-length key, bad plaintexts.
	x := loadV3(t, "synthetic/v3_transaction_success_cert")
	env, _ := ParseV3Envelope(x.body)
	_, err = DecryptV3Resource(env, []byte(v3Key))
	add(err)
	_, err = DecryptV3Resource(env, []byte(v3Key+"x"))
	add(err)
	_, err = DecodeV3Transaction([]byte(`{"mchid":"` + marker + `","appid":1}`))
	add(err)
	_, err = DecodeV3Transaction([]byte(`{"mchid":"` + marker + `中","out_trade_no":"` + marker2 + `é","trade_state":"` + marker + `","amount":{"total":-1,"currency":"` + marker + `"}}`))
	add(err)
	_, err = DecodeV3Transaction([]byte(`{"mchid":"` + marker + `"`))
	add(err)
	_, err = DecodeV3Refund([]byte(`{"refund_status":"` + marker + `","amount":{"total":"` + marker + `"}}`))
	add(err)
	_, err = DecodeV3Refund([]byte(`{"out_refund_no":"` + marker2 + "\xff" + `"}`))
	add(err)

	// Config checks.
	add(CheckAPIv3Key(v3Key + "!"))
	add(CheckAPIKey(v2Key[:31] + "\x01"))
	add(CheckAPIv3Key(v3Key[:31] + "\n"))

	for _, err := range errs {
		msg := err.Error()
		for _, secret := range []string{v2Key, v3Key, v2Key[:16], v3Key[:16], marker, marker2, synthV3Key, docKey} {
			if strings.Contains(msg, secret) {
				t.Errorf("error %q shows secret %q", msg, secret)
			}
		}
	}
	// The v3 decrypt error also must not echo the real plaintext.
	_, err = DecryptV3Resource(env, []byte(v3Key))
	if strings.Contains(err.Error(), "1217752501201407033233368018") {
		t.Errorf("plaintext in %v", err)
	}
}
