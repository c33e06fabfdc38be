package state

import (
	"context"
	"errors"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/authgate/authgate/authn/state/statetest"
)

func newTestSession(subject string, now time.Time) Session {
	return Session{Subject: subject, Roles: []string{"user"}, Ver: "v1", AuthTime: now,
		Expires: now.Add(time.Hour), MaxExpires: now.Add(3 * time.Hour)}
}

func TestSessions(t *testing.T) {
	ctx := context.Background()
	for _, be := range backends(t) {
		t.Run(be.name, func(t *testing.T) {
			clk := statetest.NewClock(t0())
			a, b := be.open(t, clk)
			now := clk.Now()
			s := newTestSession("alice", now)
			if err := a.CreateSession(ctx, "k1", s); err != nil {
				t.Fatalf("CreateSession() error = %v", err)
			}
			if err := b.CreateSession(ctx, "k1", s); err == nil {
				t.Fatal("CreateSession() of an existing key succeeded, want an error")
			}
			got, err := b.Session(ctx, "k1")
			if err != nil || got.Subject != "alice" || !slices.Equal(got.Roles, []string{"user"}) || got.Ver != "v1" || !got.MaxExpires.Equal(s.MaxExpires) {
				t.Fatalf("Session() = %+v, %v; want alice's record", got, err)
			}
			if _, err := b.Session(ctx, "nope"); !errors.Is(err, ErrNoSession) {
				t.Fatalf("Session(unknown) error = %v, want ErrNoSession", err)
			}

			// Touch moves the idle expiry, never past the absolute one.
			clk.Advance(50 * time.Minute)
			if err := a.TouchSession(ctx, "k1", clk.Now().Add(time.Hour)); err != nil {
				t.Fatalf("TouchSession() error = %v", err)
			}
			clk.Advance(30 * time.Minute) // past the first idle expiry
			if _, err := b.Session(ctx, "k1"); err != nil {
				t.Fatalf("Session() after a touch error = %v, want the session", err)
			}
			if err := a.TouchSession(ctx, "k1", clk.Now().Add(10*time.Hour)); err != nil {
				t.Fatal(err)
			}
			got, _ = b.Session(ctx, "k1")
			if !got.Expires.Equal(s.MaxExpires) {
				t.Fatalf("Expires after a long touch = %v, want the absolute expiry %v", got.Expires, s.MaxExpires)
			}

			if err := a.UpdateSession(ctx, "k1", []byte("tokens")); err != nil {
				t.Fatalf("UpdateSession() error = %v", err)
			}
			if got, _ := b.Session(ctx, "k1"); string(got.Data) != "tokens" {
				t.Fatalf("Data = %q, want tokens", got.Data)
			}

			// Ending is final: no touch or update brings it back.
			ended, err := b.EndSession(ctx, "k1")
			if err != nil || ended.Subject != "alice" {
				t.Fatalf("EndSession() = %+v, %v", ended, err)
			}
			if _, err := a.EndSession(ctx, "k1"); !errors.Is(err, ErrNoSession) {
				t.Fatalf("second EndSession() error = %v, want ErrNoSession", err)
			}
			if err := a.TouchSession(ctx, "k1", clk.Now().Add(time.Hour)); !errors.Is(err, ErrNoSession) {
				t.Fatalf("TouchSession() of an ended session error = %v, want ErrNoSession", err)
			}
			if err := a.UpdateSession(ctx, "k1", nil); !errors.Is(err, ErrNoSession) {
				t.Fatalf("UpdateSession() of an ended session error = %v, want ErrNoSession", err)
			}
			if _, err := a.Session(ctx, "k1"); !errors.Is(err, ErrNoSession) {
				t.Fatalf("Session() after the end error = %v, want ErrNoSession", err)
			}
		})
	}
}

func TestSessionsExpire(t *testing.T) {
	ctx := context.Background()
	for _, be := range backends(t) {
		t.Run(be.name, func(t *testing.T) {
			clk := statetest.NewClock(t0())
			a, b := be.open(t, clk)
			if err := a.CreateSession(ctx, "k", newTestSession("bob", clk.Now())); err != nil {
				t.Fatal(err)
			}
			clk.Advance(time.Hour)
			if _, err := b.Session(ctx, "k"); !errors.Is(err, ErrNoSession) {
				t.Fatalf("Session() at its idle expiry error = %v, want ErrNoSession", err)
			}
			if err := a.TouchSession(ctx, "k", clk.Now().Add(time.Hour)); !errors.Is(err, ErrNoSession) {
				t.Fatalf("TouchSession() of an expired session error = %v, want ErrNoSession (no revival)", err)
			}
		})
	}
}

