package wxsim

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"time"

	"github.com/orderledger/orderledger/cmd/internal/wechatpay"
)

// Merchant is one sandbox merchant together with the simulated WeChat Pay
// keys that sign its notifications. The builders read it and never change
// it, so one Merchant may be used from several goroutines (as long as Now
// is safe for concurrent use).
type Merchant struct {
	MchID string // merchant number (mch_id)
	AppID string // the merchant's appid
	// APIKey is the v2 API key: signs v2 messages, and (through its MD5)
	// encrypts v2 refund req_info.
	APIKey string
	// APIv3Key is the 32-byte APIv3 key that encrypts v3 resources.
	APIv3Key string
	// PublicKeyID is the WeChat Pay public-key id (PUB_KEY_ID_...) that v3
	// notifications carry in Wechatpay-Serial, unless UseCertificate is set.
	PublicKeyID string
	// PrivateKey plays WeChat Pay's signing key. Its public half is what
	// the ledger is configured with. The v3 builders need it.
	PrivateKey *rsa.PrivateKey
	// Certificate is a self-signed "platform certificate" for PrivateKey
	// (subject O "wxsim"); CertSerial is its serial as WeChat writes it.
	Certificate *x509.Certificate
	CertSerial  string // Wechatpay-Serial of Certificate
	// UseCertificate makes v3 notifications name CertSerial instead of
	// PublicKeyID (platform-certificate mode).
	UseCertificate bool
	// Now is the simulator's clock: v3 signing timestamps, create_time and
	// default payment times. nil means time.Now.
	Now func() time.Time
}

// NewSandbox returns a merchant with fresh random credentials: a 10-digit
// mch_id, an appid, a 32-character v2 API key and APIv3 key, a new RSA-2048
// key pair with a PUB_KEY_ID_ id, and a self-signed platform certificate
// with a 40-hex-digit serial. Generating the RSA key takes a moment; use
// NewSandboxWithKey to share one key between many merchants.
func NewSandbox() (*Merchant, error) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, fmt.Errorf("wxsim: generate RSA key: %w", err)
	}
	return NewSandboxWithKey(key)
}

// NewSandboxWithKey is NewSandbox with a given signing key.
func NewSandboxWithKey(key *rsa.PrivateKey) (*Merchant, error) {
	if key == nil {
		return nil, fmt.Errorf("wxsim: nil signing key")
	}
	m := &Merchant{
		MchID:      "1" + randDigits(9),
		AppID:      "wx" + randHex(16),
		APIKey:     randAlnum(32),
		APIv3Key:   randAlnum(32),
		PrivateKey: key,
	}
	m.PublicKeyID = wechatpay.PublicKeyIDPrefix + "01" + m.MchID + randDigits(22)
	serial := new(big.Int).SetBytes(randBytes(20))
	serial.SetBit(serial, 159, 1) // 20 bytes, so 40 hex digits like real serials
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{Organization: []string{"wxsim"}, OrganizationalUnit: []string{"wxsim CA"}, CommonName: "wxsim platform certificate"},
		NotBefore:    time.Now().Add(-24 * time.Hour),
		NotAfter:     time.Now().Add(5 * 365 * 24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("wxsim: create certificate: %w", err)
	}
	if m.Certificate, err = x509.ParseCertificate(der); err != nil {
		return nil, fmt.Errorf("wxsim: parse certificate: %w", err)
	}
	m.CertSerial = wechatpay.CertificateSerial(m.Certificate)
	return m, nil
}

// now is the merchant's clock.
func (m *Merchant) now() time.Time {
	if m.Now != nil {
		return m.Now()
	}
	return time.Now()
}

// SigningSerial is the Wechatpay-Serial the v3 builders write.
func (m *Merchant) SigningSerial() string {
	if m.UseCertificate {
		return m.CertSerial
	}
	return m.PublicKeyID
}

