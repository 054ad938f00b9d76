package wechatpay

import (
	"errors"
	"slices"
	"testing"
)

// docFields is the field set of WeChat's v2 signing guide.
func docFields() Fields {
	return Fields{"appid": "wxd930ea5d5a258f4f", "body": "test", "device_info": "1000", "mch_id": "10000100", "nonce_str": "ibuaiVcKdpRxkhJA"}
}

const (
	docMD5  = "9A0A8659F005D6984697E2CA0A9CF3B7"
	docHMAC = "6A9AE1657590FD6257D693A078E1C3E4BB6BA4DC30B23E0EE2496E54170DACD6"
)

func TestSignV2KnownAnswers(t *testing.T) {
	tests := []struct {
		name     string
		fields   Fields
		key      string
		signType string
		want     string
	}{
		{"doc_md5", docFields(), docKey, "MD5", docMD5},
		{"doc_md5_default", docFields(), docKey, "", docMD5},
		{"doc_hmac", docFields(), docKey, "HMAC-SHA256", docHMAC},
		{"doc_sign_field_ignored", func() Fields { f := docFields(); f["sign"] = "X"; return f }(), docKey, "MD5", docMD5},
		{"doc_empty_field_skipped", func() Fields { f := docFields(); f["attach"] = ""; return f }(), docKey, "MD5", docMD5},
		{"wechatpy_md5", Fields{"test1": "test1", "test2": "test2"}, docKey, "MD5", "1E3A8D73B5A4AEE787C0F68B5DAB8520"},
		{"easywechat_md5", Fields{"foo": "bar"}, easywechatK, "MD5", "834A25C9A5B48305AB997C9A7E101530"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := SignV2(tt.fields, tt.key, tt.signType)
			if err != nil || got != tt.want {
				t.Fatalf("SignV2 = %q, %v; want %q", got, err, tt.want)
			}
		})
	}
}

func TestSignV2Refusals(t *testing.T) {
	if _, err := SignV2(docFields(), docKey, "SHA1"); !errors.Is(err, ErrUnsupportedSignType) {
		t.Errorf("SHA1: %v", err)
	}
	if _, err := SignV2(docFields(), docKey, "md5"); !errors.Is(err, ErrUnsupportedSignType) {
		t.Errorf("lower-case md5: %v", err)
	}
	if _, err := SignV2(docFields(), "", "MD5"); !errors.Is(err, ErrBadKey) {
		t.Errorf("empty key: %v", err)
	}
}

func TestVerifyV2Vectors(t *testing.T) {
	tests := []struct {
		file string
		key  string
		want error
	}{
		{"synthetic/v2_pay_notify_md5.xml", docKey, nil},
		{"synthetic/v2_pay_notify_hmac_sha256.xml", docKey, nil},
		{"synthetic/v2_pay_notify_md5_empty_attach.xml", docKey, nil},
		{"synthetic/v2_pay_notify_md5_extra_fields.xml", docKey, nil},
		{"synthetic/v2_pay_notify_result_code_fail.xml", docKey, nil},
		{"synthetic/neg_v2_pay_notify_valid_sign_amount_1fen.xml", docKey, nil}, // valid; the amount check is the ledger's
		{"v2_pay_notify_easywechat_min.xml", easywechatK, nil},
		{"synthetic/neg_v2_pay_notify_tampered_total_fee.xml", docKey, ErrBadSignature},
		{"synthetic/neg_v2_pay_notify_signtype_mismatch.xml", docKey, ErrBadSignature},
		{"synthetic/neg_v2_pay_notify_forged_no_sign.xml", docKey, ErrMissingSignature},
		{"synthetic/v2_pay_notify_return_code_fail.xml", docKey, ErrMissingSignature},
		{"synthetic/v2_pay_notify_md5.xml", easywechatK, ErrBadSignature}, // wrong key
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			err := VerifyV2(parseVec(t, tt.file), tt.key)
			if !errors.Is(err, tt.want) || (tt.want == nil && err != nil) {
				t.Fatalf("VerifyV2 = %v, want %v", err, tt.want)
			}
		})
	}
}

