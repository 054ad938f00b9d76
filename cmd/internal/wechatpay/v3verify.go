package wechatpay

import (
	"context"
	"crypto/rsa"
	"crypto/x509"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/wechatpay-apiv3/wechatpay-go/core/auth/verifiers"
)

// v3 notification headers.
const (
	HeaderSerial        = "Wechatpay-Serial"
	HeaderSignature     = "Wechatpay-Signature"
	HeaderTimestamp     = "Wechatpay-Timestamp"
	HeaderNonce         = "Wechatpay-Nonce"
	HeaderSignatureType = "Wechatpay-Signature-Type"
)

// SignatureTypeRSA is the only v3 signature type accepted; an absent
// Wechatpay-Signature-Type header means this type.
const SignatureTypeRSA = "WECHATPAY2-SHA256-RSA2048"

// SignatureProbePrefix starts the deliberately invalid signatures WeChat
// sends to check that merchants verify.
const SignatureProbePrefix = "WECHATPAY/SIGNTEST/"

// MaxClockSkew is the v3 timestamp window: |now - Wechatpay-Timestamp| must
// be less than this (the official SDKs' 5 minutes).
const MaxClockSkew = 5 * time.Minute

// V3Verifier checks the signature of v3 notifications. It holds any number
// of signing keys by serial, so one verifier covers key rotation and the
// migration from platform certificates to WeChat Pay public keys: WeChat
// Pay public keys under their PUB_KEY_ID_... id, platform certificates
// under their serial.
//
// Verify is safe for concurrent use, also with the Add methods (a mutex
// guards the key map). Set Now before first use and do not change it
// afterwards.
//
// The RSA check itself is wechatpay-go's SHA256WithRSAPubkeyVerifier
// (core/auth/verifiers); header handling, the clock and the serial-to-key
// map are ours, because the SDK's notify handler reads time.Now and takes
// one verifier per key set.
type V3Verifier struct {
	// Now returns the current time for the timestamp window; nil means
	// time.Now. Tests inject the vector's signing time.
	Now func() time.Time

	mu   sync.RWMutex // guards keys
	keys map[string]*verifiers.SHA256WithRSAPubkeyVerifier
}

// NewV3Verifier returns a verifier with no keys.
func NewV3Verifier() *V3Verifier {
	return &V3Verifier{keys: map[string]*verifiers.SHA256WithRSAPubkeyVerifier{}}
}

// AddPublicKey registers a WeChat Pay public key under its id, which must
// start with PUB_KEY_ID_. Errors wrap ErrBadKey.
func (v *V3Verifier) AddPublicKey(id string, key *rsa.PublicKey) error {
	if !strings.HasPrefix(id, PublicKeyIDPrefix) || len(id) == len(PublicKeyIDPrefix) {
		return fmt.Errorf("%w: WeChat Pay public key id %q does not start with %s", ErrBadKey, clip(id, 64), PublicKeyIDPrefix)
	}
	return v.AddKey(id, key)
}

// AddPublicKeyPEM is LoadPublicKeyPEM followed by AddPublicKey.
func (v *V3Verifier) AddPublicKeyPEM(id string, pemData []byte) error {
	key, err := LoadPublicKeyPEM(pemData)
	if err != nil {
		return fmt.Errorf("public key %s: %w", clip(id, 64), err)
	}
	return v.AddPublicKey(id, key)
}

// AddCertificate registers a platform certificate under its serial
// (CertificateSerial). Validity dates are not checked. It does not run
// CheckPlatformCertificate, which needs the merchant's mch_id. Errors wrap
// ErrBadKey.
func (v *V3Verifier) AddCertificate(cert *x509.Certificate) error {
	pub, ok := cert.PublicKey.(*rsa.PublicKey)
	if !ok {
		return fmt.Errorf("%w: certificate key is %T, want RSA", ErrBadKey, cert.PublicKey)
	}
	return v.AddKey(CertificateSerial(cert), pub)
}

// AddCertificatePEM is LoadCertificatePEM followed by AddCertificate.
func (v *V3Verifier) AddCertificatePEM(pemData []byte) error {
	cert, err := LoadCertificatePEM(pemData)
	if err != nil {
		return err
	}
	return v.AddCertificate(cert)
}

