package state

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/authgate/authgate/authn/state/statetest"
)

// testLogin are small login limits that keep every key of the shared suite
// within maxSuiteLifetime.
func testLogin() LoginLimits {
	return LoginLimits{
		PerClient:  Limit{Every: time.Minute, Burst: 2},
		User:       Limit{Every: time.Minute, Burst: 3},
		Known:      Limit{Every: time.Minute, Burst: 1},
		Clean:      Limit{Every: time.Minute, Burst: 1},
		CleanAfter: time.Hour,
		KnownFor:   6 * time.Hour,
	}
}

// loginStep is one attempt: check client's attempt on acct and, when
// admitted, settle it with then (LoginFailed when zero, or nothing when
// inflight).
type loginStep struct {
	wait     time.Duration
	client   string
	want     string // the tier admitted, or "client" / "account" for the refusing limit
	then     LoginOutcome
	inflight bool
	acct     string // "alice" when empty
	unknown  bool
}

// verdictName names v as loginStep.want does.
func verdictName(v LoginVerdict) string {
	switch {
	case v.Allowed:
		return v.Tier.String()
	case v.Refused == RefusedClient:
		return "client"
	case v.Refused == RefusedAccount:
		return "account"
	}
	return fmt.Sprintf("%+v", v)
}

// spendUser is the prefix that spends alice's User tier (3) from c1 (2, its
// PerClient burst) and c2, leaving both with a failure.
var spendUser = []loginStep{{client: "c1", want: "user"}, {client: "c1", want: "user"}, {client: "c2", want: "user"}}

