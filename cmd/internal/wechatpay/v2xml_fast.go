package wechatpay

import (
	"strings"
	"unicode/utf8"
)

// parseFlatFast is the fast path of parseFlat for the shape WeChat actually
// sends: optional leading whitespace, <root>, then fields written as
// <name>plain text</name> or <name><![CDATA[text]]></name> separated by
// optional whitespace, </root>, optional trailing whitespace. It handles no
// XML feature beyond that: on anything else (a declaration, an entity or
// character reference, a carriage return, an empty-element tag, whitespace
// inside a tag, a comment, a duplicate field, text mixing CDATA and plain
// characters, a character XML forbids, "]]>" in plain text...) it returns
// ok false and parseFlat runs the full encoding/xml path, which accepts or
// refuses it with its usual error.
//
// So it never widens what ParseV2 accepts: whenever it returns ok, the
// encoding/xml path would have returned the same Fields and no error (the
// size, DTD and UTF-8 checks of precheckFlat run before either path). The
// differential tests and FuzzParseFlatFast hold it to that. It exists
// because encoding/xml costs about 10x more and v2 parsing was the largest
// cost of acknowledging a duplicate notification.
func parseFlatFast(body []byte, root string) (Fields, bool) {
	// One string for the whole body; field values are substrings of it.
	s := string(body)
	i := skipSpace(s, 0)
	// <root>
	if !hasAt(s, i, "<") || !hasAt(s, i+1, root) || !hasAt(s, i+1+len(root), ">") {
		return nil, false
	}
	i += len(root) + 2
	fields := make(Fields, 24)
	for {
		i = skipSpace(s, i)
		if !hasAt(s, i, "<") {
			return nil, false // text in the root, or EOF
		}
		if hasAt(s, i+1, "/") {
			break // the root's end tag, checked below
		}
		// <name>
		j := i + 1
		for j < len(s) && isNameByte(s[j], j > i+1) {
			j++
		}
		if j == i+1 || !hasAt(s, j, ">") {
			return nil, false
		}
		name := s[i+1 : j]
		if _, dup := fields[name]; dup {
			return nil, false
		}
		i = j + 1
		// the value: one CDATA section or plain characters
		var val string
		if hasAt(s, i, "<![CDATA[") {
			start := i + len("<![CDATA[")
			end := indexFrom(s, start, "]]>")
			if end < 0 {
				return nil, false
			}
			val = s[start:end]
			if !plainChars(val, true) {
				return nil, false
			}
			i = end + len("]]>")
		} else {
			end := indexFrom(s, i, "<")
			if end < 0 {
				return nil, false
			}
			val = s[i:end]
			if !plainChars(val, false) {
				return nil, false
			}
			i = end
		}
		// </name>
		if !hasAt(s, i, "</") || !hasAt(s, i+2, name) || !hasAt(s, i+2+len(name), ">") {
			return nil, false
		}
		i += len(name) + 3
		fields[name] = val
	}
	// </root>, then only whitespace
	if !hasAt(s, i+2, root) || !hasAt(s, i+2+len(root), ">") {
		return nil, false
	}
	if i = skipSpace(s, i+len(root)+3); i != len(s) {
		return nil, false
	}
	return fields, true
}

// skipSpace skips the whitespace the fast path allows between elements:
// space, tab and line feed (a carriage return goes to the full parser,
// which normalises line ends).
func skipSpace(s string, i int) int {
	for i < len(s) && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n') {
		i++
	}
	return i
}

func hasAt(s string, i int, p string) bool {
	return i <= len(s) && len(s)-i >= len(p) && s[i:i+len(p)] == p
}

func indexFrom(s string, i int, sub string) int {
	k := strings.Index(s[i:], sub)
	if k < 0 {
		return -1
	}
	return i + k
}

// plainChars reports whether v can be taken verbatim: only characters XML
// allows, no carriage return (XML would rewrite it), and outside CDATA no
// '&' (a reference to decode) and no "]]>" (an error in XML text). Plain
// text holds no '<': the caller cuts it at the first one.
func plainChars(v string, cdata bool) bool {
	for k := 0; k < len(v); k++ {
		c := v[k]
		switch {
		case c >= 0x80:
			r, size := utf8.DecodeRuneInString(v[k:])
			if !isXMLChar(r) || r == utf8.RuneError && size == 1 {
				return false
			}
			k += size - 1
		case c < 0x20:
			if c != '\t' && c != '\n' {
				return false // includes '\r'
			}
		case c == '&':
			if !cdata {
				return false
			}
		case c == '>':
			if !cdata && k >= 2 && v[k-1] == ']' && v[k-2] == ']' {
				return false
			}
		}
	}
	return true
}
