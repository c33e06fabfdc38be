package rollout

import (
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/authgate/authgate/internal/nginxtest"
	"github.com/authgate/authgate/internal/testkit"
)

// report logs a topology's figures in one line that the README quotes,
// and the first failures.
func report(t *testing.T, c *cluster, name string, sum *tally, extra string) {
	t.Helper()
	slowest := c.checkExits()
	form := "short"
	if c.s.long {
		form = "long"
	}
	exits := ""
	if len(c.exits) > 0 {
		exits = fmt.Sprintf("; slowest gateway exit %v after SIGTERM", slowest.Round(time.Millisecond))
	}
	t.Logf("rollout %s form: %s: %d rounds, shutdown_delay %v, %d clients: %s%s%s",
		form, name, c.s.rounds, c.s.delay, c.s.clients, sum, exits, extra)
	for _, x := range sum.samples {
		t.Logf("  %s", x)
	}
	if sum.ok == 0 || sum.methods["POST"] == 0 {
		t.Errorf("%s: no successful load (%s)", name, sum)
	}
}

// allowed is the failure budget of the direct-client bar: 1 per 100,000
// requests, and at least 1 for a short run.
func allowed(total int) int { return max(1, total/100_000) }

// TestRolloutWholePod stops a whole pod, its app and its gateway, while
// clients reach the pods through a Service (new connections go to the
// endpoints that are ready, lag after a readiness change; existing
// connections stay where they are).
//
// When the app gets SIGTERM with the gateway and exits at once, requests
// still arriving at the pod until the endpoints are updated find no app.
// With the chart's ordering (the app's preStop sleep outlives the
// gateway's drain) no request fails.
func TestRolloutWholePod(t *testing.T) {
	s := loadSettings(t)
	t.Run("app outlives the gateway", func(t *testing.T) {
		sum := serviceRollout(t, s, appOutlives, "whole pod, app outlives the gateway (chart ordering)")
		if sum.failed() != 0 {
			t.Errorf("%d requests failed, want 0", sum.failed())
		}
	})
	t.Run("app exits at once", func(t *testing.T) {
		sum := serviceRollout(t, s, together, "whole pod, app exits at once")
		// Connections are retired from the first response after SIGTERM,
		// so only what arrives before the endpoints update can fail; with
		// connections kept alive through the delay it was a quarter of all
		// requests.
		if sum.failed()*100 > sum.total*3 {
			t.Errorf("%d of %d requests failed, want under 3%%", sum.failed(), sum.total)
		}
	})
}

// TestRolloutService restarts gateways behind a Service: the endpoints
// drop a pod when its readiness fails, and existing connections stay.
func TestRolloutService(t *testing.T) {
	sum := serviceRollout(t, loadSettings(t), gatewayOnly, "Service")
	if sum.failed() != 0 {
		t.Errorf("%d requests failed, want 0", sum.failed())
	}
}

// serviceRollout runs a rollout of two pods behind a Service and reports
// what the clients saw.
func serviceRollout(t *testing.T, s settings, model stopModel, name string) *tally {
	c := newCluster(t, s, 2, "exit")
	l := runLoad(c, s.clients, target{urls: []string{"http://service"}, dial: c.serviceDial})
	c.rollout(model)
	sum := l.stopLoad()
	report(t, c, name, sum, "")
	return sum
}

// TestRolloutDirect restarts gateways that clients dial directly: a client
// knows both addresses and moves to the other on a connection error. A
// refused dial sent nothing and is sent again there.
func TestRolloutDirect(t *testing.T) {
	s := loadSettings(t)
	c := newCluster(t, s, 2, "exit")
	l := runLoad(c, s.clients, target{urls: []string{"http://" + c.slots[0].gwAddr, "http://" + c.slots[1].gwAddr}})
	c.rollout(gatewayOnly)
	sum := l.stopLoad()
	report(t, c, "direct clients", sum, "")
	if n := sum.failed(); n > allowed(sum.total) {
		t.Errorf("%d of %d requests failed, want at most %d (1 per 100,000)", n, sum.total, allowed(sum.total))
	}
}

// nginxConf is nginx in front of both gateways with upstream keep-alive,
// as a hand-written front proxy is configured. A server that failed is
// skipped for fail_timeout, counted in whole seconds: 1s (1 to 2s) instead
// of the default 10s, and rounds more than 2s apart, keep both gateways
// from being skipped at once.
const nginxConf = `
{{if .Root}}user root;{{end}}
worker_processes 1;
pid {{.Dir}}/nginx.pid;
error_log {{.Dir}}/error.log warn;
events { worker_connections 1024; }
http {
  access_log off;
  client_body_temp_path {{.Dir}}/tmp/body;
  proxy_temp_path {{.Dir}}/tmp/proxy;
  fastcgi_temp_path {{.Dir}}/tmp/fastcgi;
  uwsgi_temp_path {{.Dir}}/tmp/uwsgi;
  scgi_temp_path {{.Dir}}/tmp/scgi;
  upstream gateways {
    server {{.A}} fail_timeout=1s;
    server {{.B}} fail_timeout=1s;
    keepalive 64;
  }
  server {
    listen 127.0.0.1:{{.Port}};
    location / {
      proxy_pass http://gateways;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      {{.NextUpstream}}
    }
  }
}
`

