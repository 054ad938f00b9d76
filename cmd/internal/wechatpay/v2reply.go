package wechatpay

import (
	"strings"
	"unicode/utf8"
)

// v2SuccessReply is the exact acknowledgement WeChat expects: compact, no
// XML declaration, no BOM, no trailing newline.
const v2SuccessReply = `<xml><return_code><![CDATA[SUCCESS]]></return_code><return_msg><![CDATA[OK]]></return_msg></xml>`

// V2MaxFailMsg is the longest return_msg V2Fail writes, in bytes (the
// field is String(128)).
const V2MaxFailMsg = 128

// V2Success returns the v2 acknowledgement body. Send it with HTTP 200 only
// once the notification is durably recorded (or was already).
func V2Success() []byte { return []byte(v2SuccessReply) }

// V2Fail returns a v2 FAIL reply, which asks WeChat to deliver again. msg is
// cut to V2MaxFailMsg bytes on a character boundary; characters XML cannot
// carry become '?', and "]]>" is split across two CDATA sections. Keep msg
// short and free of secrets: it is sent to WeChat.
func V2Fail(msg string) []byte {
	msg = strings.ToValidUTF8(msg, "?")
	msg = strings.Map(func(r rune) rune {
		if !isXMLChar(r) || r == '\r' {
			return '?'
		}
		return r
	}, msg)
	if len(msg) > V2MaxFailMsg {
		cut := V2MaxFailMsg
		for cut > 0 && !utf8.RuneStart(msg[cut]) {
			cut--
		}
		msg = msg[:cut]
	}
	msg = strings.ReplaceAll(msg, "]]>", "]]]]><![CDATA[>")
	return []byte(`<xml><return_code><![CDATA[FAIL]]></return_code><return_msg><![CDATA[` + msg + `]]></return_msg></xml>`)
}
