package issuer

import "testing"

func TestSafeRedirectRefusesHostileTargets(t *testing.T) {
	hostile := []string{
		"",
		"//evil.example",
		"///evil.example",
		"////evil.example",
		"/\\evil.example",
		"\\\\evil.example",
		"\\/evil.example",
		"/\\/evil.example",
		"https://evil.example",
		"http:evil.example",
		"https:/evil.example",
		"javascript:alert(1)",
		"JaVaScRiPt:alert(1)",
		"data:text/html,<script>alert(1)</script>",
		"evil.example",
		"//evil.example/%2F..",
		"/%2F%2Fevil.example",
		"/%2f/evil.example",
		"%2F%2Fevil.example",
		"/%5Cevil.example",
		"/%5c%5cevil.example",
		"/%252F%252Fevil.example",
		"/%25252F%25252Fevil.example",
		"/\t/evil.example",
		"/\n/evil.example",
		"/\r\n/evil.example",
		"/%09/evil.example",
		"/%0d%0a/evil.example",
		" //evil.example",
		"/ /evil.example",
		"/.//evil.example",
		"/a/../..//evil.example",
		"/%2e%2e//evil.example",
		"/x#@evil.example",
		"/\x00",
		"/%00",
		"//evil.example@good.example",
		"/\u3002evil.example",
		"/\uff0f\uff0fevil.example",
		"/auth/sign_in?rd=//evil.example",
		"/auth",
		"/x?" + string(make([]byte, 3000)),
	}
	for _, rd := range hostile {
		if got, ok := SafeRedirect(rd, "/auth"); ok {
			t.Errorf("SafeRedirect(%q) = %q, true; want refused", rd, got)
		}
	}
	if len(hostile) < 25 {
		t.Fatalf("only %d hostile targets", len(hostile))
	}
}

func TestSafeRedirectKeepsOrdinaryTargets(t *testing.T) {
	for _, rd := range []string{"/", "/app", "/app/", "/app/page?x=1&y=%2F", "/reports/2026?q=a+b", "/%C3%A9t%C3%A9", "/~alice", "/a/b/c.html", "/authx/y"} {
		if got, ok := SafeRedirect(rd, "/auth"); !ok || got != rd {
			t.Errorf("SafeRedirect(%q) = %q, %v; want it unchanged", rd, got, ok)
		}
	}
}
