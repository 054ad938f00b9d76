package wechatpay

import (
	"bytes"
	"errors"
	"maps"
	"strings"
	"testing"
	"time"
)

func TestParseV2Refusals(t *testing.T) {
	big := "<xml>" + strings.Repeat("<a>1</a>", MaxV2BodySize/8) + "</xml>"
	tests := []struct {
		name string
		body string
		want error
	}{
		{"doctype", `<!DOCTYPE xml><xml><a>1</a></xml>`, ErrForbiddenDTD},
		{"doctype_lowercase", `<!doctype xml><xml><a>1</a></xml>`, ErrForbiddenDTD},
		{"entity_mixed_case", `<xml><a>1</a></xml><!EnTiTy x "y">`, ErrForbiddenDTD},
		{"doctype_inside_cdata", `<xml><a><![CDATA[<!DOCTYPE]]></a></xml>`, ErrForbiddenDTD},
		{"xxe_vector", "", ErrForbiddenDTD}, // body read from neg_v2_pay_notify_xxe.xml below
		{"wrong_root", `<root><a>1</a></root>`, ErrMalformed},
		{"nested_element", `<xml><a><b>1</b></a></xml>`, ErrMalformed},
		{"nested_deep", "<xml><a>" + strings.Repeat("<b>", 10000) + "</xml>", ErrMalformed},
		{"duplicate_plain", `<xml><a>1</a><a>1</a></xml>`, ErrDuplicateField},
		{"duplicate_cdata_and_plain", `<xml><total_fee><![CDATA[100]]></total_fee><total_fee>1</total_fee></xml>`, ErrDuplicateField},
		{"duplicate_empty", `<xml><a/><a></a></xml>`, ErrDuplicateField},
		{"trailing_element", `<xml><a>1</a></xml><xml><a>2</a></xml>`, ErrMalformed},
		{"trailing_text", `<xml><a>1</a></xml>garbage`, ErrMalformed},
		{"trailing_comment", `<xml><a>1</a></xml><!-- c -->`, ErrMalformed},
		{"trailing_broken_tag", `<xml><a>1</a></xml><`, ErrMalformed},
		{"invalid_utf8", "<xml><a>\xff\xfe</a></xml>", ErrMalformed},
		{"invalid_utf8_in_name", "<xml><a\xc3>1</a\xc3></xml>", ErrMalformed},
		{"control_character", "<xml><a>\x01</a></xml>", ErrMalformed},
		{"attribute_on_field", `<xml><a x="1">1</a></xml>`, ErrMalformed},
		{"attribute_on_root", `<xml x="1"><a>1</a></xml>`, ErrMalformed},
		{"namespace", `<xml><p:a xmlns:p="urn:x">1</p:a></xml>`, ErrMalformed},
		{"prefixed_name", `<xml><p:a>1</p:a></xml>`, ErrMalformed},
		{"comment_inside", `<xml><!-- c --><a>1</a></xml>`, ErrMalformed},
		{"processing_instruction", `<xml><?php x?><a>1</a></xml>`, ErrMalformed},
		{"declaration_not_first", ` <?xml version="1.0"?><xml><a>1</a></xml>`, ErrMalformed},
		{"declared_other_charset", `<?xml version="1.0" encoding="GBK"?><xml><a>1</a></xml>`, ErrMalformed},
		{"text_in_root", `<xml>hello<a>1</a></xml>`, ErrMalformed},
		{"cdata_in_root", `<xml><![CDATA[x]]><a>1</a></xml>`, ErrMalformed},
		{"unclosed_root", `<xml><a>1</a>`, ErrMalformed},
		{"mismatched_tag", `<xml><a>1</b></xml>`, ErrMalformed},
		{"undefined_entity", `<xml><a>&x;</a></xml>`, ErrMalformed},
		{"empty", ``, ErrMalformed},
		{"whitespace_only", " \n", ErrMalformed},
		{"not_xml", `return_code=SUCCESS`, ErrMalformed},
		{"bom", "\ufeff<xml><a>1</a></xml>", ErrMalformed},
		{"too_large", big, ErrMalformed},
		{"name_with_dash", `<xml><a-b>1</a-b></xml>`, ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			body := []byte(tt.body)
			if tt.name == "xxe_vector" {
				body = vec(t, "synthetic/neg_v2_pay_notify_xxe.xml")
			}
			f, err := ParseV2(body)
			if !errors.Is(err, tt.want) {
				t.Fatalf("ParseV2 = %v, %v; want %v", f, err, tt.want)
			}
		})
	}
}

// The official v2 doc sample repeats <coupon_fee>: a doc error, refused.
func TestParseV2OfficialDocSampleDuplicate(t *testing.T) {
	_, err := ParseV2(vec(t, "samples_without_key/v2_pay_notify_official_doc_sample.xml"))
	if !errors.Is(err, ErrDuplicateField) || !strings.Contains(err.Error(), "coupon_fee") {
		t.Fatalf("err = %v, want ErrDuplicateField naming coupon_fee", err)
	}
}

