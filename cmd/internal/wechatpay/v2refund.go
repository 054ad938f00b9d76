package wechatpay

import (
	"bytes"
	"crypto/aes"
	"crypto/md5"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"time"

	"github.com/orderledger/orderledger/domain"
)

// V2RefundNotify is the outer, clear-text part of a v2 refund notification.
// It has no signature: authenticity comes from ReqInfo decrypting under the
// merchant's API key. AppID and MchID (and the sub_ ones in partner mode)
// let the caller find the merchant, and so the key, before decrypting.
//
// Fields carry WeChat's field of the same name (the wx tag), verbatim;
// only those with a particular meaning are commented.
type V2RefundNotify struct {
	ReturnCode string `wx:"return_code" validate:"eq=SUCCESS"`
	ReturnMsg  string `wx:"return_msg"`
	AppID      string `wx:"appid" validate:"required,printascii,max=32"`
	MchID      string `wx:"mch_id" validate:"required,printascii,max=32"`
	SubAppID   string `wx:"sub_appid" validate:"printascii,max=32"`
	SubMchID   string `wx:"sub_mch_id" validate:"printascii,max=32"`
	NonceStr   string `wx:"nonce_str"`
	// ReqInfo is the encrypted body; see DecryptV2RefundReqInfo.
	ReqInfo string `wx:"req_info" validate:"required"`
	// Raw holds every field received.
	Raw Fields `wx:"-" validate:"-"`
}

// ParseV2RefundNotify parses the outer XML of a v2 refund notification
// with the same rules as ParseV2. Errors: those of ParseV2, ErrReturnFail
// (return_code FAIL), ErrInvalid (appid, mch_id or req_info missing).
func ParseV2RefundNotify(body []byte) (V2RefundNotify, error) {
	f, err := ParseV2(body)
	if err != nil {
		return V2RefundNotify{}, err
	}
	if err := CheckV2Return(f); err != nil {
		return V2RefundNotify{}, err
	}
	n := V2RefundNotify{
		ReturnCode: f["return_code"],
		ReturnMsg:  f["return_msg"],
		AppID:      f["appid"],
		MchID:      f["mch_id"],
		SubAppID:   f["sub_appid"],
		SubMchID:   f["sub_mch_id"],
		NonceStr:   f["nonce_str"],
		ReqInfo:    f["req_info"],
		Raw:        f,
	}
	var p problems
	p.check(n)
	if err := p.err(); err != nil {
		return V2RefundNotify{}, err
	}
	return n, nil
}

// refundKey derives the req_info AES-256 key: the lower-case hex MD5 of the
// v2 API key, used as 32 ASCII bytes.
func refundKey(apiKey string) []byte {
	sum := md5.Sum([]byte(apiKey))
	return []byte(hex.EncodeToString(sum[:]))
}

// reqInfoEncoding is standard base64 with padding and zero trailing bits
// required. Go's decoder skips CR and LF; we keep that on purpose: line
// breaks change no byte of the ciphertext, some Java encoders wrap base64 at
// 76 characters, and refusing them would buy no security (authenticity
// comes from decryption) but could lose a genuine refund notification.
var reqInfoEncoding = base64.StdEncoding.Strict()

