package wechatpay

import (
	"bytes"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"unicode/utf8"
)

// Fields is a flat v2 message: element name to text, exactly as received
// (CDATA and plain text alike, never trimmed). Signatures are computed over
// Fields, never over a struct, so fields unknown to this package still count.
type Fields map[string]string

// MaxV2BodySize is the largest body ParseV2 accepts. The HTTP layer limits
// notification bodies to far less (64 KiB); this cap only keeps the parser
// itself from being used to burn memory. gopay allows 3 MB; real
// notifications are under 2 KiB.
const MaxV2BodySize = 1 << 20

// ParseV2 parses a v2 notification body: a single <xml> root whose children
// are text-only fields. It refuses, before any parsing, bodies holding
// "<!DOCTYPE" or "<!ENTITY" in any letter case (ErrForbiddenDTD), even inside
// CDATA. It then refuses with ErrMalformed: invalid UTF-8, bodies over
// MaxV2BodySize, a root other than <xml>, nested elements (depth > 2),
// attributes, namespaces, comments, processing instructions other than a
// leading <?xml ...?>, text directly inside the root, and anything but
// whitespace after the root. A field that occurs twice is ErrDuplicateField
// (one could be verified and the other used). Field names are limited to
// ASCII letters, digits and '_' (all of WeChat's are snake_case). Values keep
// every byte; XML's own line-end normalisation (CR LF to LF) applies.
func ParseV2(body []byte) (Fields, error) {
	return parseFlat(body, "xml")
}

// parseFlat parses a flat document whose root element is named root.
func parseFlat(body []byte, root string) (Fields, error) {
	if err := precheckFlat(body); err != nil {
		return nil, err
	}
	if f, ok := parseFlatFast(body, root); ok {
		return f, nil
	}
	return parseFlatXML(body, root)
}

// precheckFlat holds the checks that run before either parser path (and
// that both rely on): the size cap, no DTD, valid UTF-8.
func precheckFlat(body []byte) error {
	if len(body) > MaxV2BodySize {
		return fmt.Errorf("%w: body of %d bytes exceeds %d", ErrMalformed, len(body), MaxV2BodySize)
	}
	if hasDTD(body) {
		return ErrForbiddenDTD
	}
	if !utf8.Valid(body) {
		return fmt.Errorf("%w: invalid UTF-8", ErrMalformed)
	}
	return nil
}

// parseFlatXML is parseFlat's full path, on encoding/xml: it decides every
// document the fast path does not take, accepting or refusing it.
func parseFlatXML(body []byte, root string) (Fields, error) {
	d := xml.NewDecoder(bytes.NewReader(body))
	d.Strict = true
	fields := Fields{}
	var (
		depth    int // 0 outside the root, 1 inside it, 2 inside a field
		seenRoot bool
		first    = true
		name     string
		val      strings.Builder
	)
	for ; ; first = false {
		tok, err := d.Token()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrMalformed, err)
		}
		switch t := tok.(type) {
		case xml.ProcInst:
			if !first || t.Target != "xml" {
				return nil, fmt.Errorf("%w: processing instruction", ErrMalformed)
			}
		case xml.Directive:
			return nil, fmt.Errorf("%w: directive", ErrMalformed)
		case xml.Comment:
			return nil, fmt.Errorf("%w: comment", ErrMalformed)
		case xml.StartElement:
			if len(t.Attr) > 0 {
				return nil, fmt.Errorf("%w: attribute on <%s>", ErrMalformed, t.Name.Local)
			}
			if t.Name.Space != "" || !validFieldName(t.Name.Local) {
				return nil, fmt.Errorf("%w: element name not allowed", ErrMalformed)
			}
			switch depth {
			case 0:
				if seenRoot {
					return nil, fmt.Errorf("%w: content after the root element", ErrMalformed)
				}
				if t.Name.Local != root {
					return nil, fmt.Errorf("%w: root element <%s>, want <%s>", ErrMalformed, t.Name.Local, root)
				}
				seenRoot = true
			case 1:
				name = t.Name.Local
				if _, dup := fields[name]; dup {
					return nil, fmt.Errorf("%w: <%s>", ErrDuplicateField, name)
				}
				val.Reset()
			default:
				return nil, fmt.Errorf("%w: nested element <%s> in <%s>", ErrMalformed, t.Name.Local, name)
			}
			depth++
		case xml.EndElement:
			depth--
			if depth == 1 {
				fields[name] = val.String()
			}
		case xml.CharData:
			if depth == 2 {
				val.Write(t)
			} else if !isXMLSpace(t) {
				if depth == 0 && seenRoot {
					return nil, fmt.Errorf("%w: content after the root element", ErrMalformed)
				}
				return nil, fmt.Errorf("%w: text outside a field", ErrMalformed)
			}
		}
	}
	if !seenRoot || depth != 0 {
		return nil, fmt.Errorf("%w: no complete <%s> element", ErrMalformed, root)
	}
	return fields, nil
}

