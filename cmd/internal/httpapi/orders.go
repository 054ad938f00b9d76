package httpapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"reflect"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/go-playground/validator/v10"

	"github.com/orderledger/orderledger/domain"
	"github.com/orderledger/orderledger/eventstore"
	"github.com/orderledger/orderledger/projections"
)

// placeOrderRequest is the body of POST /v1/orders.
type placeOrderRequest struct {
	MchID       string     `json:"mch_id" validate:"required,numeric,max=32"`
	AppID       string     `json:"appid" validate:"required,max=32"`
	OutTradeNo  string     `json:"out_trade_no" validate:"required,out_trade_no"`
	TotalFee    *int64     `json:"total_fee" validate:"required,gt=0,lte=100000000000"`
	FeeType     string     `json:"fee_type" validate:"omitempty,len=3,uppercase"`
	Description string     `json:"description" validate:"required,max=128"`
	OpenID      string     `json:"openid" validate:"omitempty,max=128"`
	ExpiresAt   *time.Time `json:"expires_at"`
}

var (
	validateOnce sync.Once
	validate     *validator.Validate
	// WeChat's out_trade_no: 6-32 of letters, digits, _ - | * (we accept 1-32).
	outTradeNoPattern = regexp.MustCompile(`^[0-9A-Za-z_\-|*]{1,32}$`)
)

func validatorInstance() *validator.Validate {
	validateOnce.Do(func() {
		v := validator.New(validator.WithRequiredStructEnabled())
		v.RegisterTagNameFunc(func(f reflect.StructField) string {
			name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
			return name
		})
		v.RegisterValidation("out_trade_no", func(fl validator.FieldLevel) bool {
			return outTradeNoPattern.MatchString(fl.Field().String())
		})
		validate = v
	})
	return validate
}

// fieldErrors turns validator errors into {"field": "what is wrong"}.
func fieldErrors(err error) map[string]string {
	var ve validator.ValidationErrors
	if !errors.As(err, &ve) {
		return map[string]string{"_": "invalid"}
	}
	out := map[string]string{}
	for _, fe := range ve {
		var msg string
		switch fe.Tag() {
		case "required":
			msg = "is required"
		case "gt":
			msg = "must be greater than " + fe.Param()
		case "lte":
			msg = "must be at most " + fe.Param()
		case "max":
			msg = "must be at most " + fe.Param() + " characters"
		case "numeric":
			msg = "must be digits"
		case "out_trade_no":
			msg = "must be 1-32 letters, digits or _-|*"
		case "len":
			msg = "must be " + fe.Param() + " characters"
		default:
			msg = "fails " + fe.Tag()
		}
		out[fe.Field()] = msg
	}
	return out
}

// decodeJSON decodes a strict JSON body: unknown fields and trailing data
// are errors, so a typo never silently drops a value.
func decodeJSON(body []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var ute *json.UnmarshalTypeError
		if errors.As(err, &ute) {
			if ute.Field == "" {
				return badRequest("body must be a JSON object", err)
			}
			return invalidFields(map[string]string{ute.Field: "must be " + jsonKind(ute.Type.Kind())})
		}
		// encoding/json reports unknown fields only in its message.
		if name, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
			return invalidFields(map[string]string{strings.Trim(name, `"`): "unknown field"})
		}
		return badRequest("body is not valid JSON for this request: "+publicJSONError(err), err)
	}
	// Only the end of input may follow. dec.More() is not enough: it
	// reports false before a stray '}' or ']', so `{...}}` would pass.
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return badRequest("trailing data after the JSON body", nil)
	}
	return nil
}

// jsonKind names a Go kind in JSON terms for error messages.
func jsonKind(k reflect.Kind) string {
	switch k {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "a whole number of fen within range"
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "true or false"
	case reflect.Struct:
		return "an RFC 3339 time or an object, as documented"
	}
	return "of another type"
}

