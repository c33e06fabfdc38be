package yamlx

import (
	"errors"
	"regexp"
	"slices"
	"strings"
	"testing"
)

type item struct {
	Name  string   `yaml:"name"`
	Roles []string `yaml:"roles"`
}

type doc struct {
	Version int    `yaml:"version"`
	Items   []item `yaml:"items"`
}

func TestDecode(t *testing.T) {
	tests := []struct {
		name      string
		data      string
		want      []string // the error's lines, exactly; nil means success
		wantField bool     // the error is a *FieldErrors
	}{
		{name: "valid", data: "version: 1\nitems:\n  - name: a\n"},
		{name: "leading document marker", data: "---\nversion: 1\n"},
		{name: "unknown key", data: "version: 1\nitems:\n  - name: a\n    x: 1\n",
			want: []string{`p.yaml:4: unknown key "x"`}, wantField: true},
		{name: "unknown top-level key", data: "verison: 1\n",
			want: []string{`p.yaml:1: unknown key "verison"`}, wantField: true},
		{name: "every unknown key", data: "a: 1\nitems:\n  - name: a\n    role: [x]\nb: 2\n",
			want: []string{`p.yaml:1: unknown key "a"`, `p.yaml:4: unknown key "role"`, `p.yaml:5: unknown key "b"`}, wantField: true},
		{name: "wrong type", data: "version: one\n",
			want: []string{"p.yaml:1: cannot unmarshal !!str `one` into int"}, wantField: true},
		{name: "bad indentation", data: "version: 1\n  items: x\n",
			want: []string{"p.yaml:2: mapping values are not allowed in this context"}},
		{name: "tab indentation", data: "items:\n\t- name: a\n",
			want: []string{"p.yaml:2: found character that cannot start any token"}},
		{name: "unterminated string", data: "version: 1\nitems: \"x\n",
			want: []string{"p.yaml:2: found unexpected end of stream"}},
		{name: "empty file", data: "", want: []string{"p.yaml: file is empty"}},
		{name: "only a comment", data: "# nothing here\n", want: []string{"p.yaml: file is empty"}},
		{name: "only whitespace", data: "\n  \n", want: []string{"p.yaml: file is empty"}},
		{name: "two documents", data: "version: 1\n---\nversion: 2\n", want: []string{"p.yaml: more than one YAML document"}},
		{name: "second document unparseable", data: "version: 1\n---\n[\n", want: []string{"p.yaml: more than one YAML document"}},
		{name: "not a mapping", data: "- a\n- b\n",
			want: []string{"p.yaml:1: cannot unmarshal !!seq into yamlx.doc"}, wantField: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var d doc
			err := Decode("p.yaml", []byte(tt.data), &d)
			if tt.want == nil {
				if err != nil {
					t.Fatalf("Decode(%q) error = %v", tt.data, err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Decode(%q) error = nil, want %q", tt.data, tt.want)
			}
			if got := strings.Split(err.Error(), "\n"); !slices.Equal(got, tt.want) {
				t.Errorf("Decode(%q) error =\n%v\nwant\n%s", tt.data, err, strings.Join(tt.want, "\n"))
			}
			var fe *FieldErrors
			if errors.As(err, &fe) != tt.wantField {
				t.Errorf("Decode(%q) error is *FieldErrors = %v, want %v", tt.data, !tt.wantField, tt.wantField)
			}
		})
	}
}

func TestDecodeParserErrors(t *testing.T) {
	// For parser (not scanner) errors the YAML library reports the line of
	// the construct it was in, counted from zero, so the exact number is
	// not asserted: only that the error is one "file:line: message".
	tests := []struct {
		name string
		data string
		msg  string
	}{
		{"unclosed flow sequence", "version: 1\nitems: [a\n", "did not find expected ',' or ']'"},
		{"unclosed flow mapping", "version: 1\nitems: {a: 1\n", "did not find expected ',' or '}'"},
		{"sequence inside a mapping", "version: 1\n- a\n", "did not find expected key"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var d doc
			err := Decode("p.yaml", []byte(tt.data), &d)
			re := regexp.MustCompile(`^p\.yaml:[1-3]: ` + regexp.QuoteMeta(tt.msg) + `$`)
			if err == nil || !re.MatchString(err.Error()) {
				t.Errorf("Decode(%q) error = %v, want p.yaml:<line>: %s", tt.data, err, tt.msg)
			}
			var fe *FieldErrors
			if errors.As(err, &fe) {
				t.Errorf("Decode(%q) syntax error is a *FieldErrors", tt.data)
			}
		})
	}
}

func TestDecodeMultiLineValue(t *testing.T) {
	// A type error quotes the offending value; a value with a line break
	// must neither lose the line number nor start a second error line that
	// does not name the file (a forged "file:line:" line in the logs).
	for _, data := range []string{"version: \"a\\nb\"\n", "items: []\nversion: \"1\\rp.yaml:9\"\n"} {
		var d doc
		err := Decode("p.yaml", []byte(data), &d)
		if err == nil {
			t.Fatalf("Decode(%q) error = nil, want a type error", data)
		}
		msg := err.Error()
		if strings.ContainsAny(msg, "\r\n") || !regexp.MustCompile(`^p\.yaml:[12]: cannot unmarshal !!str `).MatchString(msg) {
			t.Errorf("Decode(%q) error = %q, want one line p.yaml:<line>: cannot unmarshal ...", data, msg)
		}
	}
}