// PublicKeyPEM returns the WeChat Pay public key as a PEM "PUBLIC KEY"
// block, as downloaded from the merchant platform.
func (m *Merchant) PublicKeyPEM() []byte {
	der, err := x509.MarshalPKIXPublicKey(&m.PrivateKey.PublicKey)
	if err != nil {
		panic(fmt.Sprintf("wxsim: marshal public key: %v", err)) // an RSA key always marshals
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
}

// CertificatePEM returns the platform certificate as PEM, or nil when the
// merchant has none.
func (m *Merchant) CertificatePEM() []byte {
	if m.Certificate == nil {
		return nil
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: m.Certificate.Raw})
}

// Verifier returns a wechatpay.V3Verifier that knows this merchant's
// public key and (if any) certificate, on the merchant's clock.
func (m *Merchant) Verifier() (*wechatpay.V3Verifier, error) {
	v := wechatpay.NewV3Verifier()
	v.Now = m.Now
	if err := v.AddPublicKey(m.PublicKeyID, &m.PrivateKey.PublicKey); err != nil {
		return nil, err
	}
	if m.Certificate != nil {
		if err := v.AddCertificate(m.Certificate); err != nil {
			return nil, err
		}
	}
	return v, nil
}

// ConfigEntry is one merchant in the server's merchants file, fields named
// as in the JSON (see the json tags). Paths are relative to the JSON file.
type ConfigEntry struct {
	MchID              string `json:"mch_id"`
	AppID              string `json:"appid"`
	APIKey             string `json:"api_key"`
	APIv3Key           string `json:"apiv3_key"`
	WeChatPayPubKeyID  string `json:"wechatpay_public_key_id"`
	WeChatPayPublicKey string `json:"wechatpay_public_key"`
	// PlatformCertificates lists platform certificate PEM files; written
	// only for merchants with UseCertificate set.
	PlatformCertificates []string `json:"platform_certificates,omitempty"`
}

// ConfigFile is the name WriteConfig gives the merchants file.
const ConfigFile = "merchants.json"

// WriteConfig writes the merchants file the server reads into dir (created
// if needed): merchants.json, a JSON array of {mch_id, appid, api_key,
// apiv3_key, wechatpay_public_key_id, wechatpay_public_key}, and for each
// merchant its public key as wechatpay_public_key_<mch_id>.pem, named
// relative to the JSON file. A merchant with UseCertificate set also gets
// its platform certificate, wechatpay_platform_cert_<mch_id>.pem, listed
// under platform_certificates. Files hold secrets, so they are written 0600.
// It returns the path of merchants.json.
func WriteConfig(dir string, merchants ...*Merchant) (string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("wxsim: write config: %w", err)
	}
	entries := make([]ConfigEntry, 0, len(merchants))
	for _, m := range merchants {
		if m.PrivateKey == nil {
			return "", fmt.Errorf("wxsim: write config: merchant %s has no key", m.MchID)
		}
		name := "wechatpay_public_key_" + m.MchID + ".pem"
		if err := os.WriteFile(filepath.Join(dir, name), m.PublicKeyPEM(), 0o600); err != nil {
			return "", fmt.Errorf("wxsim: write config: %w", err)
		}
		e := ConfigEntry{
			MchID: m.MchID, AppID: m.AppID, APIKey: m.APIKey, APIv3Key: m.APIv3Key,
			WeChatPayPubKeyID: m.PublicKeyID, WeChatPayPublicKey: name,
		}
		if m.UseCertificate && m.Certificate != nil {
			cert := "wechatpay_platform_cert_" + m.MchID + ".pem"
			if err := os.WriteFile(filepath.Join(dir, cert), m.CertificatePEM(), 0o600); err != nil {
				return "", fmt.Errorf("wxsim: write config: %w", err)
			}
			e.PlatformCertificates = []string{cert}
		}
		entries = append(entries, e)
	}
	b, err := json.MarshalIndent(entries, "", "  ")
	if err != nil {
		return "", fmt.Errorf("wxsim: write config: %w", err)
	}
	path := filepath.Join(dir, ConfigFile)
	if err := os.WriteFile(path, append(b, '\n'), 0o600); err != nil {
		return "", fmt.Errorf("wxsim: write config: %w", err)
	}
	return path, nil
}
