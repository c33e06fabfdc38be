package e2e

import (
	"net/http"
	"testing"

	"go.uber.org/zap"

	"github.com/authgate/authgate/internal/config"
)

// TestAllowedSampleRate: logging.allowed_sample_rate is the fraction of
// allowed requests logged; 0 logs none of them. Denials are always logged.
func TestAllowedSampleRate(t *testing.T) {
	for _, tc := range []struct {
		rate        float64
		wantAllowed int
	}{{0, 0}, {1, 5}} {
		e := newEnv(t, "", nil, func(c *config.Config) { c.Logging.AllowedSampleRate = tc.rate })
		for range 5 {
			if resp, _ := e.do("GET", "/public/x"); resp.StatusCode != http.StatusOK {
				t.Fatalf("GET /public/x = %d", resp.StatusCode)
			}
		}
		if resp, _ := e.do("GET", "/admin/x"); resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("GET /admin/x = %d", resp.StatusCode)
		}
		allowed := e.logs.FilterMessage("request").FilterField(zap.String("decision", "allow")).Len()
		denied := e.logs.FilterMessage("request").FilterField(zap.String("decision", "deny")).Len()
		if allowed != tc.wantAllowed || denied != 1 {
			t.Errorf("allowed_sample_rate %v: logged %d allowed and %d denied requests, want %d and 1", tc.rate, allowed, denied, tc.wantAllowed)
		}
	}
}
