package state

import (
	"crypto/sha256"
	"encoding/hex"
	"strings"
)

// Redis key layout.
//
// Every key the Redis store writes is built by (*Redis).key:
//
//	<prefix><kind>:{<tag>}[:<rest>...]
//
// The tag is a Redis Cluster hash tag: Redis hashes only the text between
// the braces to pick the key's slot. The rule that keeps every script
// cluster-safe is therefore one sentence:
//
//	A script may touch several keys only if all of them were built with the
//	same tag.
//
// Choose the tag as the thing a script makes one atomic decision about: a
// refresh-token family ({<family>}), an account's login buckets
// ({u:<name>}), a limiter bucket ({<id>}), a session. Keys of one tag land
// on one cluster node, so a tag must not be shared by unbounded traffic
// (never a constant such as {global}). TestRedisScriptKeysShareOneSlot
// runs every operation and checks the slot of every key of every script
// call, and TestRedisKeyLayout pins each kind's name.
//
// The kinds, their values and lifetimes:
//
//	fam:{<family>}               hash: cur, prev, lost, lat, rev   until the family's refresh token expires; a revocation extends it
//	rev:{<jti>}                  "1"                               until the revoked access token expires
//	nb:{<subject>}               unix ms                           until the not-before instant plus the longest token lifetime
//	rl:<scope>:{<id>}            GCRA TAT in µs                    until the bucket is full again
//	login:a:{<u|x>:<name>}       hash of tier TATs, known clients  until the last of them ends
//	login:c:{<u|x>:<name>}:<client>  hash: TAT, last failure       until both end
//
// Names without a tag (<prefix>fam:<family>, rev:<jti>, nb:<subject>,
// rl:<scope>:<id>) are the layout of the previous release. A store on one
// node or behind Sentinel still reads them (see legacyKey) so an upgrade
// neither forgets a revocation nor misjudges a family that was mid-rotation;
// they expire by their own TTLs.

// Key kinds. A kind never contains a brace.
const (
	kindFamily    = "fam"
	kindRevoked   = "rev"
	kindNotBefore = "nb"
	kindBucket    = "rl"
	kindLoginAcct = "login:a"
	kindLoginPair = "login:c"
)

// keyTag is the text of a key's hash tag: never empty and never containing
// '{' or '}'. Make one with tagOf, or accountTag for login buckets.
type keyTag string

// tagOf returns the tag of id: id itself when it is short, holds no brace
// and cannot be mistaken for a digest, otherwise its SHA-256. A client
// choosing an id with braces can therefore neither move the key to a slot
// of its choice nor split a script's keys over two slots (CROSSSLOT denial
// of service), and a long id cannot pin memory.
func tagOf(id string) keyTag { return keyTag(tagText(id)) }

// tagText is the brace-free, length-bound form of s used inside tags.
func tagText(s string) string {
	if s == "" || len(s) > maxKeyLen || strings.ContainsAny(s, "{}") || strings.HasPrefix(s, "sha256:") {
		sum := sha256.Sum256([]byte(s))
		return "sha256:" + hex.EncodeToString(sum[:])
	}
	return s
}

// key returns the key of kind with hash tag tag, followed by the rest
// parts (each bounded by boundKey). It is the only way the Redis store
// builds a key.
func (r *Redis) key(kind string, tag keyTag, rest ...string) string {
	n := len(r.prefix) + len(kind) + len(tag) + 3
	for _, p := range rest {
		n += 1 + len(p)
	}
	var b strings.Builder
	b.Grow(n)
	b.WriteString(r.prefix)
	b.WriteString(kind)
	b.WriteString(":{")
	b.WriteString(string(tag))
	b.WriteByte('}')
	for _, p := range rest {
		b.WriteByte(':')
		b.WriteString(boundKey(p))
	}
	return b.String()
}

// legacyKey returns the untagged name the previous release gave the record
// id of kind, when this store reads that layout (one node or Sentinel), or
// "" (Cluster, which that release did not support).
func (r *Redis) legacyKey(kind, id string) string {
	if !r.legacy {
		return ""
	}
	return r.prefix + kind + ":" + boundKey(id)
}

// withLegacy returns key followed by the legacy name of id of kind, if
// this store reads it. A script given both reads the legacy record as a
// fallback; it is never passed on Cluster, where the two could be in
// different slots.
func (r *Redis) withLegacy(key, kind, id string) []string {
	if old := r.legacyKey(kind, id); old != "" {
		return []string{key, old}
	}
	return []string{key}
}

// familyKeys returns the keys of family fam for the family scripts.
func (r *Redis) familyKeys(fam string) []string {
	return r.withLegacy(r.familyKey(fam), kindFamily, fam)
}

// familyKey is the key of a refresh-token family.
func (r *Redis) familyKey(fam string) string { return r.key(kindFamily, tagOf(fam)) }

// revokedKey is the key of a revoked access token.
func (r *Redis) revokedKey(jti string) string { return r.key(kindRevoked, tagOf(jti)) }

// notBeforeKey is the key of a subject's not-before record.
func (r *Redis) notBeforeKey(subject string) string { return r.key(kindNotBefore, tagOf(subject)) }

// bucketKey is the key of limiter bucket id of scope.
func (r *Redis) bucketKey(scope Scope, id string) string {
	return r.key(kindBucket+":"+string(scope), tagOf(id))
}
