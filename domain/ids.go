package domain

import (
	"crypto/sha1"
	"strings"
)

// Namespace is the UUIDv5 namespace of the ledger's event IDs,
// 3b1f6a52-8e0c-5d41-9a77-2e6bc41095d3. It is a fixed constant, not derived
// from anything (it is NOT UUIDv5 of the URL namespace and
// "https://orderledger.dev/events", which is 9e04f828-c68d-5135-98e3-941f1403998f).
// It is permanent: changing it would make retries after an upgrade look new.
var Namespace = [16]byte{0x3b, 0x1f, 0x6a, 0x52, 0x8e, 0x0c, 0x5d, 0x41, 0x9a, 0x77, 0x2e, 0x6b, 0xc4, 0x10, 0x95, 0xd3}

// UUIDv5 returns the RFC 9562 version-5 UUID of name in namespace ns.
func UUIDv5(ns [16]byte, name string) [16]byte {
	h := sha1.New()
	h.Write(ns[:])
	h.Write([]byte(name))
	var id [16]byte
	copy(id[:], h.Sum(nil))
	id[6] = (id[6] & 0x0f) | 0x50 // version 5
	id[8] = (id[8] & 0x3f) | 0x80 // RFC 4122 variant
	return id
}

// EventID derives the ID of an event from the parts that identify the fact
// it records, e.g. EventID("10000100", "4200000...", "PaymentConfirmed").
// Parts are joined with "\x1f" (unit separator), which cannot occur in
// WeChat identifiers, so ("a-b","c") and ("a","b-c") never collide.
func EventID(parts ...string) [16]byte {
	return UUIDv5(Namespace, strings.Join(parts, "\x1f"))
}
