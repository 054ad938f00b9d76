package wechatpay

import (
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Public test keys of the vectors (see testdata/SOURCES.md).
const (
	docKey       = "192006250b4c09247ec02edce69f6a2d" // WeChat's signing-guide key; synthetic v2 vectors
	synthV3Key   = "a7cde1ZJB1kG2e7VfTs3jQzaWizur8Gb"
	synthV3Time  = 1735689600
	synthSerial  = "440024045C4A427599D09BB4E3DE0279F2E813FD"
	synthPubKey  = "PUB_KEY_ID_0100000000000000000000000000000001"
	gopayKey     = "ziR0QKsTUfMOuochC9RfCdmfHECorQAP"
	wechatpyKey  = "OF4Ne3znh8KqL0V4NqmALQa0uXMYKcEk"
	easywechatK  = "88888888888888888888888888888888"
	yansongdaKey = "53D67FCB97E68F9998CBD17ED7A8D1E2"
)

// vec reads a vector file under testdata/vectors.
func vec(t testing.TB, rel string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "vectors", filepath.FromSlash(rel)))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// vecHeaders reads a headers.json vector into an http.Header.
func vecHeaders(t testing.TB, rel string) http.Header {
	t.Helper()
	var m map[string]string
	if err := json.Unmarshal(vec(t, rel), &m); err != nil {
		t.Fatal(err)
	}
	h := http.Header{}
	for k, v := range m {
		h.Set(k, v)
	}
	return h
}

// vecKey reads an apiv3_key.txt vector (trailing newline dropped).
func vecKey(t testing.TB, rel string) []byte {
	return []byte(strings.TrimRight(string(vec(t, rel)), "\r\n"))
}

// fixedNow returns a clock stuck at Unix second sec.
func fixedNow(sec int64) func() time.Time {
	return func() time.Time { return time.Unix(sec, 0) }
}

// parseVec parses a v2 vector, failing the test on error.
func parseVec(t testing.TB, rel string) Fields {
	t.Helper()
	f, err := ParseV2(vec(t, rel))
	if err != nil {
		t.Fatalf("ParseV2(%s): %v", rel, err)
	}
	return f
}

func copyFields(f Fields) Fields {
	c := make(Fields, len(f))
	for k, v := range f {
		c[k] = v
	}
	return c
}