// publicJSONError keeps the decoder's message (it names the field or the
// offset) but never echoes the body.
func publicJSONError(err error) string {
	msg := err.Error()
	if len(msg) > 120 {
		msg = msg[:120]
	}
	return msg
}

func (s *Server) placeOrder(w http.ResponseWriter, r *http.Request) {
	body, err := readBody(w, r, MaxAPIBody)
	if err != nil {
		s.fail(w, r, replyJSON, err)
		return
	}
	var req placeOrderRequest
	if err := decodeJSON(body, &req); err != nil {
		s.fail(w, r, replyJSON, err)
		return
	}
	if err := validatorInstance().Struct(req); err != nil {
		s.fail(w, r, replyJSON, invalidFields(fieldErrors(err)))
		return
	}
	m, ok := s.Merchants.Get(req.MchID)
	if !ok {
		s.fail(w, r, replyJSON, unprocessable("unknown merchant: mch_id is not configured on this ledger"))
		return
	}
	if !m.AllowsAppID(req.AppID) {
		s.fail(w, r, replyJSON, unprocessable("appid is not configured for this merchant"))
		return
	}
	cmd := domain.OrderPlaced{
		MchID: req.MchID, AppID: req.AppID, OutTradeNo: req.OutTradeNo, TotalFee: *req.TotalFee,
		FeeType: req.FeeType, Description: req.Description, OpenID: req.OpenID, ExpiresAt: req.ExpiresAt,
	}
	ctx, cancel := s.appendContext(r)
	defer cancel()
	out, err := s.Ledger.PlaceOrder(ctx, cmd)
	if err != nil {
		if errors.Is(err, domain.ErrOrderConflict) {
			s.log.Warn("order conflict", "mch_id", req.MchID, "out_trade_no", req.OutTradeNo)
			view, _, verr := s.waitView(r.Context(), req.MchID, req.OutTradeNo, out.Position)
			if verr == nil {
				writeJSON(w, http.StatusConflict, map[string]any{
					"error": "out_trade_no already placed with other content", "order": view})
				return
			}
		}
		s.fail(w, r, replyJSON, err)
		return
	}
	status := http.StatusCreated
	if out.Duplicate {
		status = http.StatusOK
	} else {
		s.log.Info("order placed", "mch_id", req.MchID, "out_trade_no", req.OutTradeNo, "total_fee", *req.TotalFee)
	}
	s.writeView(w, r, status, req.MchID, req.OutTradeNo, out.Position)
}

func (s *Server) writeView(w http.ResponseWriter, r *http.Request, status int, mchID, outTradeNo string, pos eventstore.Position) {
	s.head.note(pos)
	view, ok, err := s.waitView(r.Context(), mchID, outTradeNo, pos)
	if err != nil {
		s.fail(w, r, replyJSON, fmt.Errorf("read model: %w", err))
		return
	}
	if !ok {
		s.fail(w, r, replyJSON, notFound("order not found"))
		return
	}
	writeJSON(w, status, view)
}

func (s *Server) closeOrder(w http.ResponseWriter, r *http.Request) {
	mchID, otn := r.PathValue("mch_id"), r.PathValue("out_trade_no")
	if _, ok := s.Merchants.Get(mchID); !ok {
		s.fail(w, r, replyJSON, notFound("unknown merchant"))
		return
	}
	var req struct {
		Reason string `json:"reason"`
	}
	if body, err := readBody(w, r, MaxAPIBody); err != nil {
		s.fail(w, r, replyJSON, err)
		return
	} else if len(bytes.TrimSpace(body)) > 0 {
		if err := decodeJSON(body, &req); err != nil {
			s.fail(w, r, replyJSON, err)
			return
		}
	}
	ctx, cancel := s.appendContext(r)
	defer cancel()
	out, err := s.Ledger.CloseOrder(ctx, mchID, otn, req.Reason)
	if err != nil {
		s.fail(w, r, replyJSON, err)
		return
	}
	s.writeView(w, r, http.StatusOK, mchID, otn, out.Position)
}

