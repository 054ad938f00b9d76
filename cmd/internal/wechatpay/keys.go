package wechatpay

import (
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"strings"

	"github.com/wechatpay-apiv3/wechatpay-go/utils"
)

// MinRSABits is the smallest WeChat Pay signing key accepted
// (WECHATPAY2-SHA256-RSA2048).
const MinRSABits = 2048

// PublicKeyIDPrefix starts every WeChat Pay public-key id, as sent in
// Wechatpay-Serial in public-key mode.
const PublicKeyIDPrefix = "PUB_KEY_ID_"

// CheckAPIKey checks a v2 API key from configuration: exactly 32 printable
// ASCII characters, as set in the merchant platform. The error never shows
// the key.
func CheckAPIKey(key string) error {
	return checkSecret("v2 API key", key)
}

// CheckAPIv3Key checks an APIv3 key from configuration: exactly 32 bytes
// (the AES-256 key), printable ASCII. The error never shows the key.
func CheckAPIv3Key(key string) error {
	return checkSecret("APIv3 key", key)
}

func checkSecret(what, key string) error {
	if len(key) != 32 {
		return fmt.Errorf("%w: %s must be exactly 32 bytes, got %d", ErrBadKey, what, len(key))
	}
	for i := 0; i < len(key); i++ {
		if key[i] < 0x21 || key[i] > 0x7e {
			return fmt.Errorf("%w: %s holds a byte that is not printable ASCII at position %d", ErrBadKey, what, i)
		}
	}
	return nil
}

// LoadPublicKeyPEM parses a WeChat Pay public key (the pub_key.pem
// downloaded from the merchant platform): a PEM "PUBLIC KEY" (PKIX) or "RSA
// PUBLIC KEY" (PKCS#1) block holding an RSA key of at least MinRSABits.
// Errors wrap ErrBadKey.
func LoadPublicKeyPEM(data []byte) (*rsa.PublicKey, error) {
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, fmt.Errorf("%w: no PEM block in public key", ErrBadKey)
	}
	var key any
	var err error
	switch block.Type {
	case "PUBLIC KEY":
		key, err = x509.ParsePKIXPublicKey(block.Bytes)
	case "RSA PUBLIC KEY":
		key, err = x509.ParsePKCS1PublicKey(block.Bytes)
	case "CERTIFICATE":
		return nil, fmt.Errorf("%w: PEM block is a CERTIFICATE, want PUBLIC KEY (use LoadCertificatePEM)", ErrBadKey)
	default:
		return nil, fmt.Errorf("%w: PEM block type %q, want PUBLIC KEY", ErrBadKey, block.Type)
	}
	if err != nil {
		return nil, fmt.Errorf("%w: parse public key: %w", ErrBadKey, err)
	}
	pub, ok := key.(*rsa.PublicKey)
	if !ok {
		return nil, fmt.Errorf("%w: public key is %T, want RSA", ErrBadKey, key)
	}
	if pub.N.BitLen() < MinRSABits {
		return nil, fmt.Errorf("%w: RSA key of %d bits, want at least %d", ErrBadKey, pub.N.BitLen(), MinRSABits)
	}
	return pub, nil
}

// LoadCertificatePEM parses a WeChat Pay platform certificate (PEM
// "CERTIFICATE") with an RSA key of at least MinRSABits. Validity dates are
// not checked: notifications are judged by their own timestamp, and test
// certificates are often expired. Errors wrap ErrBadKey.
func LoadCertificatePEM(data []byte) (*x509.Certificate, error) {
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, fmt.Errorf("%w: no PEM block in certificate", ErrBadKey)
	}
	if block.Type != "CERTIFICATE" {
		return nil, fmt.Errorf("%w: PEM block type %q, want CERTIFICATE", ErrBadKey, block.Type)
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%w: parse certificate: %w", ErrBadKey, err)
	}
	pub, ok := cert.PublicKey.(*rsa.PublicKey)
	if !ok {
		return nil, fmt.Errorf("%w: certificate key is %T, want RSA", ErrBadKey, cert.PublicKey)
	}
	if pub.N.BitLen() < MinRSABits {
		return nil, fmt.Errorf("%w: certificate RSA key of %d bits, want at least %d", ErrBadKey, pub.N.BitLen(), MinRSABits)
	}
	return cert, nil
}

// CertificateSerial returns the serial WeChat puts in Wechatpay-Serial for
// cert: the upper-case hex of its serial number bytes (wechatpay-go's
// utils.GetCertificateSerialNumber).
func CertificateSerial(cert *x509.Certificate) string {
	return utils.GetCertificateSerialNumber(*cert)
}

// merchantCertOrg is the subject O of every merchant API certificate that
// WeChat Pay issues (its CN is the mch_id). Platform certificates instead
// carry O "Tenpay.com" and CN "Tenpay.com sign".
const merchantCertOrg = "微信商户系统"

// CheckPlatformCertificate refuses, with ErrMerchantCertificate, a
// certificate configured as a WeChat Pay platform certificate that is in
// fact a merchant API certificate: its subject CN equals mchID, or its
// subject O is 微信商户系统 (the organisation of every merchant certificate,
// whatever the merchant). Such a certificate cannot verify notifications
// (wechatpay-go#143). This is a heuristic on subject names; it cannot tell
// a platform certificate from any other unrelated certificate.
func CheckPlatformCertificate(cert *x509.Certificate, mchID string) error {
	cn := strings.TrimSpace(cert.Subject.CommonName)
	if mchID != "" && cn == mchID {
		return fmt.Errorf("%w: subject CN is the mch_id %s", ErrMerchantCertificate, mchID)
	}
	for _, o := range cert.Subject.Organization {
		if strings.TrimSpace(o) == merchantCertOrg {
			return fmt.Errorf("%w: subject O is %s (CN %s)", ErrMerchantCertificate, merchantCertOrg, clip(cn, 64))
		}
	}
	return nil
}
