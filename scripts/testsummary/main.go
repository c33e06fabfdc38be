// Command testsummary runs `go test -json` with the arguments it is given,
// prints what a plain `go test` would print (a line per package, and the
// output of failed tests), and ends with the skipped tests grouped by
// reason and a closing count:
//
//	go run ./scripts/testsummary -race -count=1 ./...
//
// A skipped test is otherwise invisible: a package whose Redis tests all
// skipped still prints "ok". The exit code is that of go test.
package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"regexp"
	"sort"
	"strings"
)

func main() {
	os.Exit(run("", os.Args[1:], os.Stdout, os.Stderr))
}

// run executes go test -json args in dir ("" is the current directory) and
// returns the exit code to use.
func run(dir string, args []string, stdout, stderr io.Writer) int {
	cmd := exec.Command("go", append([]string{"test", "-json"}, args...)...)
	cmd.Dir = dir
	cmd.Stderr = stderr
	pipe, err := cmd.StdoutPipe()
	if err != nil {
		fmt.Fprintln(stderr, "testsummary:", err)
		return 2
	}
	if err := cmd.Start(); err != nil {
		fmt.Fprintln(stderr, "testsummary:", err)
		return 2
	}
	s := newSummary(stdout)
	if err := s.consume(pipe); err != nil {
		fmt.Fprintln(stderr, "testsummary: reading go test output:", err)
	}
	waitErr := cmd.Wait()
	s.report()
	if waitErr != nil {
		if exit, ok := waitErr.(*exec.ExitError); ok {
			return exit.ExitCode()
		}
		fmt.Fprintln(stderr, "testsummary:", waitErr)
		return 2
	}
	return 0
}

// event is one line of `go test -json` (cmd/test2json), including the
// build events go test adds for packages that fail to build.
type event struct {
	Action     string
	Package    string
	ImportPath string
	Test       string
	Output     string
}

// line is one output line and the test that wrote it ("" for the package).
type line struct {
	test string
	text string
}

// pkgState buffers one package's output until the package ends.
type pkgState struct {
	lines  []line
	failed map[string]bool
	output map[string][]string // per test, for skip reasons
}

// skip is one skipped test.
type skip struct {
	pkg, test, where, reason string
}

// summary turns a go test -json stream into plain output and counts.
// It is not safe for concurrent use.
type summary struct {
	out                    io.Writer
	pkgs                   map[string]*pkgState
	skips                  []skip
	passed, failed, nSkips int
}

func newSummary(out io.Writer) *summary {
	return &summary{out: out, pkgs: map[string]*pkgState{}}
}

func (s *summary) pkg(name string) *pkgState {
	p := s.pkgs[name]
	if p == nil {
		p = &pkgState{failed: map[string]bool{}, output: map[string][]string{}}
		s.pkgs[name] = p
	}
	return p
}

// consume reads events until EOF. Lines that are not JSON are printed as
// they are.
func (s *summary) consume(r io.Reader) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), 16<<20)
	for sc.Scan() {
		raw := sc.Bytes()
		var ev event
		if len(raw) == 0 || raw[0] != '{' || json.Unmarshal(raw, &ev) != nil {
			fmt.Fprintf(s.out, "%s\n", raw)
			continue
		}
		s.handle(ev)
	}
	return sc.Err()
}

func (s *summary) handle(ev event) {
	switch ev.Action {
	case "build-output":
		fmt.Fprint(s.out, ev.Output)
		return
	case "build-fail", "start":
		return
	}
	p := s.pkg(ev.Package)
	switch ev.Action {
	case "output":
		p.lines = append(p.lines, line{ev.Test, ev.Output})
		if ev.Test != "" {
			p.output[ev.Test] = append(p.output[ev.Test], ev.Output)
		}
	case "pass", "fail", "skip":
		if ev.Test == "" {
			s.finish(ev.Package, p, ev.Action == "fail")
			return
		}
		switch ev.Action {
		case "pass":
			s.passed++
		case "fail":
			s.failed++
			p.failed[ev.Test] = true
		case "skip":
			s.nSkips++
			where, reason := skipReason(p.output[ev.Test])
			s.skips = append(s.skips, skip{ev.Package, ev.Test, where, reason})
		}
		delete(p.output, ev.Test)
	}
}

