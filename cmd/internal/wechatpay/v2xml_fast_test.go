package wechatpay

import (
	"maps"
	"strings"
	"testing"
)

// checkFastPath holds parseFlatFast to its contract: whenever it takes a
// document that passed parseFlat's pre-checks, encoding/xml accepts it too,
// with the same fields.
func checkFastPath(t *testing.T, body []byte, root string) (taken bool) {
	t.Helper()
	if precheckFlat(body) != nil {
		return false // parseFlat refuses these before either path
	}
	fast, ok := parseFlatFast(body, root)
	if !ok {
		return false
	}
	slow, err := parseFlatXML(body, root)
	if err != nil {
		t.Fatalf("fast path accepted what encoding/xml refuses (%v):\n%q", err, body)
	}
	if !maps.Equal(fast, slow) {
		t.Fatalf("fast path and encoding/xml disagree on\n%q:\nfast %q\nxml  %q", body, fast, slow)
	}
	return true
}

// fastPathCases: documents near the edge of what the fast path takes.
var fastPathCases = []struct {
	body  string
	taken bool // the fast path must take it (else it may or may not)
}{
	{`<xml><a>1</a><b><![CDATA[x y]]></b></xml>`, true},
	{"\n <xml>\n\t<a>1</a>\n<b></b> <c><![CDATA[]]></c>\n</xml>\n", true},
	{`<xml></xml>`, true},
	{`<xml><xml>1</xml></xml>`, true},
	{`<xml><_a1>x&gt;</_a1></xml>`, false},
	{`<xml><a><![CDATA[a<b&c>d]]]></a></xml>`, true},
	{`<xml><a><![CDATA[中文 支付]]></a><b>中文</b></xml>`, true},
	{`<xml><a>x]]>y</a></xml>`, false},
	{`<xml><a>x]]y>z</a></xml>`, true},
	{`<xml><a>]></a></xml>`, true},
	{`<xml><a>x&amp;y</a></xml>`, false},
	{"<xml><a>x\r\ny</a></xml>", false},
	{"<xml>\r\n<a>1</a></xml>", false},
	{"<xml><a>\x01</a></xml>", false},
	{"<xml><a><![CDATA[\x01]]></a></xml>", false},
	{"<xml><a>\uFFFE</a></xml>", false},
	{"<xml><a><![CDATA[\uFFFF]]></a></xml>", false},
	{"<xml><a>\U0001F600\uFFFD</a></xml>", true},
	{`<xml><a>1</a><a>2</a></xml>`, false},
	{`<xml><a/></xml>`, false},
	{`<xml><a >1</a></xml>`, false},
	{`<xml><a>1</a ></xml>`, false},
	{`<xml><a>1</b></xml>`, false},
	{`<xml><a>1</ab></xml>`, false},
	{`<xml><ab>1</a></xml>`, false},
	{`<xml><a><![CDATA[x]]>y</a></xml>`, false},
	{`<xml><a>y<![CDATA[x]]></a></xml>`, false},
	{`<xml><a> <![CDATA[x]]></a></xml>`, false},
	{`<xml><a><![CDATA[x]]><![CDATA[y]]></a></xml>`, false},
	{`<xml><a><![CDATA[x]]></a>`, false},
	{`<xml><a><![CDATA[x</a></xml>`, false},
	{`<xml><a>1</a></xml><b/>`, false},
	{`<xml><a>1</a></xml>x`, false},
	{`<xml><a>1</a></xml> <!-- -->`, false},
	{`<xml>x<a>1</a></xml>`, false},
	{`<xml><![CDATA[x]]><a>1</a></xml>`, false},
	{`<xml><!-- c --><a>1</a></xml>`, false},
	{`<?xml version="1.0"?><xml><a>1</a></xml>`, false},
	{`<xmlx><a>1</a></xmlx>`, false},
	{`<xml><a>1</a></xmlx>`, false},
	{`<xml><a>1</a></xm>`, false},
	{`<xml><a>1</a></`, false},
	{`<xml><a>1</a>`, false},
	{`<xml><a>1`, false},
	{`<xml><a`, false},
	{`<xml`, false},
	{`<`, false},
	{``, false},
	{`<xml><1a>1</1a></xml>`, false},
	{`<xml><a-b>1</a-b></xml>`, false},
	{`<xml><p:a>1</p:a></xml>`, false},
	{`<xml><a x="1">1</a></xml>`, false},
	{`<xml x="1"><a>1</a></xml>`, false},
	{"\ufeff<xml><a>1</a></xml>", false},
	{`<xml><a><b>1</b></a></xml>`, false},
	{`<XML><a>1</a></XML>`, false},
}

func TestParseFlatFastDifferential(t *testing.T) {
	for _, c := range fastPathCases {
		taken := checkFastPath(t, []byte(c.body), "xml")
		if c.taken && !taken {
			t.Errorf("fast path did not take %q", c.body)
		}
		// Whatever path decides, ParseV2 gives the same answer as the
		// encoding/xml path alone.
		got, gerr := ParseV2([]byte(c.body))
		want, werr := parseFlatXMLChecked([]byte(c.body), "xml")
		if (gerr == nil) != (werr == nil) || gerr != nil && gerr.Error() != werr.Error() || !maps.Equal(got, want) {
			t.Errorf("%q: ParseV2 = %q, %v; encoding/xml path = %q, %v", c.body, got, gerr, want, werr)
		}
	}
	// The refund req_info root.
	if !checkFastPath(t, []byte(`<root><out_refund_no><![CDATA[R1]]></out_refund_no><refund_fee>100</refund_fee></root>`), "root") {
		t.Error("fast path did not take a req_info document")
	}
	if checkFastPath(t, []byte(`<xml><a>1</a></xml>`), "root") {
		t.Error("fast path took the wrong root")
	}
}

// parseFlatXMLChecked is parseFlat with only the encoding/xml path.
func parseFlatXMLChecked(body []byte, root string) (Fields, error) {
	if err := precheckFlat(body); err != nil {
		return nil, err // refused before either path
	}
	return parseFlatXML(body, root)
}

// TestParseFlatFastTakesRealMessages: every test vector, as WeChat's
// encoder writes it (EncodeV2), takes the fast path, and the vectors
// themselves parse to the same fields either way.
func TestParseFlatFastTakesRealMessages(t *testing.T) {
	for _, body := range v2Seeds(t) {
		checkFastPath(t, body, "xml")
		f, err := ParseV2(body)
		if err != nil {
			continue
		}
		enc, err := EncodeV2(f)
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(string(enc), "&") || strings.Contains(string(enc), "\r") {
			continue // escaped text: the full parser's job
		}
		if !checkFastPath(t, enc, "xml") {
			t.Errorf("fast path did not take the encoded message\n%s", enc)
		}
	}
}

// FuzzParseFlatFast: the fast path never takes a document encoding/xml
// would refuse or read differently.
func FuzzParseFlatFast(f *testing.F) {
	for _, s := range v2Seeds(f) {
		f.Add(s)
	}
	for _, c := range fastPathCases {
		f.Add([]byte(c.body))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		checkFastPath(t, body, "xml")
	})
}

func BenchmarkParseV2(b *testing.B) {
	body := vec(b, "synthetic/v2_pay_notify_md5.xml")
	f, err := ParseV2(body)
	if err != nil {
		b.Fatal(err)
	}
	enc, _ := EncodeV2(f)
	b.Run("fast", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := ParseV2(enc); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("encoding-xml", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := parseFlatXML(enc, "xml"); err != nil {
				b.Fatal(err)
			}
		}
	})
}