// DecryptV2RefundReqInfo decrypts the req_info of a v2 refund notification:
// base64 (standard alphabet, padded; CR/LF ignored, anything else refused),
// AES-256-ECB with key = lower-case hex MD5 of the v2 API key, PKCS#7
// padding, then a flat XML document with root <root>, parsed with the
// ParseV2 rules. Every failure, including a wrong key, is ErrUndecryptable;
// errors say which step failed but never show the key or the plaintext.
func DecryptV2RefundReqInfo(reqInfo, apiKey string) (Fields, error) {
	if apiKey == "" {
		return nil, fmt.Errorf("%w: empty v2 API key", ErrUndecryptable)
	}
	if len(reqInfo) > MaxV2BodySize {
		return nil, fmt.Errorf("%w: req_info too long", ErrUndecryptable)
	}
	ct, err := reqInfoEncoding.DecodeString(reqInfo)
	if err != nil {
		return nil, fmt.Errorf("%w: req_info is not base64", ErrUndecryptable)
	}
	if len(ct) == 0 || len(ct)%aes.BlockSize != 0 {
		return nil, fmt.Errorf("%w: req_info is not whole AES blocks", ErrUndecryptable)
	}
	block, err := aes.NewCipher(refundKey(apiKey))
	if err != nil {
		return nil, fmt.Errorf("%w: bad key", ErrUndecryptable) // cannot happen: the key is 32 bytes
	}
	plain := make([]byte, len(ct))
	for i := 0; i < len(ct); i += aes.BlockSize {
		block.Decrypt(plain[i:i+aes.BlockSize], ct[i:i+aes.BlockSize])
	}
	plain, ok := unpadPKCS7(plain)
	if !ok {
		return nil, fmt.Errorf("%w: bad padding (wrong key?)", ErrUndecryptable)
	}
	f, err := parseFlat(plain, "root")
	if err != nil {
		// Deliberately not wrapped: the parser's message could quote
		// decrypted text.
		return nil, fmt.Errorf("%w: plaintext is not a <root> document (wrong key?)", ErrUndecryptable)
	}
	return f, nil
}

// unpadPKCS7 strips PKCS#7 padding (1..16 bytes each equal to the count).
func unpadPKCS7(b []byte) ([]byte, bool) {
	if len(b) == 0 {
		return nil, false
	}
	n := int(b[len(b)-1])
	if n == 0 || n > aes.BlockSize || n > len(b) {
		return nil, false
	}
	if subtle.ConstantTimeCompare(b[len(b)-n:], bytes.Repeat([]byte{byte(n)}, n)) != 1 {
		return nil, false
	}
	return b[:len(b)-n], true
}

// EncryptV2RefundReqInfo is the inverse of DecryptV2RefundReqInfo: it
// renders plain as a <root> document (EncodeV2 style), pads, encrypts with
// AES-256-ECB under the derived key and base64-encodes. It is what WeChat
// does; the simulator and tests use it.
func EncryptV2RefundReqInfo(plain Fields, apiKey string) (string, error) {
	if apiKey == "" {
		return "", fmt.Errorf("%w: empty v2 API key", ErrBadKey)
	}
	doc, err := encodeFlat(plain, "root")
	if err != nil {
		return "", err
	}
	pad := aes.BlockSize - len(doc)%aes.BlockSize
	return encryptReqInfoBlocks(append(doc, bytes.Repeat([]byte{byte(pad)}, pad)...), apiKey)
}

// encryptReqInfoBlocks encrypts doc, a whole number of AES blocks already
// padded, in place with AES-256-ECB under the req_info key derived from
// apiKey, and base64-encodes it.
func encryptReqInfoBlocks(doc []byte, apiKey string) (string, error) {
	block, err := aes.NewCipher(refundKey(apiKey))
	if err != nil {
		return "", fmt.Errorf("%w: %w", ErrBadKey, err)
	}
	for i := 0; i < len(doc); i += aes.BlockSize {
		block.Encrypt(doc[i:i+aes.BlockSize], doc[i:i+aes.BlockSize])
	}
	return base64.StdEncoding.EncodeToString(doc), nil
}