// finish prints a package's result as plain go test would: the summary line
// of a passing package, and every failed test's output and the package's own
// output for a failing one.
func (s *summary) finish(name string, p *pkgState, failed bool) {
	for _, l := range p.lines {
		text := l.text
		switch {
		case strings.HasPrefix(text, "=== "):
			// -v framing that plain go test does not print.
		case !failed:
			if l.test == "" && (strings.HasPrefix(text, "ok  ") || strings.HasPrefix(text, "?   ")) {
				fmt.Fprint(s.out, text)
			}
		case l.test == "" || p.failed[l.test]:
			fmt.Fprint(s.out, text)
		}
	}
	delete(s.pkgs, name)
}

// logLine is a t.Log/t.Skip line as -v prints it: "    file_test.go:12: msg".
var logLine = regexp.MustCompile(`^\s*([\w.-]+\.go:\d+): (.*)$`)

// skipReason returns where and why a test skipped: the last message it
// logged before its "--- SKIP" line.
func skipReason(output []string) (where, reason string) {
	for i := len(output) - 1; i >= 0; i-- {
		text := strings.TrimRight(output[i], "\r\n")
		trimmed := strings.TrimSpace(text)
		if trimmed == "" || strings.HasPrefix(trimmed, "=== ") || strings.HasPrefix(trimmed, "--- ") {
			continue
		}
		if m := logLine.FindStringSubmatch(text); m != nil {
			return m[1], m[2]
		}
		reason = trimmed // a continuation line of a multi-line message
	}
	if reason == "" {
		reason = "(no message)"
	}
	return "", reason
}

// maxNamed is how many test names each reason lists.
const maxNamed = 3

// report prints the skipped tests grouped by reason, most frequent first,
// then the closing count.
func (s *summary) report() {
	if len(s.skips) > 0 {
		type group struct {
			reason string
			where  map[string]bool
			tests  []string
		}
		groups := map[string]*group{}
		for _, sk := range s.skips {
			g := groups[sk.reason]
			if g == nil {
				g = &group{reason: sk.reason, where: map[string]bool{}}
				groups[sk.reason] = g
			}
			if sk.where != "" {
				g.where[shortPkg(sk.pkg)+"/"+sk.where] = true
			}
			g.tests = append(g.tests, shortPkg(sk.pkg)+"."+sk.test)
		}
		list := make([]*group, 0, len(groups))
		for _, g := range groups {
			list = append(list, g)
		}
		sort.Slice(list, func(i, j int) bool {
			if len(list[i].tests) != len(list[j].tests) {
				return len(list[i].tests) > len(list[j].tests)
			}
			return list[i].reason < list[j].reason
		})
		fmt.Fprintf(s.out, "\nskipped tests by reason (%d):\n", len(s.skips))
		for _, g := range list {
			where := make([]string, 0, len(g.where))
			for w := range g.where {
				where = append(where, w)
			}
			sort.Strings(where)
			loc := ""
			if len(where) > 0 {
				loc = " (" + strings.Join(where, ", ") + ")"
			}
			fmt.Fprintf(s.out, "%5d  %s%s\n", len(g.tests), g.reason, loc)
			named := g.tests
			more := ""
			if len(named) > maxNamed {
				more = fmt.Sprintf(", and %d more", len(named)-maxNamed)
				named = named[:maxNamed]
			}
			fmt.Fprintf(s.out, "       %s%s\n", strings.Join(named, ", "), more)
		}
	}
	fmt.Fprintf(s.out, "\ntests: %d passed, %d failed, %d skipped\n", s.passed, s.failed, s.nSkips)
}

// shortPkg drops the module path so names stay readable.
func shortPkg(pkg string) string {
	const module = "github.com/authgate/authgate"
	if pkg == module {
		return "authgate"
	}
	return strings.TrimPrefix(pkg, module+"/")
}
