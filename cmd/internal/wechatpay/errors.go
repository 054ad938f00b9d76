package wechatpay

import "errors"

// Sentinel errors. Functions wrap them with detail; test with errors.Is.
// None of the wrapped messages carries a key or decrypted plaintext.
var (
	// ErrMalformed: the body is not a well-formed message of the expected
	// shape (bad XML or JSON, wrong root, nested or trailing content,
	// invalid UTF-8, too large).
	ErrMalformed = errors.New("wechatpay: malformed message")
	// ErrForbiddenDTD: a v2 body carries <!DOCTYPE or <!ENTITY (XXE
	// attempt); refused before parsing.
	ErrForbiddenDTD = errors.New("wechatpay: DOCTYPE or ENTITY declaration refused")
	// ErrDuplicateField: a v2 field element occurs twice.
	ErrDuplicateField = errors.New("wechatpay: duplicated field")
	// ErrMissingSignature: a v2 message without a sign field, or a v3
	// request without a Wechatpay-* signature header.
	ErrMissingSignature = errors.New("wechatpay: missing signature")
	// ErrUnsupportedSignType: a v2 sign_type other than MD5 / HMAC-SHA256,
	// or a v3 Wechatpay-Signature-Type other than WECHATPAY2-SHA256-RSA2048.
	ErrUnsupportedSignType = errors.New("wechatpay: unsupported signature type")
	// ErrBadSignature: the signature does not match (tampered, wrong key,
	// not base64).
	ErrBadSignature = errors.New("wechatpay: signature mismatch")
	// ErrSignatureProbe: a v3 signature starting with WECHATPAY/SIGNTEST/,
	// which WeChat sends on purpose to check that merchants verify. Refuse
	// it (non-2xx) and log it at info level: it is not an attack.
	ErrSignatureProbe = errors.New("wechatpay: signature probe (WECHATPAY/SIGNTEST)")
	// ErrUnknownSerial: the v3 Wechatpay-Serial names no configured
	// platform certificate or WeChat Pay public key.
	ErrUnknownSerial = errors.New("wechatpay: unknown signing key serial")
	// ErrStaleTimestamp: the v3 Wechatpay-Timestamp is 5 minutes or more
	// away from now, in either direction, or is not a number.
	ErrStaleTimestamp = errors.New("wechatpay: timestamp outside the 5-minute window")
	// ErrReturnFail: a v2 message with return_code FAIL. It carries no
	// signature and no business data: never credit it.
	ErrReturnFail = errors.New("wechatpay: return_code FAIL (unsigned, nothing to record)")
	// ErrInvalid: the message is well formed and authentic but its fields
	// do not validate; the wrapped message names the fields.
	ErrInvalid = errors.New("wechatpay: invalid notification")
	// ErrUndecryptable: a v2 req_info or v3 resource that cannot be
	// decrypted under the merchant's key (bad base64, length, padding,
	// authentication, or the plaintext is not the expected document).
	// Treat it as "cannot authenticate", not as a bad request.
	ErrUndecryptable = errors.New("wechatpay: cannot decrypt")
	// ErrBadKey: a key or certificate given in configuration is unusable.
	ErrBadKey = errors.New("wechatpay: unusable key")
	// ErrMerchantCertificate: a certificate configured as a WeChat Pay
	// platform certificate is a merchant's own API certificate, which can
	// never verify a notification.
	ErrMerchantCertificate = errors.New("wechatpay: merchant certificate configured as platform certificate")
)
