package proxy_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/authgate/authgate/authn"
	"github.com/authgate/authgate/authn/apikey"
	"github.com/authgate/authgate/authn/token"
	"github.com/authgate/authgate/authn/users"
	"github.com/authgate/authgate/internal/filewatch"
	"github.com/authgate/authgate/policy"
	"github.com/authgate/authgate/proxy"
)

// wholeSettle is the settle interval of the in-place reload tests, the
// default. The writer pauses far less than this between chunks; the test
// checks that it did, so a stalled machine cannot turn into a false
// failure.
const wholeSettle = filewatch.DefaultSettle

// reloadProbe is one request and the status each complete version of the
// file gives it. Any other status is a wrong decision.
type reloadProbe struct {
	name   string
	path   string
	header []string
	a, b   int
}

// version is one complete version of a file, written in the chunks an
// in-place writer uses (a valid prefix of the file ends each chunk).
type version struct {
	chunks []string
}

func (v version) text() string { return strings.Join(v.chunks, "") }

// wholeEnv is a gateway whose policy, keys and users files are watched by
// a filewatch.Watcher, as the app wires them.
type wholeEnv struct {
	gw      *httptest.Server
	dir     string
	watcher *filewatch.Watcher
	applied atomic.Int64 // successful loads after startup
	refused atomic.Int64 // loads that returned an error
}

// Files of the reload tests, with their first versions.
type wholeFiles struct {
	policy, keys, users string
}

func newWholeEnv(t *testing.T, files wholeFiles, mintFor func(signer *token.Signer, set *users.Set) map[string]string) (*wholeEnv, map[string]string) {
	t.Helper()
	e := &wholeEnv{dir: t.TempDir()}
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, "ok") }))
	t.Cleanup(upstream.Close)
	for name, content := range map[string]string{"policy.yaml": files.policy, "keys.yaml": files.keys, "users.yaml": files.users} {
		path := filepath.Join(e.dir, name)
		if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		old := time.Now().Add(-time.Minute)
		if err := os.Chtimes(path, old, old); err != nil {
			t.Fatal(err)
		}
	}
	var (
		ps policy.Store
		ks apikey.Store
		us users.Store
	)
	e.watcher = filewatch.New(5*time.Millisecond, func(r filewatch.Result) {
		switch {
		case r.Err != nil:
			e.refused.Add(1)
		case r.Changed:
			e.applied.Add(1)
		}
	}, filewatch.WithSettle(wholeSettle))
	loaders := map[string]filewatch.Loader{
		"policy.yaml": func(data []byte) error {
			set, err := policy.Load("policy.yaml", data)
			if err == nil {
				ps.Swap(set)
			}
			return err
		},
		"keys.yaml": func(data []byte) error {
			set, err := apikey.Parse("keys.yaml", data)
			if err == nil {
				ks.Swap(set)
			}
			return err
		},
		"users.yaml": func(data []byte) error {
			set, err := users.Parse("users.yaml", data)
			if err == nil {
				us.Swap(set)
			}
			return err
		},
	}
	for _, name := range []string{"policy.yaml", "keys.yaml", "users.yaml"} {
		if err := e.watcher.Add(filepath.Join(e.dir, name), loaders[name]); err != nil {
			t.Fatalf("Add(%s): %v", name, err)
		}
	}
	keySet, err := token.NewKeySet(token.Key{ID: "k1", Secret: []byte(strictSecret)})
	if err != nil {
		t.Fatal(err)
	}
	settings := token.Settings{Issuer: "authgate", Audience: "authgate", Leeway: 30 * time.Second}
	var tokens map[string]string
	if mintFor != nil {
		tokens = mintFor(token.NewSigner(keySet, settings, token.Options{}), us.Load())
	}
	bearer, err := authn.NewBearer(token.NewVerifier(keySet, settings, token.Options{Binding: &us, CacheSize: 100}))
	if err != nil {
		t.Fatal(err)
	}
	up, _ := url.Parse(upstream.URL)
	gw, err := proxy.New(proxy.Options{
		Upstream:      up,
		Policy:        &ps,
		Authenticator: authn.Chain{Bearer: bearer, APIKey: apikey.NewAuthenticator(&ks, nil)},
	})
	if err != nil {
		t.Fatal(err)
	}
	e.gw = httptest.NewServer(gw)
	t.Cleanup(e.gw.Close)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { e.watcher.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return e, tokens
}