func TestParseV2Accepts(t *testing.T) {
	tests := []struct {
		name string
		body string
		want Fields
	}{
		{"cdata_and_plain_alike", `<xml><a><![CDATA[100]]></a><b>100</b></xml>`, Fields{"a": "100", "b": "100"}},
		{"never_trims", "<xml><a> x </a><b><![CDATA[ y\n]]></b></xml>", Fields{"a": " x ", "b": " y\n"}},
		{"empty_values", `<xml><a></a><b/><c><![CDATA[]]></c></xml>`, Fields{"a": "", "b": "", "c": ""}},
		{"whitespace_between_fields", "<xml>\n  <a>1</a>\n\t<b>2</b>\n</xml>\n", Fields{"a": "1", "b": "2"}},
		{"declaration", `<?xml version="1.0" encoding="UTF-8"?><xml><a>1</a></xml>`, Fields{"a": "1"}},
		{"predefined_entities", `<xml><a>&lt;&amp;&gt;&#x4e2d;</a></xml>`, Fields{"a": "<&>中"}},
		{"mixed_cdata_and_text", `<xml><a>x<![CDATA[<y>]]>z</a></xml>`, Fields{"a": "x<y>z"}},
		{"chinese", `<xml><attach><![CDATA[支付测试]]></attach></xml>`, Fields{"attach": "支付测试"}},
		{"crlf_normalised_by_xml", "<xml><a>1\r\n2</a></xml>", Fields{"a": "1\n2"}},
		{"carriage_return_by_reference", "<xml><a>1&#xD;2</a></xml>", Fields{"a": "1\r2"}},
		{"field_named_xml", `<xml><xml>1</xml></xml>`, Fields{"xml": "1"}},
		{"no_fields", `<xml></xml>`, Fields{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, err := ParseV2([]byte(tt.body))
			if err != nil {
				t.Fatal(err)
			}
			if !maps.Equal(f, tt.want) {
				t.Fatalf("got %q, want %q", f, tt.want)
			}
		})
	}
}

func TestParseV2AllVectors(t *testing.T) {
	for _, rel := range []string{
		"synthetic/v2_pay_notify_md5.xml", "synthetic/v2_pay_notify_hmac_sha256.xml",
		"synthetic/v2_pay_notify_md5_empty_attach.xml", "synthetic/v2_pay_notify_md5_extra_fields.xml",
		"synthetic/v2_pay_notify_result_code_fail.xml", "synthetic/v2_pay_notify_return_code_fail.xml",
		"synthetic/v2_refund_notify_change.xml", "synthetic/neg_v2_pay_notify_tampered_total_fee.xml",
		"synthetic/neg_v2_pay_notify_valid_sign_amount_1fen.xml", "synthetic/neg_v2_pay_notify_forged_no_sign.xml",
		"synthetic/neg_v2_pay_notify_signtype_mismatch.xml", "v2_pay_notify_easywechat_min.xml",
		"v2_refund_notify_wechatpy.xml", "samples_without_key/v2_refund_notify_wxjava_test.xml",
	} {
		f := parseVec(t, rel)
		if len(f) == 0 {
			t.Errorf("%s: no fields", rel)
		}
	}
	f := parseVec(t, "synthetic/v2_pay_notify_md5.xml")
	if f["attach"] != "支付测试" || f["total_fee"] != "100" || f["sign"] != "DC89CC7476B438115613085A8FC1760C" {
		t.Errorf("md5 vector fields: %q", f)
	}
}

// Large but legal input is parsed in linear time and memory.
func TestParseV2LargeInput(t *testing.T) {
	var b bytes.Buffer
	b.WriteString("<xml>")
	n := 0
	for b.Len() < MaxV2BodySize-100 {
		b.WriteString("<f")
		b.WriteString(strings.Repeat("x", n%7))
		b.WriteString(itoa(n))
		b.WriteString(">v</f")
		b.WriteString(strings.Repeat("x", n%7))
		b.WriteString(itoa(n))
		b.WriteString(">")
		n++
	}
	b.WriteString("</xml>")
	start := time.Now()
	f, err := ParseV2(b.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	if len(f) != n {
		t.Fatalf("%d fields, want %d", len(f), n)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Fatalf("took %v", d)
	}
}

func itoa(n int) string {
	if n == 0 {
		return "0"
	}
	var d []byte
	for ; n > 0; n /= 10 {
		d = append([]byte{byte('0' + n%10)}, d...)
	}
	return string(d)
}

func TestEncodeV2RoundTrip(t *testing.T) {
	f := Fields{
		"total_fee": "100",
		"attach":    "支付 ]]> <tag> & \r\n\t end ",
		"empty":     "",
		"doctype":   "<!DOCTYPE x>",
		"plain":     "a<b",
		"sign":      "ABC",
		"z_last":    "1",
	}
	b, err := EncodeV2(f)
	if err != nil {
		t.Fatal(err)
	}
	got, err := ParseV2(b)
	if err != nil {
		t.Fatalf("ParseV2(EncodeV2) = %v\n%s", err, b)
	}
	if !maps.Equal(got, f) {
		t.Fatalf("round trip:\n got %q\nwant %q", got, f)
	}
	s := string(b)
	if !strings.Contains(s, "<total_fee>100</total_fee>") || !strings.Contains(s, "<plain><![CDATA[a<b]]></plain>") {
		t.Errorf("not WeChat style: %s", s)
	}
	if !strings.HasSuffix(s, "<sign><![CDATA[ABC]]></sign></xml>") {
		t.Errorf("sign not last: %s", s)
	}
	for _, bad := range []Fields{{"a-b": "1"}, {"": "1"}, {"a": "\x00"}, {"a": "\xff"}} {
		if _, err := EncodeV2(bad); !errors.Is(err, ErrMalformed) {
			t.Errorf("EncodeV2(%q) err = %v, want ErrMalformed", bad, err)
		}
	}
}
