package yamlx

import (
	"errors"
	"strings"
	"testing"
)

type fuzzDoc struct {
	Version int               `yaml:"version"`
	Name    string            `yaml:"name"`
	Items   []item            `yaml:"items"`
	Labels  map[string]string `yaml:"labels"`
	On      bool              `yaml:"on"`
}

func FuzzYAMLDecode(f *testing.F) {
	f.Add("version: 1\nitems:\n  - name: a\n    roles: [x, y]\n")
	f.Add("version: 1\nitems:\n  - name: a\n    x: 1\n")
	f.Add("version: one\nlabels: {a: [1]}\n")
	f.Add("version: 1\n---\nversion: 2\n")
	f.Add("items: [a\n")
	f.Add("")
	f.Add("# only\n")
	f.Add("a: &x [*x, *x]\nb: *x\n")
	f.Add("items:\n\t- name: a\n")
	f.Add("name: \"unterminated\n")
	f.Add("version: !!binary aGk=\n")
	f.Add("<<: {version: 1}\n")
	f.Add("name: x\nversion: \"a b\"\n")

	const filename = "policy.yaml"
	f.Fuzz(func(t *testing.T, data string) {
		var d fuzzDoc
		err := Decode(filename, []byte(data), &d)
		if err == nil {
			return
		}
		// Every reported problem, and so every line of the joined error
		// a reader sees, names the file.
		for _, e := range flatten(err) {
			if !strings.HasPrefix(e.Error(), filename+":") {
				t.Fatalf("Decode(%q) reported %q, which does not start with %q", data, e, filename+":")
			}
		}
		for _, line := range strings.Split(err.Error(), "\n") {
			if !strings.HasPrefix(line, filename+":") {
				t.Fatalf("Decode(%q) error line %q does not start with %q", data, line, filename+":")
			}
		}
		var fe *FieldErrors
		if errors.As(err, &fe) && fe.Error() != err.Error() {
			t.Fatalf("Decode(%q) FieldErrors %q differs from the error %q", data, fe, err)
		}
	})
}

// flatten returns the leaves of an errors.Join tree, looking through
// *FieldErrors.
func flatten(err error) []error {
	if fe, ok := err.(*FieldErrors); ok {
		return flatten(fe.Err)
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var out []error
		for _, e := range j.Unwrap() {
			out = append(out, flatten(e)...)
		}
		return out
	}
	return []error{err}
}