// hasDTD reports whether b contains "<!DOCTYPE" or "<!ENTITY" in any case.
func hasDTD(b []byte) bool {
	for i := 0; ; {
		j := bytes.Index(b[i:], []byte("<!"))
		if j < 0 {
			return false
		}
		rest := b[i+j+2:]
		if hasPrefixFold(rest, "doctype") || hasPrefixFold(rest, "entity") {
			return true
		}
		i += j + 2
	}
}

func hasPrefixFold(b []byte, prefix string) bool {
	return len(b) >= len(prefix) && bytes.EqualFold(b[:len(prefix)], []byte(prefix))
}

func isXMLSpace(b []byte) bool {
	for _, c := range b {
		if c != ' ' && c != '\t' && c != '\r' && c != '\n' {
			return false
		}
	}
	return true
}

// validFieldName: ASCII letter or '_' first, then letters, digits, '_'.
func validFieldName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !isNameByte(s[i], i > 0) {
			return false
		}
	}
	return true
}

// isNameByte reports whether c may stand in a field name (validFieldName),
// a digit only when notFirst. The fast path scans names with it too.
func isNameByte(c byte, notFirst bool) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '_' || notFirst && c >= '0' && c <= '9'
}

// isXMLChar reports whether r may appear in an XML 1.0 document.
func isXMLChar(r rune) bool {
	return r == 0x09 || r == 0x0A || r == 0x0D ||
		r >= 0x20 && r <= 0xD7FF ||
		r >= 0xE000 && r <= 0xFFFD ||
		r >= 0x10000 && r <= 0x10FFFF
}

// EncodeV2 renders f as a v2 message the way WeChat does: <xml>, one element
// per field, all-digit values as plain text and other values in CDATA
// (escaped text when the value holds "]]>" or a carriage return, which CDATA
// cannot carry unchanged, or "<!DOCTYPE"/"<!ENTITY", which ParseV2 would
// refuse). Fields are written in byte order with sign last,
// so the output is deterministic. ParseV2 of the output gives f back. It
// fails with ErrMalformed on a field name or value XML cannot carry.
func EncodeV2(f Fields) ([]byte, error) {
	return encodeFlat(f, "xml")
}

func encodeFlat(f Fields, root string) ([]byte, error) {
	keys := make([]string, 0, len(f))
	for k, v := range f {
		if !validFieldName(k) {
			return nil, fmt.Errorf("%w: field name %q", ErrMalformed, k)
		}
		if !utf8.ValidString(v) || strings.ContainsFunc(v, func(r rune) bool { return !isXMLChar(r) }) {
			return nil, fmt.Errorf("%w: field %s holds characters XML cannot carry", ErrMalformed, k)
		}
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b string) int {
		switch {
		case a == b:
			return 0
		case a == "sign":
			return 1
		case b == "sign":
			return -1
		}
		return strings.Compare(a, b)
	})
	var b bytes.Buffer
	b.WriteString("<" + root + ">")
	for _, k := range keys {
		v := f[k]
		b.WriteString("<" + k + ">")
		switch {
		case v != "" && isDigits(v):
			b.WriteString(v)
		case !strings.Contains(v, "]]>") && !strings.ContainsRune(v, '\r') && !hasDTD([]byte(v)):
			b.WriteString("<![CDATA[" + v + "]]>")
		default:
			_ = xml.EscapeText(&b, []byte(v)) // writes to a bytes.Buffer: cannot fail
		}
		b.WriteString("</" + k + ">")
	}
	b.WriteString("</" + root + ">")
	return b.Bytes(), nil
}

func isDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}
