package e2e

import (
	"fmt"
	"os"
	"regexp"
	"strings"
	"sync"
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

// The suite's log sinks and the secrets it used. After every test has run,
// TestMain searches every captured log line for them: a secret in a log is
// a failure of the whole suite.
var (
	sinksMu sync.Mutex
	sinks   []*observer.ObservedLogs
	secrets = map[string]bool{testSecret: true, testAPIKey: true, testReaderKey: true, "agk_expired_key_0123456789": true}
)

func registerSink(l *observer.ObservedLogs) {
	sinksMu.Lock()
	sinks = append(sinks, l)
	sinksMu.Unlock()
}

// registerSecret adds a password, key or token the suite used.
func registerSecret(s string) {
	sinksMu.Lock()
	secrets[s] = true
	sinksMu.Unlock()
}

// jwtLike matches anything shaped like a signed JWT.
var jwtLike = regexp.MustCompile(`eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.`)

// cleanups run after every test, for resources shared across tests.
var cleanups []func()

func registerCleanup(f func()) {
	sinksMu.Lock()
	cleanups = append(cleanups, f)
	sinksMu.Unlock()
}

func TestMain(m *testing.M) {
	code := m.Run()
	for _, f := range cleanups {
		f()
	}
	if code == 0 {
		if leaks := scanSinks(); len(leaks) > 0 {
			fmt.Fprintf(os.Stderr, "FAIL: secrets found in logs:\n  %s\n", strings.Join(leaks, "\n  "))
			code = 1
		} else {
			fmt.Printf("log scan: %d log sinks, %d secrets, no secret in any log line\n", len(sinks), len(secrets))
		}
	}
	os.Exit(code)
}

func scanSinks() []string {
	sinksMu.Lock()
	defer sinksMu.Unlock()
	var leaks []string
	for _, s := range sinks {
		leaks = append(leaks, scanEntries(s.All(), secrets)...)
	}
	return leaks
}

func scanEntries(entries []observer.LoggedEntry, secrets map[string]bool) []string {
	var leaks []string
	{
		for _, e := range entries {
			line := e.Message
			for k, v := range e.ContextMap() {
				line += fmt.Sprintf(" %s=%v", k, v)
			}
			for sec := range secrets {
				if strings.Contains(line, sec) {
					leaks = append(leaks, fmt.Sprintf("%q contains a secret of %d bytes", e.Message, len(sec)))
				}
			}
			if jwtLike.MatchString(line) {
				leaks = append(leaks, fmt.Sprintf("%q contains a JWT", e.Message))
			}
		}
	}
	return leaks
}

func TestLogScanFindsSecrets(t *testing.T) {
	core, logs := observer.New(zapcore.DebugLevel)
	log := zap.New(core)
	log.Info("fine", zap.String("subject", "alice"))
	if leaks := scanEntries(logs.All(), map[string]bool{"hunter2": true}); len(leaks) != 0 {
		t.Fatalf("clean log reported: %v", leaks)
	}
	log.Warn("oops", zap.String("error", "bad password hunter2"))
	log.Warn("token", zap.String("raw", "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.sig"))
	if leaks := scanEntries(logs.All(), map[string]bool{"hunter2": true}); len(leaks) != 2 {
		t.Fatalf("scan found %d leaks, want 2: %v", len(leaks), leaks)
	}
}