func TestLoginLimiter(t *testing.T) {
	steps := func(groups ...[]loginStep) []loginStep {
		var all []loginStep
		for _, g := range groups {
			all = append(all, g...)
		}
		return all
	}
	tests := []struct {
		name   string
		limits func(*LoginLimits)
		steps  []loginStep
	}{
		{"one client meets its own limit first", nil, []loginStep{
			{client: "c1", want: "user"}, {client: "c1", want: "user"}, {client: "c1", want: "client"},
			{wait: time.Minute, client: "c1", want: "user"},
		}},
		{"every client draws on the user tier", nil, steps(spendUser, []loginStep{
			// c2 has a token of its own left, but the user tier is spent
			// and c2 failed, so it is not clean.
			{client: "c2", want: "account"},
		})},
		{"a clean client gets the clean tier once", nil, steps(spendUser, []loginStep{
			{client: "c3", want: "clean"},
			{client: "c3", want: "account"}, // it failed: no longer clean
			{client: "c4", want: "account"}, // clean, but the tier is spent
			{wait: time.Minute, client: "c4", want: "user"},
		})},
		{"failures elsewhere leave a known client its reserved tier", nil, steps(
			[]loginStep{{client: "home", want: "user", then: LoginSucceeded}},
			spendUser,
			[]loginStep{{client: "c3", want: "clean"}, {client: "c4", want: "account"}},
			[]loginStep{{client: "home", want: "known", then: LoginSucceeded}},
			[]loginStep{{client: "home", want: "known"}},   // a typo at home
			[]loginStep{{client: "home", want: "account"}}, // the known tier is spent too
		)},
		{"successes are refunded", nil, []loginStep{
			{client: "c1", want: "user", then: LoginSucceeded}, {client: "c1", want: "user", then: LoginSucceeded},
			{client: "c1", want: "user", then: LoginSucceeded}, {client: "c1", want: "user", then: LoginSucceeded},
			{client: "c1", want: "user"}, {client: "c1", want: "user"}, {client: "c1", want: "client"},
		}},
		{"an attempt never checked is refunded and leaves the client clean", nil, steps(spendUser, []loginStep{
			{client: "c3", want: "clean", then: LoginNotChecked},
			{client: "c3", want: "clean", then: LoginNotChecked},
			{client: "c3", want: "clean"},
			{client: "c3", want: "account"},
		})},
		{"an attempt in flight makes its client not clean", nil, steps(spendUser, []loginStep{
			{client: "c3", want: "clean", inflight: true},
			{client: "c3", want: "account"},
		})},
		{"a failed client is clean again after clean_after", func(l *LoginLimits) {
			l.User = Limit{Every: 2 * time.Hour, Burst: 3}
			l.Clean = Limit{Every: time.Minute, Burst: 5}
		}, steps(spendUser, []loginStep{
			{client: "c2", want: "account"},
			{wait: 59 * time.Minute, client: "c2", want: "account"},
			{wait: time.Minute, client: "c2", want: "clean"},
		})},
		{"a success forgets the client's failures", func(l *LoginLimits) {
			l.User = Limit{Every: 2 * time.Hour, Burst: 3}
			l.Known = Limit{Every: 2 * time.Hour, Burst: 1}
			l.Clean = Limit{Every: time.Hour, Burst: 5}
		}, []loginStep{
			{client: "home", want: "user", then: LoginSucceeded},
			{client: "c1", want: "user"},
			{client: "c1", want: "user", then: LoginSucceeded},
			{client: "c2", want: "user"}, {client: "c2", want: "user"},
			{client: "home", want: "known"},
			// Once the failure's charge to c1's own bucket is repaid, c1
			// is clean: its success forgave the failure. (It is also
			// known, but the known tier is spent.)
			{wait: time.Minute, client: "c1", want: "clean"},
			{client: "c2", want: "account"},
		}},
		{"accounts are independent", nil, steps(spendUser, []loginStep{
			{client: "c1", acct: "bob", want: "user"},
			{client: "c9", acct: "bob", want: "user"},
		})},
		{"a name that does not exist behaves alike, apart", nil, []loginStep{
			{client: "c1", acct: "alice", unknown: true, want: "user"},
			{client: "c1", acct: "alice", unknown: true, want: "user"},
			{client: "c2", acct: "alice", unknown: true, want: "user"},
			{client: "c3", acct: "alice", unknown: true, want: "clean"},
			{client: "c4", acct: "alice", unknown: true, want: "account"},
			// the account alice still has its whole budget
			{client: "c1", want: "user"},
		}},
		{"a known client expires after known_for", func(l *LoginLimits) {
			l.User = Limit{Every: 390 * time.Minute, Burst: 1} // no refill within known_for
		}, []loginStep{
			{client: "home", want: "user", then: LoginSucceeded},
			{client: "c1", want: "user"},
			{wait: 6*time.Hour - time.Second, client: "home", want: "known", then: LoginNotChecked},
			{wait: time.Second, client: "home", want: "clean"},
		}},
	}
	for _, be := range backends(t) {
		t.Run(be.name, func(t *testing.T) {
			for _, tt := range tests {
				t.Run(tt.name, func(t *testing.T) {
					clk := statetest.NewClock(t0())
					a, b := be.open(t, clk)
					l := testLogin()
					if tt.limits != nil {
						tt.limits(&l)
					}
					ctx := context.Background()
					for i, st := range tt.steps {
						// Alternate replicas: the state is shared.
						s := a
						if i%2 == 1 {
							s = b
						}
						clk.Advance(st.wait)
						acct := st.acct
						if acct == "" {
							acct = "alice"
						}
						k := LoginKey{Account: acct, Known: !st.unknown, Client: st.client}
						v, err := s.CheckLogin(ctx, k, l)
						if err != nil {
							t.Fatalf("step %d: CheckLogin(%+v) error = %v", i, k, err)
						}
						if got := verdictName(v); got != st.want {
							t.Fatalf("step %d: CheckLogin(%+v) = %s (%+v), want %s", i, k, got, v, st.want)
						}
						if !v.Allowed {
							if v.RetryAfter <= 0 {
								t.Errorf("step %d: refused with RetryAfter %v, want > 0", i, v.RetryAfter)
							}
							continue
						}
						if v.RetryAfter != 0 {
							t.Errorf("step %d: admitted with RetryAfter %v, want 0", i, v.RetryAfter)
						}
						if st.inflight {
							continue
						}
						then := st.then
						if then == 0 {
							then = LoginFailed
						}
						if err := s.SettleLogin(ctx, k, l, v.Tier, then); err != nil {
							t.Fatalf("step %d: SettleLogin() error = %v", i, err)
						}
					}
				})
			}
		})
	}
}

