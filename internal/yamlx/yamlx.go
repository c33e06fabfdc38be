// Package yamlx decodes YAML strictly and reports errors as file:line.
package yamlx

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

var lineRE = regexp.MustCompile(`^(?:yaml: )?line (\d+): (.*)$`)

// Decode decodes data into out, failing on unknown fields, an empty document
// and trailing documents. Every problem is returned, joined, each in the form
// "filename:line: message".
func Decode(filename string, data []byte, out any) error {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	err := dec.Decode(out)
	if errors.Is(err, io.EOF) {
		return fmt.Errorf("%s: file is empty", filename)
	}
	var te *yaml.TypeError
	if errors.As(err, &te) {
		return &FieldErrors{Err: Format(filename, err)}
	}
	if err != nil {
		return Format(filename, atProblemLine(data, err))
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return fmt.Errorf("%s: more than one YAML document", filename)
	}
	return nil
}

// FieldErrors reports that a document decoded but some of its fields were
// rejected (unknown keys, wrong types). The other fields are set, so a
// caller can go on validating and report every problem at once.
type FieldErrors struct{ Err error }

func (e *FieldErrors) Error() string { return e.Err.Error() }
func (e *FieldErrors) Unwrap() error { return e.Err }

var notFoundRE = regexp.MustCompile(`^field (\S+) not found in type \S+$`)

// Format rewrites a yaml error as one "filename:line: message" error per
// problem.
func Format(filename string, err error) error {
	var te *yaml.TypeError
	var msgs []string
	if errors.As(err, &te) {
		msgs = te.Errors
	} else {
		msgs = []string{err.Error()}
	}
	errs := make([]error, 0, len(msgs))
	for _, m := range msgs {
		m = strings.TrimPrefix(m, "yaml: ")
		m = strings.NewReplacer("\r", `\r`, "\n", `\n`).Replace(m)
		if sm := lineRE.FindStringSubmatch(m); sm != nil {
			msg := sm[2]
			if nf := notFoundRE.FindStringSubmatch(msg); nf != nil {
				msg = fmt.Sprintf("unknown key %q", nf[1])
			}
			errs = append(errs, fmt.Errorf("%s:%s: %s", filename, sm[1], msg))
			continue
		}
		errs = append(errs, fmt.Errorf("%s: %s", filename, m))
	}
	return errors.Join(errs...)
}

// SeqLines returns the line of each item of the top-level sequence named
// key, or nil when there is none. It is used to name items in validation
// errors after a strict Decode succeeded.
func SeqLines(data []byte, key string) []int {
	var doc yaml.Node
	if yaml.Unmarshal(data, &doc) != nil || len(doc.Content) == 0 {
		return nil
	}
	m := doc.Content[0]
	if m.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value != key || m.Content[i+1].Kind != yaml.SequenceNode {
			continue
		}
		lines := make([]int, len(m.Content[i+1].Content))
		for j, n := range m.Content[i+1].Content {
			lines[j] = n.Line
		}
		return lines
	}
	return nil
}

// Line returns lines[i], or 0 when out of range.
func Line(lines []int, i int) int {
	if i < len(lines) {
		return lines[i]
	}
	return 0
}

// DecodeAll is Decode for parsers that report every problem at once. Field
// errors (unknown keys, wrong types) leave the rest of the document
// decoded, so they are returned in fieldErrs for the caller to join with
// its own validation errors; any other failure is returned as fatal.
func DecodeAll(filename string, data []byte, out any) (fieldErrs []error, fatal error) {
	err := Decode(filename, data, out)
	if err == nil {
		return nil, nil
	}
	var fe *FieldErrors
	if errors.As(err, &fe) {
		return []error{fe.Err}, nil
	}
	return nil, err
}

// atProblemLine corrects the line of a syntax error. The YAML parser names
// the line where the enclosing block or flow collection began (an
// indentation slip on line 4 of a block opened on line 2 is reported at
// line 2, an unclosed "{" at the line it opened on), which sends a reader
// to the wrong place. The line that breaks the document is the last line
// of its shortest prefix that fails to parse; that line is reported
// instead when it is later.
func atProblemLine(data []byte, err error) error {
	sm := lineRE.FindStringSubmatch(strings.TrimPrefix(err.Error(), "yaml: "))
	if sm == nil {
		return err
	}
	reported, _ := strconv.Atoi(sm[1])
	lines := bytes.SplitAfter(data, []byte("\n"))
	if len(lines) > 10000 {
		return err // not worth the parses
	}
	prefix := 0
	for n := range lines {
		prefix += len(lines[n])
		var v yaml.Node
		if yaml.Unmarshal(data[:prefix], &v) != nil {
			if n+1 > reported {
				return fmt.Errorf("line %d: %s", n+1, sm[2])
			}
			break
		}
	}
	return err
}

// KeyLines maps the dotted path of every mapping key in data to the line
// it is on: "listen.address", "issuers[0].issuer", "issuers[0]" for the
// item itself. Validation uses it to name the line of a bad value after a
// strict Decode succeeded.
func KeyLines(data []byte) map[string]int {
	var doc yaml.Node
	if yaml.Unmarshal(data, &doc) != nil || len(doc.Content) == 0 {
		return nil
	}
	out := map[string]int{}
	var walk func(n *yaml.Node, path string)
	walk = func(n *yaml.Node, path string) {
		switch n.Kind {
		case yaml.MappingNode:
			for i := 0; i+1 < len(n.Content); i += 2 {
				p := n.Content[i].Value
				if path != "" {
					p = path + "." + p
				}
				out[p] = n.Content[i].Line
				walk(n.Content[i+1], p)
			}
		case yaml.SequenceNode:
			for i, item := range n.Content {
				p := fmt.Sprintf("%s[%d]", path, i)
				out[p] = item.Line
				walk(item, p)
			}
		}
	}
	walk(doc.Content[0], "")
	return out
}

// LineOf returns the line of path in lines, or of its nearest enclosing
// key, or 0.
func LineOf(lines map[string]int, path string) int {
	for path != "" {
		if l, ok := lines[path]; ok {
			return l
		}
		i := strings.LastIndexAny(path, ".[")
		if i < 0 {
			return 0
		}
		path = path[:i]
	}
	return 0
}
