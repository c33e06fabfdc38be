package issuer

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/authgate/authgate/authn/state"
	"github.com/authgate/authgate/authn/users"
)

func TestNewValidation(t *testing.T) {
	f := newFixture(t)
	valid := func() Options {
		return Options{Users: f.users, Signer: f.signer, Verifier: f.verifier, State: f.mem}
	}
	tests := []struct {
		name   string
		mutate func(*Options)
		want   []string
	}{
		{"missing collaborators", func(o *Options) { *o = Options{} },
			[]string{"users store is required", "signer is required", "verifier is required", "state store is required"}},
		{"zero burst is not unlimited", func(o *Options) { o.Limits.LoginPerIP = state.Limit{Every: time.Second} },
			[]string{"issuer: limits: login_per_ip: state: limit burst must be at least 1"}},
		{"zero interval is not unlimited", func(o *Options) { o.Limits.RefreshPerIP = state.Limit{Burst: 5} },
			[]string{"issuer: limits: refresh_per_ip: state: limit every must be positive"}},
		{"negative ttl", func(o *Options) { o.AccessTTL = -time.Second }, []string{"access ttl must not be negative"}},
		{"negative concurrency", func(o *Options) { o.BcryptConcurrency = -1 }, []string{"bcrypt concurrency must not be negative"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := valid()
			tt.mutate(&o)
			_, err := newIssuer(o, hooks{generate: func([]byte, int) ([]byte, error) { return []byte(fakeDummy), nil }})
			if err == nil {
				t.Fatal("New() error = nil, want an error")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("New() error = %q, want it to contain %q", err, w)
				}
			}
		})
	}
	t.Run("defaults", func(t *testing.T) {
		is, err := newIssuer(valid(), hooks{generate: func([]byte, int) ([]byte, error) { return []byte(fakeDummy), nil }})
		if err != nil {
			t.Fatalf("New() error = %v", err)
		}
		if is.limits != DefaultLimits() || is.accessTTL != DefaultAccessTTL || is.refreshTTL != DefaultRefreshTTL ||
			is.maxBody != DefaultMaxBodyBytes || is.stateTO != DefaultStateTimeout || cap(is.sem) < 1 {
			t.Errorf("defaults not applied: %+v", is)
		}
	})
	t.Run("metrics registered twice", func(t *testing.T) {
		o := valid()
		o.Registerer = f.reg // the fixture already registered there
		if _, err := newIssuer(o, hooks{generate: func([]byte, int) ([]byte, error) { return []byte(fakeDummy), nil }}); err == nil {
			t.Error("New() with a registry already holding the metrics: error = nil, want an error")
		}
	})
}

func TestDummyHashCost(t *testing.T) {
	tests := []struct {
		name  string
		users *users.Set
		want  int
	}{
		{"cost of the users file", parseUsers(t, usersYAML), 10},
		{"no users file", nil, users.DefaultCost},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t)
			st := &users.Store{}
			st.Swap(tt.users)
			got := 0
			_, err := newIssuer(Options{Users: st, Signer: f.signer, Verifier: f.verifier, State: f.mem},
				hooks{generate: func(_ []byte, cost int) ([]byte, error) { got = cost; return []byte(fakeDummy), nil }})
			if err != nil || got != tt.want {
				t.Errorf("dummy hash cost = %d (err %v), want %d", got, err, tt.want)
			}
		})
	}
}

func TestHandlersPaths(t *testing.T) {
	f := newFixture(t)
	for _, prefix := range []string{"/auth", "/auth/"} {
		var got []string
		for p := range f.is.Handlers(prefix) {
			got = append(got, p)
		}
		sort.Strings(got)
		want := []string{"/auth/login", "/auth/logout", "/auth/refresh"}
		if !slices.Equal(got, want) {
			t.Errorf("Handlers(%q) paths = %v, want %v", prefix, got, want)
		}
	}
}

func TestLimitsYAMLDefaults(t *testing.T) {
	l := Limits{LoginPerUser: state.Limit{Every: time.Hour, Burst: 3}}.WithDefaults()
	d := DefaultLimits()
	if l.LoginPerIP != d.LoginPerIP || l.RefreshPerIP != d.RefreshPerIP || l.LoginPerUser.Every != time.Hour {
		t.Errorf("WithDefaults() = %+v", l)
	}
	if err := d.Validate(); err != nil {
		t.Errorf("DefaultLimits().Validate() = %v", err)
	}
}

