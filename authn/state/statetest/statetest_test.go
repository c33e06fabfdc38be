package statetest

import (
	"testing"
	"time"
)

func TestStartRedisStopRestart(t *testing.T) {
	addr, stop, restart := StartRedis(t)
	steps := []struct {
		name   string
		action func()
		wantUp bool
	}{
		{"started", func() {}, true},
		{"stopped", stop, false},
		{"stopped twice", stop, false},
		{"restarted", restart, true},
		{"restarted while running", restart, true},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			st.action()
			if err := ping(addr); (err == nil) != st.wantUp {
				t.Errorf("ping(%s) = %v, want server up %v", addr, err, st.wantUp)
			}
		})
	}
}

func TestClock(t *testing.T) {
	start := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	c := NewClock(start)
	c.Advance(time.Minute)
	if got, want := c.Now(), start.Add(time.Minute); !got.Equal(want) {
		t.Errorf("Now() after Advance(1m) = %v, want %v", got, want)
	}
	c.Set(start)
	if got := c.Now(); !got.Equal(start) {
		t.Errorf("Now() after Set = %v, want %v", got, start)
	}
}