// The extra-fields vector verifies only because every received field is
// signed: dropping the unknown future field breaks it.
func TestVerifyV2UnknownFieldsIncluded(t *testing.T) {
	f := parseVec(t, "synthetic/v2_pay_notify_md5_extra_fields.xml")
	if _, ok := f["some_future_field"]; !ok {
		t.Fatal("vector lacks some_future_field")
	}
	g := copyFields(f)
	delete(g, "some_future_field")
	if err := VerifyV2(g, docKey); !errors.Is(err, ErrBadSignature) {
		t.Fatalf("without the future field: %v, want ErrBadSignature", err)
	}
	f["brand_new_field"] = "1"
	if err := VerifyV2(f, docKey); !errors.Is(err, ErrBadSignature) {
		t.Fatalf("with an added field: %v, want ErrBadSignature", err)
	}
}

func TestVerifyV2EmptyFieldsSkipped(t *testing.T) {
	f := docFields()
	f["sign"] = docMD5
	f["attach"] = ""
	f["device_info2"] = ""
	if err := VerifyV2(f, docKey); err != nil {
		t.Fatal(err)
	}
}

func TestVerifyV2SignTypeFromMessage(t *testing.T) {
	hmacSigned := func(signType string) Fields {
		f := docFields()
		f["sign_type"] = "HMAC-SHA256"
		s, err := SignV2(f, docKey, signType)
		if err != nil {
			t.Fatal(err)
		}
		f["sign"] = s
		return f
	}
	if err := VerifyV2(hmacSigned("HMAC-SHA256"), docKey); err != nil {
		t.Errorf("HMAC message: %v", err)
	}
	// sign_type says HMAC, value computed with MD5 (over the same fields).
	if err := VerifyV2(hmacSigned("MD5"), docKey); !errors.Is(err, ErrBadSignature) {
		t.Errorf("HMAC label, MD5 value: %v, want ErrBadSignature", err)
	}
	// No sign_type: MD5, whatever the merchant configured.
	f := docFields()
	f["sign"] = docMD5
	if err := VerifyV2(f, docKey); err != nil {
		t.Errorf("no sign_type, MD5 value: %v", err)
	}
	f["sign"] = docHMAC
	if err := VerifyV2(f, docKey); !errors.Is(err, ErrBadSignature) {
		t.Errorf("no sign_type, HMAC value: %v, want ErrBadSignature", err)
	}
	// Empty sign_type counts as absent.
	f["sign"], f["sign_type"] = docMD5, ""
	if err := VerifyV2(f, docKey); err != nil {
		t.Errorf("empty sign_type: %v", err)
	}
	for _, st := range []string{"SHA256", "md5", "HMAC-SHA1", "RSA"} {
		f["sign_type"] = st
		if err := VerifyV2(f, docKey); !errors.Is(err, ErrUnsupportedSignType) {
			t.Errorf("sign_type %q: %v, want ErrUnsupportedSignType", st, err)
		}
	}
}

func TestVerifyV2TamperAnyField(t *testing.T) {
	for _, file := range []string{"synthetic/v2_pay_notify_md5.xml", "synthetic/v2_pay_notify_hmac_sha256.xml"} {
		f := parseVec(t, file)
		keys := slices.Sorted(func(yield func(string) bool) {
			for k := range f {
				if !yield(k) {
					return
				}
			}
		})
		for _, k := range keys {
			g := copyFields(f)
			g[k] += "0"
			if err := VerifyV2(g, docKey); err == nil {
				t.Errorf("%s: tampering %s still verifies", file, k)
			}
		}
	}
}

func TestVerifyV2SignCase(t *testing.T) {
	f := docFields()
	f["sign"] = "9a0a8659f005d6984697e2ca0a9cf3b7"
	if err := VerifyV2(f, docKey); !errors.Is(err, ErrBadSignature) {
		t.Fatalf("lower-case sign: %v, want ErrBadSignature (WeChat signs upper-case)", err)
	}
	f["sign"] = ""
	if err := VerifyV2(f, docKey); !errors.Is(err, ErrMissingSignature) {
		t.Fatalf("empty sign: %v", err)
	}
	f["sign"] = docMD5
	if err := VerifyV2(f, ""); !errors.Is(err, ErrBadKey) {
		t.Fatalf("empty key: %v", err)
	}
}
