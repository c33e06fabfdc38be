// Package policy decides WHAT a caller may do. It is pure: a YAML policy
// file is parsed (Parse), validated and compiled (Compile) into an immutable
// *Set, and each request is decided (Set.Decide) against one canonical path.
// The package imports nothing else from authgate.
//
// # Canonical paths
//
// Canonicalize turns r.URL.EscapedPath() into the one escaped form that is
// both authorized and forwarded; the proxy must forward exactly that string
// or reject the request. The rules are:
//
//   - The path must be non-empty and start with "/".
//   - Every "%XX" must have two hex digits. Percent-encoded unreserved
//     characters (ALPHA, DIGIT, "-", ".", "_", "~") are decoded; every other
//     percent-encoding is kept, with upper-case hex. Decoding happens once:
//     "%25" stays "%25" and "%252e" is not a dot.
//   - Rejected, raw or encoded: "/" encoded as "%2F", the backslash ("\" and
//     "%5C"), NUL and every control byte (0x00-0x1F, 0x7F), and ";" ("%3B"),
//     because Tomcat and Spring strip ";..." path parameters.
//   - Rejected raw: bytes >= 0x80 (they must arrive percent-encoded), and
//     the characters that cannot appear raw in an escaped path: space, '"',
//     "<", ">", "?", "#", "^", "`", "{", "|", "}".
//   - Dot segments "." and ".." are rejected, also when spelled with "%2E".
//     Legitimate clients resolve them before sending.
//   - Rejected encoded: "#" and "?" ("%23", "%3F"), which an app that
//     decodes first splits off.
//   - Percent-encoded bytes >= 0x80 must be valid UTF-8 (no overlong
//     forms, surrogates or stray bytes), already in NFKC, and only
//     letters, combining marks and digits: no punctuation, symbols,
//     spaces or format characters, which normalisers and Windows best-fit
//     conversion map to ASCII separators.
//   - Rejected, because Windows, IIS and NTFS read them as another name: a
//     segment ending in "." or a space ("%20"), a ":" followed by "$" (NTFS
//     streams such as "::$DATA") and 8.3 short names ("ADMINI~1").
//   - Runs of "/" collapse into one; one trailing slash is kept if present.
//   - Case is preserved.
//
// # Matching
//
// Patterns are split on "/" into segments. A segment is a literal, "*" (one
// non-empty segment) or "**" (last segment only: zero or more remaining
// segments, so "/api/**" matches "/api", "/api/" and "/api/x/y"). A literal
// segment is canonicalized like a request path. A trailing slash is ignored
// for matching. Literal segments are compared byte for byte on the canonical
// form, with two foldings applied to both sides: a percent-encoded
// sub-delimiter, ":", "@", "[" or "]" compares equal to the raw character
// (upstreams commonly decode them, so "%21" and "!" must not reach different
// rules), and, when the policy sets case_insensitive, ASCII letters compare
// case-insensitively. The forwarded path is never changed by folding.
//
// # Precedence
//
// Deny rules (deny: true) are looked at first: one whose pattern matches,
// whose methods list is empty or contains the method and whose conditions
// hold refuses the request (ReasonDenyRule), whatever allow rule would
// match, at any specificity. Among several, the most specific is reported.
//
// Otherwise, among the allow rules whose pattern matches and whose methods
// list is empty or contains the request method, the most specific wins:
// patterns are compared segment by segment from the left, a literal beats
// "*", which beats "**"; then a rule with a methods list beats one without.
// This is a depth-first walk of a segment trie (literal child, then "*",
// then "**"), and does not depend on the order of the file. The winner's
// access level and then its conditions decide; a condition that fails
// denies (ReasonDenyCondition) and never hands the request to a broader
// rule. No matching rule means deny.
//
// # Conditions
//
// Every condition a rule lists must hold; a list holds when one entry does
// (scopes.all_of and all_roles need every entry). Conditions read the
// Request: issuer, auth method, key name, claims, scopes, email, client
// address and canonical host. A `when` expression is CEL, type-checked at
// Compile over the variables of CELVariables, with a cost limit; an
// expression that fails to evaluate counts as false in an allow rule and as
// true in a deny rule. Decide allocates only when a `when` runs.
package policy
