package wechatpay

import (
	"crypto/aes"
	"encoding/base64"
	"errors"
	"maps"
	"slices"
	"strings"
	"testing"
)

// v2Seeds are the v2 bodies the fuzzers start from.
func v2Seeds(t testing.TB) [][]byte {
	var seeds [][]byte
	for _, rel := range []string{
		"synthetic/v2_pay_notify_md5.xml", "synthetic/v2_pay_notify_hmac_sha256.xml",
		"synthetic/v2_pay_notify_md5_extra_fields.xml", "synthetic/v2_pay_notify_return_code_fail.xml",
		"synthetic/neg_v2_pay_notify_xxe.xml", "v2_pay_notify_easywechat_min.xml",
		"v2_refund_notify_wechatpy.xml", "samples_without_key/v2_pay_notify_official_doc_sample.xml",
	} {
		seeds = append(seeds, vec(t, rel))
	}
	return append(seeds,
		[]byte(`<xml><a><![CDATA[x]]>y&amp;&#xD;</a><b/></xml>`),
		[]byte(`<?xml version="1.0"?><xml>`+"\n"+`<a> 1 </a></xml>`+"\n"),
		[]byte(`<xml><a>&lt;!DOCTYPE</a><b>]]&gt;</b></xml>`),
		[]byte(`<xml><a><b>1</b></a></xml>`),
	)
}

// FuzzParseV2: ParseV2 never panics, fails only with its sentinels, and
// whatever it accepts re-encodes to a document that parses to the same
// fields and re-encodes to the same bytes.
func FuzzParseV2(f *testing.F) {
	for _, s := range v2Seeds(f) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		fields, err := ParseV2(body)
		if err != nil {
			if !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrForbiddenDTD) && !errors.Is(err, ErrDuplicateField) {
				t.Fatalf("unexpected error kind: %v", err)
			}
			return
		}
		enc, err := EncodeV2(fields)
		if err != nil {
			t.Fatalf("EncodeV2 of parsed fields: %v", err)
		}
		if len(enc) > MaxV2BodySize {
			return
		}
		again, err := ParseV2(enc)
		if err != nil {
			t.Fatalf("re-parse: %v\n%q", err, enc)
		}
		if !maps.Equal(fields, again) {
			t.Fatalf("re-parse changed fields:\n%q\n%q", fields, again)
		}
		enc2, err := EncodeV2(again)
		if err != nil || string(enc2) != string(enc) {
			t.Fatalf("re-encode unstable: %v\n%q\n%q", err, enc, enc2)
		}
	})
}

// FuzzVerifyV2: VerifyV2 never panics on any parsed message; once the
// message is signed it verifies, and changing any field's value, or adding
// a non-empty field, makes it fail.
func FuzzVerifyV2(f *testing.F) {
	for i, s := range v2Seeds(f) {
		f.Add(s, docKey, uint(i))
	}
	f.Fuzz(func(t *testing.T, body []byte, key string, pick uint) {
		fields, err := ParseV2(body)
		if err != nil {
			return
		}
		_ = VerifyV2(fields, key) // must not panic
		if key == "" {
			key = docKey
		}
		switch fields["sign_type"] {
		case "", SignTypeMD5, SignTypeHMACSHA256:
		default:
			if err := VerifyV2(fields, key); !errors.Is(err, ErrUnsupportedSignType) && !errors.Is(err, ErrMissingSignature) {
				t.Fatalf("sign_type %q: %v", fields["sign_type"], err)
			}
			fields["sign_type"] = SignTypeMD5
		}
		sign, err := SignV2(fields, key, fields["sign_type"])
		if err != nil {
			t.Fatal(err)
		}
		fields["sign"] = sign
		if err := VerifyV2(fields, key); err != nil {
			t.Fatalf("freshly signed message fails: %v", err)
		}
		keys := slices.Sorted(maps.Keys(fields))
		k := keys[pick%uint(len(keys))]
		tampered := maps.Clone(fields)
		tampered[k] += "0"
		if err := VerifyV2(tampered, key); err == nil {
			t.Fatalf("tampering %s still verifies", k)
		}
		added := maps.Clone(fields)
		added["zz_added_"+strings.Repeat("x", int(pick%3))] = "1"
		if err := VerifyV2(added, key); err == nil {
			t.Fatal("adding a field still verifies")
		}
	})
}