// V2RefundInfo is the typed view of a decrypted v2 refund req_info.
//
// Fields carry WeChat's field of the same name (the wx tag), verbatim;
// only those with a particular meaning are commented.
type V2RefundInfo struct {
	TransactionID string `wx:"transaction_id" validate:"required,printascii,max=32"`
	OutTradeNo    string `wx:"out_trade_no" validate:"required,printascii,max=32"`
	RefundID      string `wx:"refund_id" validate:"required,printascii,max=32"`
	OutRefundNo   string `wx:"out_refund_no" validate:"required,printascii,max=64"`
	// TotalFee is the order total, RefundFee the amount refunded, in fen.
	TotalFee            int64 `wx:"total_fee" validate:"gte=0"`
	SettlementTotalFee  int64 `wx:"settlement_total_fee" validate:"gte=0"`
	RefundFee           int64 `wx:"refund_fee" validate:"gte=0"`
	SettlementRefundFee int64 `wx:"settlement_refund_fee" validate:"gte=0"`
	// RefundStatus is WeChat's value: SUCCESS, CHANGE (abnormal) or
	// REFUNDCLOSE. Status holds the domain.RefundStatus* equivalent.
	RefundStatus string `wx:"refund_status" validate:"required,oneof=SUCCESS CHANGE REFUNDCLOSE"`
	Status       string `wx:"-" validate:"-"`
	// SuccessTime is set when the refund succeeded (Beijing time).
	SuccessTime time.Time `wx:"success_time"`
	// RefundRecvAccount is WeChat's (misspelled) refund_recv_accout, e.g.
	// 支付用户零钱 or a bank card.
	RefundRecvAccount   string `wx:"refund_recv_accout"`
	RefundAccount       string `wx:"refund_account"`
	RefundRequestSource string `wx:"refund_request_source"`
	// Raw holds every decrypted field. It is confidential: do not log it.
	Raw Fields `wx:"-" validate:"-"`
}

// v2RefundStatus maps v2 refund statuses to the domain's.
var v2RefundStatus = map[string]string{
	"SUCCESS":     domain.RefundStatusSuccess,
	"CHANGE":      domain.RefundStatusAbnormal,
	"REFUNDCLOSE": domain.RefundStatusClosed,
}

// DecodeV2Refund builds the typed view of decrypted req_info fields.
// Required: transaction_id, out_trade_no, refund_id, out_refund_no,
// total_fee, refund_fee, refund_status (SUCCESS, CHANGE or REFUNDCLOSE).
// success_time (yyyy-MM-dd HH:mm:ss, Beijing) is required when the status
// is SUCCESS. settlement_refund_fee, refund_recv_accout, refund_account and
// refund_request_source are documented as required but are not needed to
// book the refund, so their absence is tolerated rather than risking the
// loss of a genuine notification. Errors: ErrInvalid naming the fields
// (never their values).
func DecodeV2Refund(f Fields) (V2RefundInfo, error) {
	var p problems
	r := V2RefundInfo{
		TransactionID:       f["transaction_id"],
		OutTradeNo:          f["out_trade_no"],
		RefundID:            f["refund_id"],
		OutRefundNo:         f["out_refund_no"],
		TotalFee:            p.fenField(f, "total_fee", true),
		SettlementTotalFee:  p.fenField(f, "settlement_total_fee", false),
		RefundFee:           p.fenField(f, "refund_fee", true),
		SettlementRefundFee: p.fenField(f, "settlement_refund_fee", false),
		RefundStatus:        f["refund_status"],
		Status:              v2RefundStatus[f["refund_status"]],
		SuccessTime:         p.timeField(f, "success_time", "2006-01-02 15:04:05", f["refund_status"] == "SUCCESS"),
		RefundRecvAccount:   f["refund_recv_accout"],
		RefundAccount:       f["refund_account"],
		RefundRequestSource: f["refund_request_source"],
		Raw:                 f,
	}
	p.check(r)
	if err := p.err(); err != nil {
		return V2RefundInfo{}, err
	}
	return r, nil
}

// Refund maps the decrypted refund to the ledger's record. mchID comes from
// the outer notification (V2RefundNotify.MchID): req_info does not repeat
// it. v2 has no payer_total / payer_refund, so those stay zero.
func (r V2RefundInfo) Refund(mchID string, evidence domain.Evidence) domain.Refund {
	return domain.Refund{
		MchID:               mchID,
		OutTradeNo:          r.OutTradeNo,
		TransactionID:       r.TransactionID,
		RefundID:            r.RefundID,
		OutRefundNo:         r.OutRefundNo,
		Status:              r.Status,
		TotalFee:            r.TotalFee,
		RefundFee:           r.RefundFee,
		SettlementRefundFee: r.SettlementRefundFee,
		ReceivedAccount:     r.RefundRecvAccount,
		SucceededAt:         r.SuccessTime,
		Evidence:            evidence,
	}
}