func TestLoginRetryAfter(t *testing.T) {
	l := LoginLimits{
		PerClient:  Limit{Every: 10 * time.Second, Burst: 1},
		User:       Limit{Every: 40 * time.Second, Burst: 1},
		Known:      Limit{Every: 30 * time.Second, Burst: 1},
		Clean:      Limit{Every: 20 * time.Second, Burst: 1},
		CleanAfter: 50 * time.Second,
		KnownFor:   time.Hour,
	}
	for _, be := range backends(t) {
		t.Run(be.name, func(t *testing.T) {
			clk := statetest.NewClock(t0())
			s, _ := be.open(t, clk)
			ctx := context.Background()
			attempt := func(client string) LoginVerdict {
				t.Helper()
				k := LoginKey{Account: "alice", Known: true, Client: client}
				v, err := s.CheckLogin(ctx, k, l)
				if err != nil {
					t.Fatal(err)
				}
				if v.Allowed {
					mustNil(t, "SettleLogin()", s.SettleLogin(ctx, k, l, v.Tier, LoginFailed))
				}
				return v
			}
			if v := attempt("c1"); v.Tier != TierUser {
				t.Fatalf("first attempt = %+v, want the user tier", v)
			}
			clk.Advance(time.Second)
			// c1's own bucket refills in 9s.
			if v := attempt("c1"); v.Refused != RefusedClient || v.RetryAfter != 9*time.Second {
				t.Errorf("c1 again = %+v, want refused by its client bucket, retry 9s", v)
			}
			// c2 is clean: the clean tier admits it.
			if v := attempt("c2"); v.Tier != TierClean {
				t.Fatalf("c2 = %+v, want the clean tier", v)
			}
			clk.Advance(time.Second)
			// c3 is clean, the clean tier is back in 19s, the user tier
			// in 38s: the sooner wins.
			if v := attempt("c3"); v.Refused != RefusedAccount || v.RetryAfter != 19*time.Second {
				t.Errorf("c3 = %+v, want refused by the account, retry 19s", v)
			}
			clk.Advance(10 * time.Second)
			// c1 failed 12s ago, so the clean tier opens to it only in
			// 38s; the user tier refills in 28s.
			if v := attempt("c1"); v.Refused != RefusedAccount || v.RetryAfter != 28*time.Second {
				t.Errorf("c1 after its bucket refilled = %+v, want refused by the account, retry 28s", v)
			}
		})
	}
}

// TestLoginConcurrentNeverExceedsBudget races many attempts on one account,
// half on each replica, with none settled: the account admits exactly its
// User and Clean bursts, and one client is admitted at most its PerClient
// burst with at most one clean draw.
func TestLoginConcurrentNeverExceedsBudget(t *testing.T) {
	l := LoginLimits{
		PerClient:  Limit{Every: time.Hour, Burst: 4},
		User:       Limit{Every: time.Hour, Burst: 5},
		Known:      Limit{Every: time.Hour, Burst: 2},
		Clean:      Limit{Every: time.Hour, Burst: 3},
		CleanAfter: time.Hour,
		KnownFor:   time.Hour,
	}
	for _, be := range backends(t) {
		for _, tc := range []struct {
			name      string
			client    func(g int) string
			wantTotal int
		}{
			{"fresh clients", func(g int) string { return "c" + strconv.Itoa(g) }, l.User.Burst + l.Clean.Burst},
			{"one client", func(int) string { return "c" }, l.PerClient.Burst},
		} {
			t.Run(be.name+"/"+tc.name, func(t *testing.T) {
				clk := statetest.NewClock(t0())
				a, b := be.open(t, clk)
				const goroutines = 40
				var mu sync.Mutex
				tiers := map[LoginTier]int{}
				var wg sync.WaitGroup
				for g := range goroutines {
					s := a
					if g%2 == 1 {
						s = b
					}
					wg.Go(func() {
						v, err := s.CheckLogin(context.Background(), LoginKey{Account: "alice", Known: true, Client: tc.client(g)}, l)
						if err != nil {
							t.Errorf("CheckLogin() error = %v", err)
							return
						}
						mu.Lock()
						tiers[v.Tier]++
						mu.Unlock()
					})
				}
				wg.Wait()
				total := tiers[TierUser] + tiers[TierKnown] + tiers[TierClean]
				if total != tc.wantTotal || tiers[TierKnown] != 0 || tiers[TierClean] > l.Clean.Burst ||
					(tc.name == "one client" && tiers[TierClean] > 1) {
					t.Errorf("%d concurrent attempts admitted %v, want %d in total", goroutines, tiers, tc.wantTotal)
				}
			})
		}
	}
}