func (s *Server) getOrder(w http.ResponseWriter, r *http.Request) {
	mchID, otn := r.PathValue("mch_id"), r.PathValue("out_trade_no")
	if _, ok := s.Merchants.Get(mchID); !ok {
		s.fail(w, r, replyJSON, notFound("unknown merchant"))
		return
	}
	out, err := s.Ledger.Load(r.Context(), mchID, otn)
	if err != nil {
		s.fail(w, r, replyJSON, err)
		return
	}
	if out.Revision < 0 {
		s.fail(w, r, replyJSON, notFound("order not found"))
		return
	}
	s.writeView(w, r, http.StatusOK, mchID, otn, out.Position)
}

// eventJSON is one stored event as the events endpoint shows it.
type eventJSON struct {
	ID         string          `json:"id"`
	Type       string          `json:"type"`
	Revision   uint64          `json:"revision"`
	Position   uint64          `json:"position"`
	RecordedAt time.Time       `json:"recorded_at"`
	Data       json.RawMessage `json:"data"`
}

func (s *Server) getEvents(w http.ResponseWriter, r *http.Request) {
	mchID, otn := r.PathValue("mch_id"), r.PathValue("out_trade_no")
	if _, ok := s.Merchants.Get(mchID); !ok {
		s.fail(w, r, replyJSON, notFound("unknown merchant"))
		return
	}
	stream := domain.StreamID(mchID, otn)
	recs, err := s.Ledger.Store().ReadStream(r.Context(), stream, 0, 0)
	if err != nil {
		s.fail(w, r, replyJSON, err)
		return
	}
	if len(recs) == 0 {
		s.fail(w, r, replyJSON, notFound("order not found"))
		return
	}
	events := make([]eventJSON, 0, len(recs))
	for _, rec := range recs {
		data := json.RawMessage(rec.Data)
		if !json.Valid(data) {
			data, _ = json.Marshal(string(rec.Data))
		}
		events = append(events, eventJSON{
			ID: rec.ID.String(), Type: rec.Type, Revision: rec.Revision, Position: rec.Position.Commit,
			RecordedAt: rec.RecordedAt.UTC(), Data: data,
		})
	}
	writeJSON(w, http.StatusOK, map[string]any{"stream": stream, "events": events})
}

func (s *Server) dailyTotals(w http.ResponseWriter, r *http.Request) {
	mchID := r.PathValue("mch_id")
	if _, ok := s.Merchants.Get(mchID); !ok {
		s.fail(w, r, replyJSON, notFound("unknown merchant"))
		return
	}
	today := projections.Day(s.Now())
	q := r.URL.Query()
	fromS, toS := q.Get("from"), q.Get("to")
	if fromS == "" {
		fromS = today
	}
	bad := map[string]string{}
	from, err := time.ParseInLocation(time.DateOnly, fromS, domain.Beijing)
	if err != nil {
		bad["from"] = "must be a date YYYY-MM-DD (Beijing time)"
	}
	to := from
	if toS == "" {
		// One day; a bad from is reported once, not also as a bad to
		// that the caller never sent.
		toS = fromS
	} else if to, err = time.ParseInLocation(time.DateOnly, toS, domain.Beijing); err != nil {
		bad["to"] = "must be a date YYYY-MM-DD (Beijing time)"
	}
	if len(bad) == 0 && to.Before(from) {
		bad["to"] = "must not be before from"
	}
	if len(bad) == 0 && to.Sub(from) > 365*24*time.Hour {
		bad["to"] = "range is at most 366 days"
	}
	if len(bad) > 0 {
		s.fail(w, r, replyJSON, invalidFields(bad))
		return
	}
	// Totals include everything written through this server so far; on a
	// timeout, serve what the projections have applied.
	_ = s.waitApplied(r.Context(), s.head.get())
	days, err := s.Views.DailyTotals(r.Context(), mchID, from, to)
	if err != nil {
		s.fail(w, r, replyJSON, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"mch_id": mchID, "from": fromS, "to": toS, "days": days})
}
