package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestRealGoTest runs the real go test on a throwaway module with a passing,
// a skipping and a failing test, so the assumptions about -json output hold
// for the Go version in use.
func TestRealGoTest(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs a test binary")
	}
	dir := t.TempDir()
	write := func(name, content string) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("go.mod", "module example.com/probe\n\ngo 1.26\n")
	write("probe_test.go", `package probe

import "testing"

func TestPass(t *testing.T) { t.Log("quiet when passing") }

func TestSkipRedis(t *testing.T) { t.Skip("redis-server not installed") }

func TestSkipTable(t *testing.T) {
	for _, name := range []string{"a", "b"} {
		t.Run(name, func(t *testing.T) { t.Skipf("redis-server not installed") })
	}
}

func TestFail(t *testing.T) {
	t.Log("context of the failure")
	t.Error("boom")
}
`)
	var out, errOut bytes.Buffer
	code := run(dir, []string{"-count=1", "./..."}, &out, &errOut)
	got := out.String()
	if code != 1 {
		t.Errorf("run exit code = %d, want 1 (a test failed)\n%s%s", code, got, errOut.String())
	}
	for _, want := range []string{
		"--- FAIL: TestFail",
		"probe_test.go:17: boom",
		"context of the failure",
		"FAIL\texample.com/probe",
		"skipped tests by reason (3):",
		"    3  redis-server not installed (example.com/probe/probe_test.go:11, example.com/probe/probe_test.go:7)",
		"tests: 2 passed, 1 failed, 3 skipped",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("output lacks %q:\n%s", want, got)
		}
	}
	for _, unwanted := range []string{"=== RUN", "quiet when passing", "--- PASS"} {
		if strings.Contains(got, unwanted) {
			t.Errorf("output holds %q, which plain go test does not print:\n%s", unwanted, got)
		}
	}
}

func TestPassingPackagePrintsOnlyItsLine(t *testing.T) {
	stream := strings.Join([]string{
		`{"Action":"start","Package":"github.com/authgate/authgate/policy"}`,
		`{"Action":"run","Package":"github.com/authgate/authgate/policy","Test":"TestA"}`,
		`{"Action":"output","Package":"github.com/authgate/authgate/policy","Test":"TestA","Output":"=== RUN   TestA\n"}`,
		`{"Action":"output","Package":"github.com/authgate/authgate/policy","Test":"TestA","Output":"    a_test.go:3: chatter\n"}`,
		`{"Action":"output","Package":"github.com/authgate/authgate/policy","Test":"TestA","Output":"--- PASS: TestA (0.00s)\n"}`,
		`{"Action":"pass","Package":"github.com/authgate/authgate/policy","Test":"TestA"}`,
		`{"Action":"output","Package":"github.com/authgate/authgate/policy","Output":"PASS\n"}`,
		`{"Action":"output","Package":"github.com/authgate/authgate/policy","Output":"ok  \tgithub.com/authgate/authgate/policy\t0.01s\n"}`,
		`{"Action":"pass","Package":"github.com/authgate/authgate/policy"}`,
		`{"ImportPath":"github.com/authgate/authgate/broken","Action":"build-output","Output":"broken/x.go:1:1: syntax error\n"}`,
		`not json`,
	}, "\n")
	var out bytes.Buffer
	s := newSummary(&out)
	if err := s.consume(strings.NewReader(stream)); err != nil {
		t.Fatal(err)
	}
	s.report()
	want := "ok  \tgithub.com/authgate/authgate/policy\t0.01s\nbroken/x.go:1:1: syntax error\nnot json\n\ntests: 1 passed, 0 failed, 0 skipped\n"
	if out.String() != want {
		t.Errorf("output =\n%q\nwant\n%q", out.String(), want)
	}
}

func TestSkipReason(t *testing.T) {
	tests := []struct {
		output      []string
		where, want string
	}{
		{[]string{"=== RUN   TestX\n", "    x_test.go:12: redis-server not installed\n", "--- SKIP: TestX (0.00s)\n"}, "x_test.go:12", "redis-server not installed"},
		{[]string{"=== RUN   TestX/sub\n", "    x_test.go:3: setup\n", "    x_test.go:9: builds and runs the binary\n", "    --- SKIP: TestX/sub (0.00s)\n"}, "x_test.go:9", "builds and runs the binary"},
		{[]string{"=== RUN   TestX\n", "--- SKIP: TestX (0.00s)\n"}, "", "(no message)"},
	}
	for _, tc := range tests {
		where, got := skipReason(tc.output)
		if where != tc.where || got != tc.want {
			t.Errorf("skipReason(%q) = %q, %q; want %q, %q", tc.output, where, got, tc.where, tc.want)
		}
	}
}