func TestMintFor(t *testing.T) {
	f := newFixture(t)
	set := f.users.Load()
	ctx := context.Background()
	tests := []struct {
		name      string
		subject   string
		roles     []string
		wantErr   string
		wantRoles []string
		wantVer   bool
	}{
		{"user takes roles and ver from the file", "Alice", nil, "", []string{"admin", "user"}, true},
		{"user with a subset of their roles", "alice", []string{"user"}, "", []string{"user"}, true},
		{"user with a role they do not hold", "alice", []string{"user", "auditor"}, `does not hold role "auditor"`, nil, false},
		{"disabled user", "bob", nil, "is disabled", nil, false},
		{"service", "billing", []string{"reader"}, "", []string{"reader"}, false},
		{"service without roles", "billing", nil, "needs at least one --role", nil, false},
		{"blank subject", " ", []string{"r"}, "must be non-empty", nil, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			raw, c, err := MintFor(f.signer, set, tt.subject, tt.roles, time.Hour)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("MintFor(%q) error = %v, want %q", tt.subject, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("MintFor(%q) error = %v", tt.subject, err)
			}
			if (c.Ver != "") != tt.wantVer || !slices.Equal(c.Roles, tt.wantRoles) {
				t.Errorf("claims = ver %q roles %v, want ver set %v roles %v", c.Ver, c.Roles, tt.wantVer, tt.wantRoles)
			}
			// The token passes the verifier, binding included.
			if _, err := f.verifier.Verify(ctx, raw); err != nil {
				t.Errorf("Verify(minted token) error = %v", err)
			}
		})
	}
	t.Run("service token dies when a user of that name appears", func(t *testing.T) {
		raw, _, err := MintFor(f.signer, set, "dave", []string{"admin"}, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		f.users.Swap(parseUsers(t, usersYAML+"  - username: dave\n    password_hash: \""+hashBob+"\"\n"))
		if _, err := f.verifier.Verify(ctx, raw); !errors.Is(err, users.ErrNotService) {
			t.Errorf("Verify(service token naming a user) error = %v, want ErrNotService", err)
		}
	})
}

// TestLoginTimingUnknownUserMatchesWrongPassword measures real bcrypt: the
// median time of a login for an unknown user must be within 20% of a login
// with a wrong password, or the answer time would reveal which usernames
// exist.
func TestLoginTimingUnknownUserMatchesWrongPassword(t *testing.T) {
	if testing.Short() {
		t.Skip("timing test runs real bcrypt")
	}
	f := newFixture(t, func(o *Options, h *hooks) {
		*h = hooks{} // real bcrypt; the dummy hash gets the file's cost, 10
		o.Registerer = prometheus.NewRegistry()
	})
	samples := 30
	if raceEnabled {
		samples = 11
	}
	measure := func(user string) time.Duration {
		start := time.Now()
		w := f.do(request{path: "/auth/login", body: form("username", user, "password", "not-the-password")})
		d := time.Since(start)
		if w.Code != http.StatusBadRequest {
			t.Fatalf("login(%s) = %d, want 400", user, w.Code)
		}
		return d
	}
	measure("alice") // warm up
	// Other processes share the machine, so a round that misses is
	// retried; a real difference (a skipped compare costs a whole bcrypt)
	// misses every round. Each unknown-user login is paired with the
	// wrong-password login right after it and the pair's ratio taken, so
	// that load which slows both (bcrypt runs at the lowest OS priority)
	// cancels out; the median of the pairs' ratios is judged.
	const rounds = 5
	for round := 1; ; round++ {
		var unknown, wrong []time.Duration
		var ratios []float64
		for i := range samples {
			u, w := measure("nobody"+strconv.Itoa(i)), measure("alice")
			unknown, wrong = append(unknown, u), append(wrong, w)
			ratios = append(ratios, float64(u)/float64(w))
		}
		slices.Sort(ratios)
		ratio := ratios[len(ratios)/2]
		mu, mw := median(unknown), median(wrong)
		t.Logf("round %d: median login: unknown user %v, wrong password %v, median pair ratio %.2f", round, mu, mw, ratio)
		if ratio >= 0.8 && ratio <= 1.2 {
			return
		}
		if round == rounds {
			t.Fatalf("median unknown-user login %v vs wrong-password %v: median pair ratio %.2f, want within 20%%", mu, mw, ratio)
		}
	}
}

func median(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}
