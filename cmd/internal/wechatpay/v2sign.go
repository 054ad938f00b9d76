package wechatpay

import (
	"crypto/hmac"
	"crypto/md5"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"fmt"
	"hash"
	"slices"
	"strings"
)

// v2 signature types, as carried in the sign_type field.
const (
	SignTypeMD5        = "MD5"
	SignTypeHMACSHA256 = "HMAC-SHA256"
)

// SignV2 computes the v2 signature of fields under apiKey (the merchant's
// 32-character v2 API key, not the APIv3 key): every field with a non-empty
// value except sign (sign_type included), sorted by name in byte order,
// joined as k=v with '&', then "&key=" + apiKey; MD5 gives upper-case hex,
// HMAC-SHA256 (keyed with apiKey) upper-case hex. signType "" means MD5.
// Other sign types fail with ErrUnsupportedSignType; an empty apiKey with
// ErrBadKey.
func SignV2(fields Fields, apiKey, signType string) (string, error) {
	var h hash.Hash
	switch signType {
	case "", SignTypeMD5:
		h = md5.New()
	case SignTypeHMACSHA256:
		h = hmac.New(sha256.New, []byte(apiKey))
	default:
		return "", fmt.Errorf("%w: sign_type %q", ErrUnsupportedSignType, clip(signType, 32))
	}
	if apiKey == "" {
		return "", fmt.Errorf("%w: empty v2 API key", ErrBadKey)
	}
	keys := make([]string, 0, len(fields))
	size := len("key=") + len(apiKey)
	for k, v := range fields {
		if k != "sign" && v != "" {
			keys = append(keys, k)
			size += len(k) + len(v) + 2
		}
	}
	slices.Sort(keys)
	// One buffer and one Write: per-field Writes through hash.Hash cost
	// more than the hashing of a notification-sized message.
	buf := make([]byte, 0, size)
	for _, k := range keys {
		buf = append(buf, k...)
		buf = append(buf, '=')
		buf = append(buf, fields[k]...)
		buf = append(buf, '&')
	}
	buf = append(buf, "key="...)
	buf = append(buf, apiKey...)
	h.Write(buf)
	clear(buf) // it holds the key
	var sum [sha256.Size]byte
	return strings.ToUpper(hex.EncodeToString(h.Sum(sum[:0]))), nil
}

// VerifyV2 checks the sign field of a v2 message under apiKey. The
// algorithm comes from the message's own sign_type (absent or empty means
// MD5), never from configuration: WeChat sends MD5-signed notifications to
// merchants who configured HMAC. Results: nil; ErrMissingSignature (no or
// empty sign: a message without one is never authentic);
// ErrUnsupportedSignType; ErrBadSignature (compared in constant time, and
// case-sensitively: WeChat signs in upper-case hex); ErrBadKey (empty key).
func VerifyV2(fields Fields, apiKey string) error {
	got := fields["sign"]
	if got == "" {
		return ErrMissingSignature
	}
	want, err := SignV2(fields, apiKey, fields["sign_type"])
	if err != nil {
		return err
	}
	if subtle.ConstantTimeCompare([]byte(got), []byte(want)) != 1 {
		return ErrBadSignature
	}
	return nil
}

// clip shortens s to at most n bytes for error messages (never used on
// secrets).
func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