func TestLoginKnownClientsAreBounded(t *testing.T) {
	l := testLogin()
	l.User = Limit{Every: time.Hour, Burst: 1}
	l.Clean = Limit{Every: time.Hour, Burst: 100}
	for _, be := range backends(t) {
		t.Run(be.name, func(t *testing.T) {
			clk := statetest.NewClock(t0())
			s, _ := be.open(t, clk)
			ctx := context.Background()
			// MaxKnownClients+1 clients log in in turn; the first is the
			// oldest and is forgotten.
			for i := range MaxKnownClients + 1 {
				clk.Advance(time.Second)
				k := LoginKey{Account: "alice", Known: true, Client: "k" + strconv.Itoa(i)}
				v, err := s.CheckLogin(ctx, k, l)
				if err != nil || !v.Allowed {
					t.Fatalf("CheckLogin(%s) = %+v, %v", k.Client, v, err)
				}
				mustNil(t, "SettleLogin()", s.SettleLogin(ctx, k, l, v.Tier, LoginSucceeded))
			}
			spend := LoginKey{Account: "alice", Known: true, Client: "x"}
			if v, _ := s.CheckLogin(ctx, spend, l); v.Tier != TierUser {
				t.Fatalf("CheckLogin(x) = %+v, want the user tier", v)
			}
			for i, want := range map[int]LoginTier{0: TierClean, 1: TierKnown, MaxKnownClients: TierKnown} {
				k := LoginKey{Account: "alice", Known: true, Client: "k" + strconv.Itoa(i)}
				v, err := s.CheckLogin(ctx, k, l)
				if err != nil || v.Tier != want {
					t.Errorf("CheckLogin(%s) = %+v, %v; want tier %s", k.Client, v, err, want)
				}
				if v.Allowed {
					mustNil(t, "SettleLogin()", s.SettleLogin(ctx, k, l, v.Tier, LoginNotChecked))
				}
			}
		})
	}
}

func TestLoginInvalidArguments(t *testing.T) {
	ctx := context.Background()
	good := LoginKey{Account: "alice", Known: true, Client: "c"}
	for _, be := range backends(t) {
		t.Run(be.name, func(t *testing.T) {
			s, _ := be.open(t, statetest.NewClock(t0()))
			bad := []struct {
				name string
				k    LoginKey
				l    func(*LoginLimits)
			}{
				{"no account", LoginKey{Client: "c"}, nil},
				{"no client", LoginKey{Account: "alice"}, nil},
				{"zero per client is not unlimited", good, func(l *LoginLimits) { l.PerClient = Limit{} }},
				{"zero user", good, func(l *LoginLimits) { l.User.Every = 0 }},
				{"zero known", good, func(l *LoginLimits) { l.Known.Burst = 0 }},
				{"zero clean", good, func(l *LoginLimits) { l.Clean = Limit{} }},
				{"zero clean after", good, func(l *LoginLimits) { l.CleanAfter = 0 }},
				{"known for too long", good, func(l *LoginLimits) { l.KnownFor = MaxWindow + 1 }},
			}
			for _, tt := range bad {
				l := testLogin()
				if tt.l != nil {
					tt.l(&l)
				}
				if v, err := s.CheckLogin(ctx, tt.k, l); err == nil || v.Allowed {
					t.Errorf("%s: CheckLogin() = %+v, %v; want refused with an error", tt.name, v, err)
				}
				if err := s.SettleLogin(ctx, tt.k, l, TierUser, LoginFailed); err == nil {
					t.Errorf("%s: SettleLogin() = nil, want an error", tt.name)
				}
			}
			for _, tc := range []struct {
				tier LoginTier
				o    LoginOutcome
			}{{TierNone, LoginFailed}, {TierClean + 1, LoginFailed}, {TierUser, 0}, {TierUser, LoginNotChecked + 1}} {
				if err := s.SettleLogin(ctx, good, testLogin(), tc.tier, tc.o); err == nil {
					t.Errorf("SettleLogin(tier %d, outcome %d) = nil, want an error", tc.tier, tc.o)
				}
			}
			for _, sc := range []Scope{"", "Login:ip", "login ip", Scope(strings.Repeat("a", 33))} {
				if ok, _, err := s.Allow(ctx, sc, "k", Limit{Every: time.Second, Burst: 1}); err == nil || ok {
					t.Errorf("Allow(scope %q) = %v, %v; want refused with an error", sc, ok, err)
				}
			}
		})
	}
}

func TestLoginClosedStoreIsUnavailable(t *testing.T) {
	ctx := context.Background()
	k := LoginKey{Account: "alice", Known: true, Client: "c"}
	for _, be := range backends(t) {
		t.Run(be.name, func(t *testing.T) {
			s, _ := be.open(t, statetest.NewClock(t0()))
			mustNil(t, "Close()", s.Close())
			if v, err := s.CheckLogin(ctx, k, testLogin()); !errors.Is(err, ErrUnavailable) || v.Allowed {
				t.Errorf("CheckLogin() on a closed store = %+v, %v; want ErrUnavailable", v, err)
			}
			mustIs(t, "SettleLogin()", s.SettleLogin(ctx, k, testLogin(), TierUser, LoginFailed), ErrUnavailable)
		})
	}
}
