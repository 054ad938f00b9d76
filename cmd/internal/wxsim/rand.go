package wxsim

import (
	"crypto/rand"
	"encoding/hex"
)

// randBytes returns n random bytes. crypto/rand.Read never fails on
// supported platforms (it aborts the program instead).
func randBytes(n int) []byte {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return b
}

func randHex(n int) string { return hex.EncodeToString(randBytes((n + 1) / 2))[:n] }

const alnum = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"

// randFrom picks n characters of set uniformly (rejection sampling).
func randFrom(set string, n int) string {
	out := make([]byte, 0, n)
	limit := 256 - 256%len(set)
	for len(out) < n {
		for _, c := range randBytes(n) {
			if int(c) < limit && len(out) < n {
				out = append(out, set[int(c)%len(set)])
			}
		}
	}
	return string(out)
}

func randAlnum(n int) string  { return randFrom(alnum, n) }
func randDigits(n int) string { return randFrom("0123456789", n) }
