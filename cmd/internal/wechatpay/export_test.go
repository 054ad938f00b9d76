package wechatpay

import (
	"crypto/aes"
	"encoding/base64"
	"errors"
)

// ecbEncryptRaw encrypts plain (a whole number of blocks) with the req_info
// key derivation and no padding, for tests that need bad padding.
func ecbEncryptRaw(plain []byte, apiKey string) (string, error) {
	if len(plain)%aes.BlockSize != 0 {
		return "", errors.New("not whole blocks")
	}
	block, err := aes.NewCipher(refundKey(apiKey))
	if err != nil {
		return "", err
	}
	out := make([]byte, len(plain))
	for i := 0; i < len(plain); i += aes.BlockSize {
		block.Encrypt(out[i:i+aes.BlockSize], plain[i:i+aes.BlockSize])
	}
	return base64.StdEncoding.EncodeToString(out), nil
}
