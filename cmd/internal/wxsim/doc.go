// Package wxsim is the project's own WeChat Pay simulator: it plays
// WeChat's side of payment and refund notifications for the end-to-end
// tests, the crash tests, the load generator and `ledger demo`.
//
// A Merchant holds sandbox credentials (v2 API key, APIv3 key) plus an RSA
// key pair playing WeChat Pay's signing key, known to the ledger as a WeChat
// Pay public key (PUB_KEY_ID_...) or as a self-signed platform certificate.
// WriteConfig writes the merchants file the server reads. The builders
// (V2Pay, V2Refund, V3Pay, V3Refund, ...) produce notifications exactly as
// WeChat formats, signs and encrypts them, using package wechatpay's codecs,
// and Deliver posts one the way WeChat does: it judges the reply by WeChat's
// rules and retries on WeChat's schedule, compressed and with an injectable
// sleep so tests never wait.
//
// The package reads no files outside what its callers give it.
package wxsim
