package main

import (
	"fmt"
	"time"

	"github.com/orderledger/orderledger/cmd/internal/merchant"
	"github.com/orderledger/orderledger/cmd/internal/wechatpay"
)

// buildV3Verifiers checks every merchant's v3 keys at start-up and builds
// their verifiers: an APIv3 key that is not 32 bytes, an unreadable public
// key or a "platform" certificate that is really the merchant's own is a
// start-up error, not a failure on every notification.
func buildV3Verifiers(reg *merchant.Registry, now func() time.Time) (map[string]*wechatpay.V3Verifier, error) {
	out := map[string]*wechatpay.V3Verifier{}
	for _, m := range reg.All() {
		if len(m.PublicKeys) == 0 && len(m.Certificates) == 0 {
			continue
		}
		if err := wechatpay.CheckAPIv3Key(m.APIv3Key.Reveal()); err != nil {
			return nil, fmt.Errorf("merchant %s: apiv3_key: %w", m.MchID, err)
		}
		v := wechatpay.NewV3Verifier()
		v.Now = now
		for id, pem := range m.PublicKeys {
			if err := v.AddPublicKeyPEM(id, pem); err != nil {
				return nil, fmt.Errorf("merchant %s: wechatpay_public_key %s: %w", m.MchID, id, err)
			}
		}
		for i, pem := range m.Certificates {
			cert, err := wechatpay.LoadCertificatePEM(pem)
			if err != nil {
				return nil, fmt.Errorf("merchant %s: platform_certificates[%d]: %w", m.MchID, i, err)
			}
			if err := wechatpay.CheckPlatformCertificate(cert, m.MchID); err != nil {
				return nil, fmt.Errorf("merchant %s: platform_certificates[%d]: %w", m.MchID, i, err)
			}
			if err := v.AddCertificate(cert); err != nil {
				return nil, fmt.Errorf("merchant %s: platform_certificates[%d]: %w", m.MchID, i, err)
			}
		}
		out[m.MchID] = v
	}
	return out, nil
}