// status sends one probe.
func (e *wholeEnv) status(client *http.Client, p reloadProbe) (int, error) {
	req, err := http.NewRequest(http.MethodGet, e.gw.URL+p.path, nil)
	if err != nil {
		return 0, err
	}
	for i := 0; i+1 < len(p.header); i += 2 {
		req.Header.Set(p.header[i], p.header[i+1])
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, nil
}

// runInPlaceEdits rewrites file in place between versions a and b, cycles
// times, while clients send every probe. It fails on any answer that
// neither complete version gives, and checks that each complete version
// took effect.
func (e *wholeEnv) runInPlaceEdits(t *testing.T, file string, a, b version, probes []reloadProbe, cycles int) {
	t.Helper()
	path := filepath.Join(e.dir, file)
	var (
		requests, wrong atomic.Int64
		mu              sync.Mutex
		wrongSeen       []string
	)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 8}}
	defer client.CloseIdleConnections()
	for g := range 4 {
		wg.Go(func() {
			for i := g; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				p := probes[i%len(probes)]
				got, err := e.status(client, p)
				if err != nil {
					t.Errorf("%s: %v", p.name, err)
					return
				}
				requests.Add(1)
				if got != p.a && got != p.b {
					wrong.Add(1)
					mu.Lock()
					if len(wrongSeen) < 10 {
						wrongSeen = append(wrongSeen, fmt.Sprintf("%s = %d (version A: %d, B: %d)", p.name, got, p.a, p.b))
					}
					mu.Unlock()
				}
			}
		})
	}

	// waitFor waits until every probe answers as version v does.
	waitFor := func(which string, want func(reloadProbe) int) {
		t.Helper()
		deadline := time.Now().Add(20 * wholeSettle)
		for {
			all := true
			for _, p := range probes {
				if got, err := e.status(client, p); err != nil || got != want(p) {
					all = false
					break
				}
			}
			if all {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("version %s of %s not in force %v after the edit", which, file, 20*wholeSettle)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	// A cycle counts only when the writer's own pauses stayed well under
	// the settle interval. On a loaded machine the writer can stall past
	// it, and then loading the half-written file is the documented
	// behaviour: such a cycle proves nothing either way, so its answers are
	// set aside and another cycle is written instead.
	var maxPause time.Duration
	var setAside int64
	valid, attempts := 0, 0
	for ; valid < cycles && attempts < 3*cycles; attempts++ {
		next, which, want := b, "B", func(p reloadProbe) int { return p.b }
		if attempts%2 == 1 {
			next, which, want = a, "A", func(p reloadProbe) int { return p.a }
		}
		wrongBefore := wrong.Load()
		// Truncate, then write chunk by chunk with pauses, as an editor
		// writing in place does; every pause is seen by several polls.
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_TRUNC, 0)
		if err != nil {
			t.Fatal(err)
		}
		var cyclePause time.Duration
		last := time.Now()
		for _, c := range next.chunks {
			time.Sleep(wholeSettle / 20)
			if _, err := f.WriteString(c); err != nil {
				t.Fatal(err)
			}
			cyclePause = max(cyclePause, time.Since(last))
			last = time.Now()
		}
		f.Close()
		waitFor(which, want)
		time.Sleep(20 * time.Millisecond) // answers in flight are counted in this cycle
		if cyclePause >= wholeSettle/2 {
			setAside += wrong.Load() - wrongBefore
			t.Logf("cycle %d set aside: the writer paused %v between chunks (settle %v)", attempts, cyclePause, wholeSettle)
			continue
		}
		valid++
		maxPause = max(maxPause, cyclePause)
	}
	if valid < cycles {
		close(stop)
		wg.Wait()
		t.Skipf("only %d of %d in-place rewrites had writer pauses under half the settle interval %v: the machine is too loaded for this test to mean anything", valid, attempts, wholeSettle)
	}
	// The last version stays: cut to nothing and left so, the file keeps
	// the last complete version in force.
	refusedBefore := e.refused.Load()
	if err := os.Truncate(path, 0); err != nil {
		t.Fatal(err)
	}
	time.Sleep(3 * wholeSettle)
	finalWant := func(p reloadProbe) int { return p.b }
	if attempts%2 == 0 {
		finalWant = func(p reloadProbe) int { return p.a }
	}
	for _, p := range probes {
		if got, err := e.status(client, p); err != nil || got != finalWant(p) {
			t.Errorf("with %s cut to zero bytes, %s = %d (%v), want %d from the last complete version", file, p.name, got, err, finalWant(p))
		}
	}
	if e.refused.Load() <= refusedBefore {
		t.Errorf("%s cut to zero bytes and left so: no error reported, want the empty file reported", file)
	}
	close(stop)
	wg.Wait()

	t.Logf("%s: %d in-place rewrites (%d set aside), %d requests, %d wrong decisions, longest pause between chunks %v (settle %v)",
		file, valid, attempts-valid, requests.Load(), wrong.Load()-setAside, maxPause, wholeSettle)
	if n := wrong.Load() - setAside; n != 0 {
		t.Errorf("%d wrong decisions during in-place rewrites of %s, want 0; first: %q", n, file, wrongSeen)
	}
	if requests.Load() < 100 {
		t.Errorf("only %d requests: the test did not exercise concurrency", requests.Load())
	}
}

// wholePolicyA opens everything, then closes /admin/** and /old/**; B
// closes /new/** instead of /old/**. The catch-all comes first, so every
// prefix of the file that ends at a rule boundary is valid and opens more
// than either version. The inline tests come last, so they are the first
// thing a cut removes.
var (
	wholePolicyA = version{chunks: []string{
		"roles: [admin, user]\nrules:\n  - id: everything\n    path: /**\n    public: true\n",
		"  - id: admin\n    path: /admin/**\n    roles: [admin]\n",
		"  - id: api\n    path: /api/**\n    authenticated: true\n",
		"  - id: old\n    path: /old/**\n    roles: [admin]\n",
		"tests:\n  - name: anonymous never administers\n    path: /admin/x\n    anonymous: true\n    expect: deny\n",
	}}
	wholePolicyB = version{chunks: []string{
		"roles: [admin, user]\nrules:\n  - id: everything\n    path: /**\n    public: true\n",
		"  - id: admin\n    path: /admin/**\n    roles: [admin]\n",
		"  - id: api\n    path: /api/**\n    authenticated: true\n",
		"  - id: new\n    path: /new/**\n    roles: [admin]\n",
		"tests:\n  - name: anonymous never administers\n    path: /admin/x\n    anonymous: true\n    expect: deny\n",
	}}
)

func keyLine(name, key, roles string) string {
	return "  - name: " + name + "\n    sha256: " + apikey.Digest(key) + "\n    roles: [" + roles + "]\n"
}

var (
	wholeKeysA = version{chunks: []string{
		"keys:\n" + keyLine("admin-key", adminKey, "admin"),
		keyLine("user-key", userKey, "user"),
		keyLine("reader-key", readerKey, "reader"),
		keyLine("old-key", "agk_old-secret-key", "admin"),
	}}
	wholeKeysB = version{chunks: []string{
		"keys:\n" + keyLine("admin-key", adminKey, "admin"),
		keyLine("user-key", userKey, "user"),
		keyLine("reader-key", readerKey, "reader"),
		keyLine("new-key", "agk_new-secret-key", "admin"),
	}}
)

// The policy of the keys and users tests.
const wholeFixedPolicy = `roles: [admin, user, reader]
rules:
  - id: admin
    path: /admin/**
    roles: [admin]
  - id: api
    path: /api/**
    authenticated: true
`

func TestInPlacePolicyEditsNeverMisdecide(t *testing.T) {
	if testing.Short() {
		t.Skip("rewrites files in place under load for several seconds")
	}
	e, _ := newWholeEnv(t, wholeFiles{policy: wholePolicyA.text(), keys: wholeKeysA.text(), users: "users: []\n"}, nil)
	admin := []string{"X-API-Key", adminKey}
	e.runInPlaceEdits(t, "policy.yaml", wholePolicyA, wholePolicyB, []reloadProbe{
		{"anonymous GET /admin/x", "/admin/x", nil, 401, 401},
		{"user key GET /admin/x", "/admin/x", []string{"X-API-Key", userKey}, 403, 403},
		{"admin key GET /admin/x", "/admin/x", admin, 200, 200},
		{"anonymous GET /api/x", "/api/x", nil, 401, 401},
		{"user key GET /api/x", "/api/x", []string{"X-API-Key", userKey}, 200, 200},
		{"anonymous GET /old/x", "/old/x", nil, 401, 200},
		{"anonymous GET /new/x", "/new/x", nil, 200, 401},
		{"anonymous GET /elsewhere", "/elsewhere", nil, 200, 200},
	}, 4)
}

func TestInPlaceKeysEditsNeverMisdecide(t *testing.T) {
	if testing.Short() {
		t.Skip("rewrites files in place under load for several seconds")
	}
	e, _ := newWholeEnv(t, wholeFiles{policy: wholeFixedPolicy, keys: wholeKeysA.text(), users: "users: []\n"}, nil)
	e.runInPlaceEdits(t, "keys.yaml", wholeKeysA, wholeKeysB, []reloadProbe{
		{"admin key GET /admin/x", "/admin/x", []string{"X-API-Key", adminKey}, 200, 200},
		{"user key GET /api/x", "/api/x", []string{"X-API-Key", userKey}, 200, 200},
		{"user key GET /admin/x", "/admin/x", []string{"X-API-Key", userKey}, 403, 403},
		{"reader key GET /api/x", "/api/x", []string{"X-API-Key", readerKey}, 200, 200},
		{"old key GET /admin/x", "/admin/x", []string{"X-API-Key", "agk_old-secret-key"}, 200, 401},
		{"new key GET /admin/x", "/admin/x", []string{"X-API-Key", "agk_new-secret-key"}, 401, 200},
		{"anonymous GET /api/x", "/api/x", nil, 401, 401},
	}, 4)
}

func TestInPlaceUsersEditsNeverMisdecide(t *testing.T) {
	if testing.Short() {
		t.Skip("rewrites files in place under load for several seconds")
	}
	// One bcrypt hash serves every user (nobody logs in here; tokens are
	// bound to it), which keeps the test fast under -race.
	hash, err := users.HashPassword([]byte("password-1"), users.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	hashes := map[string]string{"alice": hash, "bob": hash, "carol": hash, "dave": hash, "erin": hash}
	user := func(name, roles string, disabled bool) string {
		s := "  - username: " + name + "\n    password_hash: \"" + hashes[name] + "\"\n    roles: [" + roles + "]\n"
		if disabled {
			s += "    disabled: true\n"
		}
		return s
	}
	// B takes the role "user" (which every token carries) from carol and
	// gives it to erin; alice, bob and dave are the same in both, so their
	// tokens must work throughout. Roles are checked on every request, so
	// the edit is undone by the next version. (A disable is not: a
	// disabled user's tokens never come back, see authn/users.)
	a := version{chunks: []string{"users:\n" + user("alice", "user, admin", false), user("bob", "user", false), user("carol", "user", false), user("dave", "user", false), user("erin", "admin", false)}}
	b := version{chunks: []string{"users:\n" + user("alice", "user, admin", false), user("bob", "user", false), user("carol", "admin", false), user("dave", "user", false), user("erin", "user", false)}}
	e, tokens := newWholeEnv(t, wholeFiles{policy: wholeFixedPolicy, keys: "keys: []\n", users: a.text()}, func(signer *token.Signer, _ *users.Set) map[string]string {
		out := make(map[string]string)
		for _, name := range []string{"alice", "bob", "carol", "dave", "erin"} {
			raw, _, err := signer.Mint(token.Grant{Subject: name, Roles: []string{"user"}, Type: token.TypeAccess, TTL: time.Hour, Ver: users.Fingerprint(hashes[name])})
			if err != nil {
				t.Fatal(err)
			}
			out[name] = raw
		}
		return out
	})
	bearer := func(name string) []string { return []string{"Authorization", "Bearer " + tokens[name]} }
	e.runInPlaceEdits(t, "users.yaml", a, b, []reloadProbe{
		{"alice GET /api/x", "/api/x", bearer("alice"), 200, 200},
		{"bob GET /api/x", "/api/x", bearer("bob"), 200, 200},
		{"dave GET /api/x", "/api/x", bearer("dave"), 200, 200},
		{"carol GET /api/x", "/api/x", bearer("carol"), 200, 401},
		{"erin GET /api/x", "/api/x", bearer("erin"), 401, 200},
	}, 4)
}
