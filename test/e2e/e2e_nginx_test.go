package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/authgate/authgate/internal/config"
	"github.com/authgate/authgate/internal/nginxtest"
)

// nginxForwardAuthConf is the forward-auth setup the README documents:
// nginx asks authgate about every request and routes the auth endpoints
// straight to it.
const nginxForwardAuthConf = nginxtest.Prelude + `
  server {
    listen 127.0.0.1:{{.Port}};
    location = /_authgate {
      internal;
      proxy_pass http://{{.Gateway}}/_authgate/verify;
      proxy_pass_request_body off;
      proxy_set_header Content-Length "";
      proxy_set_header X-Original-URI $request_uri;
      proxy_set_header X-Original-Method $request_method;
      proxy_set_header X-Forwarded-Host $host;
    }
    location /auth/ {
      proxy_pass http://{{.Gateway}};
    }
    location / {
      auth_request /_authgate;
      auth_request_set $authgate_subject $upstream_http_x_auth_subject;
      auth_request_set $authgate_roles $upstream_http_x_auth_roles;
      auth_request_set $authgate_method $upstream_http_x_auth_method;
      proxy_set_header X-Auth-Subject $authgate_subject;
      proxy_set_header X-Auth-Roles $authgate_roles;
      proxy_set_header X-Auth-Method $authgate_method;
      proxy_set_header Authorization "";
      proxy_set_header X-API-Key "";
      proxy_pass http://{{.Upstream}};
    }
  }
}
`

func TestE2ENginxForwardAuthWithLogin(t *testing.T) {
	nginxtest.Binary(t)
	e := newEnv(t, "", nil, withUsers, func(c *config.Config) {
		c.Mode = config.ModeForwardAuth
		c.Upstream.URL = "" // nginx proxies; authgate only decides
		c.ForwardAuth.TrustedPeers = []string{"127.0.0.1"}
	})
	port := nginxtest.FreePort(t)
	nginxtest.Start(t, nginxForwardAuthConf, map[string]any{
		"Port": port, "Gateway": e.addr(), "Upstream": strings.TrimPrefix(e.upstream.URL, "http://"),
	}, port)
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	client := &http.Client{Timeout: 10 * time.Second}

	// Login goes to authgate through nginx.
	resp, err := client.PostForm(base+"/auth/login", url.Values{"username": {"alice"}, "password": {"alice-password-1"}})
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	var tr tokenResponse
	if resp.StatusCode != 200 || json.Unmarshal(body, &tr) != nil || tr.AccessToken == "" {
		t.Fatalf("login through nginx = %d %s", resp.StatusCode, body)
	}
	registerSecret(tr.AccessToken)
	registerSecret(tr.RefreshToken)

	get := func(path, bearer string, hdr ...string) int {
		req, _ := http.NewRequest("GET", base+path, nil)
		if bearer != "" {
			req.Header.Set("Authorization", "Bearer "+bearer)
		}
		for i := 0; i+1 < len(hdr); i += 2 {
			req.Header.Set(hdr[i], hdr[i+1])
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	before := e.up.count()
	if code := get("/admin/x", tr.AccessToken, "X-Auth-Subject", "mallory"); code != 200 {
		t.Fatalf("allowed request through nginx = %d", code)
	}
	got := e.up.last(t)
	if got.Header.Get("X-Auth-Subject") != "alice" || got.Header.Get("X-Auth-Roles") != "admin,user" || got.Header.Get("Authorization") != "" {
		t.Errorf("upstream identity = %q %q, Authorization %q", got.Header.Get("X-Auth-Subject"), got.Header.Get("X-Auth-Roles"), got.Header.Get("Authorization"))
	}
	if code := get("/admin/x", ""); code != 401 {
		t.Errorf("anonymous through nginx = %d, want 401", code)
	}
	if code := get("/admin/x", "", "X-API-Key", testReaderKey); code != 403 {
		t.Errorf("reader through nginx = %d, want 403", code)
	}
	if n := e.up.count() - before; n != 1 {
		t.Errorf("upstream saw %d requests, want only the allowed one", n)
	}
}