// TestRolloutNginx restarts the gateways behind a real nginx with upstream
// keep-alive, with nginx's default proxy_next_upstream (error timeout: a
// refused connection is passed to the other gateway, for any method, since
// nothing was sent) and with retries off. nginx learns that a server is
// gone only from failed requests: with retries off, the requests it sends
// to the stopped gateway's closed port before it marks the server failed
// (max_fails) get its 502.
func TestRolloutNginx(t *testing.T) {
	s := loadSettings(t)
	nginxtest.Binary(t)
	if s.rounds > 1 {
		s.warm = max(s.warm, 2*time.Second)
	}
	for _, tc := range []struct {
		name, directive string
		budget          func(rounds int) int
	}{
		{"default proxy_next_upstream", "", func(int) int { return 0 }},
		// Every request nginx sends to the stopped gateway before it marks
		// it failed: at most one per client and stop.
		{"proxy_next_upstream off", "proxy_next_upstream off;", func(rounds int) int { return rounds * s.clients }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newCluster(t, s, 2, "exit")
			port := testkit.FreePort(t)
			nginxtest.Start(t, nginxConf, map[string]any{"A": c.slots[0].gwAddr, "B": c.slots[1].gwAddr, "Port": port, "NextUpstream": tc.directive}, port)
			l := runLoad(c, s.clients, target{urls: []string{"http://127.0.0.1:" + strconv.Itoa(port)}})
			c.rollout(gatewayOnly)
			sum := l.stopLoad()
			report(t, c, "nginx, "+tc.name, sum, "")
			if n, max := sum.failed(), tc.budget(s.rounds); n > max {
				t.Errorf("%d requests failed, want at most %d", n, max)
			}
			for k := range sum.failures {
				if !strings.Contains(k, "502 front") {
					t.Errorf("failure %q: want only nginx's 502 for a refused connection", k)
				}
			}
		})
	}
}

// TestRolloutAppRestart restarts the app in place under load: the old
// process closes its listener and stops, and the new one listens a gap
// later. The gateway retries a refused connection once after
// upstream.retry_refused_delay (50ms by default), so a gap under the delay
// loses nothing, and a longer gap shows the retry's bound.
//
// An app that closes its kept-alive connections at once when it stops (Go's
// http.Server.Shutdown does) races the gateway's next request on each: the
// request is written on a connection the app has just closed. The app
// never read it, but the gateway cannot tell that from a request the app
// acted on, so it is not retried unless it is idempotent (Go's transport
// sends a GET again on a new connection). An app that retires its
// connections first, as the gateway itself does when it stops, loses
// nothing.
func TestRolloutAppRestart(t *testing.T) {
	s := loadSettings(t)
	retryDelay := 50 * time.Millisecond // the default
	if !s.long {
		// On a loaded machine the new process can take 100ms to listen
		// after its signal; a longer delay keeps the short form's gaps
		// under it. The long form measures the default.
		retryDelay, s.gapsLong = 250*time.Millisecond, 600*time.Millisecond
		s.retry = retryDelay.String()
	}
	for _, tc := range []struct {
		name    string
		mode    string
		gap     time.Duration
		checkFn func(t *testing.T, sum *tally)
	}{
		{"app retires its connections, gap under the retry delay", "retire", s.gap, func(t *testing.T, sum *tally) {
			if sum.failed() != 0 {
				t.Errorf("%d requests failed, want 0", sum.failed())
			}
		}},
		{"app closes idle connections at once, gap under the retry delay", "graceful", s.gap, func(t *testing.T, sum *tally) {
			for k := range sum.failures {
				if !strings.HasPrefix(k, "POST ") {
					t.Errorf("failure %q: only a POST on a connection the app closed may fail", k)
				}
			}
		}},
		{"app retires its connections, gap over the retry delay", "retire", s.gapsLong, func(t *testing.T, sum *tally) {
			if sum.failed() == 0 {
				t.Errorf("a %v gap lost nothing: the harness did not see the restart", s.gapsLong)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newCluster(t, s, 1, tc.mode)
			l := runLoad(c, s.clients, target{urls: []string{"http://" + c.slots[0].gwAddr}})
			var gaps []string
			var longest time.Duration
			restart := func() {
				time.Sleep(c.s.warm)
				g := c.restartApp(0, tc.gap)
				longest = max(longest, g)
				gaps = append(gaps, g.Round(time.Millisecond).String())
			}
			for range s.rounds {
				restart()
			}
			// A restart proves something only if a request needed a new
			// upstream connection inside its gap. On a loaded machine the
			// clients can all be waiting elsewhere for a short gap; restart
			// again (up to four more times) until one did.
			retries := c.metric(0, "authgate_upstream_retries_total")
			for extra := 0; retries < 1 && extra < 4; extra++ {
				restart()
				retries = c.metric(0, "authgate_upstream_retries_total")
			}
			time.Sleep(c.s.warm)
			sum := l.stopLoad()
			retries = c.metric(0, "authgate_upstream_retries_total")
			report(t, c, fmt.Sprintf("app restart (%s), gap %v, retry delay %v", tc.mode, tc.gap, retryDelay), sum,
				fmt.Sprintf("; measured gaps %s; %v refused upstream connections retried", strings.Join(gaps, " "), retries))
			if retries < 1 {
				t.Errorf("authgate_upstream_retries_total = %v: no restart was seen", retries)
			}
			if tc.gap < retryDelay && longest >= retryDelay {
				t.Logf("a measured gap (%v) reached the retry delay: the machine is too slow for this check", longest)
				return
			}
			tc.checkFn(t, sum)
		})
	}
}
