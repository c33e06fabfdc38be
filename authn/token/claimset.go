package token

import "slices"

// Claim implements policy.Claims: the token's claims as the JSON it
// carries ("iss", "sub", "aud", "exp", "iat", "nbf", "jti", "roles",
// "type", "ver", "fam", "sid", "auth_time"), times as seconds since the
// epoch. None of them is an object, so a longer path is never present.
// An empty path returns them all as a map. Claims are not modified.
func (c *Claims) Claim(path []string) (any, bool) {
	switch len(path) {
	case 0:
		m := map[string]any{}
		for _, name := range [...]string{"iss", "sub", "aud", "exp", "nbf", "iat", "jti", "roles", "type", "ver", "fam", "sid", "auth_time"} {
			if v, ok := c.member(name); ok {
				m[name] = v
			}
		}
		return m, true
	case 1:
		return c.member(path[0])
	}
	return nil, false
}

func (c *Claims) member(name string) (any, bool) {
	str := func(s string) (any, bool) { return s, s != "" }
	switch name {
	case "iss":
		return str(c.Issuer)
	case "sub":
		return str(c.Subject)
	case "jti":
		return str(c.ID)
	case "type":
		return str(c.Type)
	case "ver":
		return str(c.Ver)
	case "fam":
		return str(c.Family)
	case "sid":
		return str(c.SessionID)
	case "aud":
		if len(c.Audience) == 0 {
			return nil, false
		}
		return strList(c.Audience), true
	case "roles":
		if len(c.Roles) == 0 {
			return nil, false
		}
		return strList(slices.Clone(c.Roles)), true
	case "exp":
		if c.ExpiresAt == nil {
			return nil, false
		}
		return float64(c.ExpiresAt.Unix()), true
	case "nbf":
		if c.NotBefore == nil {
			return nil, false
		}
		return float64(c.NotBefore.Unix()), true
	case "iat":
		if c.IssuedAt == nil {
			return nil, false
		}
		return float64(c.IssuedAt.Unix()), true
	case "auth_time":
		if c.AuthTime == nil {
			return nil, false
		}
		return float64(c.AuthTime.Unix()), true
	}
	return nil, false
}

func strList(s []string) []any {
	out := make([]any, len(s))
	for i, v := range s {
		out[i] = v
	}
	return out
}
