package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"time"

	"github.com/orderledger/orderledger/projections"
)

// apiClient talks to a ledger's HTTP API (used by demo and loadgen).
type apiClient struct {
	base string
	http *http.Client
}

func newAPIClient(base string) *apiClient {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = 256
	return &apiClient{base: base, http: &http.Client{Transport: tr, Timeout: 30 * time.Second}}
}

// orderRequest is the body of POST /v1/orders.
type orderRequest struct {
	MchID       string `json:"mch_id"`
	AppID       string `json:"appid"`
	OutTradeNo  string `json:"out_trade_no"`
	TotalFee    int64  `json:"total_fee"`
	Description string `json:"description"`
}

func (c *apiClient) do(ctx context.Context, method, path string, body any, out any) (int, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return 0, err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		return 0, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		return resp.StatusCode, err
	}
	if out != nil && resp.StatusCode < 300 {
		if err := json.Unmarshal(raw, out); err != nil {
			return resp.StatusCode, fmt.Errorf("%s %s: decode reply: %w", method, path, err)
		}
	}
	if resp.StatusCode >= 300 {
		return resp.StatusCode, fmt.Errorf("%s %s: %d %s", method, path, resp.StatusCode, bytes.TrimSpace(raw))
	}
	return resp.StatusCode, nil
}

func (c *apiClient) placeOrder(ctx context.Context, o orderRequest) (int, error) {
	return c.do(ctx, http.MethodPost, "/v1/orders", o, nil)
}

func (c *apiClient) order(ctx context.Context, mchID, outTradeNo string) (projections.OrderView, error) {
	var v projections.OrderView
	_, err := c.do(ctx, http.MethodGet, "/v1/merchants/"+url.PathEscape(mchID)+"/orders/"+url.PathEscape(outTradeNo), nil, &v)
	return v, err
}

type eventsReply struct {
	Stream string `json:"stream"`
	Events []struct {
		ID       string          `json:"id"`
		Type     string          `json:"type"`
		Revision uint64          `json:"revision"`
		Position uint64          `json:"position"`
		Data     json.RawMessage `json:"data"`
	} `json:"events"`
}

func (c *apiClient) events(ctx context.Context, mchID, outTradeNo string) (eventsReply, error) {
	var v eventsReply
	_, err := c.do(ctx, http.MethodGet, "/v1/merchants/"+url.PathEscape(mchID)+"/orders/"+url.PathEscape(outTradeNo)+"/events", nil, &v)
	return v, err
}

type totalsReply struct {
	MchID string                   `json:"mch_id"`
	From  string                   `json:"from"`
	To    string                   `json:"to"`
	Days  []projections.DailyTotal `json:"days"`
}

func (c *apiClient) dailyTotals(ctx context.Context, mchID, from, to string) (totalsReply, error) {
	var v totalsReply
	q := url.Values{"from": {from}, "to": {to}}
	_, err := c.do(ctx, http.MethodGet, "/v1/merchants/"+url.PathEscape(mchID)+"/totals/daily?"+q.Encode(), nil, &v)
	return v, err
}
