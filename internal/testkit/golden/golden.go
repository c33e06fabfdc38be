// Package golden compares test output with golden files. Importing it
// registers the -update flag, so only tests import it.
package golden

import (
	"flag"
	"os"
	"path/filepath"
	"testing"
)

// update is the -update flag: golden files are rewritten from the current
// output instead of compared.
var update = flag.Bool("update", false, "rewrite golden files from the current output")

// Updating reports whether -update was given.
func Updating() bool { return *update }

// Assert compares got with the file at path, or rewrites the file when
// -update is set.
func Assert(t testing.TB, path, got string) {
	t.Helper()
	if *update {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -run %s -update to create it)", err, t.Name())
	}
	if got != string(want) {
		t.Errorf("output differs from %s (run with -update after checking the change)\n--- got\n%s--- want\n%s", path, got, want)
	}
}
