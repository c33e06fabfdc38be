package config

import (
	"strings"
	"testing"
	"time"
)

func TestUpstreamRetryRefusedDelay(t *testing.T) {
	if d := Default().Upstream.RetryRefusedDelay; d != 50*time.Millisecond {
		t.Errorf("default upstream.retry_refused_delay = %v, want 50ms", d)
	}
	for _, tc := range []struct {
		delay time.Duration
		ok    bool
	}{
		{0, true}, // no retry
		{50 * time.Millisecond, true},
		{time.Second, true},
		{-time.Millisecond, false},
		{time.Second + time.Millisecond, false},
	} {
		c := Default()
		c.Upstream.URL = "http://127.0.0.1:8081"
		c.PolicyFile = "policy.yaml"
		c.Upstream.RetryRefusedDelay = tc.delay
		err := c.Validate()
		if tc.ok && err != nil {
			t.Errorf("retry_refused_delay %v: Validate() = %v, want nil", tc.delay, err)
		}
		if !tc.ok && (err == nil || !strings.Contains(err.Error(), "upstream.retry_refused_delay")) {
			t.Errorf("retry_refused_delay %v: Validate() = %v, want an error naming upstream.retry_refused_delay", tc.delay, err)
		}
	}
}
