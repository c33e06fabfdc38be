package state

import (
	"context"
	"errors"
	"sort"
	"testing"
	"time"

	"github.com/authgate/authgate/authn/state/statetest"
)

// TestRedisRecoversQuicklyAfterRestart stops a real redis-server long enough
// for the client's dial circuit breaker to open (every operation of a busy
// gateway dials), then starts it again on the same port and measures how
// long the store takes to answer. go-redis probes a broken pool once a
// second on its own; the store's dialer must bring it back within a few
// probe intervals instead.
func TestRedisRecoversQuicklyAfterRestart(t *testing.T) {
	if testing.Short() {
		t.Skip("starts and stops redis-server several times")
	}
	srv := statetest.StartServer(t)
	r, err := NewRedis(context.Background(), RedisOptions{URL: srv.URL(0), Timeout: 250 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = r.Close() })
	l := Limit{Every: time.Millisecond, Burst: 1000}
	ctx := context.Background()
	const trials = 3
	// Generous for a loaded machine; go-redis alone needs up to a second.
	const bound = 500 * time.Millisecond
	var took []time.Duration
	for trial := range trials {
		if _, _, err := r.Allow(ctx, "test", "k", l); err != nil {
			t.Fatalf("trial %d: Allow before the outage: %v", trial, err)
		}
		srv.Stop()
		// Far more failed dials than the pool's size: the breaker opens.
		for range 4 * redisPoolSize {
			if _, _, err := r.Allow(ctx, "test", "k", l); !errors.Is(err, ErrUnavailable) {
				t.Fatalf("trial %d: Allow with Redis stopped = %v, want ErrUnavailable", trial, err)
			}
		}
		// Let go-redis's own probe fail and start its one-second sleep.
		time.Sleep(100 * time.Millisecond)
		srv.Restart() // returns once the server answers PING
		back := time.Now()
		for {
			_, _, err := r.Allow(ctx, "test", "k", l)
			if err == nil {
				break
			}
			if time.Since(back) > 5*time.Second {
				t.Fatalf("trial %d: store not back 5s after Redis: %v", trial, err)
			}
			time.Sleep(2 * time.Millisecond)
		}
		took = append(took, time.Since(back))
	}
	sort.Slice(took, func(i, j int) bool { return took[i] < took[j] })
	t.Logf("recovery after redis-server restart over %d trials: %v (bound %v)", trials, took, bound)
	if took[trials-1] > bound {
		t.Errorf("slowest recovery %v, want < %v", took[trials-1], bound)
	}
}

func TestRedisDialerProbesOnlyWhenThePoolStopped(t *testing.T) {
	d := newRedisDialer(50*time.Millisecond, nil, 2, true)
	// Nothing listens on port 1: every attempt is refused at once.
	start := time.Now()
	for range 2 {
		if _, err := d.dial(context.Background(), "tcp", "127.0.0.1:1"); err == nil {
			t.Fatal("dial to a closed port succeeded")
		}
	}
	if took := time.Since(start); took > time.Second {
		t.Errorf("two ordinary dials took %v: they must fail at once", took)
	}
	// The pool has stopped dialing: the next call is its probe, which keeps
	// trying until the store closes.
	done := make(chan error, 1)
	go func() {
		_, err := d.dial(context.Background(), "tcp", "127.0.0.1:1")
		done <- err
	}()
	select {
	case err := <-done:
		t.Fatalf("probe returned %v before the store closed", err)
	case <-time.After(5 * redisProbeInterval):
	}
	d.close()
	select {
	case err := <-done:
		if err == nil {
			t.Error("probe to a closed port succeeded")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("probe did not end when the store closed")
	}
}
