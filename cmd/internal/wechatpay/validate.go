package wechatpay

import (
	"errors"
	"fmt"
	"reflect"
	"strings"
	"time"

	"github.com/go-playground/validator/v10"

	"github.com/orderledger/orderledger/domain"
)

// validate checks the typed views. Field names in its errors are WeChat's
// (the wx or json tag), so messages name the offending fields. A
// *validator.Validate is safe for concurrent use.
var validate = newValidator()

func newValidator() *validator.Validate {
	v := validator.New(validator.WithRequiredStructEnabled())
	v.RegisterTagNameFunc(func(f reflect.StructField) string {
		if n := f.Tag.Get("wx"); n != "" {
			return n
		}
		n, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if n == "-" {
			return ""
		}
		if n != "" {
			return n
		}
		return f.Name
	})
	return v
}

// problems collects field-level problems found while decoding, so that one
// error names every bad field. Messages hold field names and rules, never
// field values (decrypted values are confidential).
type problems []string

func (p *problems) add(field, problem string) { *p = append(*p, field+": "+problem) }

// check runs the validator on s and adds its findings.
func (p *problems) check(s any) {
	err := validate.Struct(s)
	if err == nil {
		return
	}
	var ves validator.ValidationErrors
	if !errors.As(err, &ves) {
		p.add("(struct)", "cannot validate")
		return
	}
	for _, fe := range ves {
		name := fe.Namespace()
		if _, rest, ok := strings.Cut(name, "."); ok {
			name = rest // drop the Go struct name
		}
		rule := fe.Tag()
		if fe.Param() != "" {
			rule += "=" + fe.Param()
		}
		p.add(name, "fails "+rule)
	}
}

func (p problems) err() error {
	if len(p) == 0 {
		return nil
	}
	return fmt.Errorf("%w: %s", ErrInvalid, strings.Join(p, "; "))
}

// parseFen parses a non-negative amount in fen written strictly in decimal
// digits: no sign, no spaces, no leading zeros (except "0" itself), at most
// 18 digits so it always fits int64.
func parseFen(s string) (int64, bool) {
	if s == "" || len(s) > 18 || !isDigits(s) || (len(s) > 1 && s[0] == '0') {
		return 0, false
	}
	var n int64
	for i := 0; i < len(s); i++ {
		n = n*10 + int64(s[i]-'0')
	}
	return n, true
}

// fenField reads an integer field of a v2 message. Absent or empty: 0 and,
// when required, a problem.
func (p *problems) fenField(f Fields, name string, required bool) int64 {
	s, ok := f[name]
	if !ok || s == "" {
		if required {
			p.add(name, "missing")
		}
		return 0
	}
	n, ok := parseFen(s)
	if !ok {
		p.add(name, "not a non-negative integer")
	}
	return n
}

// timeField reads a Beijing-time field in the given layout.
func (p *problems) timeField(f Fields, name, layout string, required bool) time.Time {
	s := f[name]
	if s == "" {
		if required {
			p.add(name, "missing")
		}
		return time.Time{}
	}
	t, err := time.ParseInLocation(layout, s, domain.Beijing)
	if err != nil || !matchesLayout(s, layout) {
		p.add(name, "not in the format "+layout)
		return time.Time{}
	}
	return t
}

// matchesLayout reports whether s has the shape of a numeric time layout:
// a digit wherever layout has a digit, the same byte elsewhere. It keeps
// signs and spaces out of fields time.Parse would otherwise accept.
func matchesLayout(s, layout string) bool {
	if len(s) != len(layout) {
		return false
	}
	for i := 0; i < len(s); i++ {
		l := layout[i]
		if l >= '0' && l <= '9' {
			if s[i] < '0' || s[i] > '9' {
				return false
			}
		} else if s[i] != l {
			return false
		}
	}
	return true
}