func TestDecodeFieldErrorsKeepsOtherFields(t *testing.T) {
	var d doc
	err := Decode("p.yaml", []byte("version: 3\nitems:\n  - name: a\n    extra: 1\n  - name: b\n"), &d)
	var fe *FieldErrors
	if !errors.As(err, &fe) {
		t.Fatalf("Decode() error = %v, want *FieldErrors", err)
	}
	if d.Version != 3 || len(d.Items) != 2 || d.Items[1].Name != "b" {
		t.Errorf("Decode() with an unknown key left %+v, want the other fields set", d)
	}
	if fe.Unwrap() == nil || fe.Error() != err.Error() {
		t.Errorf("FieldErrors.Unwrap() = %v, Error() = %q", fe.Unwrap(), fe.Error())
	}
}

func TestFormat(t *testing.T) {
	tests := []struct {
		in   string
		want string
	}{
		{"yaml: line 7: did not find expected key", "f.yaml:7: did not find expected key"},
		{"line 2: field x not found in type main.t", `f.yaml:2: unknown key "x"`},
		{"yaml: control characters are not allowed", "f.yaml: control characters are not allowed"},
		{"something else", "f.yaml: something else"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			if got := Format("f.yaml", errors.New(tt.in)).Error(); got != tt.want {
				t.Errorf("Format(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}

func TestSeqLines(t *testing.T) {
	tests := []struct {
		name string
		data string
		key  string
		want []int
	}{
		{name: "block sequence", data: "version: 1\nitems:\n  - name: a\n\n  - name: b\n    roles: [x]\n  - name: c\n", key: "items", want: []int{3, 5, 7}},
		{name: "flow sequence", data: "items: [{name: a}, {name: b}]\n", key: "items", want: []int{1, 1}},
		{name: "empty sequence", data: "items: []\n", key: "items", want: []int{}},
		{name: "nested sequence is not top level", data: "outer:\n  items:\n    - a\n", key: "items", want: nil},
		{name: "missing key", data: "version: 1\n", key: "items", want: nil},
		{name: "not a sequence", data: "items: 3\n", key: "items", want: nil},
		{name: "document not a mapping", data: "- a\n", key: "items", want: nil},
		{name: "invalid yaml", data: "items: [\n", key: "items", want: nil},
		{name: "empty", data: "", key: "items", want: nil},
		{name: "after a document marker", data: "# c\n---\nitems:\n  - a\n", key: "items", want: []int{4}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := SeqLines([]byte(tt.data), tt.key)
			if !slices.Equal(got, tt.want) || (got == nil) != (tt.want == nil) {
				t.Errorf("SeqLines(%q, %q) = %#v, want %#v", tt.data, tt.key, got, tt.want)
			}
		})
	}
}

func TestLine(t *testing.T) {
	lines := []int{3, 9}
	tests := []struct {
		i, want int
	}{{0, 3}, {1, 9}, {2, 0}, {100, 0}}
	for _, tt := range tests {
		if got := Line(lines, tt.i); got != tt.want {
			t.Errorf("Line(%v, %d) = %d, want %d", lines, tt.i, got, tt.want)
		}
	}
	if got := Line(nil, 0); got != 0 {
		t.Errorf("Line(nil, 0) = %d, want 0", got)
	}
}

// A syntax error names the line that breaks the document, not the line
// where the enclosing block began.
func TestSyntaxErrorLine(t *testing.T) {
	tests := []struct {
		name, doc string
		line      string
	}{
		{"indentation slip in a block", "a: 1\nb:\n  c: 2\n d: 3\n", "f.yaml:4:"},
		{"sequence item out of place", "a: 1\nb:\n  - x\n  y: 2\n", "f.yaml:4:"},
		{"unclosed flow mapping", "a: 1\nb: {c: 2\n", "f.yaml:2:"},
		{"tab indentation", "a: 1\nb:\n\tc: 2\n", "f.yaml:3:"},
		{"mapping value on a scalar line", "a: 1\nb: x\n  c: 2\n", "f.yaml:3:"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var v map[string]any
			err := Decode("f.yaml", []byte(tc.doc), &v)
			if err == nil || !strings.HasPrefix(err.Error(), tc.line) {
				t.Fatalf("Decode error = %v, want it to start with %q", err, tc.line)
			}
		})
	}
}

func TestKeyLines(t *testing.T) {
	doc := "a: 1\nb:\n  c: 2\n  d:\n    - e: 3\n    - f: 4\n"
	lines := KeyLines([]byte(doc))
	for path, want := range map[string]int{"a": 1, "b": 2, "b.c": 3, "b.d": 4, "b.d[0]": 5, "b.d[0].e": 5, "b.d[1].f": 6} {
		if got := lines[path]; got != want {
			t.Errorf("KeyLines()[%q] = %d, want %d", path, got, want)
		}
	}
	for path, want := range map[string]int{"b.c": 3, "b.missing": 2, "b.d[1].g": 6, "zz": 0} {
		if got := LineOf(lines, path); got != want {
			t.Errorf("LineOf(%q) = %d, want %d", path, got, want)
		}
	}
}