func TestEndSessionsOfSubject(t *testing.T) {
	ctx := context.Background()
	for _, be := range backends(t) {
		t.Run(be.name, func(t *testing.T) {
			clk := statetest.NewClock(t0())
			a, b := be.open(t, clk)
			for _, k := range []string{"a1", "a2", "a3"} {
				if err := a.CreateSession(ctx, k, newTestSession("alice", clk.Now())); err != nil {
					t.Fatal(err)
				}
			}
			if err := a.CreateSession(ctx, "b1", newTestSession("bob", clk.Now())); err != nil {
				t.Fatal(err)
			}
			if n, err := b.SessionCount(ctx); err != nil || n != 4 {
				t.Fatalf("SessionCount() = %d, %v; want 4", n, err)
			}
			keys, err := b.EndSessions(ctx, "alice")
			if err != nil || !slices.Equal(keys, []string{"a1", "a2", "a3"}) {
				t.Fatalf("EndSessions(alice) = %v, %v; want [a1 a2 a3]", keys, err)
			}
			for _, k := range keys {
				if _, err := a.Session(ctx, k); !errors.Is(err, ErrNoSession) {
					t.Errorf("Session(%s) after EndSessions error = %v, want ErrNoSession", k, err)
				}
			}
			if _, err := a.Session(ctx, "b1"); err != nil {
				t.Fatalf("bob's session after alice's ended: %v", err)
			}
			if n, err := b.SessionCount(ctx); err != nil || n != 1 {
				t.Fatalf("SessionCount() = %d, %v; want 1", n, err)
			}
		})
	}
}

func TestSessionsPersist(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "state.json")
	clk := statetest.NewClock(t0())
	m, err := NewMemory(MemoryOptions{Now: clk.Now, Path: path})
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"keep", "end"} {
		if err := m.CreateSession(ctx, k, newTestSession("alice", clk.Now())); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := m.EndSession(ctx, "end"); err != nil {
		t.Fatal(err)
	}
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	m2, err := NewMemory(MemoryOptions{Now: clk.Now, Path: path})
	if err != nil {
		t.Fatal(err)
	}
	defer m2.Close()
	if _, err := m2.Session(ctx, "keep"); err != nil {
		t.Fatalf("session after a restart: %v", err)
	}
	if _, err := m2.Session(ctx, "end"); !errors.Is(err, ErrNoSession) {
		t.Fatalf("ended session after a restart error = %v, want ErrNoSession", err)
	}
}

func TestPutTakeOnce(t *testing.T) {
	ctx := context.Background()
	for _, be := range backends(t) {
		t.Run(be.name, func(t *testing.T) {
			clk := statetest.NewClock(t0())
			a, b := be.open(t, clk)
			if err := a.PutOnce(ctx, "state1", []byte("flow"), clk.Now().Add(time.Minute)); err != nil {
				t.Fatal(err)
			}
			if err := b.PutOnce(ctx, "state1", []byte("other"), clk.Now().Add(time.Minute)); err == nil {
				t.Fatal("PutOnce() over an existing key succeeded")
			}
			// Of concurrent takers exactly one gets the record (no replay).
			got := make(chan []byte, 8)
			for i := 0; i < 8; i++ {
				s := a
				if i%2 == 1 {
					s = b
				}
				go func() {
					v, err := s.TakeOnce(ctx, "state1")
					if err != nil && !errors.Is(err, ErrNoSession) {
						t.Error(err)
					}
					got <- v
				}()
			}
			n := 0
			for i := 0; i < 8; i++ {
				if v := <-got; v != nil {
					n++
					if string(v) != "flow" {
						t.Errorf("TakeOnce() = %q", v)
					}
				}
			}
			if n != 1 {
				t.Fatalf("%d takers got the record, want 1", n)
			}
		})
	}
}
