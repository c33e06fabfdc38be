package authn

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"
)

// fakeRevoker answers from a fixed list, or fails, or waits for the context.
type fakeRevoker struct {
	revoked map[string]bool
	err     error
	block   bool

	mu       sync.Mutex
	jtis     []string
	sids     []string
	deadline time.Duration // time left on the lookup context when called
}

func (r *fakeRevoker) AccessRevoked(ctx context.Context, jti, sid string) (bool, error) {
	r.mu.Lock()
	r.jtis = append(r.jtis, jti)
	r.sids = append(r.sids, sid)
	if d, ok := ctx.Deadline(); ok {
		r.deadline = time.Until(d)
	}
	r.mu.Unlock()
	if r.block {
		<-ctx.Done()
		return false, ctx.Err()
	}
	return r.revoked[jti] || (sid != "" && r.revoked["sid:"+sid]), r.err
}

func TestRevocationChecked(t *testing.T) {
	storeDown := errors.New("redis: connection refused")
	badSig := errors.New("bad signature")
	p := Principal{Subject: "alice", Method: MethodJWT, TokenID: "jti-1", Session: "fam-1"}
	tests := []struct {
		name        string
		nextErr     error
		revoker     *fakeRevoker
		failOpen    bool
		wantErr     error
		wantOnError bool
		wantLookups int
	}{
		{name: "not revoked", revoker: &fakeRevoker{}, wantLookups: 1},
		{name: "revoked", revoker: &fakeRevoker{revoked: map[string]bool{"jti-1": true}}, wantErr: ErrInvalidToken, wantLookups: 1},
		{name: "other jti revoked", revoker: &fakeRevoker{revoked: map[string]bool{"jti-2": true}}, wantLookups: 1},
		{name: "session revoked", revoker: &fakeRevoker{revoked: map[string]bool{"sid:fam-1": true}}, wantErr: ErrInvalidToken, wantLookups: 1},
		{name: "other session revoked", revoker: &fakeRevoker{revoked: map[string]bool{"sid:fam-2": true}}, wantLookups: 1},
		{name: "store error fails closed", revoker: &fakeRevoker{err: storeDown}, wantErr: ErrUnavailable, wantOnError: true, wantLookups: 1},
		{name: "store error with fail open", revoker: &fakeRevoker{err: storeDown}, failOpen: true, wantOnError: true, wantLookups: 1},
		{name: "revoked with fail open", revoker: &fakeRevoker{revoked: map[string]bool{"jti-1": true}}, failOpen: true, wantErr: ErrInvalidToken, wantLookups: 1},
		{name: "verification fails first", nextErr: badSig, revoker: &fakeRevoker{}, wantErr: badSig},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var onErr []error
			c := &RevocationChecked{
				Next:     &fakeVerifier{iss: "a", p: p, err: tt.nextErr},
				Revoker:  tt.revoker,
				FailOpen: tt.failOpen,
				OnError:  func(err error) { onErr = append(onErr, err) },
			}
			got, err := c.Verify(context.Background(), "raw")
			if !errors.Is(err, tt.wantErr) || (tt.wantErr == nil && err != nil) {
				t.Fatalf("Verify() error = %v, want %v", err, tt.wantErr)
			}
			if err != nil && got.Authenticated() {
				t.Errorf("Verify() returned principal %+v with error %v", got, err)
			}
			if err == nil && got.Subject != "alice" {
				t.Errorf("Verify() = %+v, want alice", got)
			}
			if len(tt.revoker.jtis) != tt.wantLookups {
				t.Errorf("AccessRevoked called %d times, want %d", len(tt.revoker.jtis), tt.wantLookups)
			}
			if tt.wantLookups > 0 && (tt.revoker.jtis[0] != "jti-1" || tt.revoker.sids[0] != "fam-1") {
				t.Errorf("AccessRevoked(%q, %q), want jti-1, fam-1", tt.revoker.jtis[0], tt.revoker.sids[0])
			}
			if tt.wantOnError != (len(onErr) == 1) || (len(onErr) == 1 && !errors.Is(onErr[0], storeDown)) {
				t.Errorf("OnError called with %v, want the store error: %v", onErr, tt.wantOnError)
			}
			if tt.wantErr == ErrUnavailable && !errors.Is(err, storeDown) {
				t.Errorf("Verify() error = %v, want it to wrap the store error", err)
			}
		})
	}
}

func TestRevocationCheckedTimeout(t *testing.T) {
	p := Principal{Subject: "alice", Method: MethodJWT, TokenID: "jti-1"}
	t.Run("timeout honoured", func(t *testing.T) {
		r := &fakeRevoker{block: true}
		var onErr error
		c := &RevocationChecked{Next: &fakeVerifier{iss: "a", p: p}, Revoker: r, Timeout: 20 * time.Millisecond,
			OnError: func(err error) { onErr = err }}
		start := time.Now()
		_, err := c.Verify(context.Background(), "raw")
		if !errors.Is(err, ErrUnavailable) || !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("Verify() error = %v, want ErrUnavailable wrapping DeadlineExceeded", err)
		}
		if el := time.Since(start); el > 5*time.Second {
			t.Errorf("Verify() took %v with a 20ms timeout", el)
		}
		if !errors.Is(onErr, context.DeadlineExceeded) {
			t.Errorf("OnError got %v, want DeadlineExceeded", onErr)
		}
		if r.deadline > 20*time.Millisecond || r.deadline <= 0 {
			t.Errorf("lookup context had %v left, want at most 20ms", r.deadline)
		}
	})
	t.Run("default timeout is 500ms", func(t *testing.T) {
		r := &fakeRevoker{}
		c := &RevocationChecked{Next: &fakeVerifier{iss: "a", p: p}, Revoker: r}
		if _, err := c.Verify(context.Background(), "raw"); err != nil {
			t.Fatalf("Verify() error = %v", err)
		}
		if r.deadline > 500*time.Millisecond || r.deadline < 250*time.Millisecond {
			t.Errorf("lookup context had %v left, want about 500ms", r.deadline)
		}
	})
	t.Run("caller deadline wins when shorter", func(t *testing.T) {
		r := &fakeRevoker{}
		c := &RevocationChecked{Next: &fakeVerifier{iss: "a", p: p}, Revoker: r, Timeout: time.Hour}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		if _, err := c.Verify(ctx, "raw"); err != nil {
			t.Fatalf("Verify() error = %v", err)
		}
		if r.deadline > time.Second {
			t.Errorf("lookup context had %v left, want at most the caller's 1s", r.deadline)
		}
	})
	t.Run("issuer of the wrapped verifier", func(t *testing.T) {
		c := &RevocationChecked{Next: &fakeVerifier{iss: "https://idp"}}
		if got := c.Issuer(); got != "https://idp" {
			t.Errorf("Issuer() = %q, want https://idp", got)
		}
	})
}
