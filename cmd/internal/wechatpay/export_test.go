package wechatpay

import (
	"bytes"
	"crypto/aes"
	"errors"
)

// ecbEncryptRaw encrypts plain (a whole number of blocks) with the req_info
// key derivation and no padding, for tests that need bad padding.
func ecbEncryptRaw(plain []byte, apiKey string) (string, error) {
	if len(plain)%aes.BlockSize != 0 {
		return "", errors.New("not whole blocks")
	}
	return encryptReqInfoBlocks(bytes.Clone(plain), apiKey)
}
