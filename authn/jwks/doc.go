// Package jwks verifies bearer tokens issued by external identity providers
// (OpenID Connect providers such as Keycloak, Auth0, Okta, Entra ID) using
// the keys they publish as a JSON Web Key Set.
//
// # Building and running
//
// New validates every IssuerConfig and the CacheConfig and returns a Set
// with one authn.TokenVerifier per issuer. Start fetches every issuer's keys
// in the background and keeps them fresh; Ready reports whether every issuer
// has usable keys; Close stops everything. A verifier used before its keys
// arrive fetches them on demand.
//
// # What a token must satisfy
//
//   - It passes the strict decoding step of package jose, shared with the
//     gateway's own tokens: at most jose.MaxTokenBytes, canonical
//     base64url, no duplicate or case-variant member names, no "crit",
//     "b64", "zip", "enc" or "cty" header, registered claims of their JSON
//     types, and a "typ" that is absent, "JWT" or "at+jwt" — or, with
//     IssuerConfig.RequireTyp "at+jwt", only "at+jwt" or
//     "application/at+jwt" (RFC 9068).
//   - "alg" is in the issuer's allow-list (RS*, PS*, ES*, EdDSA; never
//     "none" or HS*), and the key's type matches the algorithm family: RSA
//     for RS*/PS*, EC on the matching curve for ES*, Ed25519 for EdDSA.
//   - The key is found by "kid" in that issuer's JWKS only. A token without
//     "kid" is accepted only when exactly one key of the set is usable for
//     its algorithm. A token whose header carries "jku", "x5u", "jwk" or
//     "x5c" is rejected, not merely ignored, and so is one with "crit".
//   - "iss" equals the configured issuer exactly; "aud" contains one of the
//     configured audiences; "exp" is present and not past; "nbf" and "iat"
//     are not in the future (each with CacheConfig.Leeway); the subject
//     claim is a non-empty string.
//   - The claims object, and every object on the roles claim path, has no
//     two member names equal under Unicode case folding (strings.EqualFold).
//
// # Claim paths
//
// IssuerConfig.RolesClaim is a path through nested claim objects, split on
// ".": "realm_access.roles" reads claims["realm_access"]["roles"]. A name
// that itself contains a dot (a Keycloak client id such as "my.app") is
// written with the dot escaped as `\.`, and a literal backslash as `\\`:
// `resource_access.my\.app.roles`. The value may be an array of strings or
// a space-separated string (as in "scope"); a missing claim or null grants
// no roles; any other type rejects the token. When RoleMap is set only
// mapped roles are granted. Roles are sorted and deduplicated.
//
// # Key cache
//
// A key set is used for the Cache-Control max-age of its response, clamped
// to [MinRefresh, MaxRefresh] (MinRefresh when absent). A token with an
// unknown kid triggers a refetch, coalesced across concurrent requests and
// started at most once per UnknownKidCooldown. When the provider cannot be
// reached the last keys are served until MaxStale after the last successful
// fetch; then every token of that issuer is denied with authn.ErrUnavailable
// and Ready reports false. An issuer that has never been fetched keeps Ready
// false; past StartupGrace after Start this is logged as an error.
//
// # Token cache
//
// Verified tokens are remembered in a bounded LRU keyed by the SHA-256 of
// the token. A hit is served only until the token's exp (no leeway) and only
// while the key that verified it is still published and fresh, so the cache
// never extends a token's life or outlives a key rotation. The cache sits
// inside Verify: checks done by callers, such as revocation, still run on
// every request.
package jwks