// AddKey registers an RSA key under any serial, for keys that come
// neither as a PUB_KEY_ID_ public key nor as a certificate carrying its own
// serial. Re-adding a serial replaces its key. Errors wrap ErrBadKey.
func (v *V3Verifier) AddKey(serial string, key *rsa.PublicKey) error {
	if serial == "" {
		return fmt.Errorf("%w: empty serial", ErrBadKey)
	}
	if key == nil || key.N == nil || key.N.BitLen() < MinRSABits {
		return fmt.Errorf("%w: serial %s: RSA key missing or shorter than %d bits", ErrBadKey, clip(serial, 64), MinRSABits)
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.keys == nil {
		v.keys = map[string]*verifiers.SHA256WithRSAPubkeyVerifier{}
	}
	v.keys[serial] = verifiers.NewSHA256WithRSAPubkeyVerifier(serial, *key)
	return nil
}

// HasSerial reports whether a key is registered under serial; a server
// holding one verifier per merchant can use it to route a notification by
// its Wechatpay-Serial.
func (v *V3Verifier) HasSerial(serial string) bool {
	v.mu.RLock()
	defer v.mu.RUnlock()
	_, ok := v.keys[serial]
	return ok
}

// Serials lists the registered serials in byte order.
func (v *V3Verifier) Serials() []string {
	v.mu.RLock()
	defer v.mu.RUnlock()
	s := make([]string, 0, len(v.keys))
	for k := range v.keys {
		s = append(s, k)
	}
	slices.Sort(s)
	return s
}

// Verify checks a v3 notification's signature over the exact body bytes
// received (never a re-encoded body): the signed message is
// "timestamp\nnonce\nbody\n", RSASSA-PKCS1-v1_5 with SHA-256. Steps and
// errors, in order:
//   - Wechatpay-Serial, -Signature, -Timestamp or -Nonce absent:
//     ErrMissingSignature;
//   - Wechatpay-Signature-Type present and not WECHATPAY2-SHA256-RSA2048:
//     ErrUnsupportedSignType;
//   - signature starting with WECHATPAY/SIGNTEST/: ErrSignatureProbe
//     (WeChat's check; log at info, answer non-2xx);
//   - timestamp not decimal seconds, or |now - timestamp| >= 5 minutes:
//     ErrStaleTimestamp;
//   - serial not registered: ErrUnknownSerial;
//   - signature not base64 or not matching: ErrBadSignature.
func (v *V3Verifier) Verify(h http.Header, body []byte) error {
	serial := h.Get(HeaderSerial)
	sig := h.Get(HeaderSignature)
	ts := h.Get(HeaderTimestamp)
	nonce := h.Get(HeaderNonce)
	for _, hv := range [...]struct{ name, val string }{
		{HeaderSerial, serial}, {HeaderSignature, sig}, {HeaderTimestamp, ts}, {HeaderNonce, nonce},
	} {
		if hv.val == "" {
			return fmt.Errorf("%w: header %s absent", ErrMissingSignature, hv.name)
		}
	}
	if st := h.Get(HeaderSignatureType); st != "" && st != SignatureTypeRSA {
		return fmt.Errorf("%w: %s %q", ErrUnsupportedSignType, HeaderSignatureType, clip(st, 64))
	}
	if strings.HasPrefix(sig, SignatureProbePrefix) {
		return ErrSignatureProbe
	}
	sec, ok := parseUnixSeconds(ts)
	if !ok {
		return fmt.Errorf("%w: %s %q is not Unix seconds", ErrStaleTimestamp, HeaderTimestamp, clip(ts, 32))
	}
	now := time.Now
	if v.Now != nil {
		now = v.Now
	}
	skew := now().Unix() - sec
	if skew <= -int64(MaxClockSkew/time.Second) || skew >= int64(MaxClockSkew/time.Second) {
		if skew > 0 {
			return fmt.Errorf("%w: signed at %d, %d s ago (limit %v)", ErrStaleTimestamp, sec, skew, MaxClockSkew)
		}
		return fmt.Errorf("%w: signed at %d, %d s in the future (limit %v)", ErrStaleTimestamp, sec, -skew, MaxClockSkew)
	}
	v.mu.RLock()
	kv := v.keys[serial]
	v.mu.RUnlock()
	if kv == nil {
		return fmt.Errorf("%w: %q", ErrUnknownSerial, clip(serial, 64))
	}
	msg := ts + "\n" + nonce + "\n" + string(body) + "\n"
	// The SDK's error says whether base64 or RSA failed; both are a bad
	// signature to us, and its text is not needed.
	if err := kv.Verify(context.Background(), serial, msg, sig); err != nil {
		return fmt.Errorf("%w: serial %s", ErrBadSignature, clip(serial, 64))
	}
	return nil
}

// parseUnixSeconds parses 1 to 12 decimal digits (no sign): enough for any
// plausible timestamp and safe from overflow in the skew computation.
func parseUnixSeconds(s string) (int64, bool) {
	if s == "" || len(s) > 12 || !isDigits(s) {
		return 0, false
	}
	var n int64
	for i := 0; i < len(s); i++ {
		n = n*10 + int64(s[i]-'0')
	}
	return n, true
}

// SignatureHeaders returns the Wechatpay-* headers that carry a v3
// notification's signature (serial, signature, timestamp, nonce, signature
// type), for domain.Evidence.Headers: with the raw body they let an auditor
// verify the notification again. Absent headers are left out; nil when
// there are none.
func SignatureHeaders(h http.Header) map[string]string {
	var out map[string]string
	for _, name := range [...]string{HeaderSerial, HeaderSignature, HeaderTimestamp, HeaderNonce, HeaderSignatureType} {
		if v := h.Get(name); v != "" {
			if out == nil {
				out = make(map[string]string, 5)
			}
			out[name] = v
		}
	}
	return out
}
