// Package wechatpay holds the codecs and signature checks for WeChat Pay
// notifications: the API v2 XML payment and refund notifications, and the
// API v3 JSON notifications with their RSA signatures and AES-GCM resources.
//
// The package never touches the network, the clock (except through the
// injectable V3Verifier.Now) or the ledger: it turns bytes received into
// verified, validated values and domain.Payment / domain.Refund records, and
// it builds the replies WeChat expects. Protocol facts come from the
// project's WeChat Pay notes; every refusal returns one of the sentinel
// errors below (check them with errors.Is).
//
// Typical v2 payment flow:
//
//	f, err := ParseV2(body)          // flat <xml>, no DTD, no duplicates
//	err = CheckV2Return(f)           // return_code FAIL: no signature, nothing to credit
//	key := lookup(f["mch_id"])       // merchant's v2 API key
//	err = VerifyV2(f, key)           // algorithm from the message's sign_type
//	n, err := DecodeV2Pay(f)         // typed and validated
//	p := n.Payment(evidence)
//
// Typical v3 flow:
//
//	err := verifier.Verify(r.Header, rawBody) // over the exact bytes received
//	env, err := ParseV3Envelope(rawBody)
//	plain, err := DecryptV3Resource(env, apiv3Key)
//	tx, err := DecodeV3Transaction(plain)
//
// Secrets (API keys, the APIv3 key) and decrypted plaintext never appear in
// the errors this package returns.
package wechatpay