// FuzzParseV3Envelope: never panics; what it accepts has the checked shape
// and DecryptV3Resource on it never panics.
func FuzzParseV3Envelope(f *testing.F) {
	for _, rel := range []string{
		"synthetic/v3_transaction_success_cert/body.json", "synthetic/v3_refund_success_cert/body.json",
		"synthetic/neg_v3_reserialized_body/body.json", "v3_wechatpay_go_notify/body.json",
		"v3_yansongda_callback/body.json", "samples_without_key/v3_transaction_notify_real_rust_test.json",
	} {
		f.Add(vec(f, rel))
	}
	f.Add([]byte(`{"id":"x","create_time":"2025-01-01T00:00:00Z","event_type":"E","resource":{"algorithm":"AEAD_AES_256_GCM","ciphertext":"AAAA","nonce":"123456789012"}}`))
	key := []byte(synthV3Key)
	f.Fuzz(func(t *testing.T, body []byte) {
		env, err := ParseV3Envelope(body)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("unexpected error kind: %v", err)
			}
			return
		}
		if env.Resource.Algorithm != AlgorithmAESGCM || len(env.Resource.Nonce) != 12 || env.ID == "" || env.EventType == "" {
			t.Fatalf("accepted envelope lacks checked fields: %+v", env)
		}
		plain, err := DecryptV3Resource(env, key)
		if err != nil && !errors.Is(err, ErrUndecryptable) {
			t.Fatalf("unexpected error kind: %v", err)
		}
		if err == nil {
			_, _ = DecodeV3Transaction(plain)
			_, _ = DecodeV3Refund(plain)
		}
	})
}

// FuzzDecryptV2RefundReqInfo: any req_info string fails only with
// ErrUndecryptable; and any plaintext encrypted under the key decrypts to
// exactly what the <root> parser makes of it (so malformed plaintext is
// refused, never half-read).
func FuzzDecryptV2RefundReqInfo(f *testing.F) {
	f.Add(strings.TrimSpace(string(vec(f, "v2_refund_reqinfo_gopay.txt"))), []byte("<root><a>1</a></root>"))
	n, err := ParseV2RefundNotify(vec(f, "v2_refund_notify_wechatpy.xml"))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(n.ReqInfo, []byte(`<root><refund_fee>1</refund_fee><x><![CDATA[]]></x></root>`))
	f.Add("AAAA", []byte(`<!DOCTYPE root><root/>`))
	f.Add("", []byte(`<root><a><b/></a></root>`))
	block, err := aes.NewCipher(refundKey(gopayKey))
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, reqInfo string, plain []byte) {
		if fields, err := DecryptV2RefundReqInfo(reqInfo, gopayKey); err != nil {
			if !errors.Is(err, ErrUndecryptable) {
				t.Fatalf("unexpected error kind: %v", err)
			}
		} else if fields == nil {
			t.Fatal("nil fields without error")
		}
		// Encrypt plain as WeChat would and check the decryption.
		pad := aes.BlockSize - len(plain)%aes.BlockSize
		buf := append(slices.Clone(plain), make([]byte, pad)...)
		for i := len(plain); i < len(buf); i++ {
			buf[i] = byte(pad)
		}
		for i := 0; i < len(buf); i += aes.BlockSize {
			block.Encrypt(buf[i:i+aes.BlockSize], buf[i:i+aes.BlockSize])
		}
		got, err := DecryptV2RefundReqInfo(base64.StdEncoding.EncodeToString(buf), gopayKey)
		want, werr := parseFlat(plain, "root")
		if (err == nil) != (werr == nil) {
			t.Fatalf("decrypt err %v, parse err %v", err, werr)
		}
		if err != nil && !errors.Is(err, ErrUndecryptable) {
			t.Fatalf("unexpected error kind: %v", err)
		}
		if err == nil && !maps.Equal(got, want) {
			t.Fatalf("decrypted %q, parsed %q", got, want)
		}
	})
}
